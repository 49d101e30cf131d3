"""Issue 18 item 21: under mpiexec, an uncaught exception on one rank ends the whole job, not a hang."""

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 45  # seconds; mpiexec ends a job that runs longer, so a hang fails instead of blocking CI

HAS_MPI4PY = importlib.util.find_spec("mpi4py") is not None
MPIEXEC = (str(Path(sys.executable).parent / "mpiexec") if (Path(sys.executable).parent / "mpiexec").exists()
           else shutil.which("mpiexec")) if HAS_MPI4PY else None
needs_mpi = pytest.mark.skipif(MPIEXEC is None, reason="mpi4py or mpiexec is missing: pip install mpi4py mpich "
                                                       "(the `mpi` or `compare` extra)")

SCRIPT = textwrap.dedent("""
    import numpy as np
    from fnlearn import distributed as dist

    if dist.rank() == 1:
        raise RuntimeError("rank 1 fails on purpose")
    dist.allreduce_mean({"w": np.ones(2)})       # rank 0 waits here for rank 1
    print(f"rank {dist.rank()} finished")
""")


@needs_mpi
def test_an_uncaught_exception_on_one_rank_aborts_every_rank(tmp_path):
    script = tmp_path / "uncaught.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "MPIEXEC_TIMEOUT": str(TIMEOUT),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([MPIEXEC, "-n", "2", sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env,
                            cwd=tmp_path, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT + 30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the job hung and was killed:\n{out}\n{err}")
    assert "TIMED OUT" not in out + err, f"the ranks waited until MPIEXEC_TIMEOUT:\n{out}\n{err}"
    assert proc.returncode != 0
    assert "finished" not in out
    if out + err:  # the launcher may drop a rank's output as it tears the job down
        assert "rank 1 fails on purpose" in out + err or "MPI_Abort" in out + err, out + err


@pytest.mark.skipif(not HAS_MPI4PY, reason="mpi4py is not installed: pip install mpi4py mpich")
def test_in_one_process_the_hook_hands_over_to_the_previous_one(monkeypatch):
    from fnlearn import distributed as dist

    seen = []
    monkeypatch.setattr(sys, "excepthook", lambda *args: seen.append(args[0]))
    dist.abort_on_uncaught_exception()
    assert sys.excepthook.aborts_mpi_job
    try:
        raise ValueError("one rank only")
    except ValueError:
        sys.excepthook(*sys.exc_info())
    assert seen == [ValueError]
    dist.abort_on_uncaught_exception(False)
    assert not getattr(sys.excepthook, "aborts_mpi_job", False)

"""fnlearn.distributed: real ranks through ``mpiexec -n 1/2/3`` (started by subprocess), plus one-rank checks.

The scripts in tests/mpi_scripts run on the ranks and write what they computed; the oracle here is
plain single-process fnlearn: N ranks with B examples each must give the update of one process with
N*B examples, and the same seed the same training run (float64, to round-off). Skipped with the
reason when mpi4py or mpiexec is missing (install the `mpi` extra: pip install mpi4py mpich).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, strategies as st

import fnlearn as fl
from fnlearn.tree import TreeMismatchError, tree_flatten_with_path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).resolve().parent / "mpi_scripts"
MPIEXEC_TIMEOUT = 45  # seconds: mpiexec itself ends a job that runs longer (a hang fails, it never blocks CI)

_spec = importlib.util.spec_from_file_location("mpi_common", SCRIPTS / "common.py")
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)


def _find_mpiexec() -> tuple[str | None, str]:
    if importlib.util.find_spec("mpi4py") is None:
        return None, "mpi4py is not installed: pip install mpi4py mpich (the `mpi` extra)"
    beside_python = Path(sys.executable).parent / "mpiexec"  # where the mpich wheel puts it
    found = str(beside_python) if beside_python.exists() else shutil.which("mpiexec")
    return found, "mpiexec is not on PATH: pip install mpich (the `mpi` extra)"


MPIEXEC, MISSING = _find_mpiexec()
needs_mpi = pytest.mark.skipif(MPIEXEC is None, reason=MISSING)
needs_mpi4py = pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None,
    reason="mpi4py is not installed: pip install mpi4py mpich (the `mpi` extra)")


def run_ranks(n: int, script: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``mpiexec -n n python script args``; fail (never hang) if it outlives its timeouts.

    A job that failed without printing anything at all (no rank's output, not even the launcher's) is
    run once more: seen once in a loaded CI run, where a rank's message was lost with the job."""
    proc = _run_ranks_once(n, script, *args)
    if proc.returncode != 0 and not proc.stdout and not proc.stderr:
        proc = _run_ranks_once(n, script, *args)
    return proc


def _run_ranks_once(n: int, script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPIEXEC_TIMEOUT": str(MPIEXEC_TIMEOUT),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [MPIEXEC, "-n", str(n), sys.executable, str(SCRIPTS / script), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            text=True, env=env, cwd=REPO, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=MPIEXEC_TIMEOUT + 30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} hung and was killed.\nstdout:\n{out}\nstderr:\n{err}")
    assert "TIMED OUT" not in out + err, f"the ranks hung until MPIEXEC_TIMEOUT:\n{out}\n{err}"
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


# ----------------------------------------------------------------------------------------------------
# Semantics on 1, 2 and 3 ranks (3 ranks oversubscribe a 2-core machine; MPICH allows it).

@pytest.fixture(scope="module", params=[1, 2, 3], ids=lambda n: f"{n}ranks")
def ranks(request, tmp_path_factory):
    if MPIEXEC is None:
        pytest.skip(MISSING)
    n = request.param
    out = tmp_path_factory.mktemp(f"ranks{n}")
    proc = run_ranks(n, "semantics.py", str(out))
    assert proc.returncode == 0, f"mpiexec -n {n} failed:\n{proc.stdout}\n{proc.stderr}"
    results = [dict(np.load(out / f"rank{r}.npz")) for r in range(n)]
    return n, results, proc, out


def leaves(result: dict, prefix: str) -> dict[str, np.ndarray]:
    return {k.split(":", 1)[1]: v for k, v in result.items() if k.startswith(prefix + ":")}


def flat(tree) -> dict[str, np.ndarray]:
    return {path: np.asarray(leaf) for path, leaf in tree_flatten_with_path(tree)[0]}


def assert_trees_close(got: dict, want: dict, rtol: float) -> None:
    assert sorted(got) == sorted(want)
    for path in want:
        np.testing.assert_allclose(got[path], want[path], rtol=rtol, atol=rtol * 1e-2, err_msg=path)


def reference_run(params):
    """One process, plain fnlearn: SGD over shuffled global batches of GLOBAL_BATCH examples."""
    x, y = common.data()
    grad_fn = fl.value_and_grad(common.model().apply, fl.losses.softmax_cross_entropy)
    rng, losses = np.random.default_rng(common.SHUFFLE_SEED), []
    for _ in range(common.EPOCHS):
        order = rng.permutation(len(x))
        for start in range(0, len(x), common.GLOBAL_BATCH):
            idx = order[start:start + common.GLOBAL_BATCH]
            value, grads = grad_fn(params, x[idx], y[idx])
            params = fl.tree.tree_map(lambda p, g: p - common.LEARNING_RATE * g, params, grads)
            losses.append(value)
    return params, np.array(losses)


def test_broadcast_gives_every_rank_the_root_parameters(ranks):
    _, results, _, _ = ranks
    root_init = flat(common.init(0))
    for r, result in enumerate(results):
        for path, value in leaves(result, "bcast").items():
            np.testing.assert_array_equal(value, root_init[path])
        if r > 0:  # each rank started from its own, different initialisation
            assert not np.array_equal(leaves(result, "own")["0/w"], root_init["0/w"])


def test_n_ranks_with_batch_b_equal_one_process_with_batch_nb(ranks):
    n, results, _, _ = ranks  # rank r took examples [r*B, (r+1)*B)
    x, y = common.data()
    nb = n * common.STEP_BATCH
    f = fl.value_and_grad(common.model().apply, fl.losses.softmax_cross_entropy)
    want_loss, want_grads = f(common.init(0), x[:nb], y[:nb])
    for result in results:
        np.testing.assert_allclose(result["step_loss"], want_loss, rtol=1e-13)
        assert_trees_close(leaves(result, "grads"), flat(want_grads), rtol=1e-12)


def test_same_seed_gives_the_same_training_run(ranks):
    # 50 examples in global batches of 12: the last batch has 2 examples, so with 3 ranks one rank's
    # part is empty; the size-weighted average still gives the global batch's mean.
    _, results, _, _ = ranks
    want_params, want_losses = reference_run(common.init(0))
    for result in results:
        np.testing.assert_allclose(result["losses"], want_losses, rtol=1e-11)
        assert_trees_close(leaves(result, "final"), flat(want_params), rtol=1e-10)
        np.testing.assert_allclose(result["losses_b"], want_losses, rtol=1e-11)  # shard + fl.data.batches
        assert_trees_close(leaves(result, "final_b"), flat(want_params), rtol=1e-10)
        np.testing.assert_allclose(result["losses_c"], want_losses, rtol=1e-11)  # rank 0's shuffle wins
        assert_trees_close(leaves(result, "final_c"), flat(want_params), rtol=1e-10)


def test_every_rank_holds_bitwise_the_same_values(ranks):
    _, results, _, _ = ranks
    for result in results[1:]:
        for key, value in result.items():
            if not key.startswith("own:") and key not in ("rank", "is_root"):
                np.testing.assert_array_equal(value, results[0][key], err_msg=key)


def test_rank_size_and_only_the_root_prints_and_writes(ranks):
    n, results, proc, out = ranks
    assert [int(res["rank"]) for res in results] == list(range(n))
    assert [int(res["size"]) for res in results] == [n] * n
    assert [bool(res["is_root"]) for res in results] == [True] + [False] * (n - 1)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("epoch")]
    assert len(lines) == 3 * common.EPOCHS  # three training runs, each line printed by rank 0 only
    checkpoint = {k.split(":", 1)[1]: v for k, v in np.load(out / "checkpoint.npz").items()}
    for path, value in leaves(results[0], "final").items():
        np.testing.assert_array_equal(checkpoint[path], value)


def test_allreduce_mean_weights_each_rank(ranks):
    n, results, _, _ = ranks
    weights = np.arange(1.0, n + 1)  # rank r contributes r + 1 with weight r + 1
    want = np.float32(weights @ weights / weights.sum()) * np.array([1, -1], np.float32)
    for result in results:
        assert result["weighted"].dtype == np.float32
        np.testing.assert_allclose(result["weighted"], want, rtol=1e-6)


# ----------------------------------------------------------------------------------------------------
# Faults: the job ends with a clear error, never a hang (run_ranks fails on a timeout).

@needs_mpi
def test_a_rank_that_raises_stops_every_rank():
    proc = run_ranks(3, "faults.py", "raise")
    assert proc.returncode != 0
    assert "rank 1 of 3 stopped with RuntimeError: injected failure on rank 1" in proc.stderr
    assert "finished" not in proc.stdout


@needs_mpi
def test_a_rank_that_dies_stops_every_rank():
    proc = run_ranks(2, "faults.py", "exit")
    assert proc.returncode != 0, (proc.stdout, proc.stderr)
    assert "finished" not in proc.stdout


@needs_mpi
def test_mismatched_gradient_trees_are_reported_with_path_and_rank():
    proc = run_ranks(2, "faults.py", "mismatch_first")
    assert proc.returncode != 0
    assert ("allreduce_mean: the tree on rank 1 differs from the tree on rank 0 at path '2/w': rank 0 has "
            "leaf '2/w' of shape (8, 3)") in proc.stderr
    assert "finished" not in proc.stdout


@needs_mpi
def test_a_tree_that_changes_later_on_one_rank_is_detected():
    proc = run_ranks(3, "faults.py", "mismatch_later")  # a transposed leaf: the same number of values
    assert proc.returncode != 0
    assert "allreduce_mean: the ranks passed trees that differ" in proc.stderr
    assert "finished" not in proc.stdout


@needs_mpi
def test_broadcast_reports_mismatched_parameters():
    proc = run_ranks(2, "faults.py", "bcast_mismatch")
    assert proc.returncode != 0
    assert "broadcast: the tree on rank 1 differs from the tree on rank 0 at path '0/w'" in proc.stderr
    assert "finished" not in proc.stdout


# ----------------------------------------------------------------------------------------------------
# One rank (this process) and no MPI at all.

def test_importing_fnlearn_needs_no_mpi4py_and_the_extra_says_how_to_install():
    code = ("import sys; sys.modules['mpi4py'] = None\n"
            "import fnlearn\n"
            "try:\n    import fnlearn.distributed\nexcept ImportError as e:\n    print('ImportError:', e)\n")
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                          timeout=60, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert "ImportError: fnlearn.distributed needs mpi4py" in proc.stdout
    assert "pip install 'fnlearn[mpi]'" in proc.stdout


class FakeComm:
    def __init__(self, rank: int, size: int) -> None:
        self.rank, self.size = rank, size

    def Get_rank(self) -> int:
        return self.rank

    def Get_size(self) -> int:
        return self.size


@needs_mpi4py
@given(n=st.integers(0, 300), size=st.integers(1, 9))
def test_shard_splits_into_disjoint_contiguous_parts_that_cover_everything(n, size):
    from fnlearn.distributed import shard
    parts = [shard(n, comm=FakeComm(r, size)) for r in range(size)]
    assert np.concatenate([np.arange(n)[p] for p in parts]).tolist() == list(range(n))
    lengths = [p.stop - p.start for p in parts]
    assert max(lengths) - min(lengths) <= 1


@needs_mpi4py
def test_one_rank_batches_match_fnlearn_data_batches():
    from fnlearn import distributed as dist
    x, y = common.data()
    got = list(dist.batches(x, y, 12, rng=np.random.default_rng(3)))
    want = list(fl.data.batches(x, y, 12, rng=np.random.default_rng(3)))
    assert len(got) == len(want)
    for (xg, yg), (xw, yw) in zip(got, want):
        np.testing.assert_array_equal(xg, xw)
        np.testing.assert_array_equal(yg, yw)


@needs_mpi4py
def test_one_rank_value_and_grad_equals_the_local_one_and_returns_fresh_arrays():
    from fnlearn import distributed as dist
    x, y = common.data()
    params = common.init(0)
    f = fl.value_and_grad(common.model().apply, fl.losses.softmax_cross_entropy)
    g = dist.value_and_grad(common.model().apply, fl.losses.softmax_cross_entropy)
    (want_loss, want), (got_loss, got) = f(params, x, y), g(params, x, y)
    assert got_loss == pytest.approx(want_loss, rel=1e-15)
    assert_trees_close(flat(got), flat(want), rtol=1e-15)
    mean = dist.allreduce_mean(params)
    assert not np.shares_memory(mean["0"]["w"], params["0"]["w"])
    assert flat(mean).keys() == flat(params).keys() and mean["0"]["w"].dtype == np.float64


@needs_mpi4py
def test_errors_are_sentences_that_name_the_problem():
    from fnlearn import distributed as dist
    with pytest.raises(TypeError, match=r"allreduce_mean: leaf 'count' has dtype int64; only float32 and"):
        dist.allreduce_mean({"count": np.arange(3)})
    with pytest.raises(ValueError, match=r"allreduce_mean: weight must be a finite number >= 0, got -1"):
        dist.allreduce_mean({"w": np.ones(2)}, weight=-1)
    with pytest.raises(ValueError, match=r"weights of all 1 ranks sum to 0.0"):
        dist.allreduce_mean({"w": np.ones(2)}, weight=0)
    with pytest.raises(ValueError, match=r"broadcast: root must be a rank from 0 to 0, got 1"):
        dist.broadcast({"w": np.ones(2)}, root=1)
    with pytest.raises(ValueError, match=r"batches: batch_size must be a positive int"):
        dist.batches(np.ones(3), np.ones(3), 0)
    with pytest.raises(ValueError, match=r"shard: n_examples must be an int >= 0, got -2"):
        dist.shard(-2)
    with pytest.raises(RuntimeError, match="kept in one process"), dist.abort_on_error():
        raise RuntimeError("kept in one process")  # one rank: the exception propagates as usual
    assert issubclass(TreeMismatchError, ValueError)

"""examples/mnist_mlp.py as a user runs it: stop and resume bit-identically in a new process, stop with
a clear message when training diverges, and run unchanged under mpiexec with two ranks."""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fnlearn import checkpoint
from fnlearn.tree import tree_flatten_with_path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mnist_mlp.py"
SMALL = ["--limit", "1500", "--batch-size", "50", "--momentum", "0.9", "--dropout", "0.2", "--quiet"]


def run(mnist_dir, *flags, mpi_ranks=None, timeout=300):
    cmd = [sys.executable, str(EXAMPLE), "--data-dir", str(mnist_dir), *flags]
    if mpi_ranks:
        cmd = [shutil.which("mpiexec"), "-n", str(mpi_ranks)] + cmd
    env = dict(os.environ, MPIEXEC_TIMEOUT="120")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def test_resume_in_a_new_process_is_bit_identical(mnist_dir, tmp_path):
    straight, stopped = tmp_path / "straight.npz", tmp_path / "stopped.npz"
    assert run(mnist_dir, *SMALL, "--epochs", "3", "--save", str(straight)).returncode == 0
    assert run(mnist_dir, *SMALL, "--epochs", "1", "--save", str(stopped)).returncode == 0
    resumed = run(mnist_dir, *SMALL, "--epochs", "3", "--resume", str(stopped), "--save", str(stopped))
    assert resumed.returncode == 0, resumed.stderr
    a, b = checkpoint.load(straight), checkpoint.load(stopped)
    assert [(k, v.dtype) for k, v in _named_arrays(a)] == [(k, v.dtype) for k, v in _named_arrays(b)]
    for (path, x), (_, y) in zip(_named_arrays(a), _named_arrays(b)):
        assert np.array_equal(x, y), f"{path} differs after resuming"
    histories = [[{k: v for k, v in r.items() if k != "seconds"} for r in checkpoint.load_metadata(p)["history"]]
                 for p in (straight, stopped)]
    assert histories[0] == histories[1]


def _named_arrays(tree):
    return [(p, v) for p, v in tree_flatten_with_path(tree)[0] if isinstance(v, np.ndarray)]


def test_resume_refuses_a_checkpoint_of_another_configuration(mnist_dir, tmp_path):
    path = tmp_path / "run.npz"
    assert run(mnist_dir, *SMALL, "--epochs", "1", "--save", str(path)).returncode == 0
    other = run(mnist_dir, *SMALL, "--epochs", "2", "--lr", "0.3", "--resume", str(path))
    assert other.returncode != 0
    assert "comes from another configuration" in other.stderr and "'lr'" in other.stderr


def test_divergence_stops_with_the_first_non_finite_path(mnist_dir):
    result = run(mnist_dir, "--limit", "1000", "--epochs", "3", "--activation", "relu",
                 "--momentum", "0.9", "--lr", "1e30", "--quiet")
    assert result.returncode == 1
    message = result.stderr.strip().splitlines()[-1]
    assert re.search(r"training loss became (nan|inf).*non-finite (gradient|parameter) at '\d/[wb]'", message)
    assert "lower --lr" in message


@pytest.mark.skipif(shutil.which("mpiexec") is None or importlib.util.find_spec("mpi4py") is None,
                    reason="mpi4py or mpiexec is not installed (the `mpi` extra)")
def test_runs_unchanged_under_mpiexec_with_the_same_result(mnist_dir):
    flags = ["--limit", "2000", "--epochs", "2"]
    one = run(mnist_dir, *flags)
    two = run(mnist_dir, *flags, mpi_ranks=2)
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    final = [re.search(r"test loss ([\d.]+)\s+test accuracy ([\d.]+)%", r.stdout) for r in (one, two)]
    assert final[0] and final[1]
    assert abs(float(final[0][1]) - float(final[1][1])) < 1e-3  # up to summation order
    assert abs(float(final[0][2]) - float(final[1][2])) < 0.1
    assert two.stdout.count("test accuracy") == 1  # only rank 0 prints

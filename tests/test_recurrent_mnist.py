"""Row-sequential MNIST with examples/mnist_rnn.py: the example runs, and (behind torch) fnlearn's LSTM
trains like torch.nn.LSTM from the same init and the same batches: the first loss equal, the first 50
within 1e-3 of torch's, and the mean loss of steps 200-300 within 0.03 (the two runs drift apart
after some 60 steps: float32 rounding differs and the dynamics are chaotic)."""

from __future__ import annotations

import contextlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest

import fnlearn as fl
from fnlearn import datasets

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mnist_rnn.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("mnist_rnn_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def one_thread(torch):
    """One BLAS and one torch thread: on a loaded machine more threads make both runs crawl."""
    try:
        from threadpoolctl import threadpool_limits
        limits = threadpool_limits(1)
    except ImportError:
        limits = contextlib.nullcontext()
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with limits:
            yield
    finally:
        torch.set_num_threads(before)


def test_lstm_trains_like_torch_from_the_same_init_and_batches(example, mnist_dir):
    torch = pytest.importorskip("torch", reason="the comparison peer is torch (pip install -e '.[compare]')")
    x, y = datasets.mnist("train", mnist_dir)
    order = np.random.default_rng(0).permutation(len(x))[:300 * 64]
    x, y = example.rows(x[order]), y[order].astype(np.int64)
    params = example.rnn_model().init(np.random.default_rng(1), (-1, 28, 28))
    with one_thread(torch):
        ours, theirs = example.fnlearn_trainer(params, 2e-3), example.torch_twin(params, 2e-3)
        losses = np.array([[ours(x[s], y[s]), theirs(x[s], y[s])]
                           for s in (slice(i * 64, (i + 1) * 64) for i in range(300))])
    np.testing.assert_allclose(losses[0, 0], losses[0, 1], rtol=1e-6)
    np.testing.assert_allclose(losses[:50, 0], losses[:50, 1], atol=1e-3)
    late = losses[200:300].mean(axis=0)
    assert abs(late[0] - late[1]) < 0.03, f"mean loss of steps 200-300: fnlearn {late[0]:.4f}, torch {late[1]:.4f}"
    assert late[0] < 0.5 * losses[0, 0], "the LSTM did not learn"


def test_example_runs_on_a_subset_and_repeats_itself(example, mnist_dir, capsys):
    argv = ["--data-dir", str(mnist_dir), "--limit", "400", "--epochs", "1", "--hidden", "16",
            "--batch-size", "50", "--quiet"]
    first = example.main(argv)
    assert 0.0 <= first["test_accuracy"] <= 1.0 and first["history"][0]["val_accuracy"] >= 0.0
    assert "test accuracy" in capsys.readouterr().out
    second = example.main(argv)
    for a, b in zip(fl.tree.tree_leaves(first["params"]), fl.tree.tree_leaves(second["params"])):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_example_other_cells_match_their_torch_twin_on_the_first_steps(example, cell):
    torch = pytest.importorskip("torch", reason="the comparison peer is torch (pip install -e '.[compare]')")
    rng = np.random.default_rng(0)
    x, y = rng.random((3 * 16, 28, 28), dtype=np.float32), rng.integers(0, 10, 3 * 16)
    params = example.rnn_model(8, cell).init(np.random.default_rng(1), (-1, 28, 28))
    with one_thread(torch):
        ours, theirs = example.fnlearn_trainer(params, 1e-3, cell), example.torch_twin(params, 1e-3, cell)
        for s in (slice(i * 16, (i + 1) * 16) for i in range(3)):
            np.testing.assert_allclose(ours(x[s], y[s]), theirs(x[s], y[s]), rtol=1e-5)

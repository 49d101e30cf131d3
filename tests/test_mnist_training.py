"""Real MNIST training, in-process through examples/mnist_mlp.py: accuracy, the 50-example fit, plots,
determinism. Thresholds were measured (see docs/mnist.md) and given a wide margin; nothing is timed."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import fnlearn as fl

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mnist_mlp.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("mnist_mlp_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(example, mnist_dir, *flags):
    return example.main(["--data-dir", str(mnist_dir), "--quiet", *flags])


def test_short_real_training_run(example, mnist_dir):
    # Measured: 90.0% and 90.3% test accuracy for seeds 0 and 1 (sigmoid 784-128-10, 4,000 training
    # examples, 2 epochs). Chance is 10%; a broken gradient or optimizer stays far below 80%.
    results = run(example, mnist_dir, "--limit", "5000", "--epochs", "2", "--momentum", "0.9",
                  "--lr", "0.5")
    assert results["test_accuracy"] > 0.85
    assert results["history"][1]["train_loss"] < results["history"][0]["train_loss"]
    assert results["confusion_matrix"].sum() == 10000


def test_short_real_training_run_with_mse(example, mnist_dir):
    # Measured: 88.4% and 87.5% for seeds 0 and 1 (softmax outputs, one-hot targets).
    results = run(example, mnist_dir, "--limit", "5000", "--epochs", "2", "--loss", "mse",
                  "--lr", "5", "--momentum", "0.9")
    assert results["test_accuracy"] > 0.80


def test_fits_50_examples_to_100_percent(mnist_dir):
    # NumPy-Learn's sanity check: a 784-128-10 network must be able to memorise a tiny training set.
    images, labels = fl.datasets.mnist("train", mnist_dir, download=False)
    x = images[:50].reshape(50, -1).astype(np.float32) / 255
    y = labels[:50].astype(np.int64)
    model = fl.serial(fl.Dense(128), fl.Sigmoid(), fl.Dense(10))
    params = model.init(np.random.default_rng(0), (-1, 784))
    opt = fl.optim.sgd(0.5, momentum=0.9)
    state = opt.init(params)
    value_and_grad = fl.value_and_grad(model.apply, fl.losses.softmax_cross_entropy)
    for _ in range(200):
        _, grads = value_and_grad(params, x, y)
        updates, state = opt.update(grads, state, params)
        params = fl.optim.apply_updates(params, updates)
    logits, _ = model.apply(params, x)
    assert fl.metrics.accuracy(y, logits) == 1.0


def test_plots_are_written_as_png(example, mnist_dir, tmp_path):
    pytest.importorskip("matplotlib")
    results = run(example, mnist_dir, "--limit", "300", "--epochs", "2", "--plots", str(tmp_path / "p"))
    names = sorted(Path(p).name for p in results["plots"])
    assert names == ["accuracy.png", "confusion_matrix.png"]
    for path in results["plots"]:
        data = Path(path).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 1000


def test_plots_without_matplotlib_is_a_clear_error(example, mnist_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(SystemExit) as info:
        run(example, mnist_dir, "--limit", "300", "--plots", str(tmp_path))
    assert info.value.code == 2
    assert "--plots needs matplotlib" in capsys.readouterr().err


def strip(history):
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


def test_same_seed_same_run_and_another_seed_differs(example, mnist_dir):
    flags = ["--limit", "600", "--epochs", "2", "--hidden", "32,16", "--activation", "relu",
             "--dropout", "0.2", "--optimizer", "sgd", "--momentum", "0.9", "--l2", "1e-4"]
    first, second = run(example, mnist_dir, *flags), run(example, mnist_dir, *flags)
    other = run(example, mnist_dir, *flags, "--seed", "1")
    assert strip(first["history"]) == strip(second["history"])
    assert first["test_accuracy"] == second["test_accuracy"]
    for a, b in zip(fl.tree.tree_leaves(first["params"]), fl.tree.tree_leaves(second["params"])):
        np.testing.assert_array_equal(a, b)
    assert strip(other["history"]) != strip(first["history"])


def test_prints_plain_epoch_lines_when_not_a_terminal(example, mnist_dir, capsys):
    example.main(["--data-dir", str(mnist_dir), "--limit", "300", "--epochs", "2", "--val-fraction", "0"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("epoch   1/2  train loss") and "val" not in out[0]
    assert out[1].startswith("epoch   2/2") and out[2].startswith("test loss")

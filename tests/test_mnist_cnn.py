"""The CNN example runs end to end on a small subset of real MNIST, deterministically per seed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import fnlearn as fl

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mnist_cnn.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("mnist_cnn_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example():
    return _load_example()


def test_default_cnn_model_trains_one_step(example):
    model = example.cnn_model()
    params = model.init(np.random.default_rng(0), example.IMAGE_SHAPE)
    x = np.random.default_rng(1).random((4, 28, 28, 1), dtype=np.float32)
    f = fl.value_and_grad(model.apply, fl.losses.softmax_cross_entropy)
    loss, grads = f(params, x, np.array([0, 1, 2, 3]))
    assert np.isfinite(loss) and grads["0"]["w"].shape == (3, 3, 1, 32)
    assert all(g.dtype == np.float32 for g in fl.tree.tree_leaves(grads))


@pytest.mark.parametrize("extra", [["--plots", "PLOTS"],
                                   ["--batch-norm", "--dropout", "0.2", "--padding", "valid"]])
def test_example_runs_one_epoch_on_a_subset(example, mnist_dir, extra, tmp_path, capsys):
    if "--plots" in extra:
        pytest.importorskip("matplotlib", reason="--plots needs matplotlib: pip install -e '.[examples]'")
    argv = ["--data-dir", str(mnist_dir), "--limit", "300", "--epochs", "1", "--channels", "4,8",
            "--hidden", "16", "--batch-size", "50", "--quiet",
            *[str(tmp_path) if a == "PLOTS" else a for a in extra]]
    first = example.main(argv)
    assert 0.0 <= first["test_accuracy"] <= 1.0 and first["history"][0]["val_accuracy"] is not None
    assert first["confusion_matrix"].sum() == 10000
    assert (first["state"] is not None) == ("--batch-norm" in extra)
    assert "test accuracy" in capsys.readouterr().out
    if "--plots" in extra:
        assert sorted(p.name for p in tmp_path.iterdir()) == ["accuracy.png", "confusion_matrix.png"]
        return
    second = example.main(argv)
    assert second["test_loss"] == first["test_loss"]  # the same seed gives the same run
    for a, b in zip(fl.tree.tree_leaves(first["params"]), fl.tree.tree_leaves(second["params"])):
        np.testing.assert_array_equal(a, b)

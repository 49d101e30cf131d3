"""examples/shakespeare_gpt.py runs end to end on the real corpus (a tiny model, a few iterations)."""

import importlib.util
import math
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _example():
    spec = importlib.util.spec_from_file_location("shakespeare_gpt", ROOT / "examples" / "shakespeare_gpt.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_nanogpt_learning_rate_schedule():
    lr = _example().nanogpt_lr(1e-3, 1e-4, 100, 2000)
    assert math.isclose(lr(0), 1e-3 / 101) and math.isclose(lr(99), 1e-3 * 100 / 101)
    assert math.isclose(lr(100), 1e-3) and math.isclose(lr(2000), 1e-4) and lr(5000) == 1e-4
    assert math.isclose(lr(1050), 1e-4 + 0.5 * (1e-3 - 1e-4))


def test_the_example_trains_and_samples(shakespeare_dir, capsys):
    out = _example().main(["--data-dir", str(shakespeare_dir), "--iters", "30", "--eval-interval", "15",
                           "--eval-iters", "2", "--n-layer", "1", "--n-head", "2", "--n-embd", "32",
                           "--block-size", "16", "--batch-size", "8", "--lr", "1e-2", "--warmup-iters", "5",
                           "--lr-decay-iters", "30", "--sample-tokens", "40", "--quiet"])
    assert [r["iter"] for r in out["history"]] == [0, 15, 30]
    assert abs(out["history"][0]["val"] - math.log(65)) < 0.1   # nanoGPT's init: near-uniform logits
    assert out["history"][-1]["train"] < out["history"][0]["train"] - 0.5
    assert len(out["losses"]) == 30 and all(np.isfinite(out["losses"]))
    assert len(out["sample"]) == 41 and out["sample"][0] == "\n"
    printed = capsys.readouterr().out
    assert "val loss" in printed and "parameters" in printed

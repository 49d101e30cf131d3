"""examples/shakespeare_lstm.py runs end to end on tiny Shakespeare and samples text from its vocabulary."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import fnlearn as fl

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "shakespeare_lstm.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("shakespeare_lstm_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_trains_and_samples(example, shakespeare_dir):
    argv = ["--data-dir", str(shakespeare_dir), "--iters", "30", "--eval-interval", "30", "--eval-iters", "2",
            "--batch-size", "8", "--block-size", "16", "--embedding", "8", "--hidden", "32",
            "--layers", "2", "--dropout", "0.1", "--sample-tokens", "40", "--prompt", "ROMEO:", "--quiet"]
    out = example.main(argv)
    assert out["history"][-1]["train"] < out["history"][0]["train"]  # from ~log(65) = 4.17 down
    assert out["sample"].startswith("ROMEO:") and len(out["sample"]) == len("ROMEO:") + 40
    corpus = fl.datasets.tiny_shakespeare(shakespeare_dir)
    assert set(out["sample"]) <= set(corpus.vocab)
    again = example.main(argv)
    assert again["sample"] == out["sample"]  # the same seed gives the same run


def test_sampling_one_character_at_a_time_gives_the_full_sequence_logits(example):
    """The states carried by sample() are exact: stepping equals running the whole text at once."""
    corpus = fl.datasets.CharCorpus("to be or not to be, that is the question")
    model = example.char_lstm(corpus.vocab_size, 4, 8, layers=2)
    params = model.init(np.random.default_rng(0), (-1, 5), input_dtype=np.int64)
    ids = corpus.encode("to be or not")
    full, _ = model.apply(params, ids[None])
    stepped = example.next_logits(params, ids[None, :3], None)
    rows = [stepped[0]]
    states = stepped[1]
    for i in range(3, len(ids)):
        logits, states = example.next_logits(params, ids[None, i:i + 1], states)
        rows.append(logits)
    np.testing.assert_allclose(np.stack([r[0] for r in rows]), full[0, 2:], rtol=1e-5, atol=1e-6)

"""fnlearn.data: batches, train_val_split, one_hot."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fnlearn.data import batches, one_hot, train_val_split

sizes = st.integers(0, 60)
batch_sizes = st.integers(1, 25)
seeds = st.integers(0, 2**32 - 1)


def _data(n):
    """Inputs whose first column is the example's index, and targets equal to that index."""
    x = np.stack([np.arange(n), -np.arange(n)], axis=1).astype(np.float32)
    return x, np.arange(n)


@given(sizes, batch_sizes, st.one_of(st.none(), seeds))
def test_every_example_exactly_once_per_epoch(n, batch_size, seed):
    x, y = _data(n)
    rng = None if seed is None else np.random.default_rng(seed)
    out = list(batches(x, y, batch_size, rng=rng))
    assert [len(yb) for _, yb in out] == [min(batch_size, n - i) for i in range(0, n, batch_size)]
    seen = np.concatenate([yb for _, yb in out]) if out else np.array([], int)
    assert sorted(seen.tolist()) == list(range(n))
    for xb, yb in out:  # inputs and targets stay paired
        np.testing.assert_array_equal(xb[:, 0], yb)


@given(sizes, batch_sizes, st.one_of(st.none(), seeds))
def test_drop_last_keeps_only_full_batches(n, batch_size, seed):
    x, y = _data(n)
    rng = None if seed is None else np.random.default_rng(seed)
    out = list(batches(x, y, batch_size, rng=rng, drop_last=True))
    assert len(out) == n // batch_size
    assert all(len(xb) == len(yb) == batch_size for xb, yb in out)
    seen = [int(v) for _, yb in out for v in yb]
    assert len(set(seen)) == len(seen)


@given(st.integers(1, 60), batch_sizes, seeds)
def test_same_seed_same_batches_and_shuffling_changes_the_order(n, batch_size, seed):
    x, y = _data(n)
    first = [yb.tolist() for _, yb in batches(x, y, batch_size, rng=np.random.default_rng(seed))]
    second = [yb.tolist() for _, yb in batches(x, y, batch_size, rng=np.random.default_rng(seed))]
    assert first == second
    expected = np.random.default_rng(seed).permutation(n).tolist()
    assert [i for batch in first for i in batch] == expected


def test_unshuffled_batches_are_views_in_order():
    x, y = _data(10)
    out = list(batches(x, y, 4))
    assert all(np.shares_memory(xb, x) and np.shares_memory(yb, y) for xb, yb in out)
    assert [yb.tolist() for _, yb in out] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_batches_validates_its_arguments():
    x, y = _data(5)
    with pytest.raises(ValueError, match="same number of examples, got 5 and 4"):
        batches(x, y[:4], 2)
    for bad in (0, -1, 2.0, True, "2"):
        with pytest.raises(ValueError, match="batch_size must be a positive int"):
            batches(x, y, bad)
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        batches(x, y, 2, rng=0)
    assert len(list(batches(x, y, np.int64(2)))) == 3  # NumPy integers are fine


@given(st.integers(1, 80), st.floats(0, 0.9), seeds)
def test_train_val_split_partitions_the_examples(n, fraction, seed):
    x, y = _data(n)
    n_val = round(n * fraction)
    if n_val == n:
        with pytest.raises(ValueError, match="leaves no training example"):
            train_val_split(x, y, fraction, rng=np.random.default_rng(seed))
        return
    (xt, yt), (xv, yv) = train_val_split(x, y, fraction, rng=np.random.default_rng(seed))
    assert len(yv) == n_val and len(yt) == n - n_val
    assert sorted(np.concatenate([yt, yv]).tolist()) == list(range(n))
    np.testing.assert_array_equal(xt[:, 0], yt)
    np.testing.assert_array_equal(xv[:, 0], yv)
    (xt2, _), _ = train_val_split(x, y, fraction, rng=np.random.default_rng(seed))
    np.testing.assert_array_equal(xt, xt2)


def test_train_val_split_validates_its_arguments():
    x, y = _data(10)
    for bad in (-0.1, 1.0, 1.5, "0.2", None):
        with pytest.raises(ValueError, match=r"val_fraction must be a number in \[0, 1\)"):
            train_val_split(x, y, bad, rng=np.random.default_rng(0))
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        train_val_split(x, y, 0.2, rng=None)
    with pytest.raises(ValueError, match="same number of examples"):
        train_val_split(x, y[:3], 0.2, rng=np.random.default_rng(0))


@given(st.lists(st.integers(0, 9), max_size=30), st.integers(10, 12))
def test_one_hot_matches_a_loop(labels, k):
    out = one_hot(np.array(labels, dtype=np.int64), k)
    expected = np.zeros((len(labels), k), np.float32)
    for i, label in enumerate(labels):
        expected[i, label] = 1
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)


def test_one_hot_keeps_leading_shape_and_dtype():
    out = one_hot(np.array([[0, 2], [1, 1]], np.uint8), 3, dtype=np.float64)
    assert out.shape == (2, 2, 3) and out.dtype == np.float64
    np.testing.assert_array_equal(out.argmax(-1), [[0, 2], [1, 1]])


def test_one_hot_validates_its_arguments():
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\), got values from 0 to 3"):
        one_hot([0, 3], 3)
    with pytest.raises(ValueError, match=r"in \[0, 3\), got values from -1"):
        one_hot([-1, 2], 3)
    with pytest.raises(TypeError, match="labels must be integers, got dtype float64"):
        one_hot([0.0, 1.0], 3)
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        one_hot([0], 0)

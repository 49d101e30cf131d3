"""softmax_cross_entropy on logits of any rank, with ignored labels, bad labels and infinite logits.

The oracle is a float64 log-softmax written out here (and, in test_peer_torch_losses.py, PyTorch).
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fnlearn as fl
from fnlearn.testing import check_loss_grad

ce = fl.losses.softmax_cross_entropy


def reference(logits, labels, ignore_index=-100, reduction="mean"):
    """The loss and gradient from the formulas, in float64, one position per row."""
    z = logits.reshape(-1, logits.shape[-1]).astype(np.float64)
    ids = labels.reshape(-1)
    keep = ids != ignore_index
    log_p = z - z.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    rows = np.flatnonzero(keep)
    losses = -log_p[rows, ids[rows]]
    one_hot = np.zeros_like(z)
    one_hot[rows, ids[rows]] = 1.0
    grad = (np.exp(log_p) - one_hot) * keep[:, None]
    n = keep.sum() if reduction == "mean" else 1
    return losses.sum() / n, (grad / n).reshape(logits.shape)


@contextlib.contextmanager
def loud():
    """A context in which any warning is an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=4), seed=st.integers(0, 2**32 - 1),
       ignored=st.floats(0.0, 0.6), reduction=st.sampled_from(["mean", "sum"]),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_any_rank_with_ignored_labels_matches_the_formula(shape, seed, ignored, reduction, dtype):
    rng = np.random.default_rng(seed)
    logits = (3 * rng.standard_normal(shape)).astype(dtype)
    labels = rng.integers(0, shape[-1], size=shape[:-1])
    labels[rng.random(labels.shape) < ignored] = -100
    labels.flat[0] = 0  # at least one position counts
    value, grad = ce(logits, labels, reduction=reduction)
    want_value, want_grad = reference(logits, labels, reduction=reduction)
    assert isinstance(value, float) and grad.shape == logits.shape and grad.dtype == dtype
    tol = 1e-12 if dtype == np.float64 else 2e-6
    # float32: the value is a difference of terms as large as the logits (log-sum-exp minus the
    # label's logit), so its rounding error is a few ulps of the largest logit, not of the value
    spread = 0.0 if dtype == np.float64 else 8 * np.finfo(np.float32).eps * (1 + np.abs(logits).max())
    np.testing.assert_allclose(value, want_value, rtol=tol, atol=spread)
    np.testing.assert_allclose(grad, want_grad, rtol=tol, atol=tol)
    assert np.all(grad.reshape(-1, shape[-1])[labels.reshape(-1) == -100] == 0.0)


def test_a_sequence_batch_equals_its_flattened_rows():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((2, 5, 7)).astype(np.float32)
    labels = rng.integers(0, 7, size=(2, 5))
    value, grad = ce(logits, labels)
    flat_value, flat_grad = ce(logits.reshape(10, 7), labels.reshape(10))
    assert value == flat_value
    np.testing.assert_array_equal(grad, flat_grad.reshape(2, 5, 7))


def test_ignored_positions_count_for_nothing():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((3, 4, 6))
    labels = rng.integers(0, 6, size=(3, 4))
    labels[0, 1] = labels[2, 3] = -1
    keep = labels != -1
    value, grad = ce(logits, labels, ignore_index=-1)
    kept_value, kept_grad = ce(logits[keep], labels[keep])
    np.testing.assert_allclose(value, kept_value, rtol=1e-14)
    np.testing.assert_allclose(grad[keep], kept_grad, rtol=1e-14, atol=1e-16)
    assert np.all(grad[~keep] == 0.0)
    sum_value, _ = ce(logits, labels, ignore_index=-1, reduction="sum")
    np.testing.assert_allclose(sum_value, kept_value * keep.sum(), rtol=1e-14)


def test_ignore_index_can_be_a_real_class_id():
    logits = np.random.default_rng(2).standard_normal((4, 3))
    labels = np.array([0, 1, 2, 0])
    value, grad = ce(logits, labels, ignore_index=0)
    want_value, want_grad = reference(logits, labels, ignore_index=0)
    np.testing.assert_allclose(value, want_value, rtol=1e-13)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-13, atol=1e-16)
    assert np.all(grad[[0, 3]] == 0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_label_ignored_gives_nan_mean_zero_sum_and_zero_gradient(dtype):
    logits = np.random.default_rng(3).standard_normal((2, 3, 4)).astype(dtype)
    labels = np.full((2, 3), -100)
    with loud():
        value, grad = ce(logits, labels)
        sum_value, sum_grad = ce(logits, labels, reduction="sum")
    assert np.isnan(value) and sum_value == 0.0
    for g in (grad, sum_grad):
        assert g.dtype == dtype and g.shape == logits.shape and np.all(g == 0.0)


def test_uint_labels_and_numpy_integer_ignore_index():
    logits = np.random.default_rng(4).standard_normal((3, 4))
    labels = np.array([0, 3, 2], np.uint8)
    value, grad = ce(logits, labels, ignore_index=np.int64(3))
    want_value, want_grad = reference(logits, labels.astype(np.int64), ignore_index=3)
    np.testing.assert_allclose(value, want_value, rtol=1e-13)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-13, atol=1e-16)


def test_probability_rows_of_any_rank_equal_their_flattened_rows():
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((2, 3, 4))
    probs = rng.random((2, 3, 4))
    probs /= probs.sum(axis=-1, keepdims=True)
    value, grad = ce(logits, probs, ignore_index=1)  # ignore_index plays no part here
    flat_value, flat_grad = ce(logits.reshape(6, 4), probs.reshape(6, 4))
    assert value == flat_value
    np.testing.assert_array_equal(grad, flat_grad.reshape(2, 3, 4))
    check_loss_grad(ce, logits, probs)


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 5)])
def test_the_gradient_is_the_gradient_of_the_value(shape):
    rng = np.random.default_rng(6)
    logits = rng.standard_normal(shape)
    labels = rng.integers(0, shape[-1], size=shape[:-1])
    labels.flat[1] = -100
    check_loss_grad(ce, logits, labels)


def test_float_class_ids_are_refused_with_a_type_error():
    logits = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(TypeError, match=r"labels of shape \(2, 3\) \(logits.shape\[:-1\]\) are class ids "
                                        r"and must be integers, got dtype float32. Convert them with "
                                        r"labels.astype\(np.int64\)"):
        ce(logits, np.zeros((2, 3), np.float32))
    with pytest.raises(TypeError, match=r"must be integers, got dtype float64"):
        ce(logits[0], np.array([0.0, 1.0, 2.0]))


@pytest.mark.parametrize("labels, match", [
    ([[0, 4, 1]], r"must lie in \[0, 4\) or equal ignore_index=-100, got other values from 0 to 4"),
    ([[0, -1, 1]], r"got other values from -1 to 1"),
    ([[-100, -3, 9]], r"got other values from -3 to 9"),
])
def test_out_of_range_labels_are_refused(labels, match):
    logits = np.zeros((1, 3, 4))
    with pytest.raises(ValueError, match=match):
        ce(logits, np.array(labels))


def test_badly_shaped_labels_logits_and_options_are_refused():
    logits = np.zeros((2, 3, 4))
    with pytest.raises(ValueError, match=r"integer labels must have shape logits.shape\[:-1\] = \(2, 3\), "
                                         r"got \(6,\)"):
        ce(logits, np.zeros(6, np.int64))
    with pytest.raises(ValueError, match=r"logits must have shape \(batch, ..., classes\)"):
        ce(np.zeros(4), np.zeros((), np.int64))
    with pytest.raises(ValueError, match=r"at least one class"):
        ce(np.zeros((2, 3, 0)), np.zeros((2, 3), np.int64))
    with pytest.raises(TypeError, match=r"ignore_index must be an int, got 1.5"):
        ce(logits, np.zeros((2, 3), np.int64), ignore_index=1.5)
    with pytest.raises(TypeError, match=r"ignore_index must be an int, got True"):
        ce(logits, np.zeros((2, 3), np.int64), ignore_index=True)
    with pytest.raises(ValueError, match=r"cannot take the mean over an empty batch"):
        ce(np.zeros((0, 3, 4)), np.zeros((0, 3), np.int64))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_infinite_logits_give_the_documented_values_without_warnings(dtype):
    inf = np.inf
    logits = np.array([[1.0, inf, 3.0], [0.0, 0.0, 0.0], [1.0, -inf, 3.0], [-inf, -inf, -inf]], dtype)
    with loud():
        value, grad = ce(logits, np.array([0, 1, 0, 2]))  # +inf row and all -inf row: NaN
        assert np.isnan(value)
        assert np.all(np.isnan(grad[[0, 3]])) and np.all(np.isfinite(grad[[1, 2]]))
        value, grad = ce(logits[1:3], np.array([1, 1]))  # -inf at the labelled class: +inf
        assert value == inf and np.all(np.isfinite(grad))
        np.testing.assert_allclose(grad[1], [0.5 / (1 + np.exp(-2.0)) * np.exp(-2.0), -0.5,
                                             0.5 / (1 + np.exp(-2.0))], rtol=1e-6)
        value, grad = ce(logits[:2], np.array([-100, 1]))  # an ignored +inf row is not counted
        assert value == pytest.approx(np.log(3.0)) and np.all(np.isnan(grad[0]))
        value, grad = ce(logits[:2], np.eye(3, dtype=dtype)[[0, 1]])  # probability rows too
        assert np.isnan(value) and np.all(np.isnan(grad[0]))
        value, _ = ce(np.full((1, 2), np.finfo(dtype).max, dtype), np.array([0]))  # huge, finite
        assert value == pytest.approx(np.log(2.0))

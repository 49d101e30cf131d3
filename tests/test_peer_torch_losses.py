"""softmax_cross_entropy against torch.nn.functional.cross_entropy in float64 (value and gradient).

fnlearn's logits are ``(..., C)`` with labels ``(...)``; torch's are ``(N, C)`` with labels ``(N,)``
after flattening, which is the definition fnlearn's docstring gives.
"""

from __future__ import annotations

import numpy as np
import pytest

import fnlearn as fl

torch = pytest.importorskip("torch", reason="torch is the peer reference for the losses")
F = torch.nn.functional


def torch_cross_entropy(logits, labels, **kwargs):
    classes = logits.shape[-1]
    x = torch.tensor(logits.reshape(-1, classes), requires_grad=True)
    target = torch.tensor(labels.reshape(-1) if labels.dtype.kind in "iu" else labels.reshape(-1, classes))
    value = F.cross_entropy(x, target, **kwargs)
    value.backward()
    return value.item(), x.grad.numpy().reshape(logits.shape)


def assert_same(got, want):
    (value, grad), (want_value, want_grad) = got, want
    np.testing.assert_allclose(value, want_value, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(np.isnan(grad), np.isnan(want_grad))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("ignore_index", [-100, 0, 2])
@pytest.mark.parametrize("shape", [(6, 5), (3, 4, 5), (2, 3, 4, 7), (1, 1, 1, 2, 3)])
def test_cross_entropy_with_class_ids_matches_torch(shape, ignore_index, reduction):
    rng = np.random.default_rng([sum(shape), ignore_index % 1000])
    logits = 4 * rng.standard_normal(shape)
    labels = rng.integers(0, shape[-1], size=shape[:-1])
    labels[rng.random(labels.shape) < 0.3] = ignore_index
    labels.flat[0] = 1
    kwargs = {"ignore_index": ignore_index, "reduction": reduction}
    assert_same(fl.losses.softmax_cross_entropy(logits, labels, **kwargs),
                torch_cross_entropy(logits, labels, **kwargs))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_every_label_ignored_matches_torch(reduction):
    logits = np.random.default_rng(0).standard_normal((2, 3, 4))
    labels = np.full((2, 3), -100)
    value, grad = fl.losses.softmax_cross_entropy(logits, labels, reduction=reduction)
    want_value, want_grad = torch_cross_entropy(logits, labels, reduction=reduction)
    np.testing.assert_array_equal([value], [want_value])  # NaN for the mean, 0 for the sum
    np.testing.assert_array_equal(grad, want_grad)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 4)])
def test_cross_entropy_with_probabilities_matches_torch(shape, reduction):
    rng = np.random.default_rng(len(shape))
    logits = 3 * rng.standard_normal(shape)
    probs = rng.random(shape)
    probs /= probs.sum(axis=-1, keepdims=True)
    assert_same(fl.losses.softmax_cross_entropy(logits, probs, reduction=reduction),
                torch_cross_entropy(logits, probs, reduction=reduction))


@pytest.mark.parametrize("labels", [[0, 1, 0, 2], [1, 1, 1, 1], [-100, 1, 1, 0], [-100, 1, 0, -100]])
def test_infinite_logits_match_torch(labels):
    inf = np.inf
    logits = np.array([[1.0, inf, 3.0], [0.0, 0.0, 0.0], [1.0, -inf, 3.0], [-inf, -inf, -inf]])
    labels = np.array(labels)
    value, grad = fl.losses.softmax_cross_entropy(logits, labels)
    want_value, want_grad = torch_cross_entropy(logits, labels)
    np.testing.assert_allclose([value], [want_value], rtol=1e-12)  # NaN and inf compare equal
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-12)

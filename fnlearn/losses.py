"""Losses: ``loss(pred, target) -> (value, grad)``.

``value`` is a Python float; ``grad`` is the gradient of ``value`` with respect to ``pred``, shaped and
typed like ``pred``. Reductions follow PyTorch: ``reduction="mean"`` (the default) or ``"sum"``.
Shapes must match exactly: nothing is broadcast.

Example:
    >>> import numpy as np, fnlearn as fl
    >>> value, grad = fl.losses.mse(np.array([[1.0, 2.0]]), np.array([[1.0, 0.0]]))
    >>> value, grad
    (2.0, array([[0., 2.]]))
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from . import _checks
from ._kernels import column_sums
from ._types import Array

__all__ = ["mse", "softmax_cross_entropy", "sigmoid_binary_cross_entropy"]

Reduction = Literal["mean", "sum"]


def _reduction(name: str, reduction: str, count: int) -> float:
    if reduction == "mean":
        if count == 0:
            raise ValueError(f"{name}: cannot take the mean over an empty batch.")
        return 1.0 / count
    if reduction == "sum":
        return 1.0
    raise ValueError(f"{name}: reduction must be 'mean' or 'sum', got {reduction!r}.")


def _float_target(name: str, pred: Array, target: Array, what: str = "target") -> Array:
    if not isinstance(target, np.ndarray) or target.dtype.kind not in "fiub":
        raise TypeError(f"{name}: {what} must be a numeric NumPy array, got "
                        f"{getattr(target, 'dtype', type(target).__name__)}.")
    if target.shape != pred.shape:
        raise ValueError(f"{name}: {what} must have the shape of the predictions {pred.shape}, got "
                         f"{target.shape}. Nothing is broadcast: reshape it (e.g. with one_hot for "
                         "class labels).")
    return target if target.dtype == pred.dtype else target.astype(pred.dtype)


def mse(pred: Array, target: Array, *, reduction: Reduction = "mean") -> tuple[float, Array]:
    """Mean squared error ``mean((pred - target) ** 2)`` over all elements (``torch.nn.MSELoss``).

    Args:
        pred: predictions, any shape, float32 or float64.
        target: the same shape as ``pred``.
        reduction: ``"mean"`` over all elements, or ``"sum"``.

    Returns:
        ``(value, grad)`` with ``grad = 2 * (pred - target) / n`` (``n`` = number of elements for mean).
    """
    _checks.float_array("mse", pred, "pred")
    target = _float_target("mse", pred, target)
    scale = _reduction("mse", reduction, pred.size)
    diff = pred - target
    value = float(np.vdot(diff, diff)) * scale
    diff *= 2.0 * scale
    return value, diff


def softmax_cross_entropy(logits: Array, labels: Array, *,
                          reduction: Reduction = "mean") -> tuple[float, Array]:
    """Cross-entropy of ``softmax(logits)`` against class ids or class probabilities.

    ``value = mean over the batch of -sum(labels * log_softmax(logits))`` (``torch.nn.CrossEntropyLoss``).
    Stable for logits of any magnitude (computed from ``logits - max``).

    Args:
        logits: ``(batch, classes)``, float32 or float64.
        labels: integer class ids ``(batch,)`` in ``[0, classes)``, or float probabilities / one-hot
            rows ``(batch, classes)``.
        reduction: ``"mean"`` over the batch, or ``"sum"``.

    Returns:
        ``(value, grad)``; for probability rows ``grad = (softmax * sum(labels) - labels) / batch``.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> value, grad = fl.losses.softmax_cross_entropy(np.zeros((2, 4)), np.array([0, 3]))
        >>> round(value, 6), grad[0]
        (1.386294, array([-0.375,  0.125,  0.125,  0.125]))
    """
    name = "softmax_cross_entropy"
    _checks.float_array(name, logits, "logits")
    if logits.ndim != 2:
        raise ValueError(f"{name}: logits must have shape (batch, classes), got {logits.shape}.")
    batch, classes = logits.shape
    if classes == 0:
        raise ValueError(f"{name}: logits must have at least one class, got shape {logits.shape}.")
    scale = _reduction(name, reduction, batch)
    # Work on a private transposed copy, (classes, batch): NumPy reduces over the leading axis of a
    # C-contiguous array several times faster than over a short trailing axis.
    exps = logits.T.copy()
    exps -= np.maximum.reduce(exps, axis=0)
    if isinstance(labels, np.ndarray) and labels.dtype.kind in "iu":
        flat = _label_positions(name, labels, batch, classes)
        picked = exps.ravel()[flat]
        np.exp(exps, out=exps)
        sums = column_sums(exps)
        losses = np.log(sums)
        losses -= picked
        value = float(np.add.reduce(losses))
        exps.ravel()[flat] -= sums  # softmax - one_hot, times sums
    else:
        target = _float_target(name, logits, labels, "labels")
        totals = target @ np.ones(classes, target.dtype)
        cross = float(np.vdot(target.T, exps))
        np.exp(exps, out=exps)
        sums = column_sums(exps)
        value = float(np.vdot(totals, np.log(sums))) - cross
        exps *= totals
        exps -= target.T * sums  # (softmax * totals - target), times sums
    grad = np.multiply(exps.T, np.divide(scale, sums, dtype=exps.dtype)[:, None], order="C")
    return value * scale, grad


def _label_positions(name: str, labels: Array, batch: int, classes: int) -> Array:
    """The flat positions ``labels[i] * batch + i`` in a (classes, batch) array; checks the labels."""
    if labels.shape != (batch,):
        raise ValueError(f"{name}: integer labels must have shape (batch,) = ({batch},), got "
                         f"{labels.shape}.")
    try:
        return np.ravel_multi_index((labels, np.arange(batch)), (classes, batch))
    except ValueError:
        raise ValueError(f"{name}: integer labels must lie in [0, {classes}), got values from "
                         f"{labels.min()} to {labels.max()}.") from None


def sigmoid_binary_cross_entropy(logits: Array, targets: Array, *,
                                 reduction: Reduction = "mean") -> tuple[float, Array]:
    """Binary cross-entropy of ``sigmoid(logits)`` against targets in ``[0, 1]``.

    ``value = mean(softplus(logits) - targets * logits)`` over all elements, computed stably
    (``torch.nn.BCEWithLogitsLoss``).

    Args:
        logits: any shape, float32 or float64.
        targets: the same shape, values in ``[0, 1]``.
        reduction: ``"mean"`` over all elements, or ``"sum"``.

    Returns:
        ``(value, grad)`` with ``grad = (sigmoid(logits) - targets) / n``.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> value, grad = fl.losses.sigmoid_binary_cross_entropy(np.zeros(2), np.array([0.0, 1.0]))
        >>> round(value, 6), grad
        (0.693147, array([ 0.25, -0.25]))
    """
    name = "sigmoid_binary_cross_entropy"
    _checks.float_array(name, logits, "logits")
    targets = _float_target(name, logits, targets, "targets")
    scale = _reduction(name, reduction, logits.size)
    softplus = np.logaddexp(logits, 0.0)
    value = float(softplus.sum() - np.vdot(targets, logits)) * scale
    grad = np.exp(logits - softplus)  # sigmoid(logits), stable: logits - softplus(logits) <= 0
    grad -= targets
    grad *= scale
    return value, grad

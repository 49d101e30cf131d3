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

import math
from functools import lru_cache
from typing import Any, Literal

import numpy as np

from . import _checks, _kernels
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


def softmax_cross_entropy(logits: Array, labels: Array, *, ignore_index: int = -100,
                          reduction: Reduction = "mean") -> tuple[float, Array]:
    """Cross-entropy of ``softmax(logits)`` over the last axis against class ids or probabilities.

    ``value = mean over the positions of -sum(labels * log_softmax(logits))``: for logits ``(..., C)``
    with integer labels ``(...)`` this is ``torch.nn.functional.cross_entropy(logits.reshape(-1, C),
    labels.reshape(-1), ignore_index=ignore_index)``, the mean over the positions whose label is not
    ``ignore_index`` (a sequence model's ``(batch, time, vocab)`` logits with padding ids, say).
    Stable for logits of any magnitude (computed from ``logits - max``).

    Args:
        logits: ``(..., classes)`` of rank >= 2, float32 or float64.
        labels: integer class ids ``logits.shape[:-1]`` in ``[0, classes)`` or equal to
            ``ignore_index``; or float probabilities / one-hot rows shaped like ``logits`` (then
            ``ignore_index`` plays no part, as in PyTorch).
        ignore_index: the class id whose positions count for nothing, neither in the value nor in
            the number of positions the mean divides by (PyTorch's default -100).
        reduction: ``"mean"`` over the (not ignored) positions, or ``"sum"``.

    Returns:
        ``(value, grad)``, ``grad`` shaped and typed like ``logits``: ``(softmax - one_hot) / n`` at
        the ``n`` counted positions and 0 at ignored ones; for probability rows ``(softmax *
        sum(labels) - labels) / n``. If every label is ``ignore_index`` the mean is NaN (0 / 0) and
        the sum 0.0, and the gradient is all zeros, as PyTorch. A row of logits holding ``+inf`` or
        NaN (or only ``-inf``) makes its gradient row NaN, and the value NaN unless its label is
        ignored; ``-inf`` at the labelled class (others finite) makes the value ``+inf`` with a
        finite gradient. All as PyTorch, and without NumPy warnings.

    Raises:
        TypeError: float labels shaped like ``logits.shape[:-1]`` (class ids must be integers).
        ValueError: labels of the wrong shape, or ids outside ``[0, classes)`` that are not
            ``ignore_index``; a mean over no positions at all (empty logits).

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> value, grad = fl.losses.softmax_cross_entropy(np.zeros((2, 4)), np.array([0, 3]))
        >>> round(value, 6), grad[0]
        (1.386294, array([-0.375,  0.125,  0.125,  0.125]))
        >>> value, grad = fl.losses.softmax_cross_entropy(np.zeros((1, 3, 4)), np.array([[0, -100, 3]]))
        >>> round(value, 6), grad[0, 1]
        (1.386294, array([0., 0., 0., 0.]))
    """
    name = "softmax_cross_entropy"
    _checks.float_array(name, logits, "logits")
    if logits.ndim < 2 or logits.shape[-1] == 0:
        raise ValueError(f"{name}: logits must have shape (batch, ..., classes) with at least one class, "
                         f"got {logits.shape}. Add a batch axis with logits[None] for one example.")
    if type(ignore_index) is not int and (isinstance(ignore_index, (bool, np.bool_))
                                         or not isinstance(ignore_index, (int, np.integer))):
        raise TypeError(f"{name}: ignore_index must be an int, got {ignore_index!r}.")
    classes = logits.shape[-1]
    n = logits.size // classes
    scale = _reduction(name, reduction, n)
    # Work on a private transposed copy, (classes, n): NumPy reduces over the leading axis of a
    # C-contiguous array several times faster than over a short trailing axis.
    exps = (logits if logits.ndim == 2 else logits.reshape(n, classes)).T.copy()
    with np.errstate(invalid="ignore"):  # inf - inf where a row's max is infinite: NaN, documented
        exps -= np.maximum.reduce(exps, axis=0)
    if isinstance(labels, np.ndarray) and labels.dtype.kind in "iu":
        flat, ignored = _label_positions(name, labels, logits.shape, ignore_index)
        value, sums = _class_ids(exps, flat, ignored)
        if ignored is not None and reduction == "mean":
            count = n - int(np.count_nonzero(ignored))
            scale = 1.0 / count if count else 0.0
            value = value if count else math.nan
    else:
        target = _probability_rows(name, logits, labels).reshape(n, classes)
        value, sums = _probability_rows_loss(exps, target)
        ignored = None
    factor = np.divide(scale, sums, dtype=exps.dtype)
    if ignored is not None:
        factor[ignored] *= 0.0  # NaN stays NaN (a non-finite row), as PyTorch
    grad = np.multiply(exps.T, factor[:, None], order="C")
    return value * scale, (grad if logits.ndim == 2 else grad.reshape(logits.shape))


def _class_ids(exps: Array, flat: Array, ignored: Array | None) -> tuple[float, Array]:
    """``(sum of the losses, sums)`` from shifted logits ``(classes, n)``, which become ``(softmax -
    one_hot) * sums`` in place; ``sums`` are the column sums of ``exp``. Ignored columns add 0."""
    picked = exps.ravel()[flat]
    np.exp(exps, out=exps)
    sums = column_sums(exps)
    losses = np.log(sums)
    losses -= picked
    if ignored is not None:
        losses[ignored] = 0.0
    exps.ravel()[flat] -= sums
    return float(np.add.reduce(losses)), sums


def _probability_rows_loss(exps: Array, target: Array) -> tuple[float, Array]:
    """``(sum of the losses, sums)`` from shifted logits ``(classes, n)`` and target rows ``(n,
    classes)``; ``exps`` becomes ``(softmax * sum(target) - target) * sums`` in place."""
    totals = target @ _kernels.ones(target.shape[1], target.dtype)
    cross = float(np.vdot(target.T, exps))
    np.exp(exps, out=exps)
    sums = column_sums(exps)
    value = float(np.vdot(totals, np.log(sums))) - cross
    exps *= totals
    exps -= target.T * sums
    return value, sums


def _probability_rows(name: str, logits: Array, labels: Any) -> Array:
    """Float labels shaped like ``logits``; a TypeError for float labels shaped like class ids."""
    if (isinstance(labels, np.ndarray) and labels.dtype.kind in "fb"
            and labels.shape == logits.shape[:-1]):
        raise TypeError(f"{name}: labels of shape {labels.shape} (logits.shape[:-1]) are class ids "
                        f"and must be integers, got dtype {labels.dtype}. Convert them with "
                        f"labels.astype(np.int64), or pass class probabilities shaped like the logits "
                        f"{logits.shape}.")
    return _float_target(name, logits, labels, "labels")


@lru_cache(maxsize=16)
def _positions(n: int) -> Array:
    """A read-only ``arange(n)``, cached: the MNIST step asks for the same one every batch."""
    positions = np.arange(n)
    positions.flags.writeable = False
    return positions


def _label_positions(name: str, labels: Array, shape: tuple[int, ...],
                     ignore_index: int) -> tuple[Array, Array | None]:
    """``(flat, ignored)``: the positions ``label * n + i`` in a (classes, n) array, and a bool mask
    of the ignored labels (None when none is); checks the shape and the range of the labels."""
    if labels.shape != shape[:-1]:
        layout = "(batch,)" if len(shape) == 2 else "logits.shape[:-1]"
        raise ValueError(f"{name}: integer labels must have shape {layout} = {shape[:-1]}, got "
                         f"{labels.shape}. For class probabilities pass float labels shaped like the "
                         f"logits {shape}.")
    classes, ids = shape[-1], (labels if labels.ndim == 1 else labels.reshape(-1))
    dims, positions = (classes, ids.size), _positions(ids.size)
    ignored = ids == ignore_index if 0 <= ignore_index < classes else None
    try:
        flat = np.ravel_multi_index((ids, positions), dims)
    except ValueError:
        ignored = ids == ignore_index
        counted = ids[~ignored]
        if counted.size and (counted.min() < 0 or counted.max() >= classes):
            raise ValueError(f"{name}: integer labels must lie in [0, {classes}) or equal ignore_index="
                             f"{ignore_index}, got other values from {counted.min()} to "
                             f"{counted.max()}.") from None
        flat = np.ravel_multi_index((np.where(ignored, 0, ids), positions), dims)
    return flat, (ignored if ignored is not None and ignored.any() else None)


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

"""Classification metrics in NumPy: accuracy and the confusion matrix.

Predictions may be class labels, shape ``(n,)``, or per-class scores (logits or probabilities), shape
``(n, k)``, which are turned into labels by ``argmax`` over the last axis. Targets are labels, or
one-hot rows of shape ``(n, k)``.

Example:
    >>> import numpy as np
    >>> from fnlearn.metrics import accuracy, confusion_matrix
    >>> y_true, y_pred = np.array([0, 1, 2, 2]), np.array([0, 2, 2, 2])
    >>> accuracy(y_true, y_pred)
    0.75
    >>> confusion_matrix(y_true, y_pred)
    array([[1, 0, 0],
           [0, 0, 1],
           [0, 0, 2]])
"""

from __future__ import annotations

import numbers

import numpy as np
from numpy.typing import ArrayLike

from ._types import Array

__all__ = ["accuracy", "confusion_matrix"]


def _labels(fn: str, what: str, a: ArrayLike) -> Array:
    """Integer labels of shape (n,) from labels (n,) or scores (n, k)."""
    a = np.asarray(a)
    if a.ndim == 2:
        return np.argmax(a, axis=-1)
    if a.ndim != 1:
        raise ValueError(f"{fn}: {what} must be labels of shape (n,) or scores of shape (n, k), got shape "
                         f"{a.shape}.")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{fn}: {what} of shape (n,) must be integer class labels, got dtype {a.dtype}. "
                        "Pass labels (e.g. scores.argmax(-1)) or the (n, k) scores themselves.")
    return a


def _pair(fn: str, y_true: ArrayLike, y_pred: ArrayLike) -> tuple[Array, Array]:
    t, p = _labels(fn, "y_true", y_true), _labels(fn, "y_pred", y_pred)
    if t.shape != p.shape:
        raise ValueError(f"{fn}: y_true and y_pred must have the same number of examples, got {len(t)} "
                         f"and {len(p)}.")
    if t.size == 0:
        raise ValueError(f"{fn}: got no examples; pass at least one.")
    return t, p


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """The fraction of examples whose predicted class is the true class.

    Args:
        y_true: true labels ``(n,)`` or one-hot targets ``(n, k)``.
        y_pred: predicted labels ``(n,)`` or scores ``(n, k)`` (argmax is the prediction).

    Returns:
        a float in ``[0, 1]``.

    Example:
        >>> import numpy as np
        >>> accuracy([1, 0], np.array([[0.2, 0.8], [0.9, 0.1]]))
        1.0
    """
    t, p = _pair("accuracy", y_true, y_pred)
    return float(np.mean(t == p))


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int | None = None) -> Array:
    """Count, for each true class (row) and predicted class (column), the examples that fall there.

    The argument order and orientation are scikit-learn's: ``C[i, j]`` is the number of examples of
    true class ``i`` predicted as class ``j``. Unlike scikit-learn, the classes are always
    ``0..num_classes-1`` (not the sorted labels that occur).

    Args:
        y_true: true labels ``(n,)`` or one-hot targets ``(n, k)``.
        y_pred: predicted labels ``(n,)`` or scores ``(n, k)``.
        num_classes: the number of classes ``k``; default one more than the largest label seen.

    Returns:
        an int64 array of shape ``(k, k)`` whose entries sum to ``n``.

    Example:
        >>> confusion_matrix([0, 1, 1], [0, 0, 1], num_classes=3)
        array([[1, 0, 0],
               [1, 1, 0],
               [0, 0, 0]])
    """
    t, p = _pair("confusion_matrix", y_true, y_pred)
    lowest, highest = min(t.min(), p.min()), max(t.max(), p.max())
    if num_classes is None:
        num_classes = int(highest) + 1
    elif isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
        raise ValueError(f"confusion_matrix: num_classes must be a positive int, got {num_classes!r}.")
    if lowest < 0 or highest >= num_classes:
        raise ValueError(f"confusion_matrix: labels must be in [0, {num_classes}), got values from {lowest} "
                         f"to {highest}. Pass a larger num_classes or check the labels.")
    k = int(num_classes)
    flat = t.astype(np.int64) * k + p.astype(np.int64)
    return np.bincount(flat, minlength=k * k).reshape(k, k)

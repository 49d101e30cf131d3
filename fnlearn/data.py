"""Feeding data to a training loop: minibatches, a train/validation split, one-hot targets.

Everything is vectorised: no Python loop runs over examples, only over batches. Randomness comes in
as a :class:`numpy.random.Generator`.

Example:
    >>> import numpy as np
    >>> from fnlearn.data import batches, one_hot, train_val_split
    >>> x, y = np.arange(10.0).reshape(5, 2), np.array([0, 1, 2, 1, 0])
    >>> [xb.shape for xb, yb in batches(x, y, 2)]
    [(2, 2), (2, 2), (1, 2)]
    >>> (x_tr, y_tr), (x_va, y_va) = train_val_split(x, y, 0.2, rng=np.random.default_rng(0))
    >>> x_tr.shape, x_va.shape
    ((4, 2), (1, 2))
    >>> one_hot(y[:2], 3)
    array([[1., 0., 0.],
           [0., 1., 0.]], dtype=float32)
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from ._types import Array

__all__ = ["batches", "one_hot", "train_val_split"]


def _paired(fn: str, x: ArrayLike, y: ArrayLike) -> tuple[Array, Array]:
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim == 0 or y.ndim == 0:
        raise ValueError(f"{fn}: x and y must have a leading example axis, got shapes {x.shape} and "
                         f"{y.shape}.")
    if len(x) != len(y):
        raise ValueError(f"{fn}: x and y must have the same number of examples, got {len(x)} and "
                         f"{len(y)}. Pass inputs and targets that belong together.")
    return x, y


def _check_rng(fn: str, rng: object, *, optional: bool) -> None:
    if (rng is None and optional) or isinstance(rng, np.random.Generator):
        return
    raise TypeError(f"{fn}: rng must be a numpy.random.Generator{' or None' if optional else ''}, got "
                    f"{type(rng).__name__}. Pass rng=np.random.default_rng(seed).")


def batches(x: ArrayLike, y: ArrayLike, batch_size: int, *, rng: np.random.Generator | None = None,
            drop_last: bool = False) -> Iterator[tuple[Array, Array]]:
    """Iterate over minibatches ``(xb, yb)`` of one epoch, in order or shuffled.

    Args:
        x: inputs, shape ``(n, ...)``.
        y: targets, shape ``(n, ...)``.
        batch_size: examples per batch, a positive int.
        rng: when given, the examples are visited in the order ``rng.permutation(n)``; when None, in
            their stored order, and each batch is a view of ``x`` and ``y`` (no copy).
        drop_last: drop the final batch when it has fewer than ``batch_size`` examples.

    Returns:
        an iterator of ``(xb, yb)`` with shapes ``(b, ...)``; every example appears exactly once per
        epoch (except those of a dropped last batch).

    Example:
        >>> import numpy as np
        >>> x = np.arange(5)
        >>> [yb.tolist() for _, yb in batches(x, x, 2, rng=np.random.default_rng(0))]
        [[2, 4], [3, 0], [1]]
    """
    x, y = _paired("batches", x, y)
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batches: batch_size must be a positive int, got {batch_size!r}.")
    _check_rng("batches", rng, optional=True)
    n = len(x)
    stop = n - n % batch_size if drop_last else n
    order = None if rng is None else rng.permutation(n)
    return _iterate(x, y, int(batch_size), stop, order)


def _iterate(x: Array, y: Array, batch_size: int, stop: int,
             order: Array | None) -> Iterator[tuple[Array, Array]]:
    for start in range(0, stop, batch_size):
        if order is None:
            yield x[start:start + batch_size], y[start:start + batch_size]
        else:
            idx = order[start:start + batch_size]
            yield x[idx], y[idx]


def train_val_split(x: ArrayLike, y: ArrayLike, val_fraction: float, *,
                    rng: np.random.Generator) -> tuple[tuple[Array, Array], tuple[Array, Array]]:
    """Shuffle the examples and split them into a training and a validation set.

    Args:
        x: inputs, shape ``(n, ...)``.
        y: targets, shape ``(n, ...)``.
        val_fraction: the fraction of examples for validation, in ``[0, 1)``; the validation set has
            ``round(n * val_fraction)`` examples.
        rng: the generator that draws the shuffle.

    Returns:
        ``((x_train, y_train), (x_val, y_val))``, copies, with ``n - n_val`` and ``n_val`` examples.

    Example:
        >>> import numpy as np
        >>> (xt, yt), (xv, yv) = train_val_split(np.arange(10), np.arange(10), 0.3,
        ...                                      rng=np.random.default_rng(0))
        >>> len(xt), len(xv), sorted(np.concatenate([xt, xv]).tolist()) == list(range(10))
        (7, 3, True)
    """
    x, y = _paired("train_val_split", x, y)
    if not isinstance(val_fraction, numbers.Real) or not 0 <= val_fraction < 1:
        raise ValueError(f"train_val_split: val_fraction must be a number in [0, 1), got {val_fraction!r}.")
    _check_rng("train_val_split", rng, optional=False)
    n = len(x)
    n_val = round(n * float(val_fraction))
    if n_val == n:
        raise ValueError(f"train_val_split: val_fraction={val_fraction} leaves no training example out of "
                         f"{n}. Use a smaller val_fraction.")
    order = rng.permutation(n)
    train, val = order[n_val:], order[:n_val]
    return (x[train], y[train]), (x[val], y[val])


def one_hot(labels: ArrayLike, num_classes: int, *, dtype: DTypeLike = np.float32) -> Array:
    """Encode integer class labels as one-hot vectors.

    Args:
        labels: integer labels in ``[0, num_classes)``, any shape ``s``.
        num_classes: the number of classes, a positive int.
        dtype: the result's dtype (float32 by default).

    Returns:
        an array of shape ``s + (num_classes,)`` with a 1 at each label's index and 0 elsewhere.

    Example:
        >>> one_hot([2, 0], 3, dtype=int)
        array([[0, 0, 1],
               [1, 0, 0]])
    """
    labels = np.asarray(labels)
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
        raise ValueError(f"one_hot: num_classes must be a positive int, got {num_classes!r}.")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"one_hot: labels must be integers, got dtype {labels.dtype}. Pass class indices, "
                        "e.g. labels.astype(np.int64) if they are whole numbers stored as floats.")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"one_hot: labels must be in [0, {num_classes}), got values from {labels.min()} "
                         f"to {labels.max()}. Check num_classes.")
    return (labels[..., None] == np.arange(num_classes)).astype(dtype)

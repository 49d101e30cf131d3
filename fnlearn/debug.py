"""Finding NaN and inf in a tree (parameters, gradients, optimizer state, a batch).

A training run that diverges prints NaN losses for the rest of the run unless someone stops it. These
helpers name the first leaf that went bad, so a loop can stop with a clear message:

Example:
    >>> import numpy as np
    >>> from fnlearn.debug import check_finite, find_nonfinite
    >>> grads = {"0": {"w": np.ones((2, 2)), "b": np.array([0.0, np.nan])}}
    >>> find_nonfinite(grads)
    '0/b'
    >>> check_finite(grads)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    fnlearn.debug.NonFiniteError: non-finite gradients: '0/b' holds 1 NaN and 0 inf of 2 values (first at index (1,)). ...
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._types import PyTree
from .tree import tree_flatten_with_path

__all__ = ["NonFiniteError", "find_nonfinite", "check_finite"]


class NonFiniteError(FloatingPointError):
    """A tree holds NaN or inf; the message names the first such path (``"0/w"``) and the counts."""


def _nonfinite(leaf: Any) -> bool:
    if isinstance(leaf, (float, complex)):
        return not (math.isfinite(leaf.real) and math.isfinite(leaf.imag))
    if not isinstance(leaf, (np.ndarray, np.generic)) or leaf.dtype.kind not in "fc":
        return False  # integers, bools, strings and other leaves are always finite
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.sum(leaf)):  # one cheap reduction; a NaN or inf anywhere makes it non-finite
            return False
    return not bool(np.isfinite(leaf).all())  # the sum may also overflow: check element by element


def find_nonfinite(tree: PyTree) -> str | None:
    """The path of the first leaf (in traversal order) holding NaN or inf, or ``None`` if all finite.

    Args:
        tree: nested dicts/lists/tuples of arrays or scalars. Float and complex leaves are checked;
            integer, bool and string leaves are always finite.

    Returns:
        The leaf's path (``"0/w"``; ``""`` when ``tree`` is itself a leaf), or ``None``. Test the
        result with ``is None``.
    """
    for path, leaf in tree_flatten_with_path(tree)[0]:
        if _nonfinite(leaf):
            return path
    return None


def check_finite(tree: PyTree, what: str = "gradients") -> None:
    """Raise :class:`NonFiniteError` naming the first path of ``tree`` that holds NaN or inf.

    Args:
        tree: as in :func:`find_nonfinite`.
        what: what the tree is, for the message ("gradients", "params", "loss", "inputs").

    Raises:
        NonFiniteError: with the path, the NaN and inf counts and the first bad index.
    """
    for path, leaf in tree_flatten_with_path(tree)[0]:
        if _nonfinite(leaf):
            raise NonFiniteError(f"non-finite {what}: {_describe(path, leaf)}. Common causes: a "
                                 "learning rate that is too large (lower it or clip gradients), "
                                 "log or exp of extreme values (give losses raw logits), or NaN in "
                                 "the data (check_finite(x, 'inputs')).")


def _describe(path: str, leaf: Any) -> str:
    where = f"'{path}'" if path else "the value"
    arr = np.asarray(leaf)
    nan, inf = int(np.isnan(arr).sum()), int(np.isinf(arr).sum())
    first = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0]) if arr.ndim else ()
    index = f" (first at index {first})" if arr.ndim else ""
    return f"{where} holds {nan} NaN and {inf} inf of {arr.size} values{index}"

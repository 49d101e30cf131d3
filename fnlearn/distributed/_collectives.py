"""``broadcast`` and ``allreduce_mean``: a whole tree in one MPI call per dtype.

A tree's leaves are packed, per dtype, into one contiguous buffer; the buffer goes through one
buffer-interface MPI call (``Bcast`` or ``Allreduce``, no pickling), and the result is unpacked as
views of that buffer. The buffer is allocated afresh for each call because the returned leaves are
views of it: reusing it would make one step's gradients change under the next step.

Structure checks: before the first ``allreduce_mean`` on a communicator (and in every ``broadcast``)
the ranks exchange each leaf's path, shape and dtype and raise the same :class:`TreeMismatchError`,
naming the first differing path and rank, on every rank. Later calls cost no extra message: each
dtype buffer carries two more entries, the rank's weight and a tag derived from the tree's structure,
and after the sum every rank checks that the tags of all ranks agree.
"""

from __future__ import annotations

import numbers
import zlib
from typing import Any, NamedTuple

import numpy as np
from mpi4py import MPI

from .._types import Array, PyTree
from ..tree import TreeDef, TreeMismatchError, tree_flatten_with_path, tree_unflatten
from ._comm import Comm, resolve

_CHECKED = MPI.Comm.Create_keyval()
# Structure tags are small integers, so that the sum over ranks is exact in the buffer's dtype:
# float32 holds integers up to 2**24 exactly (tags below 2**11: up to 8192 ranks), float64 up to 2**53.
_TAG_RANGE = {np.dtype(np.float32): 2 ** 11, np.dtype(np.float64): 2 ** 32}


class _Leaf(NamedTuple):
    path: str
    shape: tuple[int, ...]
    dtype: str


class _Flat(NamedTuple):
    arrays: list[Array]
    specs: tuple[_Leaf, ...]
    treedef: TreeDef


def _flatten(fn: str, tree: PyTree, *, floats_only: bool) -> _Flat:
    pairs, treedef = tree_flatten_with_path(tree)
    arrays, specs = [], []
    for path, leaf in pairs:
        a = np.asarray(leaf)
        if floats_only and a.dtype not in _TAG_RANGE:
            raise TypeError(f"{fn}: leaf '{path}' has dtype {a.dtype}; only float32 and float64 leaves can "
                            "be averaged. Cast it (e.g. .astype(np.float64)), or share integer leaves with "
                            "broadcast.")
        if a.dtype.kind not in "biuf":
            raise TypeError(f"{fn}: leaf '{path}' has dtype {a.dtype}; only bool, integer and float "
                            "leaves can be sent. Convert the leaf to a numeric array.")
        a = a.astype(a.dtype.newbyteorder("="), copy=False)
        arrays.append(a)
        specs.append(_Leaf(path, a.shape, a.dtype.name))
    return _Flat(arrays, tuple(specs), treedef)


def _describe(leaf: _Leaf | None) -> str:
    if leaf is None:
        return "no leaf there"
    return f"leaf '{leaf.path}' of shape {leaf.shape} and dtype {leaf.dtype}"


def _check_same(fn: str, specs: tuple[_Leaf, ...], comm: Comm) -> None:
    """Raise the same TreeMismatchError on every rank when the ranks' trees differ."""
    everyone = comm.allgather(specs)
    for other_rank, other in enumerate(everyone):
        if other == everyone[0]:
            continue
        mine = everyone[0]
        i = next(i for i in range(max(len(mine), len(other)))
                 if i >= len(mine) or i >= len(other) or mine[i] != other[i])
        here = mine[i] if i < len(mine) else None
        there = other[i] if i < len(other) else None
        path = (here or there).path
        raise TreeMismatchError(
            f"{fn}: the tree on rank {other_rank} differs from the tree on rank 0 at path '{path}': rank 0 "
            f"has {_describe(here)}, rank {other_rank} has {_describe(there)}. Every rank must pass a tree "
            "with the same paths, shapes and dtypes (build it with the same model, input shape and dtype "
            "on every rank).")


def _groups(arrays: list[Array]) -> dict[np.dtype, list[int]]:
    """The leaf indices of each dtype, dtypes in order of first appearance (the same on every rank)."""
    groups: dict[np.dtype, list[int]] = {}
    for i, a in enumerate(arrays):
        groups.setdefault(a.dtype, []).append(i)
    return groups


def _pack(arrays: list[Array], idx: list[int], dtype: np.dtype, extra: int = 0,
          scale: float = 1.0) -> Array:
    """A new buffer holding ``scale *`` the leaves ``idx`` one after the other, then ``extra`` entries."""
    n = sum(arrays[i].size for i in idx)
    buf = np.empty(n + extra, dtype)
    offset = 0
    for i in idx:
        part = buf[offset:offset + arrays[i].size]
        if scale == 1.0:
            part[...] = arrays[i].reshape(-1)
        else:
            np.multiply(arrays[i].reshape(-1), scale, out=part)
        offset += arrays[i].size
    return buf


def _unpack(buf: Array, arrays: list[Array], idx: list[int], out: list[Any]) -> None:
    offset = 0
    for i in idx:
        n = arrays[i].size
        out[i] = buf[offset:offset + n].reshape(arrays[i].shape)
        offset += n


def broadcast(tree: PyTree, root: int = 0, *, comm: Comm | None = None) -> PyTree:
    """Every rank gets the root rank's values, e.g. so that all ranks start from the same parameters.

    Every rank passes a tree of the same structure (its own ``model.init`` is fine); the ranks first
    check that their paths, shapes and dtypes agree, then send one ``Bcast`` per dtype.

    Args:
        tree: a pytree of bool, integer or float arrays (or scalars), the same paths, shapes and dtypes
            on every rank.
        root: the rank whose values are sent.
        comm: the communicator (default: all processes).

    Returns:
        a new tree of arrays with the structure of ``tree`` and the root's values, on every rank (on the
        root too, a copy).

    Raises:
        TreeMismatchError: on every rank, when the ranks' trees differ; names the path and the rank.

    Example:
        >>> import numpy as np
        >>> from fnlearn import distributed as dist
        >>> dist.broadcast({"w": np.arange(3.0), "step": 7})
        {'w': array([0., 1., 2.]), 'step': array(7)}
    """
    comm = resolve(comm)
    n = comm.Get_size()
    if isinstance(root, bool) or not isinstance(root, numbers.Integral) or not 0 <= root < n:
        raise ValueError(f"broadcast: root must be a rank from 0 to {n - 1}, got {root!r}.")
    flat = _flatten("broadcast", tree, floats_only=False)
    _check_same("broadcast", flat.specs, comm)
    out: list[Any] = [None] * len(flat.arrays)
    for dtype, idx in _groups(flat.arrays).items():
        if comm.Get_rank() == root:
            buf = _pack(flat.arrays, idx, dtype)
        else:
            buf = np.empty(sum(flat.arrays[i].size for i in idx), dtype)
        comm.Bcast(buf, root=int(root))
        _unpack(buf, flat.arrays, idx, out)
    return tree_unflatten(flat.treedef, out)


def _check_weight(weight: Any) -> float:
    if (isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not np.isfinite(weight)
            or weight < 0):
        raise ValueError(f"allreduce_mean: weight must be a finite number >= 0, got {weight!r}. Pass the "
                         "number of examples behind this rank's values, or leave the default 1.")
    return float(weight)


def allreduce_mean(tree: PyTree, *, weight: float = 1.0, comm: Comm | None = None) -> PyTree:
    """The mean of ``tree`` over all ranks, weighted by each rank's ``weight``, on every rank.

    The leaves of each dtype travel in one contiguous buffer through one ``Allreduce`` (sum) per dtype:
    a float32 model's gradients cost one MPI call per step whatever the number of layers. With the
    default ``weight=1`` the result is the plain mean over ranks; with ``weight`` = the number of
    examples behind this rank's values it is ``sum_r weight_r * tree_r / sum_r weight_r``, the exact
    global mean even when the ranks' batches differ in size (a rank with no example passes zeros and
    weight 0).

    Args:
        tree: a pytree of float32/float64 arrays (e.g. gradients), the same paths, shapes and dtypes on
            every rank and in every call that the ranks make together.
        weight: this rank's weight, a finite number >= 0; the weights of all ranks must not sum to 0.
        comm: the communicator (default: all processes).

    Returns:
        a new tree with the structure, shapes and dtypes of ``tree``, holding the weighted mean; the same
        values on every rank. Each dtype's leaves are views of one new buffer.

    Raises:
        TreeMismatchError: when the ranks' trees differ (on the first call on a communicator, on every
            rank and naming the path and rank; later, on a rank whose tree differs).

    Example:
        >>> import numpy as np
        >>> from fnlearn import distributed as dist
        >>> dist.allreduce_mean({"w": np.array([2.0, 4.0])}, weight=3)
        {'w': array([2., 4.])}
    """
    comm = resolve(comm)
    w = _check_weight(weight)
    flat = _flatten("allreduce_mean", tree, floats_only=True)
    if comm.Get_attr(_CHECKED) is None:
        _check_same("allreduce_mean", flat.specs, comm)
        comm.Set_attr(_CHECKED, True)
    structure = zlib.crc32(repr(flat.specs).encode())
    out: list[Any] = [None] * len(flat.arrays)
    for dtype, idx in _groups(flat.arrays).items():
        buf = _pack(flat.arrays, idx, dtype, extra=2, scale=w)
        body = buf[:-2]
        tag = structure % _TAG_RANGE[dtype] + 1
        buf[-2:] = (w, tag)
        comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        _check_sums(buf[-2], buf[-1], tag, comm)
        body /= buf[-2]
        _unpack(body, flat.arrays, idx, out)
    return tree_unflatten(flat.treedef, out)


def _check_sums(total_weight: float, total_tag: float, tag: int, comm: Comm) -> None:
    # Every rank's tag equals the mean tag only when all tags are equal, so some rank always notices.
    if total_tag != tag * comm.Get_size():
        raise TreeMismatchError(
            f"allreduce_mean: the ranks passed trees that differ in this call (rank {comm.Get_rank()} of "
            f"{comm.Get_size()} noticed): their paths, shapes or dtypes differ, or the ranks are not making "
            "the same sequence of allreduce_mean calls. Every rank must pass a tree with the same paths, "
            "shapes and dtypes in each call.")
    if not total_weight > 0:
        raise ValueError(f"allreduce_mean: the weights of all {comm.Get_size()} ranks sum to "
                         f"{total_weight}, so there is no mean. Give at least one rank a positive weight.")

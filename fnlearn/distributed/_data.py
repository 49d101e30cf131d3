"""Giving each rank a disjoint part of every global batch."""

from __future__ import annotations

import numbers
from typing import Iterator

import numpy as np
from numpy.typing import ArrayLike

from .._types import Array
from ._comm import Comm, resolve


def _bounds(n_examples: int, rank: int, size: int) -> tuple[int, int]:
    # Contiguous blocks in rank order; their sizes differ by at most one.
    return rank * n_examples // size, (rank + 1) * n_examples // size


def shard(n_examples: int, *, comm: Comm | None = None) -> slice:
    """This rank's part of ``n_examples`` examples: contiguous blocks in rank order, sizes within one.

    Use it to split any batch that every rank holds whole, e.g. the global batches of
    :func:`fnlearn.data.batches` with ``batch_size = per_rank_batch * size()`` and the same ``rng``
    seed on every rank, or an evaluation set. Concatenating the parts of ranks 0, 1, ... gives the
    batch back in its order.

    Args:
        n_examples: the number of examples to split, an int >= 0.
        comm: the communicator (default: all processes).

    Returns:
        ``slice(start, stop)`` with ``stop - start`` equal to ``n_examples // size()`` or one more
        (rank r gets ``[r * n // size, (r + 1) * n // size)``).

    Example:
        >>> import numpy as np
        >>> from fnlearn import distributed as dist
        >>> xb = np.arange(8)
        >>> xb[dist.shard(len(xb))]   # one rank: everything; rank 1 of 2 would get [4, 5, 6, 7]
        array([0, 1, 2, 3, 4, 5, 6, 7])
    """
    if isinstance(n_examples, bool) or not isinstance(n_examples, numbers.Integral) or n_examples < 0:
        raise ValueError(f"shard: n_examples must be an int >= 0, got {n_examples!r}.")
    comm = resolve(comm)
    return slice(*_bounds(int(n_examples), comm.Get_rank(), comm.Get_size()))


def batches(x: ArrayLike, y: ArrayLike, batch_size: int, *, rng: np.random.Generator | None = None,
            drop_last: bool = False, comm: Comm | None = None) -> Iterator[tuple[Array, Array]]:
    """Iterate over this rank's part of each global batch of one epoch.

    Every rank holds the whole ``x`` and ``y``. A global batch has ``batch_size * size()`` examples,
    taken in the order of :func:`fnlearn.data.batches` (``rng.permutation(n)``, drawn by every rank so
    that each ``rng`` advances as in one process, then replaced by rank 0's); rank r gets its
    :func:`shard` of it. So the ranks' parts of a step are disjoint, and together they are the batch
    that one process with ``batch_size * size()`` and the same ``rng`` would see. Every rank gets the
    same number of batches; in the last one a part can be smaller, or empty.

    Args:
        x: inputs, shape ``(n, ...)``, the same ``n`` on every rank.
        y: targets, shape ``(n, ...)``.
        batch_size: examples per rank in each full global batch, a positive int.
        rng: the generator that shuffles the examples (None: stored order, batches are views).
        drop_last: drop the last global batch when it has fewer than ``batch_size * size()`` examples.
        comm: the communicator (default: all processes).

    Returns:
        an iterator of ``(xb, yb)``, shapes ``(b, ...)`` with ``b <= batch_size``.

    Example:
        >>> import numpy as np
        >>> from fnlearn import distributed as dist
        >>> x = np.arange(5)
        >>> [xb.tolist() for xb, _ in dist.batches(x, x, 2, rng=np.random.default_rng(0))]
        [[2, 4], [3, 0], [1]]
    """
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim == 0 or y.ndim == 0 or len(x) != len(y):
        raise ValueError(f"batches: x and y must have the same number of examples along axis 0, got shapes "
                         f"{x.shape} and {y.shape}. Pass inputs and targets that belong together.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError("batches: batch_size must be a positive int (examples per rank), got "
                         f"{batch_size!r}.")
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise TypeError(f"batches: rng must be a numpy.random.Generator or None, got {type(rng).__name__}. "
                        "Pass rng=np.random.default_rng(seed).")
    comm = resolve(comm)
    counts = comm.allgather(len(x))
    if len(set(counts)) > 1:
        raise ValueError(f"batches: every rank must hold the whole data set, but the ranks hold {counts} "
                         "examples (by rank). Load the same x and y on every rank.")
    order = None
    if rng is not None:
        order = rng.permutation(len(x))
        comm.Bcast(order, root=0)
    global_batch = int(batch_size) * comm.Get_size()
    stop = len(x) - len(x) % global_batch if drop_last else len(x)
    return _iterate(x, y, order, global_batch, stop, comm.Get_rank(), comm.Get_size())


def _iterate(x: Array, y: Array, order: Array | None, global_batch: int, stop: int, rank: int,
             size: int) -> Iterator[tuple[Array, Array]]:
    for start in range(0, stop, global_batch):
        lo, hi = _bounds(min(global_batch, stop - start), rank, size)
        if order is None:
            yield x[start + lo:start + hi], y[start + lo:start + hi]
        else:
            idx = order[start + lo:start + hi]
            yield x[idx], y[idx]

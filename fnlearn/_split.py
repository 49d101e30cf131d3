"""A model's forward pass and VJP on parts of the batch, one Python thread per part.

NumPy runs elementwise work on one core, and its BLAS's own threads keep spinning between products,
so on a few cores a training step gets more out of the cores by splitting the batch, as data-parallel
training splits it over processes: ``batch_parallel(apply, parts)`` runs ``apply`` on ``parts``
slices of the batch at once (NumPy releases the GIL in its loops and products), joins the
predictions, and its VJP runs the parts' VJPs at once and adds their parameter gradients. The caller
puts BLAS on one thread meanwhile (``fnlearn._blas.one_thread``). ``train_step(..., threads=N)`` is
the public way in; docs/perf.md has the measurements.

The result is the unsplit one up to rounding only for a model that treats the examples of a batch
independently; BatchNorm in training does not (``train_step`` refuses ``threads`` with state). With
an ``rng``, part ``i`` draws from ``rng.spawn(parts)[i]``, so dropout masks differ from an unsplit run.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, Callable

import numpy as np

from . import _checks
from ._types import ApplyFn

_POOL: list[ThreadPoolExecutor] = []
_POOL_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    """A process-wide pool with at least ``workers`` threads (made on first use, grown when asked)."""
    with _POOL_LOCK:
        if not _POOL or _POOL[0]._max_workers < workers:
            if _POOL:
                _POOL[0].shutdown(wait=False)
            _POOL[:] = [ThreadPoolExecutor(workers, thread_name_prefix="fnlearn")]
        return _POOL[0]


def _forget_pool_after_fork() -> None:
    """A forked child has none of the parent's threads: its first threaded step makes a new pool."""
    global _POOL_LOCK
    _POOL.clear()
    _POOL_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _run(calls: list[Callable[[], Any]]) -> list[Any]:
    """Each call's result, the first on this thread and the others on the pool, at once. Returns (or
    raises the first error, in call order) only when every call has finished."""
    futures = [_pool(len(calls) - 1).submit(c) for c in calls[1:]]
    try:
        first = calls[0]()
    finally:
        wait(futures)
    return [first, *(f.result() for f in futures)]


def _slices(n: int, parts: int) -> list[slice]:
    bounds = np.linspace(0, n, min(parts, n) + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def batch_parallel(apply: ApplyFn, parts: int, caller: str = "train_step") -> ApplyFn:
    """``apply`` on ``parts`` slices of the batch (axis 0 of ``x``, an array), one thread each; the
    prediction must be an array with the batch on axis 0. Batches of one example run unsplit."""

    def split_apply(params: Any, x: Any, *, rng: np.random.Generator | None = None,
                    train: bool = False) -> tuple[Any, Callable[..., Any]]:
        if not isinstance(x, np.ndarray) or x.ndim == 0:
            raise TypeError(f"{caller}: threads > 1 splits the batch along axis 0 of x, which must be a "
                            f"NumPy array; got {type(x).__name__}. Use threads=1 for other inputs.")
        pieces = _slices(len(x), parts)
        if len(pieces) < 2:
            return apply(params, x, rng=rng, train=train)
        rngs = rng.spawn(len(pieces)) if rng is not None else [None] * len(pieces)
        outs = _run([lambda s=s, r=r: apply(params, x[s], rng=r, train=train)
                     for s, r in zip(pieces, rngs)])
        preds = [pred for pred, _ in outs]
        for p, s in zip(preds, pieces):
            if not isinstance(p, np.ndarray) or p.ndim == 0 or len(p) != s.stop - s.start:
                got = (f"an array of shape {p.shape}" if isinstance(p, np.ndarray)
                       else type(p).__name__)
                raise TypeError(f"{caller}: threads > 1 needs a model whose output is one array with "
                                f"the batch on axis 0 (for a part of {s.stop - s.start} examples, "
                                f"shape ({s.stop - s.start}, ...)); got {got}. Use threads=1.")
        vjps = [vjp for _, vjp in outs]
        del outs
        pred = np.concatenate(preds)
        del preds

        def vjp(dy: Any, *, compute_dx: bool = True) -> tuple[Any, Any]:
            results = _run([lambda f=f, s=s: _checks.call_vjp(f, dy[s], compute_dx)
                            for f, s in zip(vjps, pieces)])
            dx = np.concatenate([r[1] for r in results]) if compute_dx else None
            trees = [r[0] for r in results]
            del results
            return _sum_trees(trees), dx

        return pred, vjp

    return split_apply


def _sum_trees(trees: list[Any]) -> Any:
    """The leafwise sum of the parts' gradient trees: added into the first tree's arrays when nobody
    else holds them (``train_step``'s test for private updates), else into new arrays."""
    from ._train import _EXACT_REFCOUNTS, _add_into, _private_tree  # (here: _train imports this)
    held = {"probe": object(), "": trees.pop(0)}
    for other in trees:
        if _EXACT_REFCOUNTS and _private_tree({"": other}, held, -1):
            _add_into(other, held[""])
        else:
            held[""] = _add_trees(held[""], other)
    return held.pop("")


def _add_trees(a: Any, b: Any) -> Any:
    """``a + b`` leaf by leaf (nested dicts, lists and tuples of arrays), into new arrays."""
    if isinstance(a, dict):
        return {k: _add_trees(v, b[k]) for k, v in a.items()}
    if isinstance(a, (list, tuple)):
        return type(a)(_add_trees(u, v) for u, v in zip(a, b))
    return a + b

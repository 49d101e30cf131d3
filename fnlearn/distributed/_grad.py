"""``value_and_grad`` across ranks: the loss and gradient of the whole global batch."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .._grad import Loss, value_and_grad as local_value_and_grad
from .._types import ApplyFn, Params
from ..tree import tree_leaves, tree_zeros_like
from ._collectives import allreduce_mean
from ._comm import Comm


def value_and_grad(apply: ApplyFn, loss: Loss, *,
                   comm: Comm | None = None) -> Callable[..., tuple[float, Params]]:
    """Like :func:`fnlearn.value_and_grad`, but the loss and gradients are those of the global batch.

    Each rank computes the loss and gradient of its own part of the batch, then the ranks average
    them with :func:`allreduce_mean` weighted by the number of examples of each part. For a loss that
    is a mean over examples (the default ``reduction="mean"`` of ``fnlearn.losses``) this is exactly
    the loss and gradient of the whole global batch, up to summation order: also when the parts differ
    in size, as in the last batch of an epoch, and when a part is empty (that rank contributes zeros
    with weight 0). The loss travels in the gradients' buffer (so in float32 for a float32 model), so a
    step costs one MPI call when all gradients share one dtype.

    Args:
        apply: the model's ``apply``.
        loss: ``loss(pred, target) -> (value, dpred)`` with a mean reduction.
        comm: the communicator (default: all processes).

    Returns:
        ``f(params, x, target, *, rng=None, train=True) -> (value, grads)``: ``x`` and ``target`` are this
        rank's part, with ``n_r >= 0`` examples along axis 0; ``value`` (a float) and ``grads`` (the
        structure, shapes and dtypes of ``params``) are the same on every rank.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> from fnlearn import distributed as dist
        >>> model = fl.serial(fl.Dense(2))
        >>> params = model.init(np.random.default_rng(0), (-1, 3))
        >>> f = dist.value_and_grad(model.apply, fl.losses.mse)
        >>> value, grads = f(params, np.ones((4, 3), np.float32), np.zeros((4, 2), np.float32))
        >>> grads["0"]["w"].shape, grads["0"]["w"].dtype
        ((3, 2), dtype('float32'))
    """
    local = local_value_and_grad(apply, loss)

    def value_and_grad_fn(params: Params, x: Any, target: Any, *, rng: np.random.Generator | None = None,
                          train: bool = True) -> tuple[float, Params]:
        n = _num_examples(x)
        if n == 0:
            value, grads = 0.0, tree_zeros_like(params)
        else:
            value, grads = local(params, x, target, rng=rng, train=train)
        dtypes = {np.asarray(g).dtype for g in tree_leaves(grads)}
        value_dtype = dtypes.pop() if len(dtypes) == 1 else np.dtype(np.float64)
        mean = allreduce_mean({"value": np.asarray(value, value_dtype), "grads": grads}, weight=n,
                              comm=comm)
        return float(mean["value"]), mean["grads"]

    return value_and_grad_fn


def _num_examples(x: Any) -> int:
    leaves = tree_leaves(x)
    if not leaves or np.ndim(leaves[0]) == 0:
        raise ValueError("distributed.value_and_grad: x must have a leading example axis (an array, or a "
                         f"tree of arrays, of shape (n, ...)), got {type(x).__name__} "
                         f"{getattr(x, 'shape', '')}.")
    return int(np.shape(leaves[0])[0])

"""The named update rules. Each docstring gives the formula and its conventions.

Notation: ``g`` gradient, ``p`` parameter, ``t`` the step number (1 on the first update), ``lr`` the
learning rate at step ``t`` (a number, or a schedule called with ``t - 1``). Every rule returns the
update ``u`` that :func:`apply_updates` adds: ``p <- p + u``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import tree as _tree
from .._types import Params
from ._base import Optimizer, OptState, ScalarOrSchedule, Updates, check_hyper, map_leaves, resolve

__all__ = ["sgd"]


def sgd(learning_rate: ScalarOrSchedule, momentum: float = 0.0, nesterov: bool = False,
        weight_decay: float = 0.0, dampening: float = 0.0) -> Optimizer:
    """Stochastic gradient descent with optional momentum, exactly as ``torch.optim.SGD``.

    ``d = g + weight_decay * p`` (L2 decay added to the gradient, so it is scaled by ``lr``);
    with momentum, ``b = d`` on the first step and ``b = momentum * b + (1 - dampening) * d`` after;
    the direction is ``d + momentum * b`` (Nesterov) or ``b``; ``u = -lr * direction``.
    With ``momentum=0`` the state holds only the step count (no buffer).

    Args:
        learning_rate: a number or a schedule (function of the step count).
        momentum: the momentum factor ``>= 0``.
        nesterov: use Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``, as in torch).
        weight_decay: the L2 coefficient ``>= 0``; needs ``params`` in ``update``.
        dampening: damps the gradient's share of the momentum buffer (torch's ``dampening``).

    Returns:
        An :class:`Optimizer`; state ``{"count": int}``, plus ``"momentum"`` (a tree like params)
        when ``momentum > 0``.

    Example:
        >>> import numpy as np
        >>> opt = sgd(0.1, momentum=0.9)
        >>> params = {"w": np.ones(2, np.float32)}
        >>> state = opt.init(params)
        >>> for _ in range(2):
        ...     updates, state = opt.update({"w": np.ones(2, np.float32)}, state, params)
        >>> updates["w"], state["momentum"]["w"]
        (array([-0.19, -0.19], dtype=float32), array([1.9, 1.9], dtype=float32))
    """
    lr = check_hyper("sgd", "learning_rate", learning_rate, schedule_ok=True)
    mom = check_hyper("sgd", "momentum", momentum)
    wd = check_hyper("sgd", "weight_decay", weight_decay)
    damp = check_hyper("sgd", "dampening", dampening, high=1.0)
    if nesterov and (mom <= 0 or damp != 0):
        raise ValueError(f"sgd: nesterov=True needs momentum > 0 and dampening == 0 (as in torch), got "
                         f"momentum={mom} and dampening={damp}.")

    def init(params: Params) -> OptState:
        if not mom:
            return {"count": 0}
        return {"count": 0, "momentum": _tree.tree_zeros_like(params)}

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        if wd and params is None:
            raise ValueError("sgd.update: weight_decay > 0 needs the params: call update(grads, state, params).")
        count = int(state["count"])
        neg_lr = -resolve(lr, count)
        if not mom:
            updates = map_leaves("sgd.update", _plain_leaf(neg_lr, wd), grads, params=params)
            return updates, {"count": count + 1}
        leaf = _momentum_leaf(neg_lr, wd, mom, 1.0 - damp, nesterov, count == 0)
        updates, buf = map_leaves("sgd.update", leaf, grads, state["momentum"], params=params,
                                  labels=("the momentum buffers in state['momentum']",), n_out=2)
        return updates, {"count": count + 1, "momentum": buf}

    return Optimizer(init, update)


def _plain_leaf(neg_lr: float, wd: float) -> Any:
    if not wd:
        return lambda g, p=None: g * neg_lr

    def leaf(g: Any, p: Any) -> Any:
        u = p * wd
        u += g
        u *= neg_lr
        return u
    return leaf


def _momentum_leaf(neg_lr: float, wd: float, mom: float, keep: float, nesterov: bool, first: bool) -> Any:
    def leaf(g: Any, buf: Any, p: Any = None) -> Any:
        if wd:
            g = p * wd + g
        if first:
            buf = np.array(g, copy=True)
        else:
            buf = buf * mom
            buf += g if keep == 1.0 else g * keep
        if nesterov:
            u = buf * mom
            u += g
            u *= neg_lr
        else:
            u = buf * neg_lr
        return u, buf
    return leaf

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
from ._base import (Optimizer, OptState, ScalarOrSchedule, Updates, check_hyper, check_learning_rate, check_state,
                    declare_scalar, map_leaves, named_chain, resolve)
from ._scale_by import (scale_by_adadelta, scale_by_adam, scale_by_adamax, scale_by_amsgrad, scale_by_lion,
                        scale_by_nadam, scale_by_rms, scale_by_rss, scale_by_stddev)
from ._transforms import add_decayed_weights, scale_by_learning_rate, scale_by_trust_ratio, trace

__all__ = ["sgd", "adam", "adamw", "amsgrad", "adamax", "nadam", "rmsprop", "adagrad", "adadelta", "lion",
           "lamb"]


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
    lr = check_learning_rate("sgd", learning_rate)
    mom = check_hyper("sgd", "momentum", momentum)
    wd = check_hyper("sgd", "weight_decay", weight_decay)
    damp = check_hyper("sgd", "dampening", dampening, high=1.0)
    if nesterov and (mom <= 0 or damp != 0):
        raise ValueError(f"sgd: nesterov=True needs momentum > 0 and dampening == 0 (as in torch), got "
                         f"momentum={mom} and dampening={damp}.")

    keys = frozenset({"count", "momentum"} if mom else {"count"})

    def init(params: Params) -> OptState:
        if not mom:
            return {"count": 0}
        return {"count": 0, "momentum": _tree.tree_zeros_like(params)}

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        if wd and params is None:
            raise ValueError("sgd.update: weight_decay > 0 needs the params: call update(grads, state, params).")
        check_state("sgd.update", state, keys)
        count = int(state["count"])
        neg_lr = -resolve(lr, count)
        if not mom:
            updates = map_leaves("sgd.update", _plain_leaf(neg_lr, wd), grads, params=params)
            return updates, {"count": count + 1}
        leaf = _momentum_leaf(neg_lr, wd, mom, 1.0 - damp, nesterov, count == 0)
        updates, buf = map_leaves("sgd.update", leaf, grads, state["momentum"], params=params,
                                  labels=("the momentum buffers in state['momentum']",), n_out=2)
        return updates, {"count": count + 1, "momentum": buf}

    if not mom and not wd:  # u = -lr * g: train_step folds the factor into the backward pass
        def scalar(state: OptState) -> tuple[float, OptState]:
            check_state("sgd.update", state, keys)
            count = int(state["count"])
            return -resolve(lr, count), {"count": count + 1}

        declare_scalar(update, scalar)
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


def _l2_rule(name: str, direction: Optimizer, learning_rate: ScalarOrSchedule, weight_decay: float,
             *extra: tuple[str, Optimizer]) -> Optimizer:
    """``named_chain`` of [L2 decay added to the gradient], the direction, extras, the learning rate."""
    wd = check_hyper(name, "weight_decay", weight_decay)
    lr = scale_by_learning_rate(check_learning_rate(name, learning_rate))
    decay = [("weight_decay", add_decayed_weights(wd))] if wd else []
    return named_chain(*decay, (name, direction), *extra, ("learning_rate", lr))


def adam(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
         eps_root: float = 0.0, weight_decay: float = 0.0, *, nesterov: bool = False) -> Optimizer:
    """Adam (Kingma & Ba 2015), as ``torch.optim.Adam``: ``g += weight_decay * p`` (L2, coupled);
    ``m = b1*m + (1-b1)*g``; ``v = b2*v + (1-b2)*g**2``;
    ``u = -lr * (m/c1) / (sqrt(v/c2 + eps_root) + eps)`` with ``c1 = 1-b1**t``, ``c2 = 1-b2**t``.
    ``nesterov=True`` is optax's ``adam(nesterov=True)`` (see :func:`scale_by_adam`); it is not
    torch's NAdam, which is :func:`nadam`.

    Returns:
        ``named_chain([weight_decay,] adam=scale_by_adam, learning_rate=scale_by_learning_rate)``.

    Example:
        >>> import numpy as np
        >>> opt = adam(0.1)
        >>> opt.update({"w": np.array([5.0, -0.2])}, opt.init({"w": np.zeros(2)}))[0]["w"]
        array([-0.1,  0.1])
    """
    return _l2_rule("adam", scale_by_adam(b1, b2, eps, eps_root, nesterov=nesterov), learning_rate, weight_decay)


def amsgrad(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
            eps_root: float = 0.0, weight_decay: float = 0.0) -> Optimizer:
    """AMSGrad, as ``torch.optim.Adam(amsgrad=True)``: Adam with ``v_max = max(v_max, v)`` taken on
    the raw second moment and used in place of ``v`` (optax takes the max after bias correction).

    Example:
        >>> import numpy as np
        >>> opt = amsgrad(0.1)
        >>> sorted(opt.init({"w": np.zeros(2)})["amsgrad"])
        ['count', 'mu', 'nu', 'nu_max']
    """
    return _l2_rule("amsgrad", scale_by_amsgrad(b1, b2, eps, eps_root), learning_rate, weight_decay)


def adamw(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
          eps_root: float = 0.0, weight_decay: float = 1e-2, mask: Any = None) -> Optimizer:
    """AdamW, as ``torch.optim.AdamW``: decoupled decay scaled by the learning rate,
    ``u = -lr * (adam_direction + weight_decay * p)`` (torch: ``p *= 1 - lr*wd`` before the Adam step,
    the same thing). Default ``weight_decay=1e-2`` as in torch (optax: 1e-4).

    Args:
        mask: leaves to decay (a tree/prefix of bools or a function of params); e.g. no decay on biases.

    Example:
        >>> import numpy as np
        >>> opt = adamw(0.1, weight_decay=0.5)
        >>> p = {"w": np.ones(1)}
        >>> opt.update({"w": np.ones(1)}, opt.init(p), p)[0]["w"]
        array([-0.15])
    """
    wd = check_hyper("adamw", "weight_decay", weight_decay)
    lr = check_learning_rate("adamw", learning_rate)
    return named_chain(("adam", scale_by_adam(b1, b2, eps, eps_root)),
                       ("weight_decay", add_decayed_weights(wd, mask)),
                       ("learning_rate", scale_by_learning_rate(lr)))


def adamax(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
           weight_decay: float = 0.0) -> Optimizer:
    """Adamax (Kingma & Ba 2015), as ``torch.optim.Adamax`` and optax's ``adamax``:
    ``n = max(b2*n, |g| + eps)``; ``u = -lr * (m/c1) / n`` (eps inside the max in both).

    Example:
        >>> import numpy as np
        >>> opt = adamax(0.1, eps=0.0)
        >>> opt.update({"w": np.array([3.0])}, opt.init({"w": np.zeros(1)}))[0]["w"]
        array([-0.1])
    """
    return _l2_rule("adamax", scale_by_adamax(b1, b2, eps), learning_rate, weight_decay)


def nadam(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
          momentum_decay: float = 4e-3, weight_decay: float = 0.0) -> Optimizer:
    """NAdam, as ``torch.optim.NAdam`` (with its momentum schedule ``momentum_decay``); see
    :func:`scale_by_nadam` for the formula. optax's ``nadam`` has no momentum schedule and differs.

    Example:
        >>> import numpy as np
        >>> opt = nadam(0.1)
        >>> sorted(opt.init({"w": np.zeros(1)})["nadam"])
        ['count', 'mu', 'mu_product', 'nu']
    """
    return _l2_rule("nadam", scale_by_nadam(b1, b2, eps, momentum_decay), learning_rate, weight_decay)


def rmsprop(learning_rate: ScalarOrSchedule, decay: float = 0.99, eps: float = 1e-8, centered: bool = False,
            momentum: float = 0.0, weight_decay: float = 0.0, initial_scale: float = 0.0, *,
            eps_in_sqrt: bool = False) -> Optimizer:
    """RMSprop (Hinton 2012; centered: Graves 2013), as ``torch.optim.RMSprop`` (``decay`` is torch's
    ``alpha``): ``v = decay*v + (1-decay)*g**2``; ``d = g / (sqrt(v) + eps)``, or
    ``g / (sqrt(v - m**2) + eps)`` when ``centered`` (``m`` the mean gradient); with momentum
    ``b = momentum*b + d``, ``u = -lr*b``. eps is outside the sqrt (torch); ``eps_in_sqrt=True`` puts it
    inside, ``sqrt(v + eps)``, which with ``decay=0.9`` is optax's default ``rmsprop``.

    Example:
        >>> import numpy as np
        >>> opt = rmsprop(0.1, decay=0.75, eps=0.0)
        >>> opt.update({"w": np.array([2.0])}, opt.init({"w": np.zeros(1)}))[0]["w"]
        array([-0.2])
    """
    mom = check_hyper("rmsprop", "momentum", momentum)
    direction = (scale_by_stddev if centered else scale_by_rms)(decay, eps, initial_scale, eps_in_sqrt=eps_in_sqrt)
    extra = [("momentum", trace(mom))] if mom else []
    return _l2_rule("rmsprop", direction, learning_rate, weight_decay, *extra)


def adagrad(learning_rate: ScalarOrSchedule, initial_accumulator_value: float = 0.0, eps: float = 1e-10,
            weight_decay: float = 0.0) -> Optimizer:
    """Adagrad, as ``torch.optim.Adagrad``: ``s = s + g**2``; ``u = -lr * g / (sqrt(s) + eps)``.
    torch's ``lr_decay`` is a schedule here: ``learning_rate=lambda c: lr / (1 + c * lr_decay)``.

    Example:
        >>> import numpy as np
        >>> opt = adagrad(0.5)
        >>> opt.update({"w": np.array([-4.0])}, opt.init({"w": np.zeros(1)}))[0]["w"]
        array([0.5])
    """
    return _l2_rule("adagrad", scale_by_rss(initial_accumulator_value, eps), learning_rate, weight_decay)


def adadelta(learning_rate: ScalarOrSchedule = 1.0, rho: float = 0.9, eps: float = 1e-6,
             weight_decay: float = 0.0) -> Optimizer:
    """Adadelta (Zeiler 2012), as ``torch.optim.Adadelta``: see :func:`scale_by_adadelta`;
    ``u = -lr * delta``. The default ``learning_rate=1.0`` is torch's; optax's default ``None`` means
    no scaling at all, so its update is ``+delta``, an ascent direction: pass a rate to optax.

    Example:
        >>> import numpy as np
        >>> opt = adadelta(rho=0.0, eps=1.0)
        >>> opt.update({"w": np.array([1.0])}, opt.init({"w": np.zeros(1)}))[0]["w"]
        array([-0.70710678])
    """
    return _l2_rule("adadelta", scale_by_adadelta(rho, eps), learning_rate, weight_decay)


def lion(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.99, weight_decay: float = 1e-3,
         mask: Any = None) -> Optimizer:
    """Lion (Chen et al. 2023; optax's conventions, not in torch): ``u = -lr * (sign(b1*m + (1-b1)*g)
    + weight_decay * p)``; then ``m = b2*m + (1-b2)*g``. Decay is decoupled and scaled by ``lr``.

    Example:
        >>> import numpy as np
        >>> opt = lion(0.1, weight_decay=0.0)
        >>> opt.update({"w": np.array([0.01, -5.0])}, opt.init({"w": np.zeros(2)}))[0]["w"]
        array([-0.1,  0.1])
    """
    wd = check_hyper("lion", "weight_decay", weight_decay)
    lr = check_learning_rate("lion", learning_rate)
    return named_chain(("lion", scale_by_lion(b1, b2)), ("weight_decay", add_decayed_weights(wd, mask)),
                       ("learning_rate", scale_by_learning_rate(lr)))


def lamb(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-6,
         eps_root: float = 0.0, weight_decay: float = 0.0, mask: Any = None) -> Optimizer:
    """LAMB (You et al. 2020; optax's conventions, not in torch): ``r = adam_direction + weight_decay*p``;
    per leaf ``u = -lr * r * ||p|| / ||r||`` (ratio 1 when a norm is zero).

    Example:
        >>> import numpy as np
        >>> opt = lamb(0.1)
        >>> p = {"w": np.array([3.0, 4.0])}
        >>> opt.update({"w": np.array([1.0, 0.0])}, opt.init(p), p)[0]["w"]
        array([-0.5, -0. ])
    """
    wd = check_hyper("lamb", "weight_decay", weight_decay)
    lr = check_learning_rate("lamb", learning_rate)
    return named_chain(("adam", scale_by_adam(b1, b2, eps, eps_root)),
                       ("weight_decay", add_decayed_weights(wd, mask)),
                       ("trust_ratio", scale_by_trust_ratio()), ("learning_rate", scale_by_learning_rate(lr)))

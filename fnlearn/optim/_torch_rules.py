"""Rules named and written after ``torch.optim``: RAdam, NAdamW, Rprop and ASGD, with torch's formulas and
defaults (``tests/test_optim_torch.py`` compares 200 float64 steps with torch).

Notation as in ``_alias``: ``g`` gradient, ``p`` parameter, ``t`` the step (1 first), ``c1 = 1 - b1**t``,
``c2 = 1 - b2**t``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import tree as _tree
from .._types import Params
from ._base import (Optimizer, OptState, ScalarOrSchedule, Updates, check_hyper, check_learning_rate,
                    check_state, map_leaves, named_chain)
from ._scale_by import _ema, _moments, _root, _zeros, scale_by_nadam
from ._transforms import add_decayed_weights, scale_by_learning_rate

__all__ = ["scale_by_radam", "radam", "nadamw", "scale_by_rprop", "rprop", "asgd"]


def scale_by_radam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Optimizer:
    """RAdam's direction as in torch (Liu et al. 2020): Adam's ``m`` and ``v``;
    ``rho_inf = 2/(1-b2) - 1``, ``rho_t = rho_inf - 2*t*b2**t/c2``; if ``rho_t > 5``,
    ``u = m/c1 * r_t * sqrt(c2) / (sqrt(v) + eps)`` with the rectification
    ``r_t = sqrt((rho_t-4)(rho_t-2) rho_inf / ((rho_inf-4)(rho_inf-2) rho_t))``, else ``u = m/c1``.

    (optax: ``rho_t >= 5`` and ``eps`` added to ``sqrt(v/c2)`` instead of ``sqrt(v)``.)

    Returns:
        An :class:`Optimizer`; state ``{"count", "mu", "nu"}``.

    Example:
        >>> import numpy as np
        >>> t = scale_by_radam()
        >>> t.update({"w": np.array([2.0, -3.0])}, t.init({"w": np.zeros(2)}))[0]["w"]
        array([ 2., -3.])
    """
    b1, b2, eps = _moments("scale_by_radam", b1, b2, eps)
    rho_inf = 2.0 / (1.0 - b2) - 1.0 if b2 < 1.0 else math.inf
    state_keys = frozenset({"count", "mu", "nu"})

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state("scale_by_radam.update", state, state_keys)
        count = int(state["count"]) + 1
        c1, c2 = 1.0 - b1 ** count, 1.0 - b2 ** count
        rho_t = rho_inf - 2.0 * count * b2 ** count / c2
        if rho_t > 5.0:
            rect = math.sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
            factor = rect * math.sqrt(c2) / c1
        else:
            factor = None

        def leaf(g: Any, m: Any, v: Any, p: Any = None) -> tuple[Any, Any, Any]:
            m, v = _ema(m, g, b1), _ema(v, g * g, b2)
            if factor is None:
                return m / c1, m, v
            return m * factor / _root(v.copy(), 0.0, eps), m, v

        u, mu, nu = map_leaves("scale_by_radam.update", leaf, grads, state["mu"], state["nu"], params=params,
                               labels=("state['mu']", "state['nu']"), n_out=3)
        return u, {"count": count, "mu": mu, "nu": nu}

    return Optimizer(lambda params: {"count": 0, **_zeros(params, "mu", "nu")}, update)


def radam(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
          weight_decay: float = 0.0, decoupled_weight_decay: bool = False) -> Optimizer:
    """RAdam, as ``torch.optim.RAdam``: see :func:`scale_by_radam`; ``u = -lr * direction``.
    ``weight_decay`` is L2 (``g += wd*p``), or with ``decoupled_weight_decay`` AdamW's
    ``u = -lr * (direction + wd*p)`` (torch: ``p *= 1 - lr*wd`` first, the same thing).

    Example:
        >>> import numpy as np
        >>> opt = radam(0.1)
        >>> opt.update({"w": np.array([5.0])}, opt.init({"w": np.zeros(1)}))[0]["w"]
        array([-0.5])
    """
    return _adam_like("radam", scale_by_radam(b1, b2, eps), learning_rate, weight_decay, decoupled_weight_decay)


def nadamw(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
           momentum_decay: float = 4e-3, weight_decay: float = 1e-2) -> Optimizer:
    """NAdamW, as ``torch.optim.NAdam(decoupled_weight_decay=True)`` (Loshchilov & Hutter's decoupled
    decay on Dozat's NAdam): ``u = -lr * (nadam_direction + wd*p)``, the direction of
    :func:`scale_by_nadam` with torch's momentum schedule. Default ``weight_decay=1e-2`` as in
    :func:`adamw` (torch's NAdam defaults to 0; optax's ``nadamw`` to 1e-4 and has no momentum schedule).

    Example:
        >>> import numpy as np
        >>> opt = nadamw(0.1, weight_decay=0.0)
        >>> u, _ = opt.update({"w": np.array([1.0])}, opt.init({"w": np.zeros(1)}), {"w": np.zeros(1)})
        >>> round(float(u["w"][0]), 6)
        -0.105645
    """
    return _adam_like("nadamw", scale_by_nadam(b1, b2, eps, momentum_decay), learning_rate, weight_decay, True)


def _adam_like(name: str, direction: Optimizer, learning_rate: ScalarOrSchedule, weight_decay: float,
               decoupled: bool) -> Optimizer:
    """``named_chain`` of the direction and the learning rate, with L2 before or decoupled decay after."""
    wd = check_hyper(name, "weight_decay", weight_decay)
    lr = scale_by_learning_rate(check_learning_rate(name, learning_rate))
    if not wd:
        return named_chain((name, direction), ("learning_rate", lr))
    if decoupled:
        return named_chain((name, direction), ("weight_decay", add_decayed_weights(wd)), ("learning_rate", lr))
    return named_chain(("weight_decay", add_decayed_weights(wd)), (name, direction), ("learning_rate", lr))


def scale_by_rprop(learning_rate: float, eta_minus: float = 0.5, eta_plus: float = 1.2,
                   min_step_size: float = 1e-6, max_step_size: float = 50.0) -> Optimizer:
    """Rprop as in torch (Riedmiller & Braun 1993), the *update itself* (sign included): with
    ``s = sign(g * g_prev)``, ``step = clip(step * (eta_plus if s > 0, eta_minus if s < 0, 1 if s == 0),
    min_step_size, max_step_size)``; where ``s < 0`` the gradient is set to 0 (no move, and it is the
    next ``g_prev``); ``u = -sign(g) * step``. ``step`` starts at ``learning_rate``, ``g_prev`` at 0.

    Returns:
        An :class:`Optimizer`; state ``{"step_size": tree, "prev": tree}``.

    Example:
        >>> import numpy as np
        >>> t = scale_by_rprop(0.1)
        >>> s = t.init({"w": np.zeros(2)})
        >>> u, s = t.update({"w": np.array([1.0, -1.0])}, s)
        >>> u, s = t.update({"w": np.array([2.0, 1.0])}, s)
        >>> u["w"], s["step_size"]["w"]
        (array([-0.12,  0.  ]), array([0.12, 0.05]))
    """
    name = "scale_by_rprop"
    start = check_hyper(name, "learning_rate", learning_rate)
    minus = check_hyper(name, "eta_minus", eta_minus, high=1.0)
    plus = check_hyper(name, "eta_plus", eta_plus, low=1.0)
    low = check_hyper(name, "min_step_size", min_step_size)
    high = check_hyper(name, "max_step_size", max_step_size, low=low)
    state_keys = frozenset({"step_size", "prev"})

    def leaf(g: Any, step: Any, prev: Any, p: Any = None) -> tuple[Any, Any, Any]:
        s = np.sign(g * prev)
        factor = np.where(s > 0, plus, np.where(s < 0, minus, 1.0)).astype(g.dtype, copy=False)
        step = np.clip(step * factor, low, high)
        g = np.where(s < 0, 0, g).astype(g.dtype, copy=False)
        u = np.sign(g)
        u *= step
        np.negative(u, out=u)
        return u, step, g

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state(f"{name}.update", state, state_keys)
        u, step, prev = map_leaves(f"{name}.update", leaf, grads, state["step_size"], state["prev"],
                                   params=params, labels=("state['step_size']", "state['prev']"), n_out=3)
        return u, {"step_size": step, "prev": prev}

    def init(params: Params) -> OptState:
        return {"step_size": _tree.tree_map(lambda p: np.full_like(p, start), params),
                "prev": _tree.tree_zeros_like(params)}

    return Optimizer(init, update)


def rprop(learning_rate: float, eta_minus: float = 0.5, eta_plus: float = 1.2, min_step_size: float = 1e-6,
          max_step_size: float = 50.0) -> Optimizer:
    """Rprop, as ``torch.optim.Rprop(lr, etas=(eta_minus, eta_plus), step_sizes=(min, max))``; see
    :func:`scale_by_rprop` (the learning rate is only the initial step size, so it cannot be a schedule).
    optax's ``rprop`` returns the *previous* step's move and differs.

    Example:
        >>> import numpy as np
        >>> opt = rprop(0.1)
        >>> opt.update({"w": np.array([3.0, -0.5])}, opt.init({"w": np.zeros(2)}))[0]["w"]
        array([-0.1,  0.1])
    """
    return named_chain(("rprop", scale_by_rprop(learning_rate, eta_minus, eta_plus, min_step_size,
                                                max_step_size)))


def asgd(learning_rate: float, lambd: float = 1e-4, alpha: float = 0.75, t0: float = 1e6,
         weight_decay: float = 0.0) -> Optimizer:
    """Averaged SGD, as ``torch.optim.ASGD`` (Polyak & Juditsky 1992; torch's step-size schedule).

    With ``d = g + weight_decay*p``: ``u = -(lambd*eta*p + eta*d)`` (torch: ``p *= 1 - lambd*eta``, then
    ``p -= eta*d``); the average ``ax += mu*(p_new - ax)`` (``ax = p_new`` while ``mu == 1``); then
    ``eta = lr / (1 + lambd*lr*t)**alpha`` and ``mu = 1/max(1, t - t0)``. ``eta`` starts at ``lr`` and
    ``mu`` at 1. The averaged parameters are ``state["ax"]`` (torch's ``state[p]["ax"]``); evaluate
    with them.

    Returns:
        An :class:`Optimizer`; state ``{"count": int, "eta": float, "mu": float, "ax": tree}``. Needs
        ``params`` in ``update``.

    Example:
        >>> import numpy as np
        >>> opt = asgd(0.1, lambd=0.0)
        >>> p = {"w": np.ones(1)}
        >>> u, s = opt.update({"w": np.ones(1)}, opt.init(p), p)
        >>> u["w"], s["ax"]["w"]
        (array([-0.1]), array([0.9]))
    """
    lr = check_hyper("asgd", "learning_rate", learning_rate)
    lambd = check_hyper("asgd", "lambd", lambd)
    alpha = check_hyper("asgd", "alpha", alpha)
    t0 = check_hyper("asgd", "t0", t0)
    wd = check_hyper("asgd", "weight_decay", weight_decay)
    state_keys = frozenset({"count", "eta", "mu", "ax"})

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state("asgd.update", state, state_keys)
        if params is None:
            raise ValueError("asgd.update needs the params (for the decay and the average): call "
                             "update(grads, state, params).")
        count, eta, mu = int(state["count"]) + 1, float(state["eta"]), float(state["mu"])

        def leaf(g: Any, ax: Any, p: Any) -> tuple[Any, Any]:
            u = p * (lambd + wd) if wd else p * lambd
            u += g
            u *= -eta
            new_p = p + u
            if mu == 1.0:
                return u, new_p
            ax = ax + (new_p - ax) * mu
            return u, ax

        u, ax = map_leaves("asgd.update", leaf, grads, state["ax"], params=params, labels=("state['ax']",),
                           n_out=2)
        return u, {"count": count, "eta": lr / (1.0 + lambd * lr * count) ** alpha,
                   "mu": 1.0 / max(1.0, count - t0), "ax": ax}

    return Optimizer(lambda params: {"count": 0, "eta": lr, "mu": 1.0, "ax": _tree.tree_zeros_like(params)},
                     update)

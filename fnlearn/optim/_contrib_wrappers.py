"""Wrappers around a base rule, with optax's names and formulas: schedule-free averaging, Lookahead,
Mechanic's learned scale, and the learning-rate scale that falls when the loss plateaus.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import tree as _tree
from .._types import Params
from ._base import (Optimizer, OptState, ScalarOrSchedule, Updates, check_hyper, check_learning_rate,
                    check_state, is_optimizer, map_leaves, named_chain, resolve)
from ._schedules import warmup_constant_schedule
from ._scale_by import _ema
from ._transforms import add_decayed_weights, scale_by_learning_rate

__all__ = ["schedule_free", "schedule_free_adamw", "schedule_free_eval_params", "lookahead", "mechanize",
           "reduce_on_plateau"]


def _check_base(fn: str, base: Any) -> None:
    if not is_optimizer(base):
        raise TypeError(f"{fn}: the base optimizer must be an Optimizer(init, update), got {type(base).__name__}.")


def schedule_free(base_optimizer: Optimizer, learning_rate: ScalarOrSchedule, b1: float = 0.9,
                  weight_lr_power: float = 2.0) -> Optimizer:
    """Schedule-free averaging (Defazio et al. 2024), as ``optax.contrib.schedule_free``.

    The params ``y`` are an interpolation; ``z`` follows the base rule, ``z = z + base_update``; with
    ``w_t = max_lr**weight_lr_power`` (``max_lr`` the largest rate so far, the schedule called with
    ``t``, 1 first) and ``c = w_t / sum(w)``: ``x = (1-c) * (y - (1-b1)*z_old)/b1 + c*z``,
    ``y_new = b1*x + (1-b1)*z``; ``u = y_new - y``. Evaluate with :func:`schedule_free_eval_params`.

    Returns:
        An :class:`Optimizer`; state ``{"b1", "weight_sum", "step_count", "max_lr", "base", "z"}``.

    Example:
        >>> import numpy as np
        >>> from fnlearn import optim
        >>> opt = schedule_free(optim.sgd(0.5), learning_rate=0.5)
        >>> p = {"w": np.ones(1)}
        >>> u, s = opt.update({"w": np.ones(1)}, opt.init(p), p)
        >>> u["w"], s["z"]["w"]
        (array([-0.5]), array([0.5]))
    """
    _check_base("schedule_free", base_optimizer)
    lr = check_learning_rate("schedule_free", learning_rate)
    b1 = check_hyper("schedule_free", "b1", b1, low=1e-300, high=1.0)
    power = check_hyper("schedule_free", "weight_lr_power", weight_lr_power, low=-np.inf)
    state_keys = frozenset({"b1", "weight_sum", "step_count", "max_lr", "base", "z"})

    def init(params: Params) -> OptState:
        return {"b1": b1, "weight_sum": 0.0, "step_count": 1, "max_lr": 0.0,
                "base": base_optimizer.init(params), "z": _tree.tree_map(np.copy, params)}

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state("schedule_free.update", state, state_keys)
        if params is None:
            raise ValueError("schedule_free.update needs the params: call update(grads, state, params).")
        step = int(state["step_count"])
        max_lr = max(float(state["max_lr"]), resolve(lr, step))
        weight = max_lr ** power
        total = float(state["weight_sum"]) + weight
        ck = weight / total if total else 0.0
        base_updates, base_state = base_optimizer.update(grads, state["base"], params)

        def leaf(d: Any, z: Any, y: Any) -> tuple[Any, Any]:
            x = (y - z * (1.0 - b1)) / b1
            new_z = z + d
            x = x * (1.0 - ck) + new_z * ck
            new_y = x * b1 + new_z * (1.0 - b1)
            return new_y - y, new_z

        u, z = map_leaves("schedule_free.update", leaf, base_updates, state["z"], params=params,
                          labels=("state['z']",), n_out=2)
        return u, {"b1": state["b1"], "weight_sum": total, "step_count": step + 1, "max_lr": max_lr,
                   "base": base_state, "z": z}

    return Optimizer(init, update)


def schedule_free_eval_params(state: OptState, params: Params) -> Params:
    """The parameters to evaluate a schedule-free run with: ``x = (y - (1-b1)*z) / b1``.

    Example:
        >>> import numpy as np
        >>> state = {"b1": 0.5, "z": {"w": np.array([2.0])}}
        >>> schedule_free_eval_params(state, {"w": np.array([1.0])})["w"]
        array([0.])
    """
    if not isinstance(state, dict) or "b1" not in state or "z" not in state:
        raise ValueError("schedule_free_eval_params: expected the state of schedule_free or "
                         "schedule_free_adamw (a dict with 'b1' and 'z').")
    b1 = float(state["b1"])
    return map_leaves("schedule_free_eval_params", lambda z, y: (y - z * (1.0 - b1)) / b1, state["z"],
                      params=params)


def _scale_by_rms_debiased(decay: float, eps: float) -> Optimizer:
    """``v = ema(g**2, decay)``; ``u = g / (sqrt(v / (1 - decay**t)) + eps)`` (optax's
    ``scale_by_rms(eps_in_sqrt=False, bias_correction=True)``)."""
    state_keys = frozenset({"count", "nu"})

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state("scale_by_rms.update", state, state_keys)
        count = int(state["count"]) + 1
        c = 1.0 - decay ** count

        def leaf(g: Any, v: Any, p: Any = None) -> tuple[Any, Any]:
            v = _ema(v, g * g, decay)
            d = np.sqrt(v / c)
            d += eps
            return g / d, v

        u, nu = map_leaves("scale_by_rms.update", leaf, grads, state["nu"], params=params,
                           labels=("state['nu']",), n_out=2)
        return u, {"count": count, "nu": nu}

    return Optimizer(lambda params: {"count": 0, "nu": _tree.tree_zeros_like(params)}, update)


def schedule_free_adamw(learning_rate: float = 0.0025, warmup_steps: int | None = None, b1: float = 0.9,
                        b2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0,
                        weight_lr_power: float = 2.0) -> Optimizer:
    """Schedule-free AdamW (Defazio et al. 2024), as ``optax.contrib.schedule_free_adamw``:
    :func:`schedule_free` around ``chain(g / (sqrt(v/c2) + eps), + weight_decay*p, * -lr)``, with a
    linear warmup from 0 over ``warmup_steps`` when given. Evaluate with
    :func:`schedule_free_eval_params`.

    Example:
        >>> import numpy as np
        >>> opt = schedule_free_adamw(0.1)
        >>> p = {"w": np.ones(2)}
        >>> u, s = opt.update({"w": np.array([1.0, -1.0])}, opt.init(p), p)
        >>> u["w"]
        array([-0.1,  0.1])
    """
    lr: ScalarOrSchedule = check_learning_rate("schedule_free_adamw", learning_rate)
    if warmup_steps is not None:
        lr = warmup_constant_schedule(0.0, learning_rate, warmup_steps)
    b2 = check_hyper("schedule_free_adamw", "b2", b2, high=1.0)
    eps = check_hyper("schedule_free_adamw", "eps", eps)
    wd = check_hyper("schedule_free_adamw", "weight_decay", weight_decay)
    base = named_chain(("rms", _scale_by_rms_debiased(b2, eps)), ("weight_decay", add_decayed_weights(wd)),
                       ("learning_rate", scale_by_learning_rate(lr)))
    return schedule_free(base, lr, b1, weight_lr_power)


def lookahead(fast_optimizer: Optimizer, sync_period: int, slow_step_size: float,
              reset_state: bool = False) -> Optimizer:
    """Lookahead (Zhang et al. 2019): the params are the fast weights, moved by ``fast_optimizer``;
    every ``sync_period`` steps the slow weights move towards them, ``slow += slow_step_size * (fast -
    slow)``, and the fast weights jump to the slow ones (``reset_state`` also re-initialises the fast
    optimizer's state). optax keeps both in ``LookaheadParams(fast, slow)``; here the slow weights are
    ``state["slow"]``, with the same fast trajectory (tested).

    Returns:
        An :class:`Optimizer`; state ``{"fast_state", "steps_since_sync", "slow"}``. Needs ``params``.

    Example:
        >>> import numpy as np
        >>> from fnlearn import optim
        >>> opt = lookahead(optim.sgd(1.0), sync_period=2, slow_step_size=0.5)
        >>> p = {"w": np.zeros(1)}
        >>> s = opt.init(p)
        >>> u, s = opt.update({"w": np.array([-1.0])}, s, p)
        >>> p = optim.apply_updates(p, u)
        >>> u, s = opt.update({"w": np.array([-1.0])}, s, p)
        >>> optim.apply_updates(p, u)["w"], s["slow"]["w"]
        (array([1.]), array([1.]))
    """
    _check_base("lookahead", fast_optimizer)
    period = int(check_hyper("lookahead", "sync_period", sync_period, low=1))
    alpha = check_hyper("lookahead", "slow_step_size", slow_step_size, low=-np.inf)
    state_keys = frozenset({"fast_state", "steps_since_sync", "slow"})

    def init(params: Params) -> OptState:
        return {"fast_state": fast_optimizer.init(params), "steps_since_sync": 0,
                "slow": _tree.tree_map(np.copy, params)}

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state("lookahead.update", state, state_keys)
        if params is None:
            raise ValueError("lookahead.update needs the params: call update(grads, state, params).")
        updates, fast_state = fast_optimizer.update(grads, state["fast_state"], params)
        steps = int(state["steps_since_sync"])
        if steps != period - 1:
            return updates, {"fast_state": fast_state, "steps_since_sync": steps + 1, "slow": state["slow"]}

        def sync(u: Any, slow: Any, fast: Any) -> tuple[Any, Any]:
            diff = fast + u - slow
            new_slow = slow + diff * alpha
            return new_slow - fast, new_slow

        u, slow = map_leaves("lookahead.update", sync, updates, state["slow"], params=params,
                             labels=("state['slow']",), n_out=2)
        if reset_state:
            fast_state = fast_optimizer.init(params)
        return u, {"fast_state": fast_state, "steps_since_sync": 0, "slow": slow}

    return Optimizer(init, update)


def reduce_on_plateau(factor: float = 0.1, patience: int = 10, rtol: float = 1e-4, atol: float = 0.0,
                      cooldown: int = 0, accumulation_size: int = 1, min_scale: float = 0.0) -> Optimizer:
    """Scale the updates by ``scale``, multiplied by ``factor`` (not below ``min_scale``) when the loss
    has not improved for ``patience`` evaluations, as ``optax.contrib.reduce_on_plateau``.

    ``update(grads, state, params, value=loss)`` averages ``value`` over ``accumulation_size`` calls;
    then the average improves if ``avg < (1 - rtol)*best - atol``; otherwise the plateau count grows
    and at ``patience`` the scale falls and ``cooldown`` evaluations are skipped. ``u = scale * g``.
    Chain it after a rule: ``chain(adam(1e-3), reduce_on_plateau(patience=5))``.

    Returns:
        An :class:`Optimizer`; state ``{"scale", "best_value", "plateau_count", "cooldown_count",
        "count", "avg_value"}``.

    Example:
        >>> import numpy as np
        >>> opt = reduce_on_plateau(factor=0.5, patience=1)
        >>> s = opt.init(None)
        >>> for loss in (1.0, 1.0):
        ...     u, s = opt.update({"w": np.ones(1)}, s, value=loss)
        >>> u["w"], s["scale"]
        (array([0.5]), 0.5)
    """
    if not 0.0 < factor < 1.0:
        raise ValueError(f"reduce_on_plateau: factor must be in (0, 1), got {factor}.")
    if rtol < 0.0 or atol < 0.0 or (rtol == 0.0 and atol == 0.0) or rtol > 1.0:
        raise ValueError(f"reduce_on_plateau: rtol must be in [0, 1] and atol >= 0, not both 0; got rtol={rtol}, "
                         f"atol={atol}.")
    patience = int(check_hyper("reduce_on_plateau", "patience", patience))
    cooldown = int(check_hyper("reduce_on_plateau", "cooldown", cooldown))
    size = int(check_hyper("reduce_on_plateau", "accumulation_size", accumulation_size, low=1))
    floor = check_hyper("reduce_on_plateau", "min_scale", min_scale)
    state_keys = frozenset({"scale", "best_value", "plateau_count", "cooldown_count", "count", "avg_value"})

    def init(params: Params) -> OptState:
        return {"scale": 1.0, "best_value": float("inf"), "plateau_count": 0, "cooldown_count": 0, "count": 0,
                "avg_value": 0.0}

    def judge(state: dict[str, Any]) -> dict[str, Any]:
        avg, best = state["avg_value"], float(state["best_value"])
        improved = avg < (1.0 - rtol) * best - atol
        plateau = 0 if improved else int(state["plateau_count"]) + 1
        scale, wait = float(state["scale"]), int(state["cooldown_count"])
        if wait > 0:
            plateau, wait = 0, wait - 1
        elif plateau == patience:
            plateau, scale, wait = 0, max(scale * factor, floor), cooldown
        else:
            scale, wait = max(scale, floor), 0
        return {"scale": scale, "best_value": avg if improved else best, "plateau_count": plateau,
                "cooldown_count": wait, "count": 0, "avg_value": 0.0}

    def update(grads: Updates, state: OptState, params: Params = None, *, value: float | None = None
               ) -> tuple[Updates, OptState]:
        check_state("reduce_on_plateau.update", state, state_keys)
        if value is None:
            raise TypeError("reduce_on_plateau.update needs the loss: call update(grads, state, params, value=loss).")
        count = int(state["count"])
        new = {**state, "count": count + 1,
               "avg_value": (count * float(state["avg_value"]) + float(value)) / (count + 1)}
        if count + 1 == size:
            new = judge(new)
        factor_now = float(new["scale"])
        return map_leaves("reduce_on_plateau.update", lambda g, p=None: g * factor_now, grads, params=params), new

    return Optimizer(init, update)


def mechanize(base_optimizer: Optimizer, weight_decay: float = 1e-2, eps: float = 1e-8, s_init: float = 1e-6,
              num_betas: int = 6) -> Optimizer:
    """Mechanic (Cutkosky et al. 2023), as ``optax.contrib.mechanize``: learns a scale ``s`` for the
    base rule's updates. With ``x0`` the first params, ``S = sum(s)``, ``g' = g + weight_decay * S *
    ||g|| / (||p|| + eps) * p``, ``delta_prev = (x0 - p) / (S + eps)``, ``h = <g', delta_prev>``, for
    each ``beta_i = 1 - 0.1**i``: ``m = max(beta*m, |h| + eps)``, ``v = beta**2*v + h**2``,
    ``r = beta*r + clip(h, ±m_old)*s``, ``s = (s_init/n*m + max(r, 0)) / (sqrt(v) + eps)``; the new
    params are ``x0 - sum(s) * (delta_prev - base_update)``. The scalars ``r, m, v, s`` are arrays of
    ``num_betas`` in the params' lowest float dtype (as optax). Needs ``params``.

    Returns:
        An :class:`Optimizer`; state ``{"base", "count", "r", "m", "v", "s", "x0"}``.

    Example:
        >>> import numpy as np
        >>> from fnlearn import optim
        >>> opt = mechanize(optim.sgd(0.1))
        >>> p = {"w": np.ones(2)}
        >>> u, s = opt.update({"w": np.ones(2)}, opt.init(p), p)
        >>> s["s"].shape, bool(np.all(np.abs(u["w"]) < 1e-3))
        ((6,), True)
    """
    _check_base("mechanize", base_optimizer)
    wd = check_hyper("mechanize", "weight_decay", weight_decay)
    eps = check_hyper("mechanize", "eps", eps)
    s_init = check_hyper("mechanize", "s_init", s_init)
    n = int(check_hyper("mechanize", "num_betas", num_betas, low=1))
    state_keys = frozenset({"base", "count", "r", "m", "v", "s", "x0"})

    def init(params: Params) -> OptState:
        dtypes = {x.dtype for x in _tree.tree_leaves(params) if np.issubdtype(x.dtype, np.floating)}
        dtype = min(dtypes, key=lambda d: d.itemsize) if dtypes else np.dtype(np.float32)
        zeros = np.zeros(n, dtype)
        return {"base": base_optimizer.init(params), "count": 0, "r": zeros, "m": zeros.copy(),
                "v": zeros.copy(), "s": np.full(n, s_init, dtype), "x0": _tree.tree_map(np.copy, params)}

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state("mechanize.update", state, state_keys)
        if params is None:
            raise ValueError("mechanize.update needs the params: call update(grads, state, params).")
        base_updates, base_state = base_optimizer.update(grads, state["base"], params)
        x0 = _tree.tree_map(np.copy, params) if int(state["count"]) == 0 else state["x0"]
        s, m, v, r = state["s"], state["m"], state["v"], state["r"]
        s_sum = float(s.sum())  # Python floats below, so that no array is upcast
        g_norm = float(np.sqrt(sum(np.vdot(g, g) for g in _tree.tree_leaves(grads))))
        p_norm = float(np.sqrt(sum(np.vdot(p, p) for p in _tree.tree_leaves(params))))
        decay = wd * s_sum * g_norm / (p_norm + eps)

        def dot(g: Any, p0: Any, p: Any) -> Any:
            return np.asarray(np.vdot(g + decay * p, (p0 - p) / (s_sum + eps)))

        h = float(sum(_tree.tree_leaves(map_leaves("mechanize.update", dot, grads, x0, params=params,
                                                   labels=("state['x0']",)))))
        betas = np.array([1.0 - 0.1 ** i for i in range(1, n + 1)], s.dtype)
        clipped = np.minimum(np.maximum(h, -m), m)  # a Python h stays weak: no upcast
        m = np.maximum(betas * m, abs(h) + eps)
        v = betas ** 2 * v + h ** 2
        r = betas * r + clipped * s
        s = (s_init / n * m + np.maximum(0.0, r)) / (np.sqrt(v) + eps)
        total = float(s.sum())

        def leaf(d: Any, p0: Any, p: Any) -> Any:
            delta = (p0 - p) / (s_sum + eps) - d
            return (p0 - total * delta) - p

        u = map_leaves("mechanize.update", leaf, base_updates, x0, params=params, labels=("state['x0']",))
        return u, {"base": base_state, "count": int(state["count"]) + 1, "r": r, "m": m, "v": v, "s": s, "x0": x0}

    return Optimizer(init, update)

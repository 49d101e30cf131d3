"""Rules from ``optax.contrib`` with optax's names, defaults and formulas: ADOPT, AdEMAMix, Prodigy,
DoG and COCOB. Scalars of the state (Prodigy's and DoG's step-size estimates) are Python floats.

``t`` is the step (1 first), ``c1 = 1 - b1**t``, ``c2 = 1 - b2**t``, ``ema(x, b) = b*x_old + (1-b)*x``.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .. import tree as _tree
from .._types import Params
from ._base import (Optimizer, OptState, ScalarOrSchedule, Updates, check_hyper, check_learning_rate,
                    check_state, map_leaves, named_chain, resolve)
from ._scale_by import _ema, _moments, _root, _zeros
from ._transforms import add_decayed_weights, identity, scale_by_learning_rate

__all__ = ["scale_by_adopt", "adopt", "scale_by_ademamix", "ademamix", "prodigy", "scale_by_dog", "dog",
           "scale_by_cocob", "cocob"]


def _sq_norm(tree: Any) -> float:
    return float(sum(np.vdot(x, x) for x in _tree.tree_leaves(tree)))


def scale_by_adopt(b1: float = 0.9, b2: float = 0.9999, eps: float = 1e-6, *, nesterov: bool = False,
                   use_clipping: bool = True, clip_value_fn: Callable[[int], float] = lambda count: count ** 0.25
                   ) -> Optimizer:
    """ADOPT's direction (Taniguchi et al. 2024), as optax: with ``k`` the steps taken so far (0 first),
    ``r = clip(g / max(sqrt(v_old), eps), ±clip_value_fn(k))``; ``m = ema(r, b1)`` and
    ``v = ema(g**2, b2)``, except on the first step, where ``m`` stays 0 and ``v = g**2``; ``u = m``, or
    with ``nesterov`` ``u = b1*m + (1-b1)*r``. The first update is therefore 0.

    Returns:
        An :class:`Optimizer`; state ``{"count", "mu", "nu"}``.

    Example:
        >>> import numpy as np
        >>> t = scale_by_adopt(b1=0.0)
        >>> s = t.init({"w": np.zeros(1)})
        >>> u, s = t.update({"w": np.array([2.0])}, s)
        >>> u, s = t.update({"w": np.array([4.0])}, s)
        >>> u["w"]
        array([1.])
    """
    b1, b2, eps = _moments("scale_by_adopt", b1, b2, eps)
    state_keys = frozenset({"count", "mu", "nu"})

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state("scale_by_adopt.update", state, state_keys)
        count = int(state["count"])
        beta1, beta2 = (b1, b2) if count else (1.0, 0.0)
        bound = float(clip_value_fn(count)) if use_clipping else None

        def leaf(g: Any, m: Any, v: Any, p: Any = None) -> tuple[Any, Any, Any]:
            r = g / np.maximum(np.sqrt(v), eps)
            if bound is not None:
                np.clip(r, -bound, bound, out=r)
            m = _ema(m, r, beta1)
            u = _ema(m, r, beta1) if nesterov else m.copy()
            return u, m, _ema(v, g * g, beta2)

        u, mu, nu = map_leaves("scale_by_adopt.update", leaf, grads, state["mu"], state["nu"], params=params,
                               labels=("state['mu']", "state['nu']"), n_out=3)
        return u, {"count": count + 1, "mu": mu, "nu": nu}

    return Optimizer(lambda params: {"count": 0, **_zeros(params, "mu", "nu")}, update)


def adopt(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.9999, eps: float = 1e-6, *,
          nesterov: bool = False, use_clipping: bool = True,
          clip_value_fn: Callable[[int], float] = lambda count: count ** 0.25) -> Optimizer:
    """ADOPT (Taniguchi et al. 2024), as ``optax.contrib.adopt``: ``u = -lr * direction`` of
    :func:`scale_by_adopt`.

    Example:
        >>> import numpy as np
        >>> opt = adopt(0.1)
        >>> opt.update({"w": np.array([2.0])}, opt.init({"w": np.zeros(1)}))[0]["w"]
        array([-0.])
    """
    return named_chain(("adopt", scale_by_adopt(b1, b2, eps, nesterov=nesterov, use_clipping=use_clipping,
                                                clip_value_fn=clip_value_fn)),
                       ("learning_rate", scale_by_learning_rate(check_learning_rate("adopt", learning_rate))))


def scale_by_ademamix(b1: float = 0.9, b2: float = 0.999, b3: ScalarOrSchedule = 0.9999,
                      alpha: ScalarOrSchedule = 6.0, eps: float = 1e-8, eps_root: float = 0.0) -> Optimizer:
    """AdEMAMix's direction (Pagliardini et al. 2024), as optax: ``m1 = ema(g, b1)``, a slow
    ``m2 = ema(g, b3)``, ``v = ema(g**2, b2)``; ``u = (m1/c1 + alpha*m2) / (sqrt(v/c2 + eps_root) + eps)``.
    ``b3`` and ``alpha`` may be schedules of the step count (0 first).

    Returns:
        An :class:`Optimizer`; state ``{"count", "m1", "m2", "nu"}``.

    Example:
        >>> import numpy as np
        >>> t = scale_by_ademamix(alpha=0.0, eps=0.0)
        >>> t.update({"w": np.array([2.0, -3.0])}, t.init({"w": np.zeros(2)}))[0]["w"]
        array([ 1., -1.])
    """
    b1, b2, eps = _moments("scale_by_ademamix", b1, b2, eps)
    b3 = check_hyper("scale_by_ademamix", "b3", b3, high=1.0, schedule_ok=True)
    alpha = check_hyper("scale_by_ademamix", "alpha", alpha, low=-np.inf, schedule_ok=True)
    eps_root = check_hyper("scale_by_ademamix", "eps_root", eps_root)
    keys = ("m1", "m2", "nu")
    state_keys = frozenset({"count", *keys})

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state("scale_by_ademamix.update", state, state_keys)
        count = int(state["count"])
        slow, mix = resolve(b3, count), resolve(alpha, count)
        c1, c2 = 1.0 - b1 ** (count + 1), 1.0 - b2 ** (count + 1)

        def leaf(g: Any, m1: Any, m2: Any, v: Any, p: Any = None) -> tuple[Any, Any, Any, Any]:
            m1, m2, v = _ema(m1, g, b1), _ema(m2, g, slow), _ema(v, g * g, b2)
            u = m1 / c1
            u += m2 * mix
            return u / _root(v / c2, eps_root, eps), m1, m2, v

        u, *trees = map_leaves("scale_by_ademamix.update", leaf, grads, *[state[k] for k in keys], params=params,
                               labels=tuple(f"state['{k}']" for k in keys), n_out=4)
        return u, {"count": count + 1, **dict(zip(keys, trees))}

    return Optimizer(lambda params: {"count": 0, **_zeros(params, *keys)}, update)


def ademamix(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, b3: ScalarOrSchedule = 0.9999,
             alpha: ScalarOrSchedule = 5.0, eps: float = 1e-8, eps_root: float = 0.0, weight_decay: float = 0.0,
             mask: Any = None) -> Optimizer:
    """AdEMAMix, as ``optax.contrib.ademamix``: ``u = -lr * (direction + weight_decay*p)`` with the
    direction of :func:`scale_by_ademamix` (note the default ``alpha=5.0`` here, 6.0 there, as in optax).

    Example:
        >>> import numpy as np
        >>> opt = ademamix(0.1)
        >>> sorted(opt.init({"w": np.zeros(1)})["ademamix"])
        ['count', 'm1', 'm2', 'nu']
    """
    wd = check_hyper("ademamix", "weight_decay", weight_decay)
    return named_chain(("ademamix", scale_by_ademamix(b1, b2, b3, alpha, eps, eps_root)),
                       ("weight_decay", add_decayed_weights(wd, mask)),
                       ("learning_rate", scale_by_learning_rate(check_learning_rate("ademamix", learning_rate))))


def prodigy(learning_rate: ScalarOrSchedule = 1.0, betas: tuple[float, float] = (0.9, 0.999),
            beta3: float | None = None, eps: float = 1e-8, estim_lr0: float = 1e-6, estim_lr_coef: float = 1.0,
            weight_decay: float = 0.0, safeguard_warmup: bool = False) -> Optimizer:
    """Prodigy (Mishchenko & Defazio 2023), as ``optax.contrib.prodigy``: Adam whose step size ``d``
    (``estim_lr``) is estimated from the distance travelled. With ``b3 = sqrt(b2)`` by default,
    ``dlr = d * lr * sqrt(c2) / c1``: ``m = ema(d*g, b1)``, ``v = ema((d*g)**2, b2)``,
    ``s = b3*s + w*d*g/estim_lr0`` (``w = d`` with ``safeguard_warmup``, else ``dlr``),
    ``r = b3*r + (d/estim_lr0) * dlr * <g, p0 - p>``, ``d_new = max(d, estim_lr_coef * r / sum|s|)``;
    ``u = -weight_decay*dlr*p - dlr * m / (sqrt(v) + d_new*eps)``. Needs ``params``.

    Returns:
        An :class:`Optimizer`; state ``{"count", "exp_avg", "exp_avg_sq", "grad_sum", "params0",
        "estim_lr": float, "numerator_weighted": float}``.

    Example:
        >>> import numpy as np
        >>> opt = prodigy()
        >>> p = {"w": np.ones(2)}
        >>> u, s = opt.update({"w": np.array([1.0, -1.0])}, opt.init(p), p)
        >>> u["w"], s["estim_lr"]
        (array([-1.e-06,  1.e-06]), 1e-06)
    """
    name = "prodigy"
    lr = check_learning_rate(name, learning_rate)
    b1 = check_hyper(name, "betas[0]", betas[0], high=1.0)
    b2 = check_hyper(name, "betas[1]", betas[1], high=1.0)
    b3 = b2 ** 0.5 if beta3 is None else check_hyper(name, "beta3", beta3, high=1.0)
    eps, d0 = check_hyper(name, "eps", eps), check_hyper(name, "estim_lr0", estim_lr0, low=1e-300)
    coef, wd = check_hyper(name, "estim_lr_coef", estim_lr_coef), check_hyper(name, "weight_decay", weight_decay)
    keys = ("exp_avg", "exp_avg_sq", "grad_sum", "params0")
    state_keys = frozenset({"count", "estim_lr", "numerator_weighted", *keys})

    def init(params: Params) -> OptState:
        return {"count": 0, **_zeros(params, *keys[:3]), "params0": _tree.tree_map(np.copy, params),
                "estim_lr": d0, "numerator_weighted": 0.0}

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state(f"{name}.update", state, state_keys)
        if params is None:
            raise ValueError(f"{name}.update needs the params: call update(grads, state, params).")
        count, d = int(state["count"]), float(state["estim_lr"])
        dlr = d * resolve(lr, count) * (1.0 - b2 ** (count + 1)) ** 0.5 / (1.0 - b1 ** (count + 1))
        w = d if safeguard_warmup else dlr

        def moments(g: Any, m: Any, v: Any, s: Any, p0: Any, p: Any) -> tuple[Any, ...]:
            dg = g * d
            s = s * b3
            s += dg * (w / d0)
            return _ema(m, dg, b1), _ema(v, dg * dg, b2), s, np.asarray(np.vdot(g, p0 - p)), np.abs(s).sum()

        m, v, s, dots, sums = map_leaves(f"{name}.update", moments, grads, *[state[k] for k in keys],
                                         params=params, labels=tuple(f"state['{k}']" for k in keys), n_out=5)
        numerator = b3 * float(state["numerator_weighted"]) + (d / d0) * dlr * float(sum(_tree.tree_leaves(dots)))
        new_d = max(d, coef * numerator / float(sum(_tree.tree_leaves(sums))))

        def step(m: Any, v: Any, p: Any) -> Any:
            u = m * -dlr
            u /= np.sqrt(v) + new_d * eps
            if wd:
                u -= p * (wd * dlr)
            return u

        u = map_leaves(f"{name}.update", step, m, v, params=params)
        return u, {"count": count + 1, "exp_avg": m, "exp_avg_sq": v, "grad_sum": s,
                   "params0": state["params0"], "estim_lr": new_d, "numerator_weighted": numerator}

    return Optimizer(init, update)


def scale_by_dog(init_step: tuple[str, float], eps: float = 1e-8) -> Optimizer:
    """DoG's step size (Ivgi et al. 2023), as optax: ``r = max(r, ||p - p0||)`` over the whole tree,
    ``G = G + ||g||**2``, ``u = g * r / sqrt(G + eps)``. ``r`` starts at ``value`` for
    ``("distance", value)``, at ``value * (1 + ||p0||)`` for ``("heuristic", value)``; with
    ``("learning_rate", value)`` it starts at 0 and the first step uses ``value`` as the step size.
    Needs ``params``.

    Returns:
        An :class:`Optimizer`; state ``{"count", "init_params", "max_dist": float, "sum_sq_norm_grads": float}``.

    Example:
        >>> import numpy as np
        >>> t = scale_by_dog(("distance", 0.5), eps=0.0)
        >>> p = {"w": np.zeros(2)}
        >>> t.update({"w": np.array([3.0, 4.0])}, t.init(p), p)[0]["w"]
        array([0.3, 0.4])
    """
    kind, value = init_step
    if kind not in ("distance", "heuristic", "learning_rate"):
        raise ValueError(f"scale_by_dog: init_step must be ('distance' | 'heuristic' | 'learning_rate', value), "
                         f"got {init_step!r}.")
    value = check_hyper("scale_by_dog", "init_step[1]", value)
    eps = check_hyper("scale_by_dog", "eps", eps)
    state_keys = frozenset({"count", "init_params", "max_dist", "sum_sq_norm_grads"})

    def init(params: Params) -> OptState:
        start = {"distance": value, "learning_rate": 0.0}.get(kind)
        if start is None:
            start = value * (1.0 + _sq_norm(params) ** 0.5)
        return {"count": 0, "init_params": _tree.tree_map(np.copy, params), "max_dist": start,
                "sum_sq_norm_grads": 0.0}

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state("scale_by_dog.update", state, state_keys)
        if params is None:
            raise ValueError("scale_by_dog.update needs the params: call update(grads, state, params).")
        moved = map_leaves("scale_by_dog.update", lambda p0, p: p0 - p, state["init_params"], params=params)
        max_dist = max(float(state["max_dist"]), _sq_norm(moved) ** 0.5)
        total = float(state["sum_sq_norm_grads"]) + _sq_norm(grads)
        rate = max_dist / (total + eps) ** 0.5
        if kind == "learning_rate" and int(state["count"]) == 0:
            rate = value
        u = map_leaves("scale_by_dog.update", lambda g, p: g * rate, grads, params=params)
        return u, {"count": int(state["count"]) + 1, "init_params": state["init_params"], "max_dist": max_dist,
                   "sum_sq_norm_grads": total}

    return Optimizer(init, update)


def dog(learning_rate: ScalarOrSchedule = 1.0, init_step: tuple[str, float] = ("heuristic", 1e-6),
        eps: float = 1e-8, weight_decay: float | None = None, mask: Any = None) -> Optimizer:
    """DoG, "distance over gradients" (Ivgi et al. 2023), as ``optax.contrib.dog``:
    ``chain([add_decayed_weights], scale_by_dog, scale_by_learning_rate)``.

    Example:
        >>> import numpy as np
        >>> opt = dog(init_step=("distance", 0.5), eps=0.0)
        >>> p = {"w": np.zeros(2)}
        >>> opt.update({"w": np.array([3.0, 4.0])}, opt.init(p), p)[0]["w"]
        array([-0.3, -0.4])
    """
    decay = identity() if weight_decay is None else add_decayed_weights(
        check_hyper("dog", "weight_decay", weight_decay), mask)
    return named_chain(("weight_decay", decay), ("dog", scale_by_dog(init_step, eps)),
                       ("learning_rate", scale_by_learning_rate(check_learning_rate("dog", learning_rate))))


def scale_by_cocob(alpha: float = 100.0, eps: float = 1e-8) -> Optimizer:
    """COCOB-Backprop (Orabona & Tommasi 2017), as optax, elementwise with ``c`` the incoming update:
    ``L = max(L, |c|)``, ``G = G + |c|``, ``R = max(R - c*(p - p0), 0)``, ``C = C - c``;
    ``u = p0 + C / (L * max(G + L, alpha*L)) * (L + R) - p``. ``L`` starts at ``eps``. Needs ``params``.

    Returns:
        An :class:`Optimizer`; state ``{"init_particles", "cumulative_gradients", "scale", "subgradients",
        "reward"}``.

    Example:
        >>> import numpy as np
        >>> t = scale_by_cocob()
        >>> p = {"w": np.zeros(1)}
        >>> t.update({"w": np.array([2.0])}, t.init(p), p)[0]["w"]
        array([-0.01])
    """
    ratio = check_hyper("scale_by_cocob", "alpha", alpha)
    eps = check_hyper("scale_by_cocob", "eps", eps)
    keys = ("init_particles", "cumulative_gradients", "scale", "subgradients", "reward")
    state_keys = frozenset(keys)

    def init(params: Params) -> OptState:
        trees = {"init_particles": _tree.tree_map(np.copy, params), **_zeros(params, "scale", fill=eps),
                 **_zeros(params, "cumulative_gradients", "subgradients", "reward")}
        return {k: trees[k] for k in keys}

    def leaf(c: Any, p0: Any, cum: Any, big_l: Any, big_g: Any, reward: Any, p: Any) -> tuple[Any, ...]:
        big_l = np.maximum(big_l, np.abs(c))
        big_g = big_g + np.abs(c)
        reward = np.maximum(reward - c * (p - p0), 0)
        cum = cum - c
        u = cum / (big_l * np.maximum(big_g + big_l, big_l * ratio)) * (big_l + reward)
        u += p0
        u -= p
        return u, p0, cum, big_l, big_g, reward

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state("scale_by_cocob.update", state, state_keys)
        if params is None:
            raise ValueError("scale_by_cocob.update needs the params: call update(grads, state, params).")
        u, *trees = map_leaves("scale_by_cocob.update", leaf, grads, *[state[k] for k in keys], params=params,
                               labels=tuple(f"state['{k}']" for k in keys), n_out=6)
        return u, dict(zip(keys, trees))

    return Optimizer(init, update)


def cocob(learning_rate: ScalarOrSchedule = 1.0, alpha: float = 100.0, eps: float = 1e-8,
          weight_decay: float = 0.0, mask: Any = None) -> Optimizer:
    """COCOB, as ``optax.contrib.cocob``: ``chain(add_decayed_weights, scale_by_learning_rate(lr,
    flip_sign=False), scale_by_cocob)`` (the learning rate scales the gradient fed to COCOB).

    Example:
        >>> import numpy as np
        >>> opt = cocob()
        >>> p = {"w": np.zeros(1)}
        >>> opt.update({"w": np.array([2.0])}, opt.init(p), p)[0]["w"]
        array([-0.01])
    """
    wd = check_hyper("cocob", "weight_decay", weight_decay)
    lr = check_learning_rate("cocob", learning_rate)
    return named_chain(("weight_decay", add_decayed_weights(wd, mask)),
                       ("learning_rate", scale_by_learning_rate(lr, flip_sign=False)),
                       ("cocob", scale_by_cocob(alpha, eps)))

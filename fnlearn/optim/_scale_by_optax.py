"""The directions of the rules fnlearn takes from optax (AdaBelief, Yogi, NovoGrad, Adan, SM3, optimistic
gradient): optax's formulas and defaults, written once per array like ``_scale_by``.

``t`` is the step (1 first); ``c1 = 1 - b1**t``, ``c2 = 1 - b2**t``; ``ema(x, b) = b*x_old + (1-b)*x``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import tree as _tree
from .._types import Params
from ._base import Optimizer, OptState, Updates, check_hyper, check_state, map_leaves
from ._scale_by import _ema, _moments, _root, _zeros

__all__ = ["scale_by_belief", "scale_by_yogi", "scale_by_novograd", "scale_by_adan", "scale_by_sm3",
           "scale_by_optimistic_gradient"]


def _nesterov_or_plain(m: Any, g: Any, b1: float, count: int, nesterov: bool) -> Any:
    """``m/c1``, or optax's Nesterov form ``b1*m/(1-b1**(t+1)) + (1-b1)*g/c1``."""
    c1 = 1.0 - b1 ** count
    if not nesterov:
        return m / c1
    m_hat = m * (b1 / (1.0 - b1 ** (count + 1)))
    m_hat += g * ((1.0 - b1) / c1)
    return m_hat


def scale_by_belief(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-16, eps_root: float = 1e-16, *,
                    nesterov: bool = False) -> Optimizer:
    """AdaBelief's direction (Zhuang et al. 2020), as optax: ``m = ema(g, b1)``;
    ``s = b2*s + (1-b2)*(g - m)**2 + eps_root`` (eps_root is kept in the state);
    ``u = (m/c1) / (sqrt(s/c2) + eps)`` (``nesterov`` as in :func:`scale_by_adam`).

    Returns:
        An :class:`Optimizer`; state ``{"count", "mu", "nu"}``.

    Example:
        >>> import numpy as np
        >>> t = scale_by_belief()
        >>> t.update({"w": np.array([2.0, -3.0])}, t.init({"w": np.zeros(2)}))[0]["w"]
        array([ 1.11111111, -1.11111111])
    """
    b1, b2, eps = _moments("scale_by_belief", b1, b2, eps)
    eps_root = check_hyper("scale_by_belief", "eps_root", eps_root)
    state_keys = frozenset({"count", "mu", "nu"})

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state("scale_by_belief.update", state, state_keys)
        count = int(state["count"]) + 1
        c2 = 1.0 - b2 ** count

        def leaf(g: Any, m: Any, s: Any, p: Any = None) -> tuple[Any, Any, Any]:
            m = _ema(m, g, b1)
            err = g - m
            err *= err
            s = _ema(s, err, b2)
            s += eps_root
            return _nesterov_or_plain(m, g, b1, count, nesterov) / _root(s / c2, 0.0, eps), m, s

        u, mu, nu = map_leaves("scale_by_belief.update", leaf, grads, state["mu"], state["nu"], params=params,
                               labels=("state['mu']", "state['nu']"), n_out=3)
        return u, {"count": count, "mu": mu, "nu": nu}

    return Optimizer(lambda params: {"count": 0, **_zeros(params, "mu", "nu")}, update)


def scale_by_yogi(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-3, eps_root: float = 0.0,
                  initial_accumulator_value: float = 1e-6) -> Optimizer:
    """Yogi's direction (Zaheer et al. 2018), as optax: ``m = ema(g, b1)``;
    ``v = v - (1-b2) * sign(v - g**2) * g**2``; ``u = (m/c1) / (sqrt(v/c2 + eps_root) + eps)``; ``m`` and
    ``v`` start at ``initial_accumulator_value``.

    Returns:
        An :class:`Optimizer`; state ``{"count", "mu", "nu"}``.

    Example:
        >>> import numpy as np
        >>> t = scale_by_yogi(initial_accumulator_value=0.0, eps=0.0)
        >>> t.update({"w": np.array([2.0, -3.0])}, t.init({"w": np.zeros(2)}))[0]["w"]
        array([ 1., -1.])
    """
    b1, b2, eps = _moments("scale_by_yogi", b1, b2, eps)
    eps_root = check_hyper("scale_by_yogi", "eps_root", eps_root)
    start = check_hyper("scale_by_yogi", "initial_accumulator_value", initial_accumulator_value)
    state_keys = frozenset({"count", "mu", "nu"})

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state("scale_by_yogi.update", state, state_keys)
        count = int(state["count"]) + 1
        c1, c2 = 1.0 - b1 ** count, 1.0 - b2 ** count

        def leaf(g: Any, m: Any, v: Any, p: Any = None) -> tuple[Any, Any, Any]:
            m = _ema(m, g, b1)
            g2 = g * g
            v = v - np.sign(v - g2) * g2 * (1.0 - b2)
            return (m / c1) / _root(v / c2, eps_root, eps), m, v

        u, mu, nu = map_leaves("scale_by_yogi.update", leaf, grads, state["mu"], state["nu"], params=params,
                               labels=("state['mu']", "state['nu']"), n_out=3)
        return u, {"count": count, "mu": mu, "nu": nu}

    return Optimizer(lambda params: {"count": 0, **_zeros(params, "mu", "nu", fill=start)}, update)


def scale_by_novograd(b1: float = 0.9, b2: float = 0.25, eps: float = 1e-8, eps_root: float = 0.0,
                      weight_decay: float = 0.0) -> Optimizer:
    """NovoGrad's direction (Ginsburg et al. 2019), as optax: per leaf a scalar second moment
    ``n = ||g||**2`` on step 1, then ``n = b2*n + (1-b2)*||g||**2``; with ``d = g / (sqrt(n + eps_root) +
    eps) + weight_decay*p``, ``m = d`` on step 1, then ``m = b1*m + d``; ``u = m``.

    Returns:
        An :class:`Optimizer`; state ``{"count", "mu": tree like params, "nu": a 0-d array per leaf}``.

    Example:
        >>> import numpy as np
        >>> t = scale_by_novograd(eps=0.0)
        >>> t.update({"w": np.array([3.0, -4.0])}, t.init({"w": np.zeros(2)}))[0]["w"]
        array([ 0.6, -0.8])
    """
    b1, b2, eps = _moments("scale_by_novograd", b1, b2, eps)
    eps_root = check_hyper("scale_by_novograd", "eps_root", eps_root)
    wd = check_hyper("scale_by_novograd", "weight_decay", weight_decay)
    name = "scale_by_novograd.update"
    state_keys = frozenset({"count", "mu", "nu"})

    def init(params: Params) -> OptState:
        return {"count": 0, "mu": _tree.tree_zeros_like(params),
                "nu": _tree.tree_map(lambda p: np.zeros((), p.dtype), params)}

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state(name, state, state_keys)
        if wd and params is None:
            raise ValueError(f"{name}: weight_decay > 0 needs the params: call update(grads, state, params).")
        first = int(state["count"]) == 0
        # checks grads against mu and params, and gives each leaf's squared norm
        sq = map_leaves(name, lambda g, m, p=None: np.asarray(np.vdot(g, g), g.dtype), grads, state["mu"],
                        params=params, labels=("state['mu']",))
        nu = sq if first else _tree.tree_map(lambda s, n: np.asarray(_ema(n, s, b2)), sq, state["nu"])

        def leaf(g: Any, m: Any, n: Any, p: Any = None) -> Any:
            d = g / (float(np.sqrt(n + eps_root)) + eps)
            if wd:
                d += p * wd
            if not first:
                d += m * b1
            return np.asarray(d)  # a 0-d leaf gives NumPy scalars on the way

        rest = (state["mu"], nu) if params is None else (state["mu"], nu, params)
        mu = _tree.tree_map(leaf, grads, *rest)
        return _tree.tree_map(np.copy, mu), {"count": int(state["count"]) + 1, "mu": mu, "nu": nu}

    return Optimizer(init, update)


def scale_by_adan(b1: float = 0.98, b2: float = 0.92, b3: float = 0.99, eps: float = 1e-8,
                  eps_root: float = 0.0) -> Optimizer:
    """Adan's direction (Xie et al. 2022), as optax: with ``diff = g - g_prev`` (0 on step 1),
    ``m = ema(g, b1)``, ``v = ema(diff, b2)``, ``n = ema((g + (1-b2)*diff)**2, b3)``;
    ``u = (m/c1 + (1-b2) * v/c2) / (sqrt(n/c3 + eps_root) + eps)``, ``c3 = 1 - b3**t``.

    Returns:
        An :class:`Optimizer`; state ``{"count", "m", "v", "n", "g"}`` (``g`` the previous gradient).

    Example:
        >>> import numpy as np
        >>> t = scale_by_adan(eps=0.0)
        >>> t.update({"w": np.array([2.0, -3.0])}, t.init({"w": np.zeros(2)}))[0]["w"]
        array([ 1., -1.])
    """
    b1 = check_hyper("scale_by_adan", "b1", b1, high=1.0)
    b2 = check_hyper("scale_by_adan", "b2", b2, high=1.0)
    b3 = check_hyper("scale_by_adan", "b3", b3, high=1.0)
    eps = check_hyper("scale_by_adan", "eps", eps)
    eps_root = check_hyper("scale_by_adan", "eps_root", eps_root)
    keys = ("m", "v", "n", "g")
    state_keys = frozenset({"count", *keys})

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state("scale_by_adan.update", state, state_keys)
        count = int(state["count"]) + 1
        c1, c2, c3 = 1.0 - b1 ** count, 1.0 - b2 ** count, 1.0 - b3 ** count

        def leaf(g: Any, m: Any, v: Any, n: Any, g_prev: Any, p: Any = None) -> tuple[Any, ...]:
            diff = np.zeros_like(g) if count == 1 else g - g_prev
            m, v = _ema(m, g, b1), _ema(v, diff, b2)
            sq = diff * (1.0 - b2)
            sq += g
            sq *= sq
            n = _ema(n, sq, b3)
            u = m / c1
            u += v * ((1.0 - b2) / c2)
            return u / _root(n / c3, eps_root, eps), m, v, n, g.copy()

        u, *trees = map_leaves("scale_by_adan.update", leaf, grads, *[state[k] for k in keys], params=params,
                               labels=tuple(f"state['{k}']" for k in keys), n_out=5)
        return u, {"count": count, **dict(zip(keys, trees))}

    return Optimizer(lambda params: {"count": 0, **_zeros(params, *keys)}, update)


def scale_by_optimistic_gradient(alpha: float = 1.0, beta: float = 1.0) -> Optimizer:
    """Optimistic gradient (Mokhtari et al. 2019), as optax: ``u = (alpha + beta)*g - beta*g_prev``, with
    ``g_prev = g`` on the first step.

    Returns:
        An :class:`Optimizer`; state ``{"count", "previous_gradient"}``.

    Example:
        >>> import numpy as np
        >>> t = scale_by_optimistic_gradient(alpha=1.0, beta=0.5)
        >>> s = t.init({"w": np.zeros(1)})
        >>> u, s = t.update({"w": np.array([2.0])}, s)
        >>> u, s = t.update({"w": np.array([4.0])}, s)
        >>> u["w"]
        array([5.])
    """
    alpha = check_hyper("scale_by_optimistic_gradient", "alpha", alpha, low=-np.inf)
    beta = check_hyper("scale_by_optimistic_gradient", "beta", beta, low=-np.inf)
    state_keys = frozenset({"count", "previous_gradient"})

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state("scale_by_optimistic_gradient.update", state, state_keys)
        first = int(state["count"]) == 0

        def leaf(g: Any, prev: Any, p: Any = None) -> tuple[Any, Any]:
            u = g * (alpha + beta)
            u -= (g if first else prev) * beta
            return u, g.copy()

        u, prev = map_leaves("scale_by_optimistic_gradient.update", leaf, grads, state["previous_gradient"],
                             params=params, labels=("state['previous_gradient']",), n_out=2)
        return u, {"count": int(state["count"]) + 1, "previous_gradient": prev}

    return Optimizer(lambda params: {"count": 0, "previous_gradient": _tree.tree_zeros_like(params)}, update)


def scale_by_sm3(b1: float = 0.9, b2: float = 1.0, eps: float = 1e-8) -> Optimizer:
    """SM3's direction (Anil et al. 2019), as optax: per leaf of ``k >= 2`` axes one accumulator vector
    per axis, ``mu_i`` (length ``shape[i]``); ``a = c*g**2 + b2 * min_i(mu_i broadcast)`` (``c = 1 - b2``,
    or 1 when ``b2 == 1``); vectors and scalars keep ``a = c*g**2 + b2*mu`` elementwise. Then
    ``mu_i = max of a over the other axes``; ``r = g / sqrt(a + eps)`` (0 where ``a == 0``);
    ``u = nu = ema(r, b1)``.

    Returns:
        An :class:`Optimizer`; state ``{"mu": per leaf the concatenated axis vectors (length
        sum(shape), 1 for a scalar), "nu": tree like params}``.

    Example:
        >>> import numpy as np
        >>> t = scale_by_sm3(b1=0.0, eps=0.0)
        >>> t.update({"w": np.array([[3.0, -4.0]])}, t.init({"w": np.zeros((1, 2))}))[0]["w"]
        array([[ 1., -1.]])
    """
    b1 = check_hyper("scale_by_sm3", "b1", b1, high=1.0)
    b2 = check_hyper("scale_by_sm3", "b2", b2, high=1.0)
    eps = check_hyper("scale_by_sm3", "eps", eps)
    c = 1.0 - b2 if b2 != 1.0 else 1.0
    name = "scale_by_sm3.update"
    state_keys = frozenset({"mu", "nu"})

    def init(params: Params) -> OptState:
        return {"mu": _tree.tree_map(lambda p: np.zeros(max(sum(p.shape), 1), p.dtype), params),
                "nu": _tree.tree_zeros_like(params)}

    def step(g: Any, mu: Any, nu: Any) -> tuple[Any, Any, Any]:
        if mu.shape != (max(sum(g.shape), 1),):
            raise ValueError(f"{name}: state['mu'] holds a vector of shape {mu.shape} for a leaf of shape "
                             f"{g.shape}. Pass the state that init returned for these params.")
        if g.ndim < 2:
            acc = g * g * c + mu.reshape(g.shape) * b2
            new_mu = acc.reshape(-1).copy()
        else:
            bounds = np.cumsum((0,) + g.shape)
            views = [mu[bounds[i]:bounds[i + 1]].reshape([-1 if j == i else 1 for j in range(g.ndim)])
                     for i in range(g.ndim)]
            acc = g * g * c + np.minimum.reduce(np.broadcast_arrays(*views)) * b2
            new_mu = np.concatenate([acc.max(axis=tuple(j for j in range(g.ndim) if j != i))
                                     for i in range(g.ndim)])
        with np.errstate(divide="ignore"):
            scale = np.where(acc > 0, 1.0 / np.sqrt(acc + eps), 0.0).astype(g.dtype, copy=False)
        nu = np.asarray(_ema(nu, g * scale, b1))
        return nu, new_mu, nu

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state(name, state, state_keys)
        map_leaves(name, lambda g, n, p=None: None, grads, state["nu"], params=params, labels=("state['nu']",))
        out = _tree.tree_map(lambda g, m, n: _Triple(step(g, m, n)), grads, state["mu"], state["nu"])
        mu = _tree.tree_map(lambda g, t: t.parts[1], grads, out)
        nu = _tree.tree_map(lambda g, t: t.parts[2], grads, out)
        return _tree.tree_map(np.copy, nu), {"mu": mu, "nu": nu}

    return Optimizer(init, update)


class _Triple:
    """A leaf holding a tuple of results (a tuple would be a tree node)."""

    __slots__ = ("parts",)

    def __init__(self, parts: tuple[Any, ...]) -> None:
        self.parts = parts

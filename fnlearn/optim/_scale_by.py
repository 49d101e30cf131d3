"""Adaptive scalings: the direction part of Adam, RMSprop, Adagrad and friends (no learning rate).

Each is written once per array (``leaf``) and lifted to trees by :func:`map_leaves`. Formulas and the
placement of ``eps`` follow ``torch.optim`` (see ``docs/optim.md``); ``t`` is the step number, 1 on the
first update, and ``c1 = 1 - b1**t``, ``c2 = 1 - b2**t`` are the bias corrections.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import tree as _tree
from .._types import Params
from ._base import (Optimizer, OptState, Updates, check_hyper, check_state, map_leaves,
                    moment_transform)

__all__ = ["scale_by_adam", "scale_by_amsgrad", "scale_by_adamax", "scale_by_nadam", "scale_by_rms",
           "scale_by_stddev", "scale_by_rss", "scale_by_adadelta", "scale_by_lion"]


def _zeros(params: Params, *names: str, fill: float = 0.0) -> dict[str, Any]:
    make = np.zeros_like if fill == 0.0 else (lambda p: np.full_like(p, fill))
    return {name: _tree.tree_map(make, params) for name in names}


def _ema(avg: Any, x: Any, decay: float) -> Any:
    """``decay * avg + (1 - decay) * x`` as a new array (``avg`` is not modified)."""
    out = avg * decay
    out += x * (1.0 - decay)
    return out


def _moments(name: str, b1: float, b2: float, eps: float) -> tuple[float, float, float]:
    return (check_hyper(name, "b1", b1, high=1.0), check_hyper(name, "b2", b2, high=1.0),
            check_hyper(name, "eps", eps))


def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, eps_root: float = 0.0, *,
                  nesterov: bool = False) -> Optimizer:
    """Adam's direction: ``m = b1*m + (1-b1)*g``; ``v = b2*v + (1-b2)*g**2``;
    ``u = m_hat / (sqrt(v/c2 + eps_root) + eps)`` with ``m_hat = m/c1``, or with ``nesterov=True``
    (optax's NAdam, Dozat 2016) ``m_hat = b1*m/(1-b1**(t+1)) + (1-b1)*g/c1``.

    Returns:
        An :class:`Optimizer`; state ``{"count": int, "mu": tree, "nu": tree}``.

    Example:
        >>> import numpy as np
        >>> t = scale_by_adam()
        >>> t.update({"w": np.array([2.0, -3.0])}, t.init({"w": np.zeros(2)}))[0]["w"]
        array([ 1., -1.])
    """
    b1, b2, eps = _moments("scale_by_adam", b1, b2, eps)
    eps_root = check_hyper("scale_by_adam", "eps_root", eps_root)

    state_keys = frozenset({"count", "mu", "nu"})

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state("scale_by_adam.update", state, state_keys)
        count = int(state["count"]) + 1
        c1, c2 = 1.0 - b1 ** count, 1.0 - b2 ** count

        def leaf(g: Any, m: Any, v: Any, p: Any = None) -> tuple[Any, Any, Any]:
            m, v = _ema(m, g, b1), _ema(v, g * g, b2)
            if nesterov:
                m_hat = m * (b1 / (1.0 - b1 ** (count + 1)))
                m_hat += g * ((1.0 - b1) / c1)
            else:
                m_hat = m / c1
            return m_hat / _root(v / c2, eps_root, eps), m, v

        u, mu, nu = map_leaves("scale_by_adam.update", leaf, grads, state["mu"], state["nu"],
                               params=params, labels=("state['mu']", "state['nu']"), n_out=3)
        return u, {"count": count, "mu": mu, "nu": nu}

    return Optimizer(lambda params: {"count": 0, **_zeros(params, "mu", "nu")}, update)


def _root(v_hat: Any, eps_root: float, eps: float) -> Any:
    """``sqrt(v_hat + eps_root) + eps``, computed in place in ``v_hat`` (a fresh temporary)."""
    if eps_root:
        v_hat += eps_root
    np.sqrt(v_hat, out=v_hat)
    v_hat += eps
    return v_hat


def scale_by_amsgrad(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, eps_root: float = 0.0) -> Optimizer:
    """AMSGrad as in torch: Adam's moments, ``v_max = max(v_max, v)`` on the *raw* second moment,
    ``u = (m/c1) / (sqrt(v_max/c2 + eps_root) + eps)``.

    Returns:
        An :class:`Optimizer`; state ``{"count", "mu", "nu", "nu_max"}``.

    Example:
        >>> import numpy as np
        >>> t = scale_by_amsgrad()
        >>> t.update({"w": np.array([2.0])}, t.init({"w": np.zeros(1)}))[0]["w"]
        array([1.])
    """
    b1, b2, eps = _moments("scale_by_amsgrad", b1, b2, eps)
    eps_root = check_hyper("scale_by_amsgrad", "eps_root", eps_root)

    state_keys = frozenset({"count", "mu", "nu", "nu_max"})

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state("scale_by_amsgrad.update", state, state_keys)
        count = int(state["count"]) + 1
        c1, c2 = 1.0 - b1 ** count, 1.0 - b2 ** count

        def leaf(g: Any, m: Any, v: Any, v_max: Any, p: Any = None) -> tuple[Any, Any, Any, Any]:
            m, v = _ema(m, g, b1), _ema(v, g * g, b2)
            v_max = np.maximum(v_max, v)
            return (m / c1) / _root(v_max / c2, eps_root, eps), m, v, v_max

        u, mu, nu, nu_max = map_leaves("scale_by_amsgrad.update", leaf, grads, state["mu"], state["nu"],
                                       state["nu_max"], params=params, n_out=4,
                                       labels=("state['mu']", "state['nu']", "state['nu_max']"))
        return u, {"count": count, "mu": mu, "nu": nu, "nu_max": nu_max}

    return Optimizer(lambda params: {"count": 0, **_zeros(params, "mu", "nu", "nu_max")}, update)


def scale_by_adamax(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Optimizer:
    """Adamax (Kingma & Ba 2015, section 7.1) as in torch and optax: ``m = b1*m + (1-b1)*g``;
    ``n = max(b2*n, |g| + eps)``; ``u = (m/c1) / n``.

    Returns:
        An :class:`Optimizer`; state ``{"count", "mu", "nu"}`` (``nu`` is the infinity norm ``n``).

    Example:
        >>> import numpy as np
        >>> t = scale_by_adamax(eps=0.0)
        >>> t.update({"w": np.array([2.0, -4.0])}, t.init({"w": np.zeros(2)}))[0]["w"]
        array([ 1., -1.])
    """
    b1, b2, eps = _moments("scale_by_adamax", b1, b2, eps)

    state_keys = frozenset({"count", "mu", "nu"})

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state("scale_by_adamax.update", state, state_keys)
        count = int(state["count"]) + 1
        c1 = 1.0 - b1 ** count

        def leaf(g: Any, m: Any, n: Any, p: Any = None) -> tuple[Any, Any, Any]:
            m = _ema(m, g, b1)
            a = np.abs(g)
            a += eps
            n = np.maximum(n * b2, a, out=a)
            return (m / c1) / n, m, n

        u, mu, nu = map_leaves("scale_by_adamax.update", leaf, grads, state["mu"], state["nu"],
                               params=params, labels=("state['mu']", "state['nu']"), n_out=3)
        return u, {"count": count, "mu": mu, "nu": nu}

    return Optimizer(lambda params: {"count": 0, **_zeros(params, "mu", "nu")}, update)


def scale_by_nadam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                   momentum_decay: float = 4e-3) -> Optimizer:
    """NAdam as in torch (Dozat 2016, with the momentum schedule).

    ``mu_t = b1 * (1 - 0.5 * 0.96**(t * momentum_decay))``; ``P_t = mu_1 * ... * mu_t``;
    Adam's ``m`` and ``v``; ``d = sqrt(v/c2) + eps``;
    ``u = (1 - mu_t)/(1 - P_t) * g/d + mu_{t+1}/(1 - P_t * mu_{t+1}) * m/d``.
    With ``momentum_decay=0`` the schedule is constant (``mu_t = b1/2``).

    Returns:
        An :class:`Optimizer`; state ``{"count", "mu_product": float, "mu", "nu"}``.

    Example:
        >>> import numpy as np
        >>> t = scale_by_nadam()
        >>> u, s = t.update({"w": np.array([1.0])}, t.init({"w": np.zeros(1)}))
        >>> round(float(u["w"][0]), 6), round(s["mu_product"], 6)
        (1.056452, 0.450073)
    """
    b1, b2, eps = _moments("scale_by_nadam", b1, b2, eps)
    decay = check_hyper("scale_by_nadam", "momentum_decay", momentum_decay)

    state_keys = frozenset({"count", "mu_product", "mu", "nu"})

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state("scale_by_nadam.update", state, state_keys)
        count = int(state["count"]) + 1
        c2 = 1.0 - b2 ** count
        mu_t = b1 * (1.0 - 0.5 * 0.96 ** (count * decay))
        mu_next = b1 * (1.0 - 0.5 * 0.96 ** ((count + 1) * decay))
        product = float(state["mu_product"]) * mu_t
        coef_g, coef_m = (1.0 - mu_t) / (1.0 - product), mu_next / (1.0 - product * mu_next)

        def leaf(g: Any, m: Any, v: Any, p: Any = None) -> tuple[Any, Any, Any]:
            m, v = _ema(m, g, b1), _ema(v, g * g, b2)
            u = g * coef_g
            u += m * coef_m
            return u / _root(v / c2, 0.0, eps), m, v

        u, mu, nu = map_leaves("scale_by_nadam.update", leaf, grads, state["mu"], state["nu"],
                               params=params, labels=("state['mu']", "state['nu']"), n_out=3)
        return u, {"count": count, "mu_product": product, "mu": mu, "nu": nu}

    return Optimizer(lambda params: {"count": 0, "mu_product": 1.0, **_zeros(params, "mu", "nu")}, update)


def scale_by_rms(decay: float = 0.99, eps: float = 1e-8, initial_scale: float = 0.0, *,
                 eps_in_sqrt: bool = False) -> Optimizer:
    """RMSprop's direction as in torch: ``v = decay*v + (1-decay)*g**2``; ``u = g / (sqrt(v) + eps)``,
    or ``u = g / sqrt(v + eps)`` with ``eps_in_sqrt=True`` (optax's default; fnlearn's follows torch).

    Returns:
        An :class:`Optimizer`; state ``{"nu": tree}`` (initialised to ``initial_scale``).

    Example:
        >>> import numpy as np
        >>> t = scale_by_rms(decay=0.75, eps=0.0)
        >>> t.update({"w": np.array([2.0])}, t.init({"w": np.zeros(1)}))[0]["w"]
        array([2.])
    """
    decay = check_hyper("scale_by_rms", "decay", decay, high=1.0)
    eps = check_hyper("scale_by_rms", "eps", eps)

    inside, outside = (eps, 0.0) if eps_in_sqrt else (0.0, eps)

    def leaf(g: Any, v: Any, p: Any = None) -> tuple[Any, Any]:
        v = _ema(v, g * g, decay)
        return g / _root(v.copy(), inside, outside), v

    return moment_transform("scale_by_rms", ('nu',), leaf, lambda params: _zeros(params, "nu", fill=initial_scale))


def scale_by_stddev(decay: float = 0.99, eps: float = 1e-8, initial_scale: float = 0.0, *,
                    eps_in_sqrt: bool = False) -> Optimizer:
    """Centered RMSprop as in torch: ``m = decay*m + (1-decay)*g``, ``v`` as in :func:`scale_by_rms`,
    ``u = g / (sqrt(v - m**2) + eps)``, or ``g / sqrt(v - m**2 + eps)`` with ``eps_in_sqrt=True``.

    Returns:
        An :class:`Optimizer`; state ``{"mu": tree, "nu": tree}``.

    Example:
        >>> import numpy as np
        >>> t = scale_by_stddev(decay=0.75, eps=0.0)
        >>> t.update({"w": np.array([2.0])}, t.init({"w": np.zeros(1)}))[0]["w"]
        array([2.30940108])
    """
    decay = check_hyper("scale_by_stddev", "decay", decay, high=1.0)
    eps = check_hyper("scale_by_stddev", "eps", eps)

    inside, outside = (eps, 0.0) if eps_in_sqrt else (0.0, eps)

    def leaf(g: Any, m: Any, v: Any, p: Any = None) -> tuple[Any, Any, Any]:
        m, v = _ema(m, g, decay), _ema(v, g * g, decay)
        return g / _root(v - m * m, inside, outside), m, v

    return moment_transform("scale_by_stddev", ('mu', 'nu'), leaf, lambda params: {**_zeros(params, "mu"), **_zeros(params, "nu", fill=initial_scale)})


def scale_by_rss(initial_accumulator_value: float = 0.0, eps: float = 1e-10) -> Optimizer:
    """Adagrad's direction as in torch: ``s = s + g**2``; ``u = g / (sqrt(s) + eps)``.

    Returns:
        An :class:`Optimizer`; state ``{"sum_of_squares": tree}``.

    Example:
        >>> import numpy as np
        >>> t = scale_by_rss()
        >>> t.update({"w": np.array([-2.0])}, t.init({"w": np.zeros(1)}))[0]["w"]
        array([-1.])
    """
    start = check_hyper("scale_by_rss", "initial_accumulator_value", initial_accumulator_value)
    eps = check_hyper("scale_by_rss", "eps", eps)

    def leaf(g: Any, s: Any, p: Any = None) -> tuple[Any, Any]:
        s = s + g * g
        return g / _root(s.copy(), 0.0, eps), s

    return moment_transform("scale_by_rss", ('sum_of_squares',), leaf, lambda params: _zeros(params, "sum_of_squares", fill=start))


def scale_by_adadelta(rho: float = 0.9, eps: float = 1e-6) -> Optimizer:
    """Adadelta as in torch: ``e_g = rho*e_g + (1-rho)*g**2``;
    ``u = sqrt(e_x + eps) / sqrt(e_g + eps) * g``; ``e_x = rho*e_x + (1-rho)*u**2``.

    Returns:
        An :class:`Optimizer`; state ``{"e_g": tree, "e_x": tree}``.

    Example:
        >>> import numpy as np
        >>> t = scale_by_adadelta(rho=0.0, eps=1.0)
        >>> t.update({"w": np.array([0.0])}, t.init({"w": np.zeros(1)}))[0]["w"]
        array([0.])
    """
    rho = check_hyper("scale_by_adadelta", "rho", rho, high=1.0)
    eps = check_hyper("scale_by_adadelta", "eps", eps)

    def leaf(g: Any, e_g: Any, e_x: Any, p: Any = None) -> tuple[Any, Any, Any]:
        e_g = _ema(e_g, g * g, rho)
        u = np.sqrt((e_x + eps) / (e_g + eps))
        u *= g
        return u, e_g, _ema(e_x, u * u, rho)

    return moment_transform("scale_by_adadelta", ('e_g', 'e_x'), leaf, lambda params: _zeros(params, "e_g", "e_x"))


def scale_by_lion(b1: float = 0.9, b2: float = 0.99) -> Optimizer:
    """Lion's direction (Chen et al. 2023): ``u = sign(b1*m + (1-b1)*g)``; then
    ``m = b2*m + (1-b2)*g``.

    Returns:
        An :class:`Optimizer`; state ``{"mu": tree}``.

    Example:
        >>> import numpy as np
        >>> t = scale_by_lion()
        >>> t.update({"w": np.array([0.3, -2.0])}, t.init({"w": np.zeros(2)}))[0]["w"]
        array([ 1., -1.])
    """
    b1 = check_hyper("scale_by_lion", "b1", b1, high=1.0)
    b2 = check_hyper("scale_by_lion", "b2", b2, high=1.0)

    def leaf(g: Any, m: Any, p: Any = None) -> tuple[Any, Any]:
        return np.sign(_ema(m, g, b1)), _ema(m, g, b2)

    return moment_transform("scale_by_lion", ('mu',), leaf, lambda params: _zeros(params, "mu"))

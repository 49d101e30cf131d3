"""Transforms that carry something across steps: an exponential moving average of the updates, updates
summed and released every ``k`` steps, and annealed Gaussian noise. optax's names and rules.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import tree as _tree
from .._types import Params
from ._base import Optimizer, OptState, Updates, check_hyper, check_state, map_leaves

__all__ = ["ema", "apply_every", "add_noise"]


def ema(decay: float, debias: bool = True) -> Optimizer:
    """Exponential moving average of the updates: ``e = decay*e + (1-decay)*g``; ``u = e / (1 -
    decay**t)`` (``debias``) or ``u = e``.

    Returns:
        An :class:`Optimizer`; state ``{"count": int, "ema": tree like params}``.

    Example:
        >>> import numpy as np
        >>> t = ema(0.5)
        >>> u, s = t.update({"w": np.array([2.0])}, t.init({"w": np.zeros(1)}))
        >>> u["w"], s["ema"]["w"]
        (array([2.]), array([1.]))
    """
    rate = check_hyper("ema", "decay", decay, high=1.0)
    state_keys = frozenset({"count", "ema"})

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state("ema.update", state, state_keys)
        count = int(state["count"]) + 1
        scale = 1.0 / (1.0 - rate ** count) if debias else 1.0

        def leaf(g: Any, e: Any) -> tuple[Any, Any]:
            e = e * rate
            e += g * (1.0 - rate)
            return (e * scale if debias else e.copy()), e

        u, new = map_leaves("ema.update", leaf, grads, state["ema"], labels=("state['ema']",), n_out=2)
        return u, {"count": count, "ema": new}

    return Optimizer(lambda params: {"count": 0, "ema": _tree.tree_zeros_like(params)}, update)


def apply_every(k: int = 1) -> Optimizer:
    """Sum the updates of ``k`` steps and release the sum on every ``k``-th step, zeros in between
    (optax's ``apply_every``; the sum, where :func:`MultiSteps` takes the mean and steps its rule once).

    Returns:
        An :class:`Optimizer`; state ``{"count": int (0..k-1), "grad_acc": tree like params}``.

    Example:
        >>> import numpy as np
        >>> t = apply_every(2)
        >>> s = t.init({"w": np.zeros(1)})
        >>> u1, s = t.update({"w": np.array([1.0])}, s)
        >>> u2, s = t.update({"w": np.array([3.0])}, s)
        >>> u1["w"], u2["w"]
        (array([0.]), array([4.]))
    """
    every = int(check_hyper("apply_every", "k", k, low=1))
    state_keys = frozenset({"count", "grad_acc"})

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state("apply_every.update", state, state_keys)
        count = int(state["count"]) % every
        emit = count == every - 1

        def leaf(g: Any, acc: Any) -> tuple[Any, Any]:
            acc = acc + g if count else g.copy()
            return (acc.copy() if emit else np.zeros_like(g)), acc

        u, acc = map_leaves("apply_every.update", leaf, grads, state["grad_acc"],
                            labels=("state['grad_acc']",), n_out=2)
        return u, {"count": (count + 1) % every, "grad_acc": acc}

    return Optimizer(lambda params: {"count": 0, "grad_acc": _tree.tree_zeros_like(params)}, update)


def add_noise(eta: float, gamma: float, key: int = 0) -> Optimizer:
    """Annealed Gaussian gradient noise (Neelakantan et al. 2015): ``u = g + sqrt(eta / t**gamma) * z``,
    ``z ~ N(0, 1)`` elementwise, ``t`` the step (1 first).

    The noise of step ``t`` is drawn from ``numpy.random.default_rng([key, t])``, leaf by leaf in
    :func:`fnlearn.tree.tree_leaves` order, so a run is reproducible and a saved state resumes with the
    same draws; the numbers differ from optax's (jax's generator).

    Args:
        eta: the initial variance ``>= 0``.
        gamma: the decay exponent of the variance ``>= 0``.
        key: a non-negative integer seed.

    Returns:
        An :class:`Optimizer`; state ``{"count": int}``.

    Example:
        >>> import numpy as np
        >>> t = add_noise(eta=0.0, gamma=0.55, key=1)
        >>> t.update({"w": np.ones(2)}, t.init(None))[0]["w"]
        array([1., 1.])
    """
    variance = check_hyper("add_noise", "eta", eta)
    decay = check_hyper("add_noise", "gamma", gamma)
    if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or key < 0:
        raise TypeError(f"add_noise: key must be a non-negative integer seed, got {key!r}.")
    seed = int(key)
    state_keys = frozenset({"count"})

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state("add_noise.update", state, state_keys)
        count = int(state["count"]) + 1
        std = float(np.sqrt(variance / count ** decay))
        rng = np.random.default_rng([seed, count])

        def leaf(g: Any) -> Any:
            noise = rng.standard_normal(g.shape, dtype=g.dtype if g.dtype == np.float32 else np.float64)
            noise *= std
            noise += g
            return noise.astype(g.dtype, copy=False)

        return map_leaves("add_noise.update", leaf, grads), {"count": count}

    return Optimizer(lambda params: {"count": 0}, update)

"""Small gradient transformations that scale, decay, clip and accumulate updates.

Each returns an :class:`Optimizer`. In a :func:`chain`, each one receives the previous one's output as
its ``grads``; the comments below call that input ``g`` and the output ``u``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import tree as _tree
from .._types import Params
from ._base import (Optimizer, OptState, ScalarOrSchedule, Updates, check_hyper, check_learning_rate, check_state,
                    declare_scalar, map_leaves, moment_transform, resolve)

__all__ = ["identity", "set_to_zero", "scale", "scale_by_learning_rate", "scale_by_schedule", "trace",
           "add_decayed_weights", "clip", "clip_by_global_norm", "scale_by_trust_ratio"]


def _stateless(name: str, rule: Any, *, needs_params: bool = False, factor: float | None = None) -> Optimizer:
    """An Optimizer with state ``{}`` whose update maps ``rule(g[, p])`` over the leaves.

    ``factor``: the rule is ``g * factor`` (declared to :func:`fnlearn.train_step` with ``declare_scalar``).
    """
    def init(params: Params) -> OptState:
        return {}

    state_keys = frozenset()

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state(f"{name}.update", state, state_keys)
        if needs_params and params is None:
            raise ValueError(f"{name}.update needs the params: call update(grads, state, params).")
        return map_leaves(f"{name}.update", rule, grads, params=params), state

    if factor is not None:
        def scalar(state: OptState) -> tuple[float, OptState]:
            check_state(f"{name}.update", state, state_keys)
            return factor, state

        declare_scalar(update, scalar)
    return Optimizer(init, update)


def identity() -> Optimizer:
    """Pass the updates through unchanged (``u = g``); state ``{}``.

    Example:
        >>> import numpy as np
        >>> identity().update({"w": np.ones(2)}, {})[0]["w"]
        array([1., 1.])
    """
    return _stateless("identity", lambda g, p=None: g, factor=1.0)


def set_to_zero() -> Optimizer:
    """Replace every update by zeros (``u = 0``), e.g. to freeze a group in :func:`partition`.

    Example:
        >>> import numpy as np
        >>> set_to_zero().update({"w": np.ones(2)}, {})[0]["w"]
        array([0., 0.])
    """
    return _stateless("set_to_zero", lambda g, p=None: np.zeros_like(g))


def scale(step_size: float) -> Optimizer:
    """Multiply the updates by a constant: ``u = step_size * g``; state ``{}``.

    Example:
        >>> import numpy as np
        >>> scale(-0.5).update({"w": np.ones(2, np.float32)}, {})[0]["w"]
        array([-0.5, -0.5], dtype=float32)
    """
    factor = check_hyper("scale", "step_size", step_size, low=-np.inf)
    return _stateless("scale", lambda g, p=None: g * factor, factor=factor)


def scale_by_schedule(step_size_fn: Any) -> Optimizer:
    """Multiply the updates by ``step_size_fn(count)``; state ``{"count": int}``.

    Example:
        >>> import numpy as np
        >>> t = scale_by_schedule(lambda count: 1.0 / (count + 1))
        >>> u, s = t.update({"w": np.ones(1)}, t.init(None))
        >>> u, s = t.update({"w": np.ones(1)}, s)
        >>> u["w"], s
        (array([0.5]), {'count': 2})
    """
    if not callable(step_size_fn):
        raise TypeError(f"scale_by_schedule: step_size_fn must be a function of the step count, got "
                        f"{step_size_fn!r}. For a constant, use scale(value).")
    return _counted_scale("scale_by_schedule", step_size_fn, 1.0)


def scale_by_learning_rate(learning_rate: ScalarOrSchedule, *, flip_sign: bool = True) -> Optimizer:
    """``u = -learning_rate * g`` (``+`` with ``flip_sign=False``); the rate may be a schedule.

    Args:
        learning_rate: a number ``>= 0`` or a schedule (called with the step count, 0 first).
        flip_sign: negate, so that a descent direction becomes a descent step.

    Returns:
        An :class:`Optimizer` with state ``{"count": int}``.

    Example:
        >>> import numpy as np
        >>> t = scale_by_learning_rate(0.1)
        >>> t.update({"w": np.ones(2)}, t.init(None))[0]["w"]
        array([-0.1, -0.1])
    """
    lr = check_learning_rate("scale_by_learning_rate", learning_rate)
    return _counted_scale("scale_by_learning_rate", lr, -1.0 if flip_sign else 1.0)


def _counted_scale(name: str, value: ScalarOrSchedule, sign: float) -> Optimizer:
    def init(params: Params) -> OptState:
        return {"count": 0}

    state_keys = frozenset({"count"})

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state(f"{name}.update", state, state_keys)
        count = int(state["count"])
        factor = sign * resolve(value, count)
        return map_leaves(f"{name}.update", lambda g, p=None: g * factor, grads, params=params), \
            {"count": count + 1}

    def scalar(state: OptState) -> tuple[float, OptState]:
        check_state(f"{name}.update", state, state_keys)
        count = int(state["count"])
        return sign * resolve(value, count), {"count": count + 1}

    declare_scalar(update, scalar)
    return Optimizer(init, update)


def trace(decay: float, nesterov: bool = False) -> Optimizer:
    """Momentum: ``t = decay * t + g``; ``u = t``, or ``u = g + decay * t`` with Nesterov.

    With zero-initialised ``t`` this is ``torch.optim.SGD``'s buffer for ``dampening=0``.

    Returns:
        An :class:`Optimizer` with state ``{"trace": tree like params}``.

    Example:
        >>> import numpy as np
        >>> t = trace(0.9)
        >>> s = t.init({"w": np.zeros(1)})
        >>> for _ in range(2):
        ...     u, s = t.update({"w": np.ones(1)}, s)
        >>> u["w"]
        array([1.9])
    """
    mom = check_hyper("trace", "decay", decay)

    def leaf(g: Any, t: Any, p: Any = None) -> tuple[Any, Any]:
        t = t * mom
        t += g
        if not nesterov:
            return t, t
        u = t * mom
        u += g
        return u, t

    return moment_transform("trace", ("trace",), leaf,
                            lambda params: {"trace": _tree.tree_zeros_like(params)})


def add_decayed_weights(weight_decay: float = 0.0, mask: Any = None) -> Optimizer:
    """Add the decay term: ``u = g + weight_decay * p`` (needs ``params`` in ``update`` unless 0).

    Placed before :func:`scale_by_learning_rate` in a chain, the decay is scaled by the learning rate
    (torch's AdamW and optax's ``adamw``); placed before an adaptive scaling it is plain L2.

    Args:
        weight_decay: the coefficient ``>= 0``.
        mask: None (decay every leaf), or a tree of booleans with the structure of the params (or a
            prefix of it), or a function ``params -> such a tree``. False leaves are not decayed.

    Example:
        >>> import numpy as np
        >>> params = {"w": np.ones(2), "b": np.ones(2)}
        >>> t = add_decayed_weights(0.1, mask={"w": True, "b": False})
        >>> u, _ = t.update({"w": np.zeros(2), "b": np.zeros(2)}, t.init(params), params)
        >>> u["w"], u["b"]
        (array([0.1, 0.1]), array([0., 0.]))
    """
    wd = check_hyper("add_decayed_weights", "weight_decay", weight_decay)

    def leaf(g: Any, p: Any) -> Any:
        u = p * wd
        u += g
        return u

    if not wd:  # nothing to add: params are not needed
        plain = _stateless("add_decayed_weights", lambda g, p=None: g)
    else:
        plain = _stateless("add_decayed_weights", leaf, needs_params=True)
    if mask is None:
        return plain
    from ._wrappers import masked
    return masked(plain, mask)


def clip(max_delta: float) -> Optimizer:
    """Clip every element to ``[-max_delta, max_delta]``; state ``{}``.

    Example:
        >>> import numpy as np
        >>> clip(1.0).update({"w": np.array([-3.0, 0.5, 2.0])}, {})[0]["w"]
        array([-1. ,  0.5,  1. ])
    """
    bound = check_hyper("clip", "max_delta", max_delta)
    return _stateless("clip", lambda g, p=None: np.clip(g, -bound, bound))


def clip_by_global_norm(max_norm: float) -> Optimizer:
    """Rescale all updates together so that their global L2 norm is at most ``max_norm``.

    ``n = sqrt(sum of squares over all leaves)``; ``u = g`` if ``n <= max_norm`` else
    ``g * max_norm / n`` (optax's rule). State ``{}``.

    Example:
        >>> import numpy as np
        >>> clip_by_global_norm(1.0).update({"w": np.array([3.0, 4.0])}, {})[0]["w"]
        array([0.6, 0.8])
    """
    bound = check_hyper("clip_by_global_norm", "max_norm", max_norm)

    def init(params: Params) -> OptState:
        return {}

    state_keys = frozenset()

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state("clip_by_global_norm.update", state, state_keys)
        norm = _tree.tree_global_norm(grads)
        factor = 1.0 if norm <= bound else bound / norm
        return map_leaves("clip_by_global_norm.update", lambda g, p=None: g * factor, grads,
                          params=params), state

    return Optimizer(init, update)


def scale_by_trust_ratio(min_norm: float = 0.0, trust_coefficient: float = 1.0,
                         eps: float = 0.0) -> Optimizer:
    """LAMB/LARS layer-wise trust ratio: ``u = g * trust_coefficient * ||p|| / (||g|| + eps)``.

    Norms are per leaf (``max(norm, min_norm)``); the ratio is 1 when either norm is zero (optax's
    rule). Needs ``params`` in ``update``. State ``{}``.

    Example:
        >>> import numpy as np
        >>> params = {"w": np.array([3.0, 4.0])}
        >>> scale_by_trust_ratio().update({"w": np.array([0.0, 0.5])}, {}, params)[0]["w"]
        array([0., 5.])
    """
    floor = check_hyper("scale_by_trust_ratio", "min_norm", min_norm)
    coef = check_hyper("scale_by_trust_ratio", "trust_coefficient", trust_coefficient)
    tiny = check_hyper("scale_by_trust_ratio", "eps", eps)

    def leaf(g: Any, p: Any) -> Any:
        p_norm = max(float(np.linalg.norm(p)), floor)
        g_norm = max(float(np.linalg.norm(g)), floor)
        if p_norm == 0.0 or g_norm == 0.0:
            return g.copy()
        return g * (coef * p_norm / (g_norm + tiny))

    return _stateless("scale_by_trust_ratio", leaf, needs_params=True)

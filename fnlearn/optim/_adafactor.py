"""Adafactor (Shazeer & Stern 2018) with optax's names, defaults and formulas: a factored estimate of the
squared gradients (a row and a column vector per matrix instead of a full array).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import tree as _tree
from .._types import Params
from ._accumulating import ema
from ._base import (Optimizer, OptState, ScalarOrSchedule, Updates, check_hyper, check_learning_rate,
                    check_state, map_leaves, named_chain)
from ._shaping import clip_by_block_rms
from ._transforms import _stateless, add_decayed_weights, scale, scale_by_learning_rate

__all__ = ["scale_by_factored_rms", "scale_by_param_block_rms", "adafactor"]


def _factored_dims(shape: tuple[int, ...], factored: bool, min_size: int) -> tuple[int, int] | None:
    """The two largest axes ``(d1, d0)`` (``d0`` the largest) when the second largest is ``>= min_size``."""
    if not factored or len(shape) < 2:
        return None
    order = np.argsort(shape)
    if shape[order[-2]] < min_size:
        return None
    return int(order[-2]), int(order[-1])


def _decay_rate(step: int, exponent: float) -> float:
    """``1 - (step + 1)**-exponent``, computed in float32 as optax does (``_decay_rate_pow``)."""
    return float(np.float32(1.0) - np.float32(step + 1) ** np.float32(-exponent))


class _Leaf:
    """One leaf's results; a tuple would be a tree node."""

    __slots__ = ("update", "v_row", "v_col", "v")

    def __init__(self, update: Any, v_row: Any, v_col: Any, v: Any) -> None:
        self.update, self.v_row, self.v_col, self.v = update, v_row, v_col, v


def scale_by_factored_rms(factored: bool = True, decay_rate: float = 0.8, step_offset: int = 0,
                          min_dim_size_to_factor: int = 128, epsilon: float = 1e-30) -> Optimizer:
    """Adafactor's scaling, as optax: with ``beta = 1 - (t - step_offset)**-decay_rate`` (float32, as
    optax) and ``s = g**2 + epsilon``: for a leaf whose two largest axes ``d1, d0`` have
    ``shape[d1] >= min_dim_size_to_factor``, ``R = beta*R + (1-beta)*mean(s, axis=d0)``,
    ``C = beta*C + (1-beta)*mean(s, axis=d1)``, ``u = g / sqrt(R/mean(R) outer C)``; otherwise
    ``v = beta*v + (1-beta)*s``, ``u = g / sqrt(v)``. Needs ``params`` (as optax).

    Returns:
        An :class:`Optimizer`; state ``{"count", "v_row", "v_col", "v"}`` (per leaf; unused ones ``(1,)``).

    Example:
        >>> import numpy as np
        >>> t = scale_by_factored_rms()
        >>> p = {"w": np.zeros(2)}
        >>> t.update({"w": np.array([2.0, -2.0])}, t.init(p), p)[0]["w"]
        array([ 1., -1.])
    """
    decay = check_hyper("scale_by_factored_rms", "decay_rate", decay_rate)
    offset = int(check_hyper("scale_by_factored_rms", "step_offset", step_offset))
    min_size = int(check_hyper("scale_by_factored_rms", "min_dim_size_to_factor", min_dim_size_to_factor))
    eps = check_hyper("scale_by_factored_rms", "epsilon", epsilon)
    name = "scale_by_factored_rms.update"
    state_keys = frozenset({"count", "v_row", "v_col", "v"})

    def init_leaf(p: Any) -> _Leaf:
        one = np.zeros(1, p.dtype)
        dims = _factored_dims(p.shape, factored, min_size)
        if dims is None:
            return _Leaf(None, one, one.copy(), np.zeros_like(p))
        d1, d0 = dims
        return _Leaf(None, np.zeros(np.delete(p.shape, d0), p.dtype), np.zeros(np.delete(p.shape, d1), p.dtype),
                     one)

    def init(params: Params) -> OptState:
        leaves = _tree.tree_map(init_leaf, params)
        return {"count": 0, **{k: _tree.tree_map(lambda p, o: getattr(o, k), params, leaves)
                               for k in ("v_row", "v_col", "v")}}

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state(name, state, state_keys)
        if params is None:
            raise ValueError(f"{name} needs the params: call update(grads, state, params).")
        map_leaves(name, lambda g, p: None, grads, params=params)  # structure, shapes and dtypes
        count = int(state["count"])
        beta = _decay_rate(count - offset, decay)

        def leaf(g: Any, v_row: Any, v_col: Any, v: Any, p: Any) -> _Leaf:
            sq = g * g
            sq += eps
            dims = _factored_dims(g.shape, factored, min_size)
            if dims is None:
                if v.shape != g.shape:
                    raise ValueError(f"{name}: state['v'] has shape {v.shape} for a leaf of shape {g.shape}.")
                new_v = (v * beta + sq * (1.0 - beta)).astype(g.dtype, copy=False)
                return _Leaf(np.asarray(g * new_v ** -0.5), v_row, v_col, np.asarray(new_v))
            d1, d0 = dims
            new_row = (v_row * beta + sq.mean(axis=d0) * (1.0 - beta)).astype(g.dtype, copy=False)
            new_col = (v_col * beta + sq.mean(axis=d1) * (1.0 - beta)).astype(g.dtype, copy=False)
            reduced = d1 - 1 if d1 > d0 else d1
            row_factor = (new_row / new_row.mean(axis=reduced, keepdims=True)) ** -0.5
            u = g * np.expand_dims(row_factor, d0) * np.expand_dims(new_col ** -0.5, d1)
            return _Leaf(u, new_row, new_col, v)

        out = _tree.tree_map(leaf, grads, state["v_row"], state["v_col"], state["v"], params)
        pick = {k: _tree.tree_map(lambda g, o, k=k: getattr(o, k), grads, out)
                for k in ("update", "v_row", "v_col", "v")}
        return pick["update"], {"count": count + 1, "v_row": pick["v_row"], "v_col": pick["v_col"], "v": pick["v"]}

    return Optimizer(init, update)


def scale_by_param_block_rms(min_scale: float = 1e-3) -> Optimizer:
    """``u = g * max(sqrt(mean(p**2)), min_scale)`` per leaf (optax's); needs ``params``; state ``{}``.

    Example:
        >>> import numpy as np
        >>> p = {"w": np.array([3.0, -3.0])}
        >>> scale_by_param_block_rms().update({"w": np.ones(2)}, {}, p)[0]["w"]
        array([3., 3.])
    """
    floor = check_hyper("scale_by_param_block_rms", "min_scale", min_scale)

    def leaf(g: Any, p: Any) -> Any:
        rms = float(np.sqrt(np.mean(p * p))) if p.size else 0.0
        return g * max(rms, floor)

    return _stateless("scale_by_param_block_rms", leaf, needs_params=True)


def adafactor(learning_rate: ScalarOrSchedule | None = None, min_dim_size_to_factor: int = 128,
              decay_rate: float = 0.8, decay_offset: int = 0, multiply_by_parameter_scale: bool = True,
              clipping_threshold: float | None = 1.0, momentum: float | None = None,
              weight_decay_rate: float | None = None, eps: float = 1e-30, factored: bool = True,
              weight_decay_mask: Any = None) -> Optimizer:
    """Adafactor (Shazeer & Stern 2018), as ``optax.adafactor``: ``named_chain`` of
    :func:`scale_by_factored_rms`, ``clip_by_block_rms(clipping_threshold)``, ``* learning_rate``,
    :func:`scale_by_param_block_rms` (``multiply_by_parameter_scale``), ``ema(momentum, debias=False)``,
    ``+ weight_decay_rate * p``, ``* -1``, each only when enabled. With ``learning_rate=None`` the
    step is relative to the parameter scale alone (optax's default). optax keeps the momentum in
    float32 whatever the params; fnlearn keeps the params' dtype.

    Example:
        >>> import numpy as np
        >>> opt = adafactor(0.1)
        >>> p = {"w": np.full(2, 2.0)}
        >>> opt.update({"w": np.array([5.0, -5.0])}, opt.init(p), p)[0]["w"]
        array([-0.2,  0.2])
    """
    parts = [("factored_rms", scale_by_factored_rms(factored, decay_rate, decay_offset, min_dim_size_to_factor,
                                                    eps))]
    if clipping_threshold is not None:
        parts.append(("clip", clip_by_block_rms(clipping_threshold)))
    if learning_rate is not None:
        parts.append(("learning_rate", scale_by_learning_rate(check_learning_rate("adafactor", learning_rate),
                                                              flip_sign=False)))
    if multiply_by_parameter_scale:
        parts.append(("param_scale", scale_by_param_block_rms()))
    if momentum is not None:
        parts.append(("momentum", ema(momentum, debias=False)))
    if weight_decay_rate is not None:
        parts.append(("weight_decay", add_decayed_weights(check_hyper("adafactor", "weight_decay_rate",
                                                                      weight_decay_rate), weight_decay_mask)))
    parts.append(("descend", scale(-1.0)))
    return named_chain(*parts)

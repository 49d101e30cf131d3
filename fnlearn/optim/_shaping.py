"""Stateless transforms that reshape the updates leaf by leaf: signs, centring, clipping per block or
per unit, NaNs to zero, and a non-negativity constraint on the parameters. optax's names and rules.

``g`` is the incoming update of one leaf, ``p`` the matching parameter, ``u`` the outgoing update.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._types import Params
from ._base import Optimizer, OptState, Updates, check_hyper, check_state, map_leaves
from ._transforms import _stateless

__all__ = ["scale_by_sign", "centralize", "clip_by_block_rms", "adaptive_grad_clip", "zero_nans",
           "keep_params_nonnegative"]


def scale_by_sign() -> Optimizer:
    """``u = sign(g)`` (signSGD, Bernstein et al. 2018); state ``{}``.

    Example:
        >>> import numpy as np
        >>> scale_by_sign().update({"w": np.array([-0.2, 0.0, 3.0])}, {})[0]["w"]
        array([-1.,  0.,  1.])
    """
    return _stateless("scale_by_sign", lambda g, p=None: np.sign(g))


def _centred(g: Any, p: Any = None) -> Any:
    if g.ndim < 2:
        return g.copy()
    return g - g.mean(axis=tuple(range(1, g.ndim)), keepdims=True)


def centralize() -> Optimizer:
    """Gradient centralization (Yong et al. 2020): for a leaf with 2 or more axes, subtract the mean over
    all axes but the first, ``u = g - mean(g, axis=1..)``; vectors and scalars pass through. State ``{}``.

    Example:
        >>> import numpy as np
        >>> centralize().update({"w": np.array([[1.0, 3.0], [0.0, 4.0]])}, {})[0]["w"]
        array([[-1.,  1.],
               [-2.,  2.]])
    """
    return _stateless("centralize", _centred)


def clip_by_block_rms(threshold: float) -> Optimizer:
    """Clip each leaf to a root-mean-square of at most ``threshold``:
    ``u = g / max(1, sqrt(mean(g**2)) / threshold)``; state ``{}``.

    Example:
        >>> import numpy as np
        >>> clip_by_block_rms(1.0).update({"w": np.array([3.0, -3.0])}, {})[0]["w"]
        array([ 1., -1.])
    """
    bound = check_hyper("clip_by_block_rms", "threshold", threshold)

    def leaf(g: Any, p: Any = None) -> Any:
        rms = float(np.sqrt(np.mean(g * g))) if g.size else 0.0
        return g / max(1.0, rms / bound)

    return _stateless("clip_by_block_rms", leaf)


def _unitwise_norm(x: Any) -> Any:
    """The L2 norm of each output unit, broadcast to ``x``'s shape (optax's ``unitwise_norm``): the whole
    array for scalars and vectors, axis 0 for ``(in, out)`` and ``(heads, in, out)`` weights, all axes but
    the last for convolution kernels ``(h, w, in, out)`` and ``(d, h, w, in, out)``."""
    if np.squeeze(x).ndim <= 1:
        axes: Any = None
    elif x.ndim in (2, 3):
        axes = 0
    elif x.ndim in (4, 5):
        axes = tuple(range(x.ndim - 1))
    else:
        raise ValueError(f"adaptive_grad_clip: expected leaves with at most 5 axes, got shape {x.shape}. "
                         "Mask such leaves out with optim.masked.")
    return np.broadcast_to(np.sqrt(np.sum(x * x, axis=axes, keepdims=True)), x.shape)


def adaptive_grad_clip(clipping: float, eps: float = 1e-3) -> Optimizer:
    """Adaptive gradient clipping (Brock et al. 2021, NFNets), unit by unit:
    ``max_norm = clipping * max(||p_unit||, eps)``; ``u = g`` where ``||g_unit|| < max_norm``, else
    ``g * max_norm / max(||g_unit||, 1e-6)``. Units are as in optax's ``unitwise_norm`` (axis 0 of a
    dense weight ``(in, out)``). Needs ``params``; state ``{}``.

    Example:
        >>> import numpy as np
        >>> params = {"w": np.array([[1.0, 1.0], [0.0, 0.0]])}
        >>> adaptive_grad_clip(0.5).update({"w": np.array([[3.0, 0.1], [4.0, 0.0]])}, {}, params)[0]["w"]
        array([[0.3, 0.1],
               [0.4, 0. ]])
    """
    factor = check_hyper("adaptive_grad_clip", "clipping", clipping)
    floor = check_hyper("adaptive_grad_clip", "eps", eps)

    def leaf(g: Any, p: Any) -> Any:
        g_norm = _unitwise_norm(g)
        max_norm = np.maximum(_unitwise_norm(p), floor) * factor
        clipped = g * (max_norm / np.maximum(g_norm, 1e-6))
        return np.where(g_norm < max_norm, g, clipped).astype(g.dtype, copy=False)

    return _stateless("adaptive_grad_clip", leaf, needs_params=True)


def zero_nans() -> Optimizer:
    """Replace NaNs in the updates by zeros and record, per leaf, whether there were any.

    Returns:
        An :class:`Optimizer`; state ``{"found_nan": tree of Python bools like params}``.

    Example:
        >>> import numpy as np
        >>> t = zero_nans()
        >>> u, s = t.update({"w": np.array([np.nan, 2.0])}, t.init({"w": np.zeros(2)}))
        >>> u["w"], s["found_nan"]["w"]
        (array([0., 2.]), True)
    """
    from .. import tree as _tree

    def init(params: Params) -> OptState:
        return {"found_nan": _tree.tree_map(lambda p: False, params)}

    def leaf(g: Any, p: Any = None) -> tuple[Any, bool]:
        nan = np.isnan(g)
        if not nan.any():
            return g.copy(), False
        return np.where(nan, 0, g).astype(g.dtype, copy=False), True

    state_keys = frozenset({"found_nan"})

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state("zero_nans.update", state, state_keys)
        u, found = map_leaves("zero_nans.update", leaf, grads, n_out=2)
        return u, {"found_nan": _tree.tree_map(bool, found)}

    return Optimizer(init, update)


def keep_params_nonnegative() -> Optimizer:
    """Keep the parameters ``>= 0``: ``u = -p`` where ``p + g < 0`` (the parameter lands on 0), else
    ``u = g``. Put it last in a chain. Needs ``params``; state ``{}``.

    Example:
        >>> import numpy as np
        >>> params = {"w": np.array([1.0, 2.0])}
        >>> keep_params_nonnegative().update({"w": np.array([-3.0, -1.0])}, {}, params)[0]["w"]
        array([-1., -1.])
    """
    def leaf(g: Any, p: Any) -> Any:
        return np.where(p + g < 0, -p, g)

    return _stateless("keep_params_nonnegative", leaf, needs_params=True)

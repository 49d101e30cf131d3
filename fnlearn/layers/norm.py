"""Normalisation layers: LayerNorm (stateless) and BatchNorm (a :class:`fnlearn.StatefulLayer`).

Both compute ``xhat = (x - mean) / sqrt(var + eps)`` (biased variance) and ``y = xhat * scale +
offset`` with ``scale`` and ``offset`` of shape ``(features,)`` on the last axis. LayerNorm takes the
statistics over the last axis of each example; BatchNorm over every axis but the last (the batch and,
for NHWC images, the spatial axes). Their shared backward rule, with ``g = dy * scale`` and means over
the normalised axes, is ``dx = (g - mean(g) - xhat * mean(g * xhat)) / sqrt(var + eps)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from .. import _checks, _kernels
from .._stateful import State, StatefulLayer
from .._types import Array, Layer, Params, Shape, resolve_dtype


def _features(name: str, input_shape: Shape, min_rank: int) -> int:
    shape = _checks.input_shape(name, input_shape)
    if len(shape) < min_rank:
        raise ValueError(f"{name}: input_shape must be (batch, ..., features) with rank >= {min_rank}, "
                         f"got {shape}.")
    return shape[-1]


def _affine(name: str, params: Params, x: Any,
            keys: tuple[str, ...] = ("scale", "offset")) -> tuple[Array, Array | None]:
    """``(scale, offset)`` checked against ``x``; ``offset`` is None when ``keys`` has no "offset"."""
    _checks.exact_keys(name, params, keys)
    scale = _checks.param(name, params, "scale", ndim=1)
    offset = _checks.param(name, params, "offset", shape=scale.shape) if len(keys) == 2 else None
    if offset is not None and offset.dtype != scale.dtype:
        _checks.same_param_dtype(name, "offset", offset, "scale", scale)
    _checks.float_array(name, x)
    _checks.min_rank(name, x, 2, "(batch, ..., features)")
    if x.shape[-1] != scale.shape[0]:
        raise ValueError(f"{name}: expected x of shape (batch, ..., {scale.shape[0]}) to match "
                         f"params['scale'] of shape {scale.shape}, got {x.shape}. Check the input size "
                         "the model was initialised with.")
    _checks.same_dtype(name, x, scale.dtype)
    return scale, offset


def _normalize(x: Array, axes: tuple[int, ...], eps: float) -> tuple[Array, Array, Array, Array]:
    """``(xhat, inv_std, mean, var)`` over ``axes`` (keepdims), in the dtype of ``x``."""
    mean = x.mean(axis=axes, keepdims=True)
    xc = x - mean
    var = np.mean(xc * xc, axis=axes, keepdims=True)
    inv = 1.0 / np.sqrt(var + eps)
    xc *= inv
    return xc, inv, mean, var


def _normalize_vjp(g: Array, xhat: Array, inv: Array, axes: tuple[int, ...]) -> Array:
    """The cotangent of ``x`` given ``g``, the cotangent of ``xhat``, through batch statistics."""
    dx = g - g.mean(axis=axes, keepdims=True)
    dx -= xhat * np.mean(g * xhat, axis=axes, keepdims=True)
    dx *= inv
    return dx


def _affine_grads(dy: Array, xhat: Array) -> Params:
    dy2 = dy.reshape(-1, dy.shape[-1])
    return {"scale": np.einsum("ij,ij->j", dy2, xhat.reshape(dy2.shape)), "offset": dy2.sum(axis=0)}


def _ones_and_zeros(n: int, dtype: DTypeLike) -> Params:
    dt = resolve_dtype(dtype)
    return {"scale": np.ones(n, dt), "offset": np.zeros(n, dt)}


def LayerNorm(*, eps: float = 1e-5, bias: bool = True) -> Layer:
    """Normalise each example over its last axis, then scale and shift (Ba et al., 2016).

    Args:
        eps: added to the variance before the square root.
        bias: with ``False`` there is no ``offset`` (``torch.nn.LayerNorm(bias=False)``, nanoGPT's
            ``bias=False``): ``y = xhat * scale``.

    Shapes: ``x`` and ``y`` are ``(batch, ..., features)``; params ``{"scale": ones(features),
    "offset": zeros(features)}``, or ``{"scale": ones(features)}`` with ``bias=False``.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> layer = fl.LayerNorm()
        >>> params = layer.init(np.random.default_rng(0), (-1, 3))
        >>> y, vjp = layer.apply(params, np.array([[1.0, 2.0, 3.0]], np.float32))
        >>> np.round(y, 4)
        array([[-1.2247,  0.    ,  1.2247]], dtype=float32)
        >>> sorted(fl.LayerNorm(bias=False).init(np.random.default_rng(0), (-1, 3)))
        ['scale']
    """
    eps = float(eps)
    if not eps > 0.0:
        raise ValueError(f"LayerNorm: eps must be positive, got {eps!r}.")
    if not isinstance(bias, (bool, np.bool_)):
        raise TypeError(f"LayerNorm: bias must be True or False, got {bias!r}.")
    bias = bool(bias)
    name = f"LayerNorm(eps={eps})" if bias else f"LayerNorm(eps={eps}, bias=False)"
    keys = ("scale", "offset") if bias else ("scale",)

    def init(rng: np.random.Generator, input_shape: Shape, *, dtype: DTypeLike = None) -> Params:
        params = _ones_and_zeros(_at_least_one(name, _features(name, input_shape, 2)), dtype)
        return params if bias else {"scale": params["scale"]}

    def apply(params: Params, x: Array, *, rng: Any = None, train: bool = False):
        scale, offset = _affine(name, params, x, keys)
        _at_least_one(name, x.shape[-1])
        x2 = x.reshape(-1, x.shape[-1])
        xhat, inv, y = _layer_normalize(x2, eps)
        np.multiply(xhat, scale, out=y)
        if offset is not None:
            y += offset

        def vjp(dy: Array, *, compute_dx: bool = True) -> tuple[Params, Array | None]:
            if type(dy) is not np.ndarray or dy.shape != x.shape or dy.dtype != x.dtype:
                _checks.cotangent(name, dy, x.shape, x.dtype)
            dparams, dx = _layer_norm_vjp(dy.reshape(xhat.shape), xhat, inv, scale, compute_dx)
            if offset is None:
                del dparams["offset"]
            return dparams, (None if dx is None else dx.reshape(x.shape))

        return y.reshape(x.shape), vjp

    return Layer(init, _checks.named(apply, name))


def _at_least_one(name: str, features: int) -> int:
    if features == 0:
        raise ValueError(f"{name}: there are no features to normalise (the last axis has size 0). "
                         "Give the layer an input with at least one feature.")
    return features


def _layer_normalize(x: Array, eps: float) -> tuple[Array, Array, Array]:
    """``(xhat, inv_std, scratch)`` of the rows of a 2-D ``x``: ``(n, F)``, ``(n, 1)`` and a spare
    ``(n, F)`` array for the caller's output.

    The row sums are matrix-vector products with a vector of ones: BLAS does them several times
    faster than NumPy's reduction over a short trailing axis.
    """
    features = x.shape[1]
    ones = _kernels.ones(features, x.dtype)
    xhat = x - (x @ ones)[:, None] * (1.0 / features)
    squares = np.multiply(xhat, xhat)
    var = squares @ ones
    var *= 1.0 / features
    var += eps
    inv = np.sqrt(var, out=var)
    np.divide(1.0, inv, out=inv)
    inv = inv[:, None]
    xhat *= inv
    return xhat, inv, squares


def _layer_norm_vjp(dy: Array, xhat: Array, inv: Array, scale: Array,
                    compute_dx: bool) -> tuple[Params, Array | None]:
    """LayerNorm's gradients for 2-D ``dy`` and ``xhat`` ``(n, F)``.

    With ``g = dy * scale``: ``dscale = sum_rows(dy * xhat)``, ``doffset = sum_rows(dy)`` and
    ``dx = (g - mean(g) - xhat * mean(g * xhat)) * inv`` (means over the features), where the row
    sums ``sum(g) = dy @ scale`` and ``sum(g * xhat) = (dy * xhat) @ scale`` reuse ``dy * xhat``.
    """
    ones = _kernels.ones(dy.shape[0], dy.dtype)
    dy_xhat = np.multiply(dy, xhat)
    dparams = {"scale": ones @ dy_xhat, "offset": ones @ dy}
    if not compute_dx:
        return dparams, None
    mean_g = dy @ scale
    mean_g *= 1.0 / xhat.shape[1]
    mean_gx = dy_xhat @ scale
    mean_gx *= 1.0 / xhat.shape[1]
    dx = np.multiply(dy, scale)
    dx -= mean_g[:, None]
    dx -= np.multiply(xhat, mean_gx[:, None], out=dy_xhat)
    dx *= inv
    return dparams, dx


def _running(name: str, state: State, scale: Array) -> tuple[Array, Array]:
    """``state["mean"]`` and ``state["var"]``, checked to match ``scale`` in shape and dtype."""
    mean = state.get("mean") if isinstance(state, dict) else None
    var = state.get("var") if isinstance(state, dict) else None
    for key, value in (("mean", mean), ("var", var)):
        if (not isinstance(value, np.ndarray) or value.shape != scale.shape
                or value.dtype != scale.dtype):
            got = (f"{type(value).__name__} {getattr(value, 'shape', '')} "
                   f"{getattr(value, 'dtype', '')}".strip() if isinstance(state, dict) else
                   type(state).__name__)
            raise ValueError(f"{name}: expected state['{key}'] to be a {scale.dtype} array of shape "
                             f"{scale.shape} (from this layer's init), got {got}. Pass the state that "
                             "init (or the previous training step) returned.")
    return mean, var


def BatchNorm(*, momentum: float = 0.1, eps: float = 1e-5) -> StatefulLayer:
    """Normalise with batch statistics when training and running statistics when evaluating (Ioffe
    and Szegedy, 2015). A :class:`fnlearn.StatefulLayer`: the running statistics are its state.

    Args:
        momentum: the weight of the new batch in the running statistics (PyTorch's meaning; flax and
            haiku call ``1 - momentum`` the decay): ``running = (1 - momentum) * running + momentum *
            batch``.
        eps: added to the variance before the square root.

    ``init(rng, input_shape) -> (params, state)`` with params ``{"scale": ones(C), "offset":
    zeros(C)}`` and state ``{"mean": zeros(C), "var": ones(C)}``, ``C = input_shape[-1]``.
    ``apply(params, state, x, *, rng=None, train=False) -> (y, new_state, vjp_fn)``: the statistics
    are over every axis but the last (batch, and height and width for NHWC). With ``train=True`` the
    batch mean and biased variance normalise ``x`` and ``new_state`` holds the running statistics
    updated with the batch mean and the *unbiased* batch variance (as PyTorch); with ``train=False``
    the running statistics normalise ``x`` and ``new_state is state``.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> layer = fl.BatchNorm(momentum=0.5)
        >>> params, state = layer.init(np.random.default_rng(0), (-1, 1))
        >>> x = np.array([[1.0], [3.0]], np.float32)
        >>> y, state, vjp = layer.apply(params, state, x, train=True)
        >>> y.ravel(), state["mean"], state["var"]
        (array([-0.999995,  0.999995], dtype=float32), array([1.], dtype=float32), array([1.5], dtype=float32))
        >>> y, same, vjp = layer.apply(params, state, x)
        >>> same is state
        True
    """
    momentum, eps = float(momentum), float(eps)
    if not 0.0 <= momentum <= 1.0 or not eps > 0.0:
        raise ValueError(f"BatchNorm: momentum must be in [0, 1] and eps positive, got momentum="
                         f"{momentum!r}, eps={eps!r}.")
    name = f"BatchNorm(momentum={momentum}, eps={eps})"

    def init(rng: np.random.Generator, input_shape: Shape, *,
             dtype: DTypeLike = None) -> tuple[Params, State]:
        params = _ones_and_zeros(_features(name, input_shape, 2), dtype)
        return params, {"mean": np.zeros_like(params["offset"]), "var": np.ones_like(params["scale"])}

    def apply(params: Params, state: State, x: Array, *, rng: Any = None, train: bool = False):
        scale, offset = _affine(name, params, x)
        running_mean, running_var = _running(name, state, scale)
        axes = tuple(range(x.ndim - 1))
        if train:
            xhat, inv, new_state = _batch_statistics(name, x, axes, running_mean, running_var,
                                                     momentum, eps)
        else:
            inv = 1.0 / np.sqrt(running_var + eps)
            xhat, new_state = (x - running_mean) * inv, state
        y = xhat * scale
        y += offset

        def vjp(dy: Array, *, compute_dx: bool = True) -> tuple[Params, Array | None]:
            _checks.cotangent(name, dy, y.shape, y.dtype)
            dparams = _affine_grads(dy, xhat)
            if not compute_dx:
                return dparams, None
            g = dy * scale
            return dparams, (_normalize_vjp(g, xhat, inv, axes) if train else g * inv)

        return y, new_state, vjp

    return StatefulLayer(init, _checks.named(apply, name))


def _batch_statistics(name: str, x: Array, axes: tuple[int, ...], running_mean: Array,
                      running_var: Array, momentum: float, eps: float) -> tuple[Array, Array, State]:
    """``(xhat, inv_std, new_state)`` for a training step of BatchNorm."""
    count = x.size // x.shape[-1]
    if count < 2:
        raise ValueError(f"{name}: training needs more than one value per channel to estimate the "
                         f"batch statistics, got x of shape {x.shape}. Use a batch of at least 2, or "
                         "train=False to normalise with the running statistics.")
    xhat, inv, mean, var = _normalize(x, axes, eps)
    unbiased = var.reshape(-1) * (count / (count - 1))
    new_state = {"mean": running_mean * (1.0 - momentum) + mean.reshape(-1) * momentum,
                 "var": running_var * (1.0 - momentum) + unbiased * momentum}
    return xhat, inv, new_state

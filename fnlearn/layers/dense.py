"""The fully connected layer."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from .. import _checks
from .._kernels import column_sums
from .._types import Array, Layer, Params, Shape, resolve_dtype
from ..initializers import Initializer, lecun_normal, zeros


def Dense(out_features: int, *, w_init: Initializer | None = None,
          b_init: Initializer = zeros) -> Layer:
    """A fully connected layer: ``y = x @ w + b``.

    Args:
        out_features: the size of the last axis of ``y``.
        w_init: initializer of ``w`` (shape ``(in, out)``); default LeCun normal (variance 1/in).
        b_init: initializer of ``b`` (shape ``(out,)``); default zeros.

    Shapes: ``x`` is ``(batch, ..., in)``, ``y`` is ``(batch, ..., out)``; params
    ``{"w": (in, out), "b": (out,)}``. The VJP costs two matrix products, one with
    ``compute_dx=False``. Non-finite inputs give non-finite outputs and gradients (``inf`` times a
    zero weight is NaN) without NumPy warnings.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> layer = fl.Dense(2, w_init=fl.initializers.ones)
        >>> params = layer.init(np.random.default_rng(0), (-1, 3))
        >>> y, vjp = layer.apply(params, np.ones((1, 3), np.float32))
        >>> y
        array([[3., 3.]], dtype=float32)
        >>> dparams, dx = vjp(np.ones_like(y), compute_dx=False)
        >>> dparams["b"], dx
        (array([1., 1.], dtype=float32), None)
    """
    if isinstance(out_features, bool) or not isinstance(out_features, (int, np.integer)) or out_features <= 0:
        raise ValueError(f"Dense: out_features must be a positive int, got {out_features!r}.")
    out_features = int(out_features)
    w_init = lecun_normal() if w_init is None else w_init
    name = f"Dense({out_features})"

    def init(rng: np.random.Generator, input_shape: Shape, *, dtype: DTypeLike = None) -> Params:
        shape = _checks.input_shape(name, input_shape)
        if len(shape) < 2:
            raise ValueError(f"{name}: input_shape must be (batch, ..., in_features), got {shape}.")
        dt = resolve_dtype(dtype, name)
        w_rng, b_rng = _checks.generator(name, rng).spawn(2)
        return {"w": np.asarray(w_init(w_rng, (shape[-1], out_features), dt), dtype=dt),
                "b": np.asarray(b_init(b_rng, (out_features,), dt), dtype=dt)}

    def apply(params: Params, x: Array, *, rng: Any = None, train: bool = False):
        w, b = _fast_params(params, x, out_features)
        if w is None:  # something is unusual: the full checks raise, or accept it (ndim > 2, ...)
            w, b = _checked_params(name, params, x, out_features)
        x2 = x if x.ndim == 2 else x.reshape(-1, x.shape[-1])
        token = _checks.quiet_fp_begin()  # inf in gives inf or NaN out, documented: no warnings
        try:
            y = x2 @ w
            y += b
        finally:
            _checks.quiet_fp_end(token)
        if x.ndim != 2:
            y = y.reshape(*x.shape[:-1], out_features)

        def vjp(dy: Array, *, compute_dx: bool = True) -> tuple[Params, Array | None]:
            if type(dy) is not np.ndarray or dy.shape != y.shape or dy.dtype != y.dtype:
                _checks.cotangent(name, dy, y.shape, y.dtype)
            dy2 = dy if dy.ndim == 2 else dy.reshape(-1, out_features)
            token = _checks.quiet_fp_begin()
            try:
                dparams = {"w": x2.T @ dy2, "b": column_sums(dy2)}
                dx = dy2 @ w.T if compute_dx else None
            finally:
                _checks.quiet_fp_end(token)
            if dx is None:
                return dparams, None
            return dparams, (dx if x.ndim == 2 else dx.reshape(x.shape))

        return y, vjp

    return Layer(init, _checks.named(apply, name))


def _fast_params(params: Params, x: Any, out_features: int) -> tuple[Any, Any]:
    """``(w, b)`` when everything is as usual (2-D float ``x`` matching ``w``), else ``(None, None)``.

    One cheap expression instead of the full checks: this runs on every call.
    """
    if type(params) is not dict or type(x) is not np.ndarray:
        return None, None
    w, b = params.get("w"), params.get("b")
    if (type(w) is np.ndarray and type(b) is np.ndarray and x.ndim == 2 and w.ndim == 2
            and b.ndim == 1 and x.shape[1] == w.shape[0] and w.shape[1] == out_features == b.shape[0]
            and x.dtype == w.dtype == b.dtype and w.dtype in _checks.FLOAT_DTYPES and len(params) == 2):
        return w, b
    return None, None


def _checked_params(name: str, params: Params, x: Any, out_features: int) -> tuple[Array, Array]:
    """``(w, b)`` after the full checks, each raising a sentence that names the layer and the fix."""
    _checks.exact_keys(name, params, ("w", "b"))
    w = _checks.param(name, params, "w", ndim=2)
    if w.shape[1] != out_features:
        raise ValueError(f"{name}: expected params['w'] of shape (in, {out_features}), got "
                         f"{w.shape}. Were these params initialised for another model?")
    b = _checks.param(name, params, "b", shape=(out_features,))
    _checks.same_param_dtype(name, "b", b, "w", w)
    _checks.float_array(name, x)
    if x.ndim < 2 or x.shape[-1] != w.shape[0]:
        raise ValueError(f"{name}: expected x of shape (batch, ..., {w.shape[0]}) to match "
                         f"params['w'] of shape {w.shape}, got {x.shape}. Check the input size "
                         "the model was initialised with.")
    _checks.same_dtype(name, x, w.dtype)
    return w, b

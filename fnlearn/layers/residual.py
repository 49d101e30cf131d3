"""The residual connection: ``y = x + layer(x)``."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from .. import _checks
from .._stateful import is_stateful
from .._types import Array, Layer, Params, Shape
from ..combinators import eval_shape


def Residual(layer: Layer) -> Layer:
    """Add a layer's output to its input: ``y = x + layer(x)`` (He et al., 2016).

    Args:
        layer: any layer whose output has the shape and dtype of its input, e.g.
            ``serial(LayerNorm(), MultiHeadAttention(4))`` for a pre-LN transformer sublayer.

    Params are the wrapped layer's own (the connection adds none); ``rng`` and ``train`` go to it
    unchanged. The VJP is ``dx = dy + dx_layer``, added in place into the wrapped layer's fresh
    ``dx``; with ``compute_dx=False`` the wrapped layer skips its input cotangent too.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> block = fl.Residual(fl.Dense(2, w_init=fl.initializers.ones))
        >>> params = block.init(np.random.default_rng(0), (-1, 2))
        >>> y, vjp = block.apply(params, np.array([[1.0, 2.0]], np.float32))
        >>> y
        array([[4., 5.]], dtype=float32)
        >>> dparams, dx = vjp(np.ones_like(y))
        >>> dx
        array([[3., 3.]], dtype=float32)
    """
    if not isinstance(layer, tuple) or len(layer) != 2 or not all(map(callable, layer)):
        raise TypeError(f"Residual: expected a Layer (init, apply), got {type(layer).__name__}. Did you "
                        "forget to call a constructor, e.g. fl.Dense(8) instead of fl.Dense?")
    if is_stateful(layer):
        raise TypeError("Residual: stateful layers (e.g. BatchNorm) are not supported inside a residual "
                        "connection; use LayerNorm, or put the stateful layer outside.")
    inner_name = getattr(layer.apply, "__qualname__", "layer").split(".<locals>")[0].removesuffix(".apply")
    name = f"Residual({inner_name})"

    def init(rng: np.random.Generator, input_shape: Shape, *, dtype: DTypeLike = None) -> Params:
        shape = _checks.input_shape(name, input_shape)
        params = layer.init(rng, shape, **({} if dtype is None else {"dtype": dtype}))
        out_shape, _ = eval_shape(layer.apply, params, shape, dtype=dtype)
        if tuple(out_shape) != shape:
            raise ValueError(f"{name}: the wrapped layer maps inputs of shape {shape} to {out_shape}; "
                             "a residual connection needs the output shape to equal the input shape.")
        return params

    def apply(params: Params, x: Array, *, rng: Any = None, train: bool = False):
        _checks.float_array(name, x)
        fx, layer_vjp = layer.apply(params, x, rng=rng, train=train)
        if type(fx) is not np.ndarray or fx.shape != x.shape or fx.dtype != x.dtype:
            raise ValueError(f"{name}: the wrapped layer returned {getattr(fx, 'dtype', type(fx).__name__)} "
                             f"{getattr(fx, 'shape', '')} for x of dtype {x.dtype} and shape {x.shape}; a "
                             "residual connection needs the same shape and dtype.")
        y = x + fx

        def vjp(dy: Array, *, compute_dx: bool = True) -> tuple[Params, Array | None]:
            _checks.cotangent(name, dy, y.shape, y.dtype)
            dparams, dx = _checks.call_vjp(layer_vjp, dy, compute_dx)
            if not compute_dx:
                return dparams, None
            if not dx.flags.writeable or np.may_share_memory(dx, dy):  # never write into dy
                return dparams, dx + dy
            dx += dy
            return dparams, dx

        return y, vjp

    return Layer(init, _checks.named(apply, name))

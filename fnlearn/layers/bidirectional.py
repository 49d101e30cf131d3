"""``Bidirectional(layer)``: run a recurrent layer forwards and backwards in time, concatenate."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from .. import _checks
from .._types import Layer, Params, Shape


def Bidirectional(layer: Layer) -> Layer:
    """Two copies of a recurrent layer, one over the reversed sequence; outputs concatenated.

    Args:
        layer: a recurrent layer (:func:`fnlearn.LSTM`, ``GRU``, ``SimpleRNN``, :func:`fnlearn.scan`).

    The input is ``x``, ``(x, mask)`` or ``(x, mask, (state_forward, state_backward))`` as for the
    layer. The backward copy sees ``x[:, ::-1]`` and ``mask[:, ::-1]``; with right-padded sequences
    and a mask it starts at each sequence's last valid step, as PyTorch's packed sequences do. Output:
    ``concatenate([y_forward, y_backward], axis=-1)``, the backward outputs put back in forward time
    order; with ``return_sequences=False`` that is the two last states, as torch's ``h_n``. With
    ``return_state=True``: ``(y, (state_forward, state_backward))``. Params ``{"forward": ...,
    "backward": ...}``, each the layer's own.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> layer = fl.Bidirectional(fl.GRU(4, return_sequences=True))
        >>> params = layer.init(np.random.default_rng(0), (-1, 5, 3))
        >>> y, vjp = layer.apply(params, np.ones((2, 5, 3), np.float32))
        >>> y.shape, sorted(params)
        ((2, 5, 8), ['backward', 'forward'])
    """
    if not isinstance(layer, tuple) or len(layer) != 2 or not all(map(callable, layer)):
        raise TypeError(f"Bidirectional: layer must be a Layer (init, apply), got {type(layer).__name__}.")
    inner = getattr(layer.apply, "__qualname__", "layer").removesuffix(".apply")
    name = f"Bidirectional({inner})"

    def init(rng: np.random.Generator, input_shape: Shape, *, dtype: DTypeLike = None) -> Params:
        kwargs = {} if dtype is None else {"dtype": dtype}
        rf, rb = _checks.generator(name, rng).spawn(2)
        return {"forward": layer.init(rf, input_shape, **kwargs),
                "backward": layer.init(rb, input_shape, **kwargs)}

    def apply(params: Params, inputs: Any, *, rng: Any = None, train: bool = False):
        _checks.exact_keys(name, params, ("forward", "backward"))
        fwd_in, bwd_in, form = _directions(name, inputs)
        rf, rb = rng.spawn(2) if rng is not None else (None, None)
        yf, vjp_f = layer.apply(params["forward"], fwd_in, rng=rf, train=train)
        yb, vjp_b = layer.apply(params["backward"], bwd_in, rng=rb, train=train)
        with_state = isinstance(yf, tuple)
        out_f, out_b = (yf[0], yb[0]) if with_state else (yf, yb)
        seq = out_f.ndim == 3
        out = np.concatenate([out_f, out_b[:, ::-1] if seq else out_b], axis=-1)
        y = (out, (yf[1], yb[1])) if with_state else out
        hf = out_f.shape[-1]

        def vjp(dy: Any, *, compute_dx: bool = True) -> tuple[Params, Any]:
            dout, dstate = dy if with_state else (dy, None)
            _checks.cotangent(name, dout, out.shape, out.dtype)
            dof = np.ascontiguousarray(dout[..., :hf])
            dob = np.ascontiguousarray(dout[:, ::-1, hf:] if seq else dout[..., hf:])
            dpf, dxf = _checks.call_vjp(vjp_f, (dof, dstate[0]) if with_state else dof, compute_dx)
            dpb, dxb = _checks.call_vjp(vjp_b, (dob, dstate[1]) if with_state else dob, compute_dx)
            dparams = {"forward": dpf, "backward": dpb}
            if not compute_dx:
                return dparams, None
            if form == 1:
                return dparams, dxf + dxb[:, ::-1]
            dx = dxf[0] + dxb[0][:, ::-1]
            return dparams, ((dx, None) if form == 2 else (dx, None, (dxf[2], dxb[2])))

        return y, vjp

    return Layer(init, _checks.named(apply, name))


def _directions(name: str, inputs: Any) -> tuple[Any, Any, int]:
    """The inputs of the forward and the backward copy, and the input's form (1, 2 or 3 entries)."""
    if not isinstance(inputs, tuple):
        _checks.float_array(name, inputs)
        if inputs.ndim < 3:
            raise ValueError(f"{name}: expected x of shape (batch, steps, features), got shape "
                             f"{inputs.shape}.")
        return inputs, inputs[:, ::-1], 1
    if not 2 <= len(inputs) <= 3:
        raise ValueError(f"{name}: expected x, (x, mask) or (x, mask, (state_forward, state_backward)), "
                         f"got a tuple of {len(inputs)} entries.")
    x, mask = inputs[0], inputs[1]
    _checks.float_array(name, x)
    if x.ndim < 3:
        raise ValueError(f"{name}: expected x of shape (batch, steps, features), got shape {x.shape}.")
    rmask = mask[:, ::-1] if isinstance(mask, np.ndarray) and mask.ndim == 2 else mask
    if len(inputs) == 2:
        return (x, mask), (x[:, ::-1], rmask), 2
    state = inputs[2]
    if not isinstance(state, tuple) or len(state) != 2:
        raise ValueError(f"{name}: expected the initial state as a tuple (state_forward, "
                         f"state_backward), got {type(state).__name__}.")
    return (x, mask, state[0]), (x[:, ::-1], rmask, state[1]), 3

"""Pooling over the height and width of NHWC inputs: max, average and global average.

**Ties in max pooling.** When several entries of a window share the maximum, the whole cotangent goes
to the *first* of them in row-major window order (top row first, left to right within a row). This is
what PyTorch's ``max_pool2d`` does on CPU; ``jax.lax.reduce_window`` would instead pass it to every
tied entry. Where windows overlap (``stride < window``), an entry that is the chosen maximum of several
windows receives the sum of their cotangents.

**Padding.** Max pooling pads with ``-inf`` (padding never wins); average pooling pads with zeros and
always divides by the full window size ``kh * kw`` (PyTorch's default ``count_include_pad=True``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from .. import _checks
from .._types import Array, Layer, Params, Shape
from . import _windows


def _pool_layer(kind: str, window: Any, stride: Any, padding: Any):
    """The checked window, stride and padding of a pooling layer, its name and its ``init``."""
    name = f"{kind}({window!r})"
    kernel = _windows.pair(name, "window", window)
    strides = kernel if stride is None else _windows.pair(name, "stride", stride)
    pad_spec = _windows.padding_spec(name, padding)
    if not isinstance(pad_spec, str) and any(p >= k for p, k in zip(pad_spec, kernel)):
        raise ValueError(f"{name}: padding must be smaller than the window {kernel} so that every "
                         f"window covers some input, got {padding!r}.")

    def init(rng: np.random.Generator, input_shape: Shape, *, dtype: DTypeLike = None) -> Params:
        shape = _checks.input_shape(name, input_shape)
        if len(shape) != 4:
            raise ValueError(f"{name}: input_shape must be (batch, height, width, channels) (NHWC), "
                             f"got {shape}.")
        _windows.geometry(name, shape[1:3], kernel, strides, (1, 1), pad_spec)
        return {}

    return name, kernel, strides, pad_spec, init


def _pool_input(name: str, params: Params, x: Any) -> Array:
    if params:
        _checks.no_params(name, params)
    _checks.float_array(name, x)
    if x.ndim != 4:
        raise ValueError(f"{name}: expected x of shape (batch, height, width, channels) (NHWC), got "
                         f"{x.shape}. Reshape images to NHWC, e.g. x.reshape(-1, 28, 28, 1).")
    return x


def MaxPool2D(window: int | tuple[int, int], *, stride: Any = None, padding: Any = "valid") -> Layer:
    """The maximum over each window; ties send the cotangent to the first maximum (module docstring).

    Args:
        window: ``k`` or ``(kh, kw)``.
        stride: ``s`` or ``(sh, sw)``; default the window (non-overlapping windows).
        padding: ``"valid"``, ``"same"``, or an int or pair smaller than the window (padded with
            ``-inf``).

    Shapes: ``(batch, H, W, C) -> (batch, OH, OW, C)`` with ``OH = (H + pads - kh) // sh + 1``.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> x = np.array([1.0, 3.0, 3.0, 2.0]).reshape(1, 2, 2, 1)
        >>> y, vjp = fl.MaxPool2D(2).apply({}, x)
        >>> y.ravel(), vjp(np.ones_like(y))[1].ravel()
        (array([3.]), array([0., 1., 0., 0.]))
    """
    name, kernel, strides, pad_spec, init = _pool_layer("MaxPool2D", window, stride, padding)
    disjoint = strides[0] >= kernel[0] and strides[1] >= kernel[1]  # no two windows share an entry

    def apply(params: Params, x: Array, *, rng: Any = None, train: bool = False):
        x = _pool_input(name, params, x)
        g = _windows.geometry(name, x.shape[1:3], kernel, strides, (1, 1), pad_spec)
        xp = _windows.pad(x, g.pads, value=-np.inf)
        taps = [view for _, _, view in g.taps()]
        y, winner = _max_and_first_winner(xp, taps)

        def vjp(dy: Array, *, compute_dx: bool = True) -> tuple[Params, Array | None]:
            _checks.cotangent(name, dy, y.shape, y.dtype)
            if not compute_dx:
                return {}, None
            dxp = np.zeros(xp.shape, dtype=x.dtype)
            for k, (rows, cols) in enumerate(taps):
                if disjoint:  # each input entry is in one window at most: write, no add
                    np.multiply(dy, winner == k, out=dxp[:, rows, cols, :])
                else:
                    dxp[:, rows, cols, :] += dy * (winner == k)
            return {}, np.ascontiguousarray(_windows.crop(dxp, g.pads))

        return y, vjp

    return Layer(init, _checks.named(apply, name))


def _max_and_first_winner(xp: Array, taps: list[tuple[slice, slice]]) -> tuple[Array, Array]:
    """The window maxima and, per output entry, the index of the first tap that attains it.

    Elementwise passes over whole tap views (masked copies and boolean indexing are several times
    slower): the maximum first, then each tap claims the entries it ties with and no earlier tap did.
    """
    y = xp[:, taps[0][0], taps[0][1], :].copy()
    for rows, cols in taps[1:]:
        np.maximum(y, xp[:, rows, cols, :], out=y)
    winner = np.zeros(y.shape, dtype=np.uint8 if len(taps) <= 256 else np.intp)
    claimed = np.zeros(y.shape, dtype=bool)
    for k, (rows, cols) in enumerate(taps[:-1]):
        hit = np.equal(xp[:, rows, cols, :], y)
        hit &= ~claimed
        if k:
            winner += hit * winner.dtype.type(k)
        claimed |= hit
    winner += ~claimed * winner.dtype.type(len(taps) - 1)
    return y, winner


def AvgPool2D(window: int | tuple[int, int], *, stride: Any = None, padding: Any = "valid") -> Layer:
    """The mean over each window (padding counts as zeros in the mean; module docstring).

    Args:
        window: ``k`` or ``(kh, kw)``.
        stride: ``s`` or ``(sh, sw)``; default the window.
        padding: ``"valid"``, ``"same"``, or an int or pair smaller than the window.

    Shapes: ``(batch, H, W, C) -> (batch, OH, OW, C)`` as for :func:`MaxPool2D`.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> x = np.arange(4.0).reshape(1, 2, 2, 1)
        >>> y, vjp = fl.AvgPool2D(2).apply({}, x)
        >>> y.ravel(), vjp(np.ones_like(y))[1].ravel()
        (array([1.5]), array([0.25, 0.25, 0.25, 0.25]))
    """
    name, kernel, strides, pad_spec, init = _pool_layer("AvgPool2D", window, stride, padding)
    inv_size = 1.0 / (kernel[0] * kernel[1])

    def apply(params: Params, x: Array, *, rng: Any = None, train: bool = False):
        x = _pool_input(name, params, x)
        g = _windows.geometry(name, x.shape[1:3], kernel, strides, (1, 1), pad_spec)
        xp = _windows.pad(x, g.pads)
        y = np.zeros((x.shape[0], *g.out, x.shape[3]), dtype=x.dtype)
        for _, _, view in g.taps():
            y += xp[:, view[0], view[1], :]
        y *= inv_size

        def vjp(dy: Array, *, compute_dx: bool = True) -> tuple[Params, Array | None]:
            _checks.cotangent(name, dy, y.shape, y.dtype)
            if not compute_dx:
                return {}, None
            share = dy * inv_size
            dxp = np.zeros(xp.shape, dtype=x.dtype)
            for _, _, view in g.taps():
                dxp[:, view[0], view[1], :] += share
            return {}, np.ascontiguousarray(_windows.crop(dxp, g.pads))

        return y, vjp

    return Layer(init, _checks.named(apply, name))


def GlobalAvgPool() -> Layer:
    """The mean over all axes between the batch and the channels: ``(batch, ..., C) -> (batch, C)``.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> y, vjp = fl.GlobalAvgPool().apply({}, np.arange(8.0).reshape(1, 2, 2, 2))
        >>> y, vjp(np.ones_like(y))[1][0, :, :, 0]
        (array([[3., 4.]]), array([[0.25, 0.25],
               [0.25, 0.25]]))
    """
    name = "GlobalAvgPool"

    def init(rng: np.random.Generator, input_shape: Shape, *, dtype: DTypeLike = None) -> Params:
        shape = _checks.input_shape(name, input_shape)
        if len(shape) < 3:
            raise ValueError(f"{name}: input_shape must be (batch, ..., channels) with at least one "
                             f"axis to average, e.g. (batch, height, width, channels); got {shape}.")
        return {}

    def apply(params: Params, x: Array, *, rng: Any = None, train: bool = False):
        if params:
            _checks.no_params(name, params)
        _checks.float_array(name, x)
        _checks.min_rank(name, x, 3, "(batch, ..., channels)")
        axes = tuple(range(1, x.ndim - 1))
        y = x.mean(axis=axes)
        count = x.dtype.type(np.prod(x.shape[1:-1]))

        def vjp(dy: Array, *, compute_dx: bool = True) -> tuple[Params, Array | None]:
            _checks.cotangent(name, dy, y.shape, y.dtype)
            if not compute_dx:
                return {}, None
            dx = np.empty_like(x)
            dx[...] = (dy / count).reshape(dy.shape[0], *(1,) * len(axes), dy.shape[1])
            return {}, dx

        return y, vjp

    return Layer(init, _checks.named(apply, name))

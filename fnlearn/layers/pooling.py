"""Pooling over the height and width of NHWC inputs: max, average and global average.

**Ties in max pooling.** When several entries of a window share the maximum, the whole cotangent goes
to the *first* of them in row-major window order (top row first, left to right within a row). This is
what PyTorch's ``max_pool2d`` does on CPU; ``jax.lax.reduce_window`` would instead pass it to every
tied entry. Where windows overlap (``stride < window``), an entry that is the chosen maximum of several
windows receives the sum of their cotangents. A window that holds a NaN has a NaN maximum, and its
cotangent goes to the entry its other comparisons pick (comparisons with NaN are false;
:func:`_knockout`): not necessarily the NaN, which PyTorch picks, and possibly a ``-inf`` padding
entry, where it is dropped. (Before 2026-12 the last tap got it: NaN windows are the one case where the
knockout's gradients differ from the earlier code.)

**Padding.** Max pooling pads with ``-inf`` (padding never wins); average pooling pads with zeros and
always divides by the full window size ``kh * kw`` (PyTorch's default ``count_include_pad=True``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from .. import _checks
from .._types import LAYER_KINDS, POOL_WINDOWS, Array, Layer, Params, Shape
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
        padded_shape = xp.shape  # the VJP keeps only y, the winners and shapes, not x
        tiled = strides == kernel and padded_shape[1:3] == tuple(o * k for o, k in zip(g.out, kernel))

        def vjp(dy: Array, *, compute_dx: bool = True) -> tuple[Params, Array | None]:
            _checks.cotangent(name, dy, y.shape, y.dtype)
            if not compute_dx:
                return {}, None
            dxp = _to_winners(dy, winner, taps, padded_shape, disjoint=disjoint, tiled=tiled)
            return {}, np.ascontiguousarray(_windows.crop(dxp, g.pads))

        return y, vjp

    LAYER_KINDS[apply] = "max_pool"  # serial runs a Relu just before it after it
    POOL_WINDOWS[apply] = (kernel, strides, pad_spec)  # serial may fuse it into a Conv2D before
    return Layer(init, _checks.named(apply, name))


_CHUNK_BYTES = 1 << 20
"""Max pooling runs over the batch in chunks of about this many input bytes
(:func:`fnlearn.layers._windows.chunks`), so that what it reads twice (each tap for a maximum and a
comparison; the winners and ``dy`` for each tap) and its temporaries stay in the CPU's cache."""


def _max_and_first_winner(xp: Array, taps: list[tuple[slice, slice]]) -> tuple[Array, Array]:
    """The window maxima ``y`` and, per output entry, the index of the first tap that attains it.

    A knockout over the taps in row-major order (:func:`_knockout`) a chunk of examples at a time:
    each tap is read for a maximum and for a comparison, the second time from cache. 1.1-1.4x faster
    on the MNIST CNNs' shapes (``benchmarks/pool_relu.py``) than a running maximum followed by an
    equality pass per tap to find the first.
    """
    shape = xp[:, taps[0][0], taps[0][1], :].shape
    y = np.empty(shape, xp.dtype)
    winner = np.empty(shape, np.uint8 if len(taps) <= 256 else np.intp)
    parts = _windows.chunks(shape[0], xp.itemsize * int(np.prod(xp.shape[1:])), _CHUNK_BYTES)
    step = parts[0].stop - parts[0].start
    spare = [(np.empty((step, *shape[1:]), y.dtype), np.empty((step, *shape[1:]), winner.dtype))
             for _ in range((len(taps) - 1) // 2)]
    later = np.empty((step, *shape[1:]), bool)
    for b in parts:
        n = b.stop - b.start
        _knockout([xp[b, rows, cols, :] for rows, cols in taps],
                  [(y[b], winner[b])] + [(best[:n], first[:n]) for best, first in spare], later[:n])
    return y, winner


def _knockout(views: list[Array], slots: list[tuple[Array, Array]], later: Array) -> None:
    """Write the maximum of ``views`` into ``slots[0][0]`` and the index of the first view that
    attains it into ``slots[0][1]``; ``slots`` holds ``(len(views) + 1) // 2`` such pairs of outputs.

    Neighbouring views meet in pairs, then neighbouring pairs, and so on; the later side wins a
    match only if its maximum is strictly greater, so a tie goes to the earlier view. ``np.maximum``
    keeps its second argument on ties and the first NaN, so ``y`` has the bits of a running maximum
    (signed zeros included) and is NaN where a window holds a NaN; a comparison with NaN is false,
    so such a window's winner is decided by the other matches.
    """
    for p, (best, first) in enumerate(slots):
        i = 2 * p
        if i + 1 == len(views):  # the odd view out goes to the next round
            np.copyto(best, views[i])
            first[...] = i
            continue
        np.maximum(views[i], views[i + 1], out=best)
        np.greater(views[i + 1], views[i], out=first)
        if i:
            first += i
    while len(slots) > 1:
        for (best, first), (rival, rival_first) in zip(slots[0::2], slots[1::2]):
            np.greater(rival, best, out=later)
            np.maximum(best, rival, out=best)
            rival_first -= first  # first += later * (rival_first - first): uint8 wraps, exactly
            rival_first *= later
            first += rival_first
        slots = slots[0::2]


def _to_winners(dy: Array, winner: Array, taps: list[tuple[slice, slice]],
                padded_shape: tuple[int, ...], *, disjoint: bool, tiled: bool) -> Array:
    """The cotangent of the padded input: ``dy`` times 1 at each window's winning tap and times 0 at
    the others, tap by tap, a chunk of examples at a time (the chunk's ``dy`` and winners stay in
    cache across the taps). A product, not a masked copy: ``dy * 0`` keeps the sign and the NaN of
    ``dy``, and ``np.where`` and ``np.copyto(where=)`` are several times slower.

    ``disjoint`` (no two windows share an entry): each tap's share is written, not added.
    ``tiled`` (the windows cover the padded input exactly): nothing needs zeroing first.
    """
    dxp = (np.empty if tiled else np.zeros)(padded_shape, dy.dtype)
    for b in _windows.chunks(dy.shape[0], dxp.itemsize * int(np.prod(padded_shape[1:])), _CHUNK_BYTES):
        for k, (rows, cols) in enumerate(taps):
            if disjoint:
                np.multiply(dy[b], winner[b] == k, out=dxp[b, rows, cols, :])
            else:
                dxp[b, rows, cols, :] += dy[b] * (winner[b] == k)
    return dxp


def pool_scratch(shape: tuple[int, ...], dtype: np.dtype) -> tuple[Array, Array, Array]:
    """The scratch of :func:`max_of_taps` for maxima of ``shape``."""
    return np.empty(shape, dtype), np.empty(shape, np.uint8), np.empty(shape, bool)


def taps_2x2(x: Array, out: tuple[int, int]) -> list[Array]:
    """The four taps of 2x2 windows with stride 2 over ``x`` ``(n, H, W, C)``, ``out`` windows down and
    across: views ``(n, *out, C)`` in row-major tap order (the order of MaxPool2D's taps)."""
    return [x[:, i:2 * out[0]:2, j:2 * out[1]:2] for i in (0, 1) for j in (0, 1)]


def max_of_taps(taps: list[Array], y: Array, winner: Array, scratch: tuple[Array, Array, Array]) -> None:
    """MaxPool2D's forward pass on four taps of 2x2 windows, written into the given arrays: the maxima
    ``y`` and each window's ``winner`` (the first tap attaining it), by :func:`_knockout`, so the same
    bits and ties as the layer; ``scratch`` from :func:`pool_scratch`, shaped like ``y``. For
    ``Conv2D``'s fused pooling (``serial``), one chunk at a time, in any layout of the taps."""
    best, first, later = scratch
    _knockout(taps, [(y, winner), (best, first)], later)


def to_winning_taps(dy: Array, winner: Array, taps: list[Array]) -> None:
    """The transpose of :func:`max_of_taps`: each of ``taps`` (views of the input cotangent) gets
    ``dy`` times 1 where it won and 0 elsewhere, as in MaxPool2D's VJP (``dy * 0`` keeps the sign and
    the NaN of ``dy``). Entries in no tap are left as they are."""
    for t, tap in enumerate(taps):
        np.multiply(dy, winner == t, out=tap)


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

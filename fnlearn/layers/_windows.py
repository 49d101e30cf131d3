"""Sliding-window geometry shared by convolution and pooling (NHWC, two spatial axes).

A window of ``kernel`` taps with ``dilation`` spans ``dilation * (kernel - 1) + 1`` input entries and
moves by ``stride``. Padding is resolved once into ``((top, bottom), (left, right))``:

- ``"valid"``: no padding; windows that would hang over the edge are dropped.
- ``"same"``: the output has ``ceil(size / stride)`` entries along each axis; the padding that needs,
  ``max((out - 1) * stride + span - size, 0)``, is split with the smaller half first (top/left), as in
  TensorFlow and ``jax.lax`` ``"SAME"`` (for stride 1 and an odd kernel this is symmetric).
- an int ``p`` or a pair ``(ph, pw)``: that many entries on both sides of each axis (PyTorch's
  ``padding=p``).

The output size along an axis is then ``(size + lo + hi - span) // stride + 1``.

Each window tap ``(i, j)`` sees the padded input through one strided view,
``xp[:, i*d : i*d + s*(out-1) + 1 : s, j*d : ..., :]``; the backward rules loop over the ``kh * kw``
taps (never over positions; layers that work in chunks of examples, :func:`chunks`, loop over those)
and add the cotangents back through these views.
"""

from __future__ import annotations

from typing import Any, Iterator, NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .._types import Array

Pads = tuple[tuple[int, int], tuple[int, int]]


def pair(name: str, what: str, value: Any, *, minimum: int = 1) -> tuple[int, int]:
    """``value`` (an int or a pair of ints, each ``>= minimum``) as a pair ``(along H, along W)``."""
    items = (value, value) if isinstance(value, (int, np.integer)) else value
    try:
        a, b = items
        ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= minimum
                 for v in (a, b))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name}: {what} must be an int >= {minimum} or a pair of such ints "
                         f"(along height, along width), got {value!r}.")
    return int(a), int(b)


def padding_spec(name: str, padding: Any) -> Any:
    """``"valid"``, ``"same"`` or a pair of non-negative ints, checked when the layer is built."""
    if isinstance(padding, str):
        mode = padding.lower()
        if mode not in ("valid", "same"):
            raise ValueError(f"{name}: padding must be 'valid', 'same', an int or a pair of ints, "
                             f"got {padding!r}.")
        return mode
    return pair(name, "padding", padding, minimum=0)


class Geometry(NamedTuple):
    """Where the windows of one layer fall on an input of a given spatial size."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    pads: Pads
    out: tuple[int, int]

    def taps(self) -> Iterator[tuple[int, int, tuple[slice, slice]]]:
        """``(i, j, (rows, cols))`` for each tap: the slices of the padded input that it sees."""
        (kh, kw), (sh, sw), (dh, dw), (oh, ow) = self.kernel, self.stride, self.dilation, self.out
        for i in range(kh):
            for j in range(kw):
                yield i, j, (slice(i * dh, i * dh + sh * (oh - 1) + 1, sh),
                             slice(j * dw, j * dw + sw * (ow - 1) + 1, sw))


def geometry(name: str, size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
             dilation: tuple[int, int], padding: Any) -> Geometry:
    """The padding and output size for an input of spatial ``size``; a ValueError if nothing fits."""
    pads, out = [], []
    for n, k, s, d, p in zip(size, kernel, stride, dilation, (padding, padding) if
                             isinstance(padding, str) else padding):
        span = d * (k - 1) + 1
        if p == "valid":
            lo = hi = 0
        elif p == "same":
            total = max((-(-n // s) - 1) * s + span - n, 0)
            lo, hi = total // 2, total - total // 2
        else:
            lo = hi = p
        if n + lo + hi < span:
            raise ValueError(f"{name}: the window spans {span} entries but the (padded) input has "
                             f"only {n + lo + hi} along a spatial axis (input spatial size {size}). "
                             "Use a smaller kernel, padding='same', or a larger input.")
        pads.append((lo, hi))
        out.append((n + lo + hi - span) // s + 1)
    return Geometry(kernel, stride, dilation, (pads[0], pads[1]), (out[0], out[1]))


def pad(x: Array, pads: Pads, value: float = 0.0) -> Array:
    """``x`` (N, H, W, C) with ``pads`` added around H and W, filled with ``value`` (``x`` if none)."""
    (t, b), (l, r) = pads
    if t == b == l == r == 0:
        return x
    n, h, w, c = x.shape
    xp = np.full((n, h + t + b, w + l + r, c), value, dtype=x.dtype)
    xp[:, t:t + h, l:l + w, :] = x
    return xp


def crop(xp: Array, pads: Pads) -> Array:
    """The inverse of :func:`pad`: the interior of ``xp`` (a view)."""
    (t, b), (l, r) = pads
    return xp[:, t:xp.shape[1] - b, l:xp.shape[2] - r, :]


def windows(xp: Array, g: Geometry) -> Array:
    """A read-only view ``(N, OH, OW, kh, kw, C)`` of every window of the padded input ``xp``."""
    n, _, _, c = xp.shape
    s_n, s_h, s_w, s_c = xp.strides
    return as_strided(xp, (n, *g.out, *g.kernel, c),
                      (s_n, s_h * g.stride[0], s_w * g.stride[1], s_h * g.dilation[0],
                       s_w * g.dilation[1], s_c), writeable=False)


def im2col(xp: Array, g: Geometry, out: Array | None = None) -> Array:
    """The windows of ``xp`` as rows: ``(N * OH * OW, kh * kw * C)``, C-contiguous; written into
    ``out`` (a C-contiguous buffer with at least that many entries) when given, else a new array (or,
    when every window is one entry, a reshaped view of ``xp`` itself: a 1x1 kernel with stride 1)."""
    n, c = xp.shape[0], xp.shape[3]
    shape = (n * g.out[0] * g.out[1], g.kernel[0] * g.kernel[1] * c)
    if out is None:
        return windows(xp, g).reshape(shape)
    cols = out.reshape(-1)[:shape[0] * shape[1]].reshape(shape)
    np.copyto(cols.reshape(n, *g.out, *g.kernel, c), windows(xp, g))
    return cols


def im2col_single_channel(xp: Array, g: Geometry, out: Array) -> Array:
    """:func:`im2col` for one input channel, built tap by tap: the same ``(N * OH * OW, kh * kw)``
    values as a transposed view of a tap-major ``(kh * kw, N * OH * OW)`` array (BLAS takes it as it
    is), written into the C-contiguous buffer ``out``. Each tap is one strided copy with rows of ``OW``
    entries, where :func:`im2col`'s rows would be ``kw`` entries long: about 5x faster for a grayscale
    first layer (28x28 MNIST, 3x3 kernel)."""
    n, taps = xp.shape[0], g.kernel[0] * g.kernel[1]
    size = n * g.out[0] * g.out[1]
    tap_major = out.reshape(-1)[:taps * size].reshape(taps, n, *g.out)
    for t, (_, _, (rows, cols)) in enumerate(g.taps()):
        tap_major[t] = xp[:, rows, cols, 0]
    return tap_major.reshape(taps, size).T


def batch_chunk(n: int, bytes_per_example: int, budget: int | None = None) -> int:
    """How many examples of a batch of ``n`` to process at once so that one chunk takes about
    ``budget`` bytes (default :data:`CHUNK_BYTES`; at least one example).

    Convolutions run their im2col copy, product and col2im adds chunk by chunk, and max pooling its
    passes over the taps: what a chunk writes is read again while it is still in the CPU's cache,
    instead of a whole batch's window rows (42 MB for the second convolution of PyTorch's MNIST
    example) going out to memory and back.
    """
    budget = CHUNK_BYTES if budget is None else budget
    return max(1, min(n, budget // max(bytes_per_example, 1)))


def chunks(n: int, bytes_per_example: int, budget: int | None = None) -> list[slice]:
    """The batch ``range(n)`` as slices of :func:`batch_chunk` examples; one empty slice when
    ``n == 0`` (so a layer's loop runs once and builds its empty outputs)."""
    step = batch_chunk(n, bytes_per_example, budget)
    return [slice(s, min(s + step, n)) for s in range(0, n, step)] or [slice(0, 0)]


CHUNK_BYTES = 4 << 20
"""The window rows a convolution keeps at once (:func:`batch_chunk`); measured on the MNIST CNNs."""


def col2im_taps(cols: Array, g: Geometry, out: Array) -> Array:
    """:func:`col2im` for tap-major ``cols`` ``(kh * kw, N, OH, OW, C)``: each tap's rows are one
    contiguous block, so each strided add runs over long contiguous runs (about 1.6x faster for the
    MNIST CNN's second convolution than the row-major layout), written into ``out`` (the padded
    input's shape), which is overwritten."""
    out[...] = 0
    for t, (_, _, (rows, cols_)) in enumerate(g.taps()):
        out[:, rows, cols_, :] += cols[t]
    return out


def col2im(cols: Array, g: Geometry, padded_shape: tuple[int, ...]) -> Array:
    """The adjoint of :func:`im2col`: add each row of ``cols`` (N, OH, OW, kh, kw, C) back into the
    window it came from, giving an array of ``padded_shape`` (one strided add per tap)."""
    out = np.zeros(padded_shape, dtype=cols.dtype)
    for i, j, (rows, cols_) in g.taps():
        out[:, rows, cols_, :] += cols[:, :, :, i, j, :]
    return out

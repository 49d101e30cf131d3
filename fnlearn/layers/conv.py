"""Two-dimensional convolution on NHWC inputs, forward and transposed.

Both layers are one matrix product on windows: :func:`fnlearn.layers._windows.im2col` turns the padded
input into rows of ``kh * kw * C`` entries and the kernel ``(kh, kw, in, out)`` becomes a
``(kh * kw * in, out)`` matrix. The VJP uses those rows for the kernel gradient and adds the input
cotangent back through strided adds over the kernel taps (``col2im``), so no Python loop runs over
positions. ``Conv2D`` computes a cross-correlation, as PyTorch, JAX and TensorFlow do.

``Conv2D`` runs a large batch in chunks of examples (:func:`fnlearn.layers._windows.chunks`, about
4 MiB of window rows each): each chunk's rows are written, multiplied and (in the VJP) written again
while they are in the CPU's cache, and the VJP rebuilds them from ``x`` instead of keeping the whole
batch's rows from the forward pass (so ``x`` must not be modified before the VJP runs). With unit
stride and dilation along the width the input cotangent is built by column phase
(:func:`_input_cotangent_by_phase`). A 3x3 kernel with unit stride and dilation and enough channels
runs Winograd's F(4x4, 3x3) instead (:mod:`fnlearn.layers._winograd`; ``algorithm=``). Inside
``serial``, a Relu directly after the layer (and a 2x2 MaxPool2D after that) runs fused into its
chunks (:func:`fnlearn.combinators._plan`).
Measurements: docs/perf.md, "Convolutions against PyTorch".
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from numpy.typing import DTypeLike

from .. import _checks
from .._kernels import column_sums
from .._types import FUSIONS, Array, Layer, Params, Shape, resolve_dtype
from ..initializers import Initializer, lecun_normal, zeros
from . import _winograd, _windows, pooling

ALGORITHMS = ("auto", "im2col", "winograd")
WINOGRAD_MIN_CHANNELS = 16
"""``algorithm="auto"``: the fewest input and output channels for Winograd (:func:`_auto_winograd`)."""
WINOGRAD_MAX_WASTE = 1.5
"""``algorithm="auto"``: the most output the 4x4 blocks may cover, as a multiple of the output."""


def _auto_winograd(c_in: int, c_out: int, out: tuple[int, int]) -> bool:
    """Whether ``algorithm="auto"`` takes Winograd's F(4x4, 3x3) (:mod:`fnlearn.layers._winograd`)
    for a 3x3 kernel with unit stride and dilation: with at least ``WINOGRAD_MIN_CHANNELS`` input and
    output channels, and 4x4 blocks that cover at most ``WINOGRAD_MAX_WASTE`` times the output (a 3x3
    output needs one block: 1.78). Measured on batches of 64 (docs/perf.md, "Winograd"): with 8
    channels Winograd was 1.1-1.4x slower on outputs of 7 to 14 pixels, with 16 or more 0.5-0.9x."""
    blocks = np.prod([_winograd.OUT * t for t in _winograd.tile_counts(out)])
    return min(c_in, c_out) >= WINOGRAD_MIN_CHANNELS and blocks <= WINOGRAD_MAX_WASTE * out[0] * out[1]


POOLED_CHUNK_BYTES = 512 << 10
"""The window rows and output of each product of im2col with fused pooling (``serial``), a part of a
chunk of examples. Measured on examples/mnist_cnn.py's first convolution with ReLU and pooling,
batch 64, one thread (docs/perf.md): 4.8 ms per forward pass and kernel gradient with 512 KiB, 5.4 with
1 MiB, 5.5 with 256 KiB, 6.8 with 4 MiB, against 6.3 for the layers one by one; the whole step of its
network took 23.9, 24.2, 24.9 and 25.2 ms with 512 KiB, 1, 2 and 4 MiB at one thread, 18.2-18.4 ms with
any of them at two."""


def _check_nhwc(name: str, shape: Shape) -> Shape:
    shape = _checks.input_shape(name, shape)
    if len(shape) != 4:
        raise ValueError(f"{name}: input_shape must be (batch, height, width, channels) (NHWC), got "
                         f"{shape}. Reshape images to NHWC, e.g. x.reshape(-1, 28, 28, 1).")
    return shape


def _layout_hint(shape: Shape, channels: int | None = None) -> str:
    """A sentence saying the layout is NHWC, and how to convert when ``shape`` looks channels-first."""
    text = (f" The shape is read as NHWC (batch, height, width, channels): height {shape[1]}, width "
            f"{shape[2]}, channels {shape[3]}." if len(shape) == 4 else "")
    first = shape[1] == channels if channels is not None else (len(shape) == 4 and shape[1] < shape[3])
    if len(shape) == 4 and first:
        text += (" It looks like NCHW (channels first, PyTorch's layout): convert with "
                 "x.transpose(0, 2, 3, 1) and initialise with (batch, height, width, channels).")
    return text


def _geometry(name: str, shape: Shape, *args: Any) -> Any:
    """``_windows.geometry`` for the spatial axes of the NHWC ``shape``; its errors name the layout."""
    try:
        return _windows.geometry(name, shape[1:3], *args)
    except ValueError as err:
        raise ValueError(f"{err}{_layout_hint(shape)}") from None


def _kernel_params(name: str, rng: np.random.Generator, shape: tuple[int, int, int, int],
                   dtype: DTypeLike, w_init: Initializer, b_init: Initializer) -> Params:
    dt = resolve_dtype(dtype)
    w_rng, b_rng = rng.spawn(2)
    return {"w": np.asarray(w_init(w_rng, shape, dt), dtype=dt),
            "b": np.asarray(b_init(b_rng, (shape[3],), dt), dtype=dt)}


def _check_input(name: str, params: Params, x: Array, kernel: tuple[int, int],
                 channels: int) -> tuple[Array, Array]:
    _checks.exact_keys(name, params, ("w", "b"))
    w = _checks.param(name, params, "w", ndim=4)
    b = _checks.param(name, params, "b", shape=(channels,))
    _checks.same_param_dtype(name, "b", b, "w", w)
    _checks.float_array(name, x)
    if x.ndim != 4 or w.shape[:2] != kernel or x.shape[3] != w.shape[2] or w.shape[3] != channels:
        raise ValueError(f"{name}: expected x of shape (batch, height, width, {w.shape[2]}) (NHWC) to "
                         f"match params['w'] of shape {w.shape}, got {x.shape}. Check the input shape "
                         f"the model was initialised with.{_layout_hint(x.shape, w.shape[2]) if x.ndim == 4 and w.shape[2] != x.shape[3] else ''}")
    _checks.same_dtype(name, x, w.dtype)
    return w, b


def _hyperparams(kind: str, out_channels: Any, kernel_size: Any, stride: Any, dilation: Any,
                 padding: Any, w_init: Initializer | None) -> tuple[Any, ...]:
    """The checked hyperparameters shared by Conv2D and ConvTranspose2D, and the layer's name."""
    if isinstance(out_channels, bool) or not isinstance(out_channels, (int, np.integer)) or out_channels <= 0:
        raise ValueError(f"{kind}: out_channels must be a positive int, got {out_channels!r}.")
    name = f"{kind}({int(out_channels)}, {kernel_size!r})"
    return (name, int(out_channels), _windows.pair(name, "kernel_size", kernel_size),
            _windows.pair(name, "stride", stride), _windows.pair(name, "dilation", dilation),
            _windows.padding_spec(name, padding), lecun_normal() if w_init is None else w_init)


def Conv2D(out_channels: int, kernel_size: int | tuple[int, int], *, stride: Any = 1,
           padding: Any = "valid", dilation: Any = 1, w_init: Initializer | None = None,
           b_init: Initializer = zeros, algorithm: str = "auto") -> Layer:
    """A 2-D convolution (cross-correlation) over the height and width of NHWC inputs.

    PyTorch's NCHW batches must be transposed first (``x.transpose(0, 2, 3, 1)``); a shape that does
    not fit says how it was read as NHWC and, when it looks channels-first, how to convert it.

    Args:
        out_channels: the number of output channels.
        kernel_size: ``k`` or ``(kh, kw)``.
        stride: ``s`` or ``(sh, sw)``: how far the window moves.
        padding: ``"valid"`` (none), ``"same"`` (output ``ceil(size / stride)``), an int or a pair
            (entries added on both sides of each axis). See ``fnlearn.layers._windows``.
        dilation: ``d`` or ``(dh, dw)``: the gap between kernel taps (1 is a dense kernel).
        w_init: initializer of ``w`` (``(kh, kw, in, out)``); default LeCun normal (variance
            ``1 / (kh * kw * in)``).
        b_init: initializer of ``b`` (``(out,)``); default zeros.
        algorithm: ``"im2col"`` (window rows times the kernel matrix), ``"winograd"`` (Winograd's
            F(4x4, 3x3), 3x3 kernels with unit stride and dilation only: about 2x fewer
            multiplications, float32 results up to ~1e-5 relative, 5-35x less accurate; a NaN or
            inf spreads over the 4x4 output blocks around it; see ``fnlearn.layers._winograd``) or
            ``"auto"`` (default: Winograd where it was measured faster, see ``_auto_winograd``;
            else im2col). Both give the same function and VJP up to rounding.

    Shapes: ``x`` is ``(batch, H, W, in)``; ``y`` is ``(batch, OH, OW, out)`` with
    ``OH = (H + pad_top + pad_bottom - dh * (kh - 1) - 1) // sh + 1`` (likewise ``OW``). The forward
    pass and the kernel gradient are one matrix product each per chunk of examples (module docstring);
    the input cotangent is one more plus ``kh * kw`` strided adds, all skipped with
    ``compute_dx=False``.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> layer = fl.Conv2D(4, 3, padding="same")
        >>> params = layer.init(np.random.default_rng(0), (-1, 8, 8, 1))
        >>> params["w"].shape, params["b"].shape
        ((3, 3, 1, 4), (4,))
        >>> y, vjp = layer.apply(params, np.ones((2, 8, 8, 1), np.float32))
        >>> y.shape, y.dtype
        ((2, 8, 8, 4), dtype('float32'))
        >>> dparams, dx = vjp(np.ones_like(y))
        >>> dparams["w"].shape, dx.shape
        ((3, 3, 1, 4), (2, 8, 8, 1))
        >>> wide = fl.Conv2D(16, 3, padding="same", algorithm="winograd")  # "auto" would too: 16 -> 16
        >>> p16 = wide.init(np.random.default_rng(0), (-1, 8, 8, 16), dtype=np.float64)
        >>> x16 = np.random.default_rng(1).standard_normal((2, 8, 8, 16))
        >>> im2col = fl.Conv2D(16, 3, padding="same", algorithm="im2col")
        >>> bool(np.allclose(wide.apply(p16, x16)[0], im2col.apply(p16, x16)[0], rtol=1e-12, atol=1e-12))
        True
    """
    name, out_channels, kernel, strides, dilations, pad_spec, w_init = _hyperparams(
        "Conv2D", out_channels, kernel_size, stride, dilation, padding, w_init)
    if algorithm not in ALGORITHMS:
        raise ValueError(f"{name}: algorithm must be one of {ALGORITHMS}, got {algorithm!r}.")
    winograd_fits = kernel == (3, 3) and strides == (1, 1) and dilations == (1, 1)
    if algorithm == "winograd" and not winograd_fits:
        raise ValueError(f"{name}: algorithm='winograd' needs a 3x3 kernel with stride 1 and dilation "
                         f"1, got kernel {kernel}, stride {strides}, dilation {dilations}. Use "
                         f"algorithm='auto' or 'im2col'.")
    may_winograd = winograd_fits and algorithm != "im2col"

    def init(rng: np.random.Generator, input_shape: Shape, *, dtype: DTypeLike = None) -> Params:
        shape = _check_nhwc(name, input_shape)
        _geometry(name, shape, kernel, strides, dilations, pad_spec)
        return _kernel_params(name, rng, (*kernel, shape[3], out_channels), dtype, w_init, b_init)

    def forward(params: Params, x: Array, relu: bool, pool: bool, label: str):
        """The convolution, then (inside ``serial``, see :func:`fnlearn.combinators._plan`) a ReLU and
        2x2 max pooling fused into it (None when the output has no 2x2 window). ``label`` names the
        layer whose output cotangent the VJP takes, for its errors."""
        w, b = _check_input(name, params, x, kernel, out_channels)
        g = _windows.geometry(name, x.shape[1:3], kernel, strides, dilations, pad_spec)
        if pool and min(g.out) < 2:
            return None  # no 2x2 window: MaxPool2D, run by itself, says so
        if may_winograd and (algorithm == "winograd" or _auto_winograd(x.shape[3], out_channels, g.out)):
            y, winograd_vjp = _winograd.conv3x3(x, w, b, g.pads, g.out, relu=relu, pool=pool)

            def vjp_winograd(dy: Array, *, compute_dx: bool = True) -> tuple[Params, Array | None]:
                _checks.cotangent(label, dy, y.shape, y.dtype)
                dw, db, dx = winograd_vjp(dy, compute_dx)
                return {"w": dw, "b": db}, dx

            return y, vjp_winograd
        return _by_im2col(x, w, b, g, relu, pool, label)

    def apply(params: Params, x: Array, *, rng: Any = None, train: bool = False):
        return forward(params, x, False, False, name)

    def with_relu(params: Params, x: Array, pool: bool, label: str):
        return forward(params, x, True, pool, label)

    FUSIONS[apply] = with_relu
    return Layer(init, _checks.named(apply, name))


def _by_im2col(x: Array, w: Array, b: Array, g: _windows.Geometry, relu: bool, pool: bool,
               label: str) -> tuple[Array, Callable[..., tuple[Params, Array | None]]]:
    """Conv2D's output and VJP by im2col, a chunk of examples at a time (module docstring); with
    ``relu`` and ``pool`` (``serial``'s fusions), the output is max-pooled over 2x2 windows with stride
    2 and passed through a ReLU while it is in cache, so only the pooled output is laid out (and in the
    VJP, only a few examples' share of the cotangent at a time). With pooling, each chunk's window rows
    are multiplied a few examples at a time (``POOLED_CHUNK_BYTES`` of rows and output), products that
    OpenBLAS may round differently from the layer's own one per chunk."""
    n, c_out = x.shape[0], w.shape[3]
    w2 = w.reshape(-1, c_out)
    rows_per_example = g.out[0] * g.out[1]
    entries_per_example = rows_per_example * w2.shape[0]  # of the window rows
    chunks = _windows.chunks(n, entries_per_example * x.itemsize)
    most = chunks[0].stop - chunks[0].start  # examples per chunk, at most
    step = (_windows.batch_chunk(most, (entries_per_example + rows_per_example * c_out) * x.itemsize,
                                 POOLED_CHUNK_BYTES) if pool else max(most, 1))  # examples per product
    im2col = _windows.im2col_single_channel if x.shape[3] == 1 else _windows.im2col
    full = (n, *g.out, c_out)
    if pool:
        y = np.empty((n, g.out[0] // 2, g.out[1] // 2, c_out), x.dtype)
        winners = np.empty(y.shape, np.uint8)
        scratch = pooling.pool_scratch((step, *y.shape[1:]), x.dtype)
        step_out = np.empty((step, *full[1:]), x.dtype)  # a few examples' output before pooling
    else:
        y = np.empty(full, x.dtype)
    buf = np.empty(most * entries_per_example, x.dtype)
    zeros = np.zeros((step, *y.shape[1:]), x.dtype) if relu else None
    for c in chunks:  # im2col, product, bias (pooling, ReLU) while the chunk's rows are in cache
        cols = im2col(_windows.pad(x[c], g.pads), g, out=buf)
        for e, r in _products(c, step, rows_per_example):
            m = e.stop - e.start
            out = step_out[:m] if pool else y[e]
            np.matmul(cols[r], w2, out=out.reshape(-1, c_out))
            out += b
            if pool:
                pooling.max_of_taps(pooling.taps_2x2(out, y.shape[1:3]), y[e], winners[e],
                                    tuple(a[:m] for a in scratch))
            if relu:
                np.maximum(y[e], zeros[:m], out=y[e])  # Relu's own operation: the same bits
    kept = cols if len(chunks) == 1 else None  # the only chunk's rows: the VJP reuses them

    def vjp(dy: Array, *, compute_dx: bool = True) -> tuple[Params, Array | None]:
        _checks.cotangent(label, dy, y.shape, y.dtype)
        dw = np.empty(w.shape, dy.dtype)  # owns its memory (train_step can add into it)
        dw2 = dw.reshape(-1, c_out)
        fused = relu or pool
        db = np.zeros(c_out, dy.dtype) if fused else column_sums(dy.reshape(-1, c_out))
        dx = np.empty(x.shape, x.dtype) if compute_dx else None
        write_dx = _input_cotangent(w, g, x.shape, chunks[0]) if compute_dx else None
        rows = np.empty_like(buf) if kept is None else None  # this call's own (thread-safe)
        masked = np.empty((step, *y.shape[1:]), dy.dtype) if relu else None
        unpooled = np.zeros((step, *full[1:]), dy.dtype) if pool else None  # zeros: outside windows
        first = True
        for c in chunks:
            cols = kept if kept is not None else im2col(_windows.pad(x[c], g.pads), g, out=rows)
            for e, r in _products(c, step, rows_per_example):
                m = e.stop - e.start
                dye = dy[e]
                if relu:  # Relu's VJP: dy times (y > 0), y > 0 exactly where Relu's input is
                    dye = np.greater(y[e], 0.0, out=masked[:m])
                    dye *= dy[e]
                if pool:
                    pooling.to_winning_taps(dye, winners[e], pooling.taps_2x2(unpooled[:m], y.shape[1:3]))
                    dye = unpooled[:m]
                dye2 = dye.reshape(-1, c_out)
                if fused:
                    db += column_sums(dye2)
                if first:
                    np.matmul(cols[r].T, dye2, out=dw2)
                    first = False
                else:
                    dw2 += cols[r].T @ dye2
                if write_dx is not None:
                    write_dx(dye, dx[e])
        return {"w": dw, "b": db}, dx

    return y, vjp


def _products(chunk: slice, step: int, rows_per_example: int) -> list[tuple[slice, slice]]:
    """The examples of ``chunk`` ``step`` at a time, each with its rows in the chunk's window rows."""
    return [(slice(a, min(a + step, chunk.stop)),
             slice((a - chunk.start) * rows_per_example, (min(a + step, chunk.stop) - chunk.start) * rows_per_example))
            for a in range(chunk.start, chunk.stop, step)] or [(chunk, slice(0, 0))]


def _input_cotangent(w: Array, g: _windows.Geometry, x_shape: tuple[int, ...],
                     first: slice) -> Callable[[Array, Array], None]:
    """``write(dy, dx)``: the input cotangent of one chunk of examples, ``dy`` ``(m, OH, OW, out)``
    into ``dx`` ``(m, H, W, in)``, for chunks no longer than ``first``.

    By column phase (:func:`_input_cotangent_by_phase`) when the stride and dilation along the width
    are 1, else one batched product into tap-major blocks and :func:`_windows.col2im_taps`. With
    padding the cotangent is built in a padded buffer and cropped into ``dx``; without, in ``dx``.
    """
    kh, kw, c_in, c_out = w.shape
    by_phase = g.stride[1] == g.dilation[1] == 1 < kw
    # by column phase: per kernel row, (out, kw * in); else per tap, (out, in)
    w_dx = (w.transpose(0, 3, 1, 2).reshape(kh, c_out, kw * c_in) if by_phase
            else w.transpose(0, 1, 3, 2).reshape(kh * kw, c_out, c_in))
    padded = any(p for side in g.pads for p in side)
    buf = (np.empty((first.stop - first.start, *(d + lo + hi for d, (lo, hi) in
                                                 zip(x_shape[1:3], g.pads)), c_in), w.dtype)
           if padded else None)

    def write(dy: Array, dx: Array) -> None:
        dxp = buf[:len(dy)] if buf is not None else dx
        if by_phase:
            _input_cotangent_by_phase(dy, w_dx, g, dxp)
        else:
            dcols = np.matmul(dy.reshape(-1, c_out), w_dx).reshape(kh * kw, len(dy), *g.out, c_in)
            _windows.col2im_taps(dcols, g, out=dxp)
        if buf is not None:
            dx[...] = _windows.crop(dxp, g.pads)

    return write


def _input_cotangent_by_phase(dy: Array, w_rows: Array, g: _windows.Geometry, out: Array) -> None:
    """The input cotangent of a convolution with unit stride and dilation along the width, written
    into the padded ``out`` ``(n, Hp, Wp, in)``: for each column phase ``r`` (output columns
    ``r, r + kw, r + 2 kw, ...``), one product per kernel row ``i`` with ``w_rows[i]`` ``(out, kw *
    in)``.

    The windows of one phase do not overlap along the width and tile a contiguous run of input
    columns, so each product's rows, ``kw * in`` entries each, land side by side: one add per phase and
    kernel row over runs as long as an output row, where a product per tap would give each of the
    ``kh * kw`` adds a block only ``in`` wide. The products are ``kw * in`` wide instead of ``in``,
    which OpenBLAS runs faster (docs/perf.md).
    """
    n, oh, ow, c_out = dy.shape
    kh, kw = g.kernel
    (sh, _), (dh, _) = g.stride, g.dilation
    c_in = out.shape[3]
    out[...] = 0
    for r in range(min(kw, ow)):
        count = len(range(r, ow, kw))
        z = np.matmul(np.ascontiguousarray(dy[:, :, r::kw, :]).reshape(-1, c_out), w_rows)
        for i in range(kh):
            rows = slice(i * dh, i * dh + sh * (oh - 1) + 1, sh)
            out[:, rows, r:r + kw * count, :] += z[i].reshape(n, oh, kw * count, c_in)


def ConvTranspose2D(out_channels: int, kernel_size: int | tuple[int, int], *, stride: Any = 1,
                    padding: Any = "valid", dilation: Any = 1, w_init: Initializer | None = None,
                    b_init: Initializer = zeros) -> Layer:
    """The transposed 2-D convolution: the input-VJP of :func:`Conv2D`, as a layer (NHWC).

    Each input entry scatters ``x[n, h, w, :] @ w[i, j].T``-style contributions into a window of the
    output; windows overlap where ``stride < kernel``. It upsamples by ``stride``.

    Args:
        out_channels: the number of output channels.
        kernel_size, stride, dilation: as in :func:`Conv2D`.
        padding: ``"valid"`` (full output, ``OH = (H - 1) * sh + dh * (kh - 1) + 1``), ``"same"``
            (``OH = H * sh``, cropping the full output as ``Conv2D``'s ``"same"`` would pad it; when
            the kernel span ``dh * (kh - 1) + 1`` is shorter than the stride nothing is cropped and
            the output is the full one), or an int or pair ``p`` cropping ``p`` entries from both
            sides (PyTorch's ``padding=p``).
        w_init: initializer of ``w`` (``(kh, kw, in, out)``, the layout of :func:`Conv2D`); default
            LeCun normal.
        b_init: initializer of ``b`` (``(out,)``); default zeros.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> layer = fl.ConvTranspose2D(3, 2, stride=2)
        >>> params = layer.init(np.random.default_rng(0), (-1, 4, 4, 5))
        >>> y, vjp = layer.apply(params, np.ones((1, 4, 4, 5), np.float32))
        >>> y.shape, vjp(np.ones_like(y))[1].shape
        ((1, 8, 8, 3), (1, 4, 4, 5))
    """
    name, out_channels, kernel, strides, dilations, pad_spec, w_init = _hyperparams(
        "ConvTranspose2D", out_channels, kernel_size, stride, dilation, padding, w_init)

    def init(rng: np.random.Generator, input_shape: Shape, *, dtype: DTypeLike = None) -> Params:
        shape = _check_nhwc(name, input_shape)
        try:
            _transposed_geometry(name, shape[1:3], kernel, strides, dilations, pad_spec)
        except ValueError as err:
            raise ValueError(f"{err}{_layout_hint(shape)}") from None
        return _kernel_params(name, rng, (*kernel, shape[3], out_channels), dtype, w_init, b_init)

    def apply(params: Params, x: Array, *, rng: Any = None, train: bool = False):
        w, b = _check_input(name, params, x, kernel, out_channels)
        g, full = _transposed_geometry(name, x.shape[1:3], kernel, strides, dilations, pad_spec)
        n, c_in = x.shape[0], x.shape[3]
        x2 = x.reshape(-1, c_in)
        w2 = w.transpose(2, 0, 1, 3).reshape(c_in, -1)  # (in, kh * kw * out)
        cols = (x2 @ w2).reshape(n, *x.shape[1:3], *kernel, out_channels)
        y = np.ascontiguousarray(_windows.crop(_windows.col2im(cols, g, (n, *full, out_channels)),
                                               g.pads))
        y += b

        def vjp(dy: Array, *, compute_dx: bool = True) -> tuple[Params, Array | None]:
            _checks.cotangent(name, dy, y.shape, y.dtype)
            dcols = _windows.im2col(_windows.pad(dy, g.pads), g)  # (N * H * W, kh * kw * out)
            dw = (x2.T @ dcols).reshape(c_in, *kernel, out_channels).transpose(1, 2, 0, 3)
            dparams = {"w": np.ascontiguousarray(dw), "b": dy.sum(axis=(0, 1, 2))}
            if not compute_dx:
                return dparams, None
            return dparams, (dcols @ w2.T).reshape(x.shape)

        return y, vjp

    return Layer(init, _checks.named(apply, name))


def _transposed_geometry(name: str, size: tuple[int, int], kernel: tuple[int, int],
                         stride: tuple[int, int], dilation: tuple[int, int],
                         padding: Any) -> tuple[_windows.Geometry, tuple[int, int]]:
    """The geometry of the forward convolution whose input-VJP this layer is, and its full size."""
    full = tuple((n - 1) * s + d * (k - 1) + 1 for n, k, s, d in zip(size, kernel, stride, dilation))
    pads = []
    for n, f, s, p in zip(size, full, stride, (padding, padding) if isinstance(padding, str)
                          else padding):
        crop = 0 if p == "valid" else max(f - n * s, 0) if p == "same" else 2 * p
        lo = crop // 2
        if f - crop < 1:
            raise ValueError(f"{name}: padding {padding!r} crops the whole output (full output size "
                             f"{full} for input spatial size {size}). Use a smaller padding.")
        pads.append((lo, crop - lo))
    g = _windows.Geometry(kernel, stride, dilation, (pads[0], pads[1]), size)
    return g, (full[0], full[1])

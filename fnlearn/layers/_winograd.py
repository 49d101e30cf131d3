"""Winograd's minimal filtering F(4x4, 3x3): a 3x3, unit-stride convolution on NHWC inputs as four
kinds of matrix product.

The padded input is cut into 6x6 tiles that overlap by two rows and columns (stride 4); each tile
gives a 4x4 block of the output. With the Toom-Cook matrices ``B`` (6x6), ``G`` (6x3) and ``A`` (6x4)
of Lavin & Gray (2016), interpolating at 0, 1, -1, 2, -2 and infinity, one tile ``d`` and one
input/output channel pair of the kernel ``g`` give

    y = A^T [(G g G^T) * (B^T d B)] A

(``*`` elementwise), so the correlation becomes, for each of the 36 tile positions ``p``, one
``(tiles, in) @ (in, out)`` product between the transformed tiles ``V[p]`` and the transformed
kernel ``U[p]``: 4x fewer multiplications than im2col's one product. The transforms are products
too: ``kron(B^T, B^T)`` (36x36) maps a tile's 36 entries to ``V``'s and ``kron(A^T, A^T)`` (16x36)
maps ``M = V @ U`` back to the 16 outputs, each over all tiles and channels at once, so all the
arithmetic runs in BLAS (on all its threads) and only the tile copies, the strided adds of
overlapping tiles in the VJP and the bias add do not. Counting the transforms, the second
convolution of PyTorch's MNIST example multiplies 0.70 GFLOP forward (im2col: 1.36) and 1.04 in the
VJP (2.72); they are dense products that multiply many zeros, which OpenBLAS runs faster than
separable 6x6 products would.

The VJP is the transpose of each step: ``dM = kron(A, A)`` times the output cotangent's blocks,
``dU = V^T dM`` (the kernel gradient, mapped back by ``G^T``), ``dV = dM U^T`` and the tiles'
cotangent ``kron(B, B) dV``, added into the overlapping tiles of the input cotangent. Everything runs
in chunks of examples whose transformed tiles fit in about :data:`fnlearn.layers._windows.CHUNK_BYTES`;
the transformed input tiles ``V`` of the whole batch are kept for the kernel gradient (2.25x the
input's size when the blocks fit the output exactly).

Rounding and non-finite values: the interpolation points make float32 results 5-35x less accurate
than im2col's (relative error 1e-6 to 1.3e-5 against 1e-7 to 7e-7, from 8 to 512 channels); in
float64 both are exact to about 1e-13. A NaN or an infinity in ``x`` spreads to every output of the
4x4 blocks whose tiles hold it (the transforms multiply it by zeros), where im2col's outputs see
only the 3x3 neighbourhood; likewise for ``dy`` in the VJP.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .._kernels import column_sums
from .._types import Array
from . import _windows, pooling

_BT = np.array([[4, 0, -5, 0, 1, 0],
                [0, -4, -4, 1, 1, 0],
                [0, 4, -4, -1, 1, 0],
                [0, -2, -1, 2, 1, 0],
                [0, 2, -1, -2, 1, 0],
                [0, 4, 0, -5, 0, 1]], dtype=np.float64)
_G = np.array([[1 / 4, 0, 0],
               [-1 / 6, -1 / 6, -1 / 6],
               [-1 / 6, 1 / 6, -1 / 6],
               [1 / 24, 1 / 12, 1 / 6],
               [1 / 24, -1 / 12, 1 / 6],
               [0, 0, 1]], dtype=np.float64)
_AT = np.array([[1, 1, 1, 1, 1, 0],
                [0, 1, -1, 2, -2, 0],
                [0, 1, 1, 4, 4, 0],
                [0, 1, -1, 8, -8, 1]], dtype=np.float64)
_GG = np.kron(_G, _G)  # (36, 9): a 3x3 kernel to its 36 transformed entries (kept in float64)

TILE, OUT = 6, 4  # input tile side and output block side


@lru_cache(maxsize=None)
def _transforms(dtype: np.dtype) -> tuple[Array, Array]:
    """``kron(B^T, B^T)`` (36, 36) and ``kron(A^T, A^T)`` (16, 36) in ``dtype`` (integers: exact)."""
    bb, aa = np.kron(_BT, _BT).astype(dtype), np.kron(_AT, _AT).astype(dtype)
    bb.flags.writeable = aa.flags.writeable = False
    return bb, aa


def _tiles(xp: Array, tiles: tuple[int, int]) -> Array:
    """The overlapping 6x6 tiles of ``xp`` ``(m, 4 th + 2, 4 tw + 2, C)`` as a read-only view
    ``(6, 6, m, th, tw, C)``."""
    s = xp.strides
    return as_strided(xp, (TILE, TILE, xp.shape[0], *tiles, xp.shape[3]),
                      (s[1], s[2], s[0], OUT * s[1], OUT * s[2], s[3]), writeable=False)


def tile_counts(out_size: tuple[int, int]) -> tuple[int, int]:
    """How many 4x4 output blocks cover an output of ``out_size`` (the last ones may overhang)."""
    return tuple(-(-o // OUT) for o in out_size)  # type: ignore[return-value]


def conv3x3(x: Array, w: Array, b: Array, pads: _windows.Pads, out_size: tuple[int, int], *,
            relu: bool = False, pool: bool = False
            ) -> tuple[Array, Callable[[Array, bool], tuple[Array, Array, Array | None]]]:
    """``y`` ``(n, OH, OW, out)`` of the unit-stride 3x3 correlation of ``x`` ``(n, H, W, in)``
    padded by ``pads``, plus ``b``; and ``vjp(dy, compute_dx) -> (dw, db, dx)``.

    ``relu``: ``y`` is ``max(y, 0)`` (as ``Relu``), applied to each chunk while it is in cache.
    ``pool`` (an output of at least 2x2): ``y`` is max-pooled over 2x2 windows with stride 2,
    ``(n, OH // 2, OW // 2, out)``, straight from the 4x4 output blocks, each of which holds four whole
    windows (the blocks' side, 4, is even): the full-size output is never laid out, and the VJP writes
    the pooled cotangent's share into the blocks directly. Where the blocks overhang the output, the
    windows past ``OH // 2`` and ``OW // 2`` are pooled too and dropped (their cotangent is zero). Ties
    and NaNs as in ``MaxPool2D`` (the same knockout over the same taps); with ``relu`` too, the ReLU
    runs after the pooling, as ``serial`` runs the pair. The output and the kernel and input cotangents
    are those of the layers one after the other, bit for bit; ``db`` is the same sum in another order."""
    n, h, wd, c_in = x.shape
    c_out, dt = w.shape[3], x.dtype
    bb, aa = _transforms(dt)
    th, tw = tile_counts(out_size)
    per_example = th * tw  # tiles
    (top, _), (left, _) = pads
    hp, wp = OUT * th + 2, OUT * tw + 2  # the padded input the tiles cover (zeros past ``pads``)
    u = (_GG @ w.reshape(9, -1).astype(np.float64, copy=False)).astype(dt).reshape(36, c_in, c_out)
    chunks = _windows.chunks(n, 36 * per_example * (c_in + c_out) * x.itemsize)
    most = chunks[0].stop - chunks[0].start  # examples per chunk, at most
    size = most * per_example  # tiles per chunk, at most
    v = np.empty((len(chunks), 36, size, c_in), dt)  # the transformed tiles, kept for dw
    tiles = np.empty((36, size * c_in), dt)
    m = np.empty((36, size, c_out), dt)
    blocks = np.empty((16, size * c_out), dt)
    xbuf = (None if (top, left) == (0, 0) and (h, wd) == (hp, wp)
            else np.zeros((most, hp, wp, c_in), dt))
    if pool:
        y = np.empty((n, out_size[0] // 2, out_size[1] // 2, c_out), dt)
        whole = (most, OUT // 2 * th, OUT // 2 * tw, c_out)  # the windows of whole blocks
        cut = None if y.shape[1:] == whole[1:] else np.empty(whole, dt)  # (windows to drop)
        winners = np.empty((2, 2, n, th, tw, c_out), np.uint8)  # per window, its first maximum's tap
        scratch = pooling.pool_scratch((2, 2, most, th, tw, c_out), dt)
    else:
        y = np.empty((n, *out_size, c_out), dt)
    zeros = np.zeros((most, *y.shape[1:]), dt) if relu else None
    for i, s in enumerate(chunks):
        k = s.stop - s.start
        p = k * per_example
        if xbuf is None:
            xp = x[s]
        else:
            xp = xbuf[:k]
            xp[:, top:top + h, left:left + wd] = x[s]
        tc = tiles[:, :p * c_in]
        tc.reshape(TILE, TILE, k, th, tw, c_in)[...] = _tiles(xp, (th, tw))
        np.matmul(bb, tc, out=v[i, :, :p].reshape(36, p * c_in))
        np.matmul(v[i, :, :p], u, out=m[:, :p])
        np.matmul(aa, m[:, :p].reshape(36, p * c_out), out=blocks[:, :p * c_out])
        if pool:
            with_bias = blocks[:, :p * c_out].reshape(16, p, c_out)
            np.add(with_bias, b, out=with_bias)
            _pool_blocks(blocks[:, :p * c_out], y[s] if cut is None else cut[:k], winners[:, :, s],
                         tuple(a[:, :, :k] for a in scratch))
            if cut is not None:
                y[s] = cut[:k, :y.shape[1], :y.shape[2]]
        else:
            _from_blocks(blocks[:, :p * c_out].reshape(OUT, OUT, k, th, tw, c_out), y[s], b)
        if relu:
            np.maximum(y[s], zeros[:k], out=y[s])  # Relu's own operation: the same bits

    dropped = pool and cut is not None  # (the VJP keeps no scratch of the forward pass alive)
    padded = None if xbuf is None else xbuf.shape

    def vjp(dy: Array, compute_dx: bool) -> tuple[Array, Array, Array | None]:
        du = np.empty((36, c_in, c_out), dt)
        part = np.empty_like(du) if len(chunks) > 1 else du
        db = np.zeros(c_out, dt) if relu or pool else column_sums(dy.reshape(-1, c_out))
        dblocks = np.zeros((16, size * c_out), dt)  # zeros stay where blocks overhang the output
        dm = np.empty((36, size, c_out), dt)
        masked = np.empty((most, *y.shape[1:]), dt) if relu else None
        dcut = np.zeros(whole, dt) if dropped else None  # zeros: the dropped windows
        if compute_dx:
            dx = np.empty(x.shape, dt)
            dv = np.empty((36, size, c_in), dt)
            dtiles = np.empty((36, size * c_in), dt)
            dxbuf = None if padded is None else np.empty(padded, dt)
        for i, s in enumerate(chunks):
            k = s.stop - s.start
            p = k * per_example
            dys = dy[s]
            if relu:  # Relu's VJP: dy times (y > 0), y > 0 exactly where Relu's input is
                dys = np.greater(y[s], 0.0, out=masked[:k])
                dys *= dy[s]
            if pool:
                if dcut is not None:
                    dcut[:k, :y.shape[1], :y.shape[2]] = dys
                    dys = dcut[:k]
                _unpool_blocks(dys, winners[:, :, s], dblocks[:, :p * c_out])
            else:
                _into_blocks(dys, dblocks[:, :p * c_out].reshape(OUT, OUT, k, th, tw, c_out))
            if relu or pool:  # the sum over the layer's own (unpooled) cotangent, as its VJP has it
                db += column_sums(dblocks[:, :p * c_out].reshape(16, p, c_out).reshape(-1, c_out))
            np.matmul(aa.T, dblocks[:, :p * c_out], out=dm[:, :p].reshape(36, p * c_out))
            np.matmul(v[i, :, :p].transpose(0, 2, 1), dm[:, :p], out=du if i == 0 else part)
            if i:
                du += part
            if compute_dx:
                np.matmul(dm[:, :p], u.transpose(0, 2, 1), out=dv[:, :p])
                np.matmul(bb.T, dv[:, :p].reshape(36, p * c_in), out=dtiles[:, :p * c_in])
                dxp = dx[s] if dxbuf is None else dxbuf[:k]
                _add_tiles(dtiles[:, :p * c_in].reshape(TILE, TILE, k, th, tw, c_in), dxp)
                if dxbuf is not None:
                    dx[s] = dxp[:, top:top + h, left:left + wd]
        dw = (_GG.T @ du.reshape(36, -1).astype(np.float64, copy=False)).reshape(w.shape).astype(dt)
        return dw, db, (dx if compute_dx else None)

    return y, vjp


def _window_taps(blocks: Array, k: int, th: int, tw: int, c: int) -> list[Array]:
    """The four taps of the 2x2 windows in the 4x4 blocks ``blocks`` ``(16, k * th * tw * c)`` (rows
    of a block ``2 a + i``, columns ``2 e + j``), in row-major tap order ``(i, j)`` = 0, 1, 2, 3,
    each a view ``(2, 2, k, th, tw, c)`` indexed by the window ``(a, e)`` within the block."""
    split = blocks.reshape(2, 2, 2, 2, k, th, tw, c)  # (a, i, e, j, example, tile row, tile column, c)
    return [split[:, i, :, j] for i in (0, 1) for j in (0, 1)]


def _pooled_windows(pooled: Array, th: int, tw: int) -> Array:
    """``pooled`` ``(k, 2 th, 2 tw, c)`` as a view ``(2, 2, k, th, tw, c)`` indexed like the windows
    of :func:`_window_taps`: window ``(a, e)`` of block ``(r, q)`` is ``pooled[:, 2 r + a, 2 q + e]``."""
    k, c = pooled.shape[0], pooled.shape[3]
    return pooled.reshape(k, th, 2, tw, 2, c).transpose(2, 4, 0, 1, 3, 5)


def _pool_blocks(blocks: Array, pooled: Array, winners: Array, scratch: tuple[Array, Array, Array]) -> None:
    """``pooled`` ``(k, 2 th, 2 tw, c)`` = the maxima of the 2x2 windows of ``blocks`` ``(16, k * th *
    tw * c)``, and ``winners`` ``(2, 2, k, th, tw, c)`` the first tap that attains each (MaxPool2D's
    knockout, :func:`fnlearn.layers.pooling.max_of_taps`; ``scratch`` shaped like ``winners``)."""
    k, c = pooled.shape[0], pooled.shape[3]
    th, tw = winners.shape[3:5]
    pooling.max_of_taps(_window_taps(blocks, k, th, tw, c), _pooled_windows(pooled, th, tw), winners, scratch)


def _unpool_blocks(dpooled: Array, winners: Array, dblocks: Array) -> None:
    """The transpose of :func:`_pool_blocks`: ``dpooled`` ``(k, 2 th, 2 tw, c)`` times 1 at each
    window's winning tap and 0 at the others, written into every entry of ``dblocks`` ``(16, k * th * tw
    * c)``. A product, as in MaxPool2D's VJP: ``dy * 0`` keeps the sign and the NaN of ``dy``."""
    k, c = dpooled.shape[0], dpooled.shape[3]
    th, tw = winners.shape[3:5]
    pooling.to_winning_taps(_pooled_windows(dpooled, th, tw), winners, _window_taps(dblocks, k, th, tw, c))


def _from_blocks(blocks: Array, y: Array, b: Array) -> None:
    """``y`` ``(m, OH, OW, out)`` = the 4x4 output blocks ``blocks`` ``(4, 4, m, th, tw, out)`` laid
    out in place, plus ``b``; blocks that overhang the output are cut."""
    m, oh, ow, c = y.shape
    th, tw = blocks.shape[3:5]
    if (oh, ow) == (OUT * th, OUT * tw):
        np.add(blocks.transpose(2, 3, 0, 4, 1, 5), b, out=y.reshape(m, th, OUT, tw, OUT, c))
        return
    for a in range(min(OUT, oh)):
        for e in range(min(OUT, ow)):
            np.add(blocks[a, e, :, :len(range(a, oh, OUT)), :len(range(e, ow, OUT))], b,
                   out=y[:, a::OUT, e::OUT])


def _into_blocks(dy: Array, blocks: Array) -> None:
    """The transpose of :func:`_from_blocks`: ``dy`` ``(m, OH, OW, out)`` into ``blocks`` ``(4, 4, m,
    th, tw, out)``, leaving the entries past the output as they are (zeros)."""
    m, oh, ow, c = dy.shape
    th, tw = blocks.shape[3:5]
    if (oh, ow) == (OUT * th, OUT * tw):
        blocks[...] = dy.reshape(m, th, OUT, tw, OUT, c).transpose(2, 4, 0, 1, 3, 5)
        return
    for a in range(min(OUT, oh)):
        for e in range(min(OUT, ow)):
            blocks[a, e, :, :len(range(a, oh, OUT)), :len(range(e, ow, OUT))] = dy[:, a::OUT, e::OUT]


def _add_tiles(dtiles: Array, out: Array) -> None:
    """Write into ``out`` ``(m, 4 th + 2, 4 tw + 2, C)`` the sum of the overlapping tiles ``dtiles``
    ``(6, 6, m, th, tw, C)`` (the transpose of :func:`_tiles`), overwriting it.

    Rows 0-3 and columns 0-3 of every tile cover each position of ``out[:, :4 th, :4 tw]`` once: one
    copy. Rows 4-5 (columns 0-3) and columns 4-5 (rows 0-3) of the tiles land on every fourth row or
    column, side by side: one add each; the four corners add one by one."""
    m, c = out.shape[0], out.shape[3]
    th, tw = dtiles.shape[3:5]
    rows, cols = OUT * th, OUT * tw
    out[:, rows:] = 0
    out[:, :rows, cols:] = 0
    out[:, :rows, :cols].reshape(m, th, OUT, tw, OUT, c)[...] = dtiles[:OUT, :OUT].transpose(2, 3, 0, 4, 1, 5)
    for a in range(OUT, TILE):  # a tile's row a: every fourth row from a, all its 4 columns side by side
        every_fourth_row = out[:, a:a + rows:OUT, :cols].reshape(m, th, tw, OUT, c)  # a view
        every_fourth_row += dtiles[a, :OUT].transpose(1, 2, 3, 0, 4)
        every_fourth_col = out[:, :rows, a:a + cols:OUT].reshape(m, th, OUT, tw, c)
        every_fourth_col += dtiles[:OUT, a].transpose(1, 2, 0, 3, 4)
        for e in range(OUT, TILE):
            out[:, a:a + rows:OUT, e:e + cols:OUT] += dtiles[a, e]

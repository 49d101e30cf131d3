"""Winograd's minimal filtering F(4x4, 3x3): a 3x3, unit-stride convolution on NHWC inputs with 4x
fewer multiplications than im2col, as four kinds of matrix product.

The padded input is cut into 6x6 tiles that overlap by two rows and columns (stride 4); each tile
gives a 4x4 block of the output. With the Toom-Cook matrices ``B`` (6x6), ``G`` (6x3) and ``A`` (6x4)
of Lavin & Gray (2016), interpolating at 0, 1, -1, 2, -2 and infinity, one tile ``d`` and one
input/output channel pair of the kernel ``g`` give

    y = A^T [(G g G^T) * (B^T d B)] A

(``*`` elementwise), so the correlation becomes, for each of the 36 tile positions ``p``, one
``(tiles, in) @ (in, out)`` product between the transformed tiles ``V[p]`` and the transformed
kernel ``U[p]``. The transforms themselves are products too: ``kron(B^T, B^T)`` (36x36) maps a
tile's 36 entries to ``V``'s and ``kron(A^T, A^T)`` (16x36) maps ``M = V @ U`` back to the 16
outputs, each over all tiles and channels at once, so every pass but the tile copies runs in BLAS
(on all its threads). The second convolution of PyTorch's MNIST example multiplies 0.34 GFLOP in
``V @ U`` where im2col multiplies 1.36, plus 0.36 in the transforms.

The VJP is the transpose of each step: ``dM = kron(A, A) dy``-tiles, ``dU = V^T dM`` (the kernel
gradient, mapped back by ``G^T``), ``dV = dM U^T`` and the tiles' cotangent ``kron(B, B) dV``, added
into the overlapping tiles of the input cotangent. The interpolation points make float32 results about
ten times less accurate than im2col's (relative error about 1e-5 against 1e-6, docs/perf.md); in
float64 both are exact to about 1e-13. Everything runs in chunks of examples whose transformed tiles
fit in about :data:`fnlearn.layers._windows.CHUNK_BYTES`; the transformed input tiles ``V`` of the
whole batch are kept for the kernel gradient.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .._kernels import column_sums
from .._types import Array
from . import _windows

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


def conv3x3(x: Array, w: Array, b: Array, pads: _windows.Pads, out_size: tuple[int, int]
            ) -> tuple[Array, Callable[[Array, bool], tuple[Array, Array, Array | None]]]:
    """``y`` ``(n, OH, OW, out)`` of the unit-stride 3x3 correlation of ``x`` ``(n, H, W, in)``
    padded by ``pads``, plus ``b``; and ``vjp(dy, compute_dx) -> (dw, db, dx)``."""
    n, h, wd, c_in = x.shape
    c_out = w.shape[3]
    dt = x.dtype
    bb, aa = _transforms(dt)
    th, tw = tile_counts(out_size)
    per_tile = th * tw
    (top, bottom), (left, right) = pads
    hp, wp = OUT * th + 2, OUT * tw + 2  # the padded input the tiles cover (zeros past ``pads``)
    direct = (top, left) == (0, 0) and (h, wd) == (hp, wp)
    exact_out = tuple(out_size) == (OUT * th, OUT * tw)
    u = (_GG @ w.reshape(9, c_in * c_out).astype(np.float64)).astype(dt).reshape(36, c_in, c_out)
    chunks = _windows.chunks(n, 36 * per_tile * (c_in + c_out) * x.itemsize)
    size = chunks[0].stop - chunks[0].start
    v = np.empty((len(chunks), 36, size * per_tile, c_in), dt)  # kept for the kernel gradient
    d = np.empty((36, size * per_tile * c_in), dt)
    m = np.empty((36, size * per_tile, c_out), dt)
    blocks = np.empty((16, size * per_tile * c_out), dt)
    xbuf = None if direct else np.zeros((size, hp, wp, c_in), dt)
    y = np.empty((n, *out_size, c_out), dt)
    ybuf = None if exact_out else np.empty((size, OUT * th, OUT * tw, c_out), dt)
    for i, c in enumerate(chunks):
        k = c.stop - c.start
        p = k * per_tile
        if xbuf is None:
            xp = x[c]
        else:
            xp = xbuf[:k]
            xp[:, top:top + h, left:left + wd] = x[c]
        dc = d[:, :p * c_in]
        dc.reshape(TILE, TILE, k, th, tw, c_in)[...] = _tiles(xp, (th, tw))
        vc = v[i, :, :p]
        np.matmul(bb, dc, out=vc.reshape(36, p * c_in))
        mc = m[:, :p]
        np.matmul(vc, u, out=mc)
        bc = blocks[:, :p * c_out]
        np.matmul(aa, mc.reshape(36, p * c_out), out=bc)
        yc = y[c] if ybuf is None else ybuf[:k]
        np.add(bc.reshape(OUT, OUT, k, th, tw, c_out).transpose(2, 3, 0, 4, 1, 5), b,
               out=yc.reshape(k, th, OUT, tw, OUT, c_out))
        if ybuf is not None:
            y[c] = yc[:, :out_size[0], :out_size[1]]

    def vjp(dy: Array, compute_dx: bool) -> tuple[Array, Array, Array | None]:
        db = column_sums(dy.reshape(-1, c_out))
        du = np.empty((36, c_in, c_out), dt)
        part = np.empty_like(du) if len(chunks) > 1 else du
        dyt = np.empty((16, size * per_tile * c_out), dt)
        dm = np.empty((36, size * per_tile, c_out), dt)
        dybuf = None if exact_out else np.zeros((size, OUT * th, OUT * tw, c_out), dt)
        if compute_dx:
            dx = np.empty(x.shape, dt)
            dv = np.empty((36, size * per_tile, c_in), dt)
            dd = np.empty((36, size * per_tile * c_in), dt)
            dxbuf = None if direct else np.empty((size, hp, wp, c_in), dt)
            ut = u.transpose(0, 2, 1)
        for i, c in enumerate(chunks):
            k = c.stop - c.start
            p = k * per_tile
            if dybuf is None:
                dyc = dy[c]
            else:
                dyc = dybuf[:k]
                dyc[:, :out_size[0], :out_size[1]] = dy[c]
            dyt_c = dyt[:, :p * c_out]
            dyt_c.reshape(OUT, OUT, k, th, tw, c_out)[...] = (
                dyc.reshape(k, th, OUT, tw, OUT, c_out).transpose(2, 4, 0, 1, 3, 5))
            dmc = dm[:, :p]
            np.matmul(aa.T, dyt_c, out=dmc.reshape(36, p * c_out))
            np.matmul(v[i, :, :p].transpose(0, 2, 1), dmc, out=du if i == 0 else part)
            if i:
                du += part
            if compute_dx:
                dvc = dv[:, :p]
                np.matmul(dmc, ut, out=dvc)
                ddc = dd[:, :p * c_in]
                np.matmul(bb.T, dvc.reshape(36, p * c_in), out=ddc)
                dxp = dx[c] if dxbuf is None else dxbuf[:k]
                _add_tiles(ddc.reshape(TILE, TILE, k, th, tw, c_in), dxp)
                if dxbuf is not None:
                    dx[c] = dxp[:, top:top + h, left:left + wd]
        dw = (_GG.T @ du.reshape(36, -1).astype(np.float64)).astype(dt).reshape(w.shape)
        return dw, db, (dx if compute_dx else None)

    return y, vjp


def _add_tiles(dd: Array, out: Array) -> None:
    """Write into ``out`` ``(m, 4 th + 2, 4 tw + 2, C)`` the sum of the overlapping tiles ``dd``
    ``(6, 6, m, th, tw, C)`` (the transpose of :func:`_tiles`), overwriting it."""
    th, tw = dd.shape[3:5]
    rows, cols = OUT * th, OUT * tw
    out[:, rows:] = 0
    out[:, :rows, cols:] = 0
    # the first 4x4 of every tile covers each position once: a copy; the last two rows and columns add
    out[:, :rows, :cols].reshape(out.shape[0], th, OUT, tw, OUT, out.shape[3])[...] = (
        dd[:OUT, :OUT].transpose(2, 3, 0, 4, 1, 5))
    for a in range(TILE):
        for c in range(OUT if a < OUT else 0, TILE):
            out[:, a:a + rows:OUT, c:c + cols:OUT] += dd[a, c]

"""The time loops of SimpleRNN, LSTM and GRU: forward and backpropagation through time, by hand.

Every loop works time-major on preallocated buffers. The input projection ``gx = x @ w_ih + b`` for all
steps is one matrix product done by the caller; each step does one product ``h @ w_hh`` for all gates at
once, and the backward pass leaves the gate cotangents of every step in one buffer ``dg`` so that the
caller gets ``dw_ih``, ``dw_hh`` and ``dx`` from one product each.

A sigmoid is ``0.5 * tanh(0.5 * a) + 0.5`` (one ``tanh`` instead of an ``exp`` and a division); the
sigmoid gates' columns of ``gx`` and ``w_hh`` come in already halved, which is exact in binary floats.

Masks (``m`` of shape ``(T, B, 1)``, ones at valid steps, or None): a padded step keeps the carry
(``h_t = h_{t-1}``) and its gates get no cotangent. The backward rule of a step is linear in the
incoming ``(dh, dc)``, so it runs on ``m * dh`` and the rest, ``(1 - m) * dh``, passes straight through
to the previous step.

Tape names: ``hs[t]`` is the carry before step ``t`` (``hs[0] = h0``, shape ``(T + 1, B, H)``),
``acts[t]`` the gate activations of step ``t``, ``cs``/``tcs`` the LSTM cell carry and ``tanh`` of the
new cell value, ``ghs`` the GRU's ``h @ w_hh + b_hh``.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .._types import Array

Mask = Optional[Array]


def _sigmoid_inplace(a: Array) -> None:
    """``a`` holds halved pre-activations; afterwards it holds their sigmoid."""
    np.tanh(a, out=a)
    a *= 0.5
    a += 0.5


def _carry(new: Array, old: Array, m: Mask, t: int) -> None:
    if m is not None:
        np.copyto(new, old, where=m[t] == 0)


def _split(dh: Array, m: Mask, t: int) -> tuple[Array, Any]:
    """``(m * dh, (1 - m) * dh)``: the part a step uses and the part a padded step passes on."""
    if m is None:
        return dh, None
    return dh * m[t], dh * (1 - m[t])


def _add_dy(dh: Array, dys: Any, t: int) -> Array:
    return dh if dys is None else dh + dys[:, t]


def rnn_forward(gx: Array, w_hh: Array, h0: Array, m: Mask, relu: bool) -> dict[str, Array]:
    """Elman RNN: ``h_t = act(gx_t + h_{t-1} @ w_hh)``."""
    T, B, H = gx.shape
    hs = np.empty((T + 1, B, H), gx.dtype)
    hs[0] = h0
    for t in range(T):
        h = hs[t + 1]
        np.matmul(hs[t], w_hh, out=h)
        h += gx[t]
        np.maximum(h, 0, out=h) if relu else np.tanh(h, out=h)
        _carry(h, hs[t], m, t)
    return {"hs": hs}


def rnn_backward(tape: dict[str, Array], w_hh: Array, dys: Any, dh: Array, m: Mask,
                 relu: bool) -> tuple[Array, Array, Array]:
    """``(dg, dg, dh0)``: the pre-activation cotangents of every step (for both weights), ``dh0``."""
    hs = tape["hs"]
    T = hs.shape[0] - 1
    dg = np.empty_like(hs[1:])
    w_hh_t = w_hh.T
    for t in range(T - 1, -1, -1):
        used, passed = _split(_add_dy(dh, dys, t), m, t)
        h = hs[t + 1]
        if relu:
            np.multiply(used, h > 0, out=dg[t])
        else:
            np.multiply(h, h, out=dg[t])
            np.subtract(1, dg[t], out=dg[t])
            dg[t] *= used
        dh = dg[t] @ w_hh_t
        if passed is not None:
            dh += passed
    return dg, dg, dh


def lstm_forward(gx: Array, w_hh: Array, h0: Array, c0: Array, m: Mask) -> dict[str, Array]:
    """LSTM, gates ``i, f, g, o``: ``c_t = f c_{t-1} + i g``, ``h_t = o tanh(c_t)``; overwrites ``gx``.

    Besides the activations, the tape keeps ``ders[t] = 1 - tanh(.)^2`` of every gate's ``tanh``
    (two passes over contiguous rows), so that the backward pass multiplies once by it: the sigmoid's
    derivative is ``sigmoid' = (1 - tanh(a / 2)^2) / 4``, the ``1/4`` being a column scale applied to
    the weights.
    """
    T, B, G = gx.shape
    H = G // 4
    hs, cs = np.empty((T + 1, B, H), gx.dtype), np.empty((T + 1, B, H), gx.dtype)
    acts, ders, tcs = gx, np.empty_like(gx), np.empty((T, B, H), gx.dtype)  # gx becomes acts in place
    hs[0], cs[0] = h0, c0
    ig, hw = np.empty((B, H), gx.dtype), np.empty((B, G), gx.dtype)
    scale, shift = np.full(G, 0.5, gx.dtype), np.full(G, 0.5, gx.dtype)
    scale[2 * H:3 * H], shift[2 * H:3 * H] = 1, 0               # g keeps its tanh
    for t in range(T):
        a, d = acts[t], ders[t]
        np.matmul(hs[t], w_hh, out=hw)
        a += hw
        np.tanh(a, out=a)
        np.multiply(a, a, out=d)
        np.subtract(1, d, out=d)
        a *= scale                                     # sigmoid = 0.5 tanh(a / 2) + 0.5
        a += shift
        i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
        np.multiply(f, cs[t], out=cs[t + 1])
        np.multiply(i, g, out=ig)
        cs[t + 1] += ig
        np.tanh(cs[t + 1], out=tcs[t])
        np.multiply(o, tcs[t], out=hs[t + 1])
        _carry(hs[t + 1], hs[t], m, t)
        _carry(cs[t + 1], cs[t], m, t)
    return {"hs": hs, "cs": cs, "acts": acts, "ders": ders, "tcs": tcs}


def lstm_backward(tape: dict[str, Array], w_hh: Array, dys: Any, dh: Array, dc: Array,
                  m: Mask) -> tuple[Array, Array, Array, Array]:
    """``(dg, dg, dh0, dc0)``: the gate pre-activation cotangents of every step, the carry's.

    The loop computes ``dg`` without the sigmoid columns' factor ``1/4`` (see :func:`lstm_forward`):
    the recurrence uses ``w_hh`` with those columns quartered, and ``dg`` is scaled once at the end.
    """
    cs, acts, ders, tcs = tape["cs"], tape["acts"], tape["ders"], tape["tcs"]
    T, B, H = tcs.shape
    quarter = np.full(4 * H, 0.25, acts.dtype)
    quarter[2 * H:3 * H] = 1
    w_back = np.ascontiguousarray((w_hh * quarter).T)
    dg = np.empty_like(acts)
    tmp = np.empty((B, H), acts.dtype)
    for t in range(T - 1, -1, -1):
        dh_used, dh_passed = _split(_add_dy(dh, dys, t), m, t)
        dc_used, dc_passed = _split(dc, m, t)
        a, d, tc = acts[t], dg[t], tcs[t]
        i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
        np.multiply(tc, tc, out=tmp)                           # dc += dh * o * (1 - tanh(c)^2)
        np.subtract(1, tmp, out=tmp)
        tmp *= o
        tmp *= dh_used
        dc_t = dc_used + tmp
        np.multiply(dc_t, g, out=d[:, :H])                     # d i = dc * g
        np.multiply(dc_t, cs[t], out=d[:, H:2 * H])            # d f = dc * c_{t-1}
        np.multiply(dc_t, i, out=d[:, 2 * H:3 * H])            # d g = dc * i
        np.multiply(dh_used, tc, out=d[:, 3 * H:])             # d o = dh * tanh(c)
        d *= ders[t]
        dc = dc_t * f
        dh = d @ w_back
        if dh_passed is not None:
            dh += dh_passed
            dc += dc_passed
    dg *= quarter
    return dg, dg, dh, dc


def _sigmoid_vjp(d: Array, s: Array, tmp: Array) -> None:
    """``d *= s * (1 - s)`` in place (``s`` is the sigmoid's output)."""
    np.subtract(1, s, out=tmp)
    tmp *= s
    d *= tmp


def gru_forward(gx: Array, w_hh: Array, b_hh: Array, h0: Array, m: Mask) -> dict[str, Array]:
    """GRU, gates ``r, z, n``: ``n = tanh(gx_n + r (h W_hn + b_hn))``, ``h_t = n + z (h_{t-1} - n)``."""
    T, B, G = gx.shape
    H = G // 3
    hs = np.empty((T + 1, B, H), gx.dtype)
    acts, ghs = np.empty_like(gx), np.empty_like(gx)
    hs[0] = h0
    for t in range(T):
        a, gh = acts[t], ghs[t]
        np.matmul(hs[t], w_hh, out=gh)
        gh += b_hh
        np.add(gx[t, :, :2 * H], gh[:, :2 * H], out=a[:, :2 * H])
        _sigmoid_inplace(a[:, :2 * H])
        n = a[:, 2 * H:]
        np.multiply(a[:, :H], gh[:, 2 * H:], out=n)
        n += gx[t, :, 2 * H:]
        np.tanh(n, out=n)
        h = hs[t + 1]
        np.subtract(hs[t], n, out=h)
        h *= a[:, H:2 * H]
        h += n
        _carry(h, hs[t], m, t)
    return {"hs": hs, "acts": acts, "ghs": ghs}


def gru_backward(tape: dict[str, Array], w_hh: Array, dys: Any, dh: Array,
                 m: Mask) -> tuple[Array, Array, Array]:
    """``(dgx, dgh, dh0)``: the cotangents of ``x @ w_ih + b_ih`` and ``h @ w_hh + b_hh`` per step."""
    hs, acts, ghs = tape["hs"], tape["acts"], tape["ghs"]
    T, B, G = acts.shape
    H = G // 3
    dgx, dgh = np.empty_like(acts), np.empty_like(acts)
    w_hh_t = w_hh.T
    tmp = np.empty((B, H), acts.dtype)
    for t in range(T - 1, -1, -1):
        used, passed = _split(_add_dy(dh, dys, t), m, t)
        a, dx_, dh_ = acts[t], dgx[t], dgh[t]
        r, z, n = a[:, :H], a[:, H:2 * H], a[:, 2 * H:]
        dr, dz, dn = dx_[:, :H], dx_[:, H:2 * H], dx_[:, 2 * H:]
        np.subtract(hs[t], n, out=dz)                          # dz = dh * (h_prev - n)
        dz *= used
        _sigmoid_vjp(dz, z, tmp)
        np.subtract(1, z, out=dn)                              # dn = dh * (1 - z) * (1 - n^2)
        dn *= used
        np.multiply(n, n, out=tmp)
        np.subtract(1, tmp, out=tmp)
        dn *= tmp
        np.multiply(dn, ghs[t, :, 2 * H:], out=dr)             # dr = dn * (h W_hn + b_hn)
        _sigmoid_vjp(dr, r, tmp)
        dh_[:, :2 * H] = dx_[:, :2 * H]
        np.multiply(dn, r, out=dh_[:, 2 * H:])
        dh = dh_ @ w_hh_t
        dh += used * z
        if passed is not None:
            dh += passed
    return dgx, dgh, dh

"""Multi-head self-attention (Vaswani et al., 2017) with a hand-written VJP.

For ``x`` of shape ``(B, T, d)`` with ``H`` heads of width ``D = d // H``::

    q, k, v = split(x @ qkv.w + qkv.b)           # the three d-wide column blocks, each (B, H, T, D)
    s = q @ k^T / sqrt(D)  (+ -inf above the diagonal when causal)          # (B, H, T, T)
    p = softmax(s)         (dropped out with the call-time rng in training)  # (B, H, T, T), kept as p^T
    y = concat_heads(p @ v) @ out.w + out.b                                  # (B, T, d)

and the backward rule, with ``g`` the cotangent of the concatenated heads::

    dv = p^T @ g,   dp = g @ v^T,   ds = p * (dp - rowsum(dp * p)),
    dq = ds @ k / sqrt(D),   dk = ds^T @ q / sqrt(D).

Every product is one batched GEMM over ``(B, H)`` (``np.matmul`` on strided views, no copies of q, k,
v). The backward pass keeps only what it needs: the input, the qkv projection, the probabilities ``p``
(stored transposed; and the dropout mask) and the concatenated heads.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from .. import _checks
from .._kernels import column_sums
from .._types import Array, Layer, Params, Shape, resolve_dtype
from ..initializers import Initializer, lecun_normal, zeros

__all__ = ["MultiHeadAttention"]


def MultiHeadAttention(num_heads: int, *, causal: bool = False, bias: bool = True,
                       dropout: float = 0.0, w_init: Initializer | None = None,
                       out_init: Initializer | None = None, b_init: Initializer = zeros) -> Layer:
    """Multi-head self-attention over a sequence: ``(B, T, d) -> (B, T, d)``.

    nanoGPT's ``CausalSelfAttention`` (with ``causal=True``) and the self-attention of
    ``torch.nn.functional.scaled_dot_product_attention``, with torch's Linear weights stored
    transposed as :func:`fnlearn.Dense` stores them.

    Args:
        num_heads: the number of heads ``H``; ``d`` must be divisible by it.
        causal: if True, position ``t`` attends only to positions ``<= t``.
        bias: whether the two projections have biases.
        dropout: the probability of dropping an attention weight when ``train=True`` (the surviving
            weights are scaled by ``1 / (1 - dropout)``; the call-time ``rng`` draws the mask).
        w_init, out_init: initializers of ``qkv.w`` and ``out.w``; default LeCun normal.
        b_init: initializer of the biases; default zeros.

    Shapes: ``x`` and ``y`` are ``(B, T, d)``; params ``{"qkv": {"w": (d, 3d), "b": (3d,)}, "out":
    {"w": (d, d), "b": (d,)}}`` (no ``"b"`` keys with ``bias=False``). ``q``, ``k``, ``v`` are the
    column blocks ``[0:d]``, ``[d:2d]``, ``[2d:3d]`` of the projection, each split into heads as
    ``(B, T, H, d // H)``; the heads are concatenated back in order before ``out``.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> layer = fl.MultiHeadAttention(2, causal=True)
        >>> params = layer.init(np.random.default_rng(0), (-1, 5, 8))
        >>> params["qkv"]["w"].shape, params["out"]["b"].shape
        ((8, 24), (8,))
        >>> y, vjp = layer.apply(params, np.ones((3, 5, 8), np.float32))
        >>> dparams, dx = vjp(np.ones_like(y))
        >>> y.shape, dx.shape, dparams["qkv"]["w"].dtype
        ((3, 5, 8), (3, 5, 8), dtype('float32'))
    """
    heads = _positive_int("MultiHeadAttention", "num_heads", num_heads)
    rate = float(dropout)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"MultiHeadAttention: dropout is the probability of dropping an attention "
                         f"weight and must be in [0, 1), got {dropout!r}.")
    causal, bias = bool(causal), bool(bias)
    w_init = lecun_normal() if w_init is None else w_init
    out_init = lecun_normal() if out_init is None else out_init
    name = (f"MultiHeadAttention({heads}" + (", causal=True" if causal else "")
            + ("" if bias else ", bias=False") + (f", dropout={rate}" if rate else "") + ")")
    keys = ("w", "b") if bias else ("w",)

    def init(rng: np.random.Generator, input_shape: Shape, *, dtype: DTypeLike = None) -> Params:
        shape = _checks.input_shape(name, input_shape)
        if len(shape) != 3:
            raise ValueError(f"{name}: input_shape must be (batch, time, features), got {shape}.")
        d = _width(name, shape[-1], heads)
        dt = resolve_dtype(dtype, name)
        r = _checks.generator(name, rng).spawn(4)
        qkv = {"w": np.asarray(w_init(r[0], (d, 3 * d), dt), dtype=dt)}
        out = {"w": np.asarray(out_init(r[1], (d, d), dt), dtype=dt)}
        if bias:
            qkv["b"] = np.asarray(b_init(r[2], (3 * d,), dt), dtype=dt)
            out["b"] = np.asarray(b_init(r[3], (d,), dt), dtype=dt)
        return {"qkv": qkv, "out": out}

    def apply(params: Params, x: Array, *, rng: Any = None, train: bool = False):
        qkv_p, out_p = _check(name, params, x, heads, keys)
        n, t, d = x.shape
        hd = d // heads
        x2 = x.reshape(n * t, d)
        proj = x2 @ qkv_p["w"]
        if bias:
            proj += qkv_p["b"]
        q, k, v = _split_heads(proj, n, t, heads, hd)
        # The scores are kept transposed, pt[b, h, key, query]: the softmax then reduces over axis
        # -2, which NumPy does 1.5x faster than over a short last axis; BLAS takes the transposes.
        pt = np.matmul(k, q.transpose(0, 1, 3, 2))
        pt *= 1.0 / math.sqrt(hd)
        if causal:
            pt += _causal_bias(t, pt.dtype).T
        _softmax_columns(pt)
        mask = None
        if train and rate > 0.0:
            mask = _dropout_mask(name, rng, pt.shape, pt.dtype, rate)
        heads_out = np.empty((n, t, heads, hd), x.dtype)
        np.matmul((pt if mask is None else pt * mask).transpose(0, 1, 3, 2), v,
                  out=heads_out.transpose(0, 2, 1, 3))
        cat = heads_out.reshape(n * t, d)
        y = cat @ out_p["w"]
        if bias:
            y += out_p["b"]
        y = y.reshape(n, t, d)

        def vjp(dy: Array, *, compute_dx: bool = True) -> tuple[Params, Array | None]:
            if type(dy) is not np.ndarray or dy.shape != y.shape or dy.dtype != y.dtype:
                _checks.cotangent(name, dy, y.shape, y.dtype)
            dy2 = dy.reshape(n * t, d)
            d_out = {"w": cat.T @ dy2}
            g = (dy2 @ out_p["w"].T).reshape(n, t, heads, hd).transpose(0, 2, 1, 3)
            dproj = np.empty((n, t, 3, heads, hd), x.dtype)
            dq, dk, dv = (dproj[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
            np.matmul(pt if mask is None else pt * mask, g, out=dv)
            dst = np.matmul(v, g.transpose(0, 1, 3, 2))
            if mask is not None:
                dst *= mask
            _softmax_columns_vjp(dst, pt)
            dst *= 1.0 / math.sqrt(hd)
            np.matmul(dst.transpose(0, 1, 3, 2), k, out=dq)
            np.matmul(dst, q, out=dk)
            dproj2 = dproj.reshape(n * t, 3 * d)
            d_qkv = {"w": x2.T @ dproj2}
            if bias:
                d_qkv["b"] = column_sums(dproj2)
                d_out["b"] = column_sums(dy2)
            dparams = {"qkv": d_qkv, "out": d_out}
            if not compute_dx:
                return dparams, None
            return dparams, (dproj2 @ qkv_p["w"].T).reshape(n, t, d)

        return y, vjp

    return Layer(init, _checks.named(apply, name))


def _split_heads(proj: Array, n: int, t: int, heads: int, hd: int) -> tuple[Array, Array, Array]:
    """Views ``(B, H, T, D)`` of q, k and v inside the ``(B*T, 3d)`` projection (no copies)."""
    blocks = proj.reshape(n, t, 3, heads, hd)
    return tuple(blocks[:, :, i].transpose(0, 2, 1, 3) for i in range(3))  # type: ignore[return-value]


def _softmax_rows(s: Array) -> None:
    """Softmax over the last axis, in place (rows of -inf entries stay 0 where masked)."""
    s -= s.max(axis=-1, keepdims=True)
    np.exp(s, out=s)
    s /= s.sum(axis=-1, keepdims=True)


def _softmax_columns(s: Array) -> None:
    """Softmax over axis -2, in place (entries of -inf become 0)."""
    s -= np.maximum.reduce(s, axis=-2)[..., None, :]
    np.exp(s, out=s)
    s *= 1.0 / np.add.reduce(s, axis=-2)[..., None, :]


def _softmax_columns_vjp(dp: Array, p: Array) -> None:
    """``dp <- p * (dp - colsum(dp * p))``, the VJP of :func:`_softmax_columns`, in place."""
    cols = np.einsum("...ij,...ij->...j", dp, p)
    dp -= cols[..., None, :]
    dp *= p


@lru_cache(maxsize=32)
def _causal_bias(t: int, dtype: np.dtype) -> Array:
    """A read-only ``(T, T)`` array: 0 on and below the diagonal, -inf above it."""
    out = np.triu(np.full((t, t), -np.inf, dtype), k=1)
    out.flags.writeable = False
    return out


def _dropout_mask(name: str, rng: Any, shape: Shape, dtype: np.dtype, rate: float) -> Array:
    keep = _checks.dropout_rng(name, rng).random(shape) >= rate  # float64 draws: one mask for either dtype
    return keep * dtype.type(1.0 / (1.0 - rate))


def _positive_int(name: str, what: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name}: {what} must be a positive int, got {value!r}.")
    return int(value)


def _width(name: str, d: int, heads: int) -> int:
    if d % heads:
        raise ValueError(f"{name}: the feature size d = {d} is not divisible by num_heads = {heads}. "
                         f"Choose a d that is a multiple of {heads} (e.g. {heads * max(1, round(d / heads))}) "
                         "or another number of heads.")
    return d


def _check(name: str, params: Params, x: Any, heads: int,
           keys: tuple[str, ...]) -> tuple[dict[str, Array], dict[str, Array]]:
    """``(params["qkv"], params["out"])`` after checking them and ``x``; clear errors otherwise."""
    _checks.float_array(name, x)
    if x.ndim != 3:
        raise ValueError(f"{name}: expected x of shape (batch, time, features), got shape {x.shape}. "
                         "Add the missing axis, e.g. x[None] for a single sequence or x[:, None] for a "
                         "batch of single tokens.")
    d = _width(name, x.shape[-1], heads)
    _checks.projections(name, params, x, {"qkv": {"w": (d, 3 * d), "b": (3 * d,)},
                                          "out": {"w": (d, d), "b": (d,)}}, keys)
    return params["qkv"], params["out"]


def cached_self_attention(params: Params, x: Array, cache: tuple[Array, Array], pos: int,
                          num_heads: int) -> Array:
    """Causal self-attention of new tokens against a key/value cache (inference only, no VJP).

    The forward of ``MultiHeadAttention(num_heads, causal=True)`` for positions ``pos .. pos + s - 1``
    given the keys and values of positions ``0 .. pos - 1``: it writes the new tokens' keys and values
    into ``cache`` at ``pos`` (the cache is the caller's scratch buffer, e.g. inside
    :func:`fnlearn.models.generate`) and attends over positions ``0 .. pos + s - 1``.

    Args:
        params: the layer's params (``{"qkv": ..., "out": ...}``, with or without biases).
        x: ``(B, s, d)``, the new tokens.
        cache: ``(keys, values)``, each ``(B, H, max_length, d // H)`` in ``x``'s dtype.
        pos: how many positions the cache already holds; ``pos + s <= max_length``.
        num_heads: ``H``.

    Returns:
        ``(B, s, d)``: what the full causal layer gives at those positions.
    """
    n, s, d = x.shape
    hd = d // num_heads
    keys, values = cache
    proj = x.reshape(n * s, d) @ params["qkv"]["w"]
    if "b" in params["qkv"]:
        proj += params["qkv"]["b"]
    q, k, v = _split_heads(proj, n, s, num_heads, hd)
    keys[:, :, pos:pos + s] = k
    values[:, :, pos:pos + s] = v
    end = pos + s
    p = np.matmul(q, keys[:, :, :end].transpose(0, 1, 3, 2))
    p *= 1.0 / math.sqrt(hd)
    if s > 1:
        p += _causal_bias(end, p.dtype)[pos:end]
    _softmax_rows(p)
    heads_out = np.empty((n, s, num_heads, hd), x.dtype)
    np.matmul(p, values[:, :, :end], out=heads_out.transpose(0, 2, 1, 3))
    y = heads_out.reshape(n * s, d) @ params["out"]["w"]
    if "b" in params["out"]:
        y += params["out"]["b"]
    return y.reshape(n, s, d)

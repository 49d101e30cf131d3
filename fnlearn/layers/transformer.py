"""The pre-LayerNorm transformer block of GPT-2, nanoGPT and ViT, and its two-layer MLP.

``TransformerBlock`` computes ``x = x + drop(attn(ln_1(x)))`` then ``x = x + drop(mlp(ln_2(x)))`` with
``mlp(h) = gelu(h @ fc.w + fc.b) @ proj.w + proj.b``. Its VJP runs the children's VJPs in reverse and
adds the residual cotangent: ``dx = dy + d(branch)``.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from .. import _checks
from .._kernels import column_sums
from .._types import Array, Layer, Params, Shape, resolve_dtype
from ..initializers import Initializer, lecun_normal, zeros
from .activations import Gelu
from .attention import MultiHeadAttention
from .norm import LayerNorm
from .shape import Dropout

__all__ = ["MLP", "TransformerBlock"]


def MLP(hidden: int, *, bias: bool = True, gelu_approximate: bool = False,
        w_init: Initializer | None = None, out_init: Initializer | None = None,
        b_init: Initializer = zeros) -> Layer:
    """The transformer's feed-forward layer: ``gelu(x @ fc.w + fc.b) @ proj.w + proj.b``.

    Args:
        hidden: the width of the hidden layer (4 * d in GPT-2).
        bias: whether ``fc`` and ``proj`` have biases.
        gelu_approximate: the tanh GELU (GPT-2's checkpoints) instead of the exact one (nanoGPT).
        w_init, out_init: initializers of ``fc.w`` and ``proj.w``; default LeCun normal.
        b_init: initializer of the biases; default zeros.

    Shapes: ``x`` and ``y`` are ``(batch, ..., d)``; params ``{"fc": {"w": (d, hidden), "b":
    (hidden,)}, "proj": {"w": (hidden, d), "b": (d,)}}`` (no ``"b"`` with ``bias=False``).

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> layer = fl.MLP(8)
        >>> params = layer.init(np.random.default_rng(0), (-1, 5, 2))
        >>> y, vjp = layer.apply(params, np.ones((3, 5, 2), np.float32))
        >>> y.shape, params["fc"]["w"].shape, vjp(y)[0]["proj"]["w"].shape
        ((3, 5, 2), (2, 8), (8, 2))
    """
    hidden = _positive_int("MLP", "hidden", hidden)
    gelu = Gelu(approximate=gelu_approximate)
    w_init = lecun_normal() if w_init is None else w_init
    out_init = lecun_normal() if out_init is None else out_init
    keys = ("w", "b") if bias else ("w",)
    name = f"MLP({hidden}" + ("" if bias else ", bias=False") + (
        ", gelu_approximate=True" if gelu_approximate else "") + ")"

    def init(rng: np.random.Generator, input_shape: Shape, *, dtype: DTypeLike = None) -> Params:
        shape = _checks.input_shape(name, input_shape)
        if len(shape) < 2:
            raise ValueError(f"{name}: input_shape must be (batch, ..., features), got {shape}.")
        d, dt = shape[-1], resolve_dtype(dtype, name)
        r = _checks.generator(name, rng).spawn(4)
        fc = {"w": np.asarray(w_init(r[0], (d, hidden), dt), dtype=dt)}
        proj = {"w": np.asarray(out_init(r[1], (hidden, d), dt), dtype=dt)}
        if bias:
            fc["b"] = np.asarray(b_init(r[2], (hidden,), dt), dtype=dt)
            proj["b"] = np.asarray(b_init(r[3], (d,), dt), dtype=dt)
        return {"fc": fc, "proj": proj}

    def apply(params: Params, x: Array, *, rng: Any = None, train: bool = False):
        fc, proj = _check_mlp(name, params, x, hidden, keys)
        d = x.shape[-1]
        x2 = x.reshape(-1, d)
        h = x2 @ fc["w"]
        if bias:
            h += fc["b"]
        a, gelu_vjp = gelu.apply({}, h)
        y = a @ proj["w"]
        if bias:
            y += proj["b"]
        y = y.reshape(x.shape)

        def vjp(dy: Array, *, compute_dx: bool = True) -> tuple[Params, Array | None]:
            if type(dy) is not np.ndarray or dy.shape != y.shape or dy.dtype != y.dtype:
                _checks.cotangent(name, dy, y.shape, y.dtype)
            dy2 = dy.reshape(-1, d)
            d_proj = {"w": a.T @ dy2}
            _, dh = gelu_vjp(dy2 @ proj["w"].T)
            d_fc = {"w": x2.T @ dh}
            if bias:
                d_fc["b"], d_proj["b"] = column_sums(dh), column_sums(dy2)
            grads = {"fc": d_fc, "proj": d_proj}
            return grads, ((dh @ fc["w"].T).reshape(x.shape) if compute_dx else None)

        return y, vjp

    return Layer(init, _checks.named(apply, name))


def TransformerBlock(num_heads: int, *, causal: bool = False, bias: bool = True, dropout: float = 0.0,
                     mlp_ratio: int = 4, gelu_approximate: bool = False, eps: float = 1e-5,
                     w_init: Initializer | None = None, out_init: Initializer | None = None) -> Layer:
    """A pre-LayerNorm transformer block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``.

    nanoGPT's ``Block`` (with ``causal=True``) and the encoder block of ViT (``causal=False``).

    Args:
        num_heads: the attention heads; ``d`` must be divisible by it.
        causal: causal attention (a decoder, GPT) or full attention (an encoder, ViT).
        bias: biases in the projections and the LayerNorms (nanoGPT's ``bias``).
        dropout: the drop probability on the attention weights and on each branch's output when
            ``train=True`` (nanoGPT's ``attn_dropout`` and ``resid_dropout``).
        mlp_ratio: the MLP's hidden width is ``mlp_ratio * d``.
        gelu_approximate: the tanh GELU instead of the exact one.
        eps: the LayerNorms' epsilon.
        w_init: initializer of ``attn.qkv.w`` and ``mlp.fc.w``; out_init: of ``attn.out.w`` and
            ``mlp.proj.w`` (the residual projections). Default LeCun normal for both.

    Shapes: ``x`` and ``y`` are ``(B, T, d)``; params ``{"ln_1": LayerNorm, "attn":
    MultiHeadAttention, "ln_2": LayerNorm, "mlp": MLP}`` (see those layers).

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> block = fl.TransformerBlock(2, causal=True)
        >>> params = block.init(np.random.default_rng(0), (-1, 5, 8))
        >>> sorted(params), params["mlp"]["fc"]["w"].shape
        (['attn', 'ln_1', 'ln_2', 'mlp'], (8, 32))
        >>> y, vjp = block.apply(params, np.ones((3, 5, 8), np.float32))
        >>> grads, dx = vjp(np.ones_like(y))
        >>> y.shape, dx.shape
        ((3, 5, 8), (3, 5, 8))
    """
    ratio = _positive_int("TransformerBlock", "mlp_ratio", mlp_ratio)
    ln = LayerNorm(eps=eps) if bias else LayerNorm(eps=eps, bias=False)
    attn = MultiHeadAttention(num_heads, causal=causal, bias=bias, dropout=dropout, w_init=w_init,
                              out_init=out_init)
    drop = Dropout(dropout)
    rate = float(dropout)
    name = (f"TransformerBlock({int(num_heads)}" + (", causal=True" if causal else "")
            + ("" if bias else ", bias=False") + (f", dropout={rate}" if rate else "") + ")")
    child_names = ("ln_1", "attn", "ln_2", "mlp")

    @functools.lru_cache(maxsize=8)
    def make_mlp(d: int) -> Layer:
        return MLP(ratio * d, bias=bias, gelu_approximate=gelu_approximate, w_init=w_init,
                   out_init=out_init)

    def init(rng: np.random.Generator, input_shape: Shape, *, dtype: DTypeLike = None) -> Params:
        shape = _checks.input_shape(name, input_shape)
        if len(shape) != 3:
            raise ValueError(f"{name}: input_shape must be (batch, time, features), got {shape}.")
        r = _checks.generator(name, rng).spawn(4)
        kw = {} if dtype is None else {"dtype": dtype}
        return {"ln_1": ln.init(r[0], shape, **kw), "attn": attn.init(r[1], shape, **kw),
                "ln_2": ln.init(r[2], shape, **kw), "mlp": make_mlp(shape[-1]).init(r[3], shape, **kw)}

    def apply(params: Params, x: Array, *, rng: Any = None, train: bool = False):
        if type(params) is not dict or set(params) != set(child_names):
            got = sorted(params) if isinstance(params, dict) else type(params).__name__
            raise ValueError(f"{name}: expected params with keys {sorted(child_names)} (from this "
                             f"layer's init), got {got}. Were these params initialised for another model?")
        _checks.float_array(name, x)
        if x.ndim != 3:
            raise ValueError(f"{name}: expected x of shape (batch, time, features), got shape {x.shape}.")
        dropping = train and rate > 0.0
        r = _checks.dropout_rng(name, rng).spawn(3) if dropping else [None] * 3
        mlp = make_mlp(x.shape[-1])
        h, ln_1_vjp = apply_child(name, "ln_1", ln, params["ln_1"], x, None, train)
        h, attn_vjp = apply_child(name, "attn", attn, params["attn"], h, r[0], train)
        h, drop_1_vjp = drop.apply({}, h, rng=r[1], train=True) if dropping else (h, None)
        x1 = h
        x1 += x
        h, ln_2_vjp = apply_child(name, "ln_2", ln, params["ln_2"], x1, None, train)
        h, mlp_vjp = apply_child(name, "mlp", mlp, params["mlp"], h, None, train)
        h, drop_2_vjp = drop.apply({}, h, rng=r[2], train=True) if dropping else (h, None)
        y = h
        y += x1

        def vjp(dy: Array, *, compute_dx: bool = True) -> tuple[Params, Array | None]:
            if type(dy) is not np.ndarray or dy.shape != y.shape or dy.dtype != y.dtype:
                _checks.cotangent(name, dy, y.shape, y.dtype)
            g = dy if drop_2_vjp is None else drop_2_vjp(dy)[1]
            g_mlp, g = mlp_vjp(g)
            g_ln_2, dx1 = ln_2_vjp(g)
            dx1 += dy
            g = dx1 if drop_1_vjp is None else drop_1_vjp(dx1)[1]
            g_attn, g = attn_vjp(g)
            g_ln_1, dx = ln_1_vjp(g, compute_dx=compute_dx)
            grads = {"ln_1": g_ln_1, "attn": g_attn, "ln_2": g_ln_2, "mlp": g_mlp}
            if not compute_dx:
                return grads, None
            dx += dx1
            return grads, dx

        return y, vjp

    return Layer(init, _checks.named(apply, name))


def apply_child(name: str, key: str, layer: Layer, params: Params, x: Array, rng: Any,
                train: bool) -> tuple[Array, Any]:
    """``layer.apply(params, x)`` for a child of a composite layer (a block, a model), its errors
    prefixed with the composite's name and the child's key."""
    try:
        return layer.apply(params, x, rng=rng, train=train)
    except (ValueError, TypeError) as err:
        raise type(err)(f"{name} ({key}): {err}") from err


def _positive_int(name: str, what: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name}: {what} must be a positive int, got {value!r}.")
    return int(value)


def _check_mlp(name: str, params: Params, x: Any, hidden: int,
               keys: tuple[str, ...]) -> tuple[dict[str, Array], dict[str, Array]]:
    _checks.float_array(name, x)
    _checks.min_rank(name, x, 2, "(batch, ..., features)")
    d = x.shape[-1]
    _checks.projections(name, params, x, {"fc": {"w": (d, hidden), "b": (hidden,)},
                                          "proj": {"w": (hidden, d), "b": (d,)}}, keys)
    return params["fc"], params["proj"]

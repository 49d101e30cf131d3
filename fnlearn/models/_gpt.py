"""nanoGPT's GPT (GPT-2's architecture) as one fnlearn layer: integer ids in, logits out.

``logits = ln_f(blocks(wte[ids] + wpe[:T])) @ wte.T``: token and position embeddings, ``n_layer``
pre-LayerNorm causal :func:`fnlearn.TransformerBlock` s, a final LayerNorm, and the language-model head
tied to the token embedding. The VJP adds the head's gradient ``dlogits^T @ h`` and the embedding's
scatter of ``dx`` into one ``(V, d)`` array, as PyTorch does for nanoGPT's shared ``wte``/``lm_head``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import numpy as np
from numpy.typing import DTypeLike

from .. import _checks
from .._kernels import add_rows
from .._types import Array, Layer, Params, Shape, resolve_dtype
from ..initializers import normal
from ..layers.attention import cached_self_attention
from ..layers.norm import LayerNorm
from ..layers.shape import Dropout
from ..layers.transformer import MLP, TransformerBlock, apply_child

__all__ = ["gpt", "KVDecoder"]


def gpt(vocab_size: int, block_size: int, n_layer: int, n_head: int, n_embd: int, *,
        dropout: float = 0.0, bias: bool = True, gelu_approximate: bool = False) -> Layer:
    """A GPT language model, nanoGPT's ``GPT`` exactly: ``(B, T)`` int ids to ``(B, T, V)`` logits.

    Args:
        vocab_size: ``V``, the number of token ids.
        block_size: the longest sequence (the rows of the position embedding).
        n_layer, n_head, n_embd: the number of blocks, of heads, and the width ``d``.
        dropout: the drop probability on the embeddings, the attention weights and each residual
            branch when ``train=True`` (nanoGPT's single ``dropout``).
        bias: biases in the Linear layers and LayerNorms (nanoGPT's ``bias``).
        gelu_approximate: the tanh GELU of OpenAI's GPT-2 checkpoints (nanoGPT uses the exact one).

    ``init(rng, (-1, T), *, dtype=None)`` follows nanoGPT's init: every weight and both embeddings
    normal with std 0.02, the residual projections (``attn.out.w``, ``mlp.proj.w``) with std
    ``0.02 / sqrt(2 n_layer)``, biases zero, LayerNorms ones and zeros. The params::

        {"wte": {"embeddings": (V, d)}, "wpe": {"embeddings": (block_size, d)},
         "h": {"0": TransformerBlock params, ..., str(n_layer - 1): ...}, "ln_f": LayerNorm params}

    ``apply(params, ids, *, rng=None, train=False)`` takes int ids ``(B, T)`` with ``T <= block_size``;
    its VJP returns ``(grads, None)`` (ids have no cotangent). :func:`fnlearn.interop.from_nanogpt_state_dict`
    loads nanoGPT's weights; :func:`fnlearn.models.generate` samples from the model with a KV cache.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> model = fl.models.gpt(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16)
        >>> params = model.init(np.random.default_rng(0), (-1, 8))
        >>> ids = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
        >>> logits, vjp = model.apply(params, ids)
        >>> logits.shape, logits.dtype
        ((2, 4, 11), dtype('float32'))
        >>> loss, dlogits = fl.losses.softmax_cross_entropy(logits, np.array([[2, 3, 4, 5], [6, 7, 8, 9]]))
        >>> grads, dx = vjp(dlogits)
        >>> grads["wte"]["embeddings"].shape, dx
        ((11, 16), None)
    """
    name = (f"gpt(vocab_size={vocab_size}, block_size={block_size}, n_layer={n_layer}, n_head={n_head}, "
            f"n_embd={n_embd}" + (f", dropout={dropout}" if dropout else "") + ("" if bias else ", bias=False")
            + (f", gelu_approximate={gelu_approximate!r}" if gelu_approximate else "") + ")")
    for what, value in (("vocab_size", vocab_size), ("block_size", block_size), ("n_layer", n_layer),
                        ("n_head", n_head), ("n_embd", n_embd)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"{name}: {what} must be a positive int, got {value!r}.")
    vocab, block, layers, heads, d = (int(v) for v in (vocab_size, block_size, n_layer, n_head, n_embd))
    if d % heads:
        raise ValueError(f"{name}: n_embd = {d} is not divisible by n_head = {heads}. Choose n_embd a "
                         f"multiple of n_head (nanoGPT requires the same).")
    rate = float(dropout)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"{name}: dropout is the probability of dropping and must be in [0, 1), got "
                         f"{dropout!r}.")
    std = 0.02
    block_layer = TransformerBlock(heads, causal=True, bias=bias, dropout=rate,
                                   gelu_approximate=gelu_approximate, w_init=normal(std),
                                   out_init=normal(std / math.sqrt(2 * layers)))
    ln_f = LayerNorm() if bias else LayerNorm(bias=False)
    drop = Dropout(rate)
    keys = [str(i) for i in range(layers)]

    def init(rng: np.random.Generator, input_shape: Shape, *, dtype: DTypeLike = None) -> Params:
        shape = _checks.input_shape(name, input_shape)
        if len(shape) != 2:
            raise ValueError(f"{name}: input_shape must be (batch, time) of token ids, got {shape}.")
        _check_length(name, shape[1], block)
        dt = resolve_dtype(dtype, name)
        r = _checks.generator(name, rng).spawn(3 + layers)
        kw = {} if dtype is None else {"dtype": dtype}
        hidden = (-1, shape[1], d)
        return {"wte": {"embeddings": normal(std)(r[0], (vocab, d), dt)},
                "wpe": {"embeddings": normal(std)(r[1], (block, d), dt)},
                "h": {k: block_layer.init(r[3 + i], hidden, **kw) for i, k in enumerate(keys)},
                "ln_f": ln_f.init(r[2], hidden, **kw)}

    def apply(params: Params, ids: Array, *, rng: Any = None, train: bool = False):
        wte, wpe = _check(name, params, ids, vocab, block, d, keys)
        n, t = ids.shape
        dropping = train and rate > 0.0
        rngs = _checks.dropout_rng(name, rng).spawn(layers + 1) if dropping else [None] * (layers + 1)
        x = wte[ids]
        x += wpe[:t]
        drop_vjp = None
        if dropping:
            x, drop_vjp = drop.apply({}, x, rng=rngs[-1], train=True)
        block_vjps = []
        for i, key in enumerate(keys):
            x, v = apply_child(name, f"h/{key}", block_layer, params["h"][key], x, rngs[i], train)
            block_vjps.append(v)
        h, ln_f_vjp = apply_child(name, "ln_f", ln_f, params["ln_f"], x, None, train)
        h2 = h.reshape(n * t, d)
        logits = (h2 @ wte.T).reshape(n, t, vocab)

        def vjp(dy: Array, *, compute_dx: bool = True) -> tuple[Params, None]:
            if type(dy) is not np.ndarray or dy.shape != logits.shape or dy.dtype != logits.dtype:
                _checks.cotangent(name, dy, logits.shape, logits.dtype)
            dy2 = dy.reshape(n * t, vocab)
            dwte = dy2.T @ h2
            g_ln_f, dx = ln_f_vjp((dy2 @ wte).reshape(n, t, d))
            g_h = {}
            for key, v in zip(reversed(keys), reversed(block_vjps)):
                g_h[key], dx = v(dx)
            if drop_vjp is not None:
                dx = drop_vjp(dx)[1]
            dwpe = np.zeros_like(wpe)
            np.add.reduce(dx, axis=0, out=dwpe[:t])
            add_rows(dwte, ids.reshape(-1), dx.reshape(n * t, d))
            grads = {"wte": {"embeddings": dwte}, "wpe": {"embeddings": dwpe},
                     "h": {k: g_h[k] for k in keys}, "ln_f": g_ln_f}
            return grads, None

        return logits, vjp

    apply = _checks.named(apply, name)
    apply.kv_decoder = _kv_decoder(name, vocab, block, keys, heads, d, bias, gelu_approximate)  # type: ignore[attr-defined]
    return Layer(init, apply)


class KVDecoder(NamedTuple):
    """What :func:`fnlearn.models.generate` needs to decode with a key/value cache.

    ``new_cache(params, batch)`` returns empty per-block key and value buffers for ``block_size``
    positions; ``step(params, cache, ids, pos)`` runs ids ``(B, s)`` placed at positions ``pos ..
    pos + s - 1`` (writing their keys and values into ``cache``) and returns the logits ``(B, V)`` of
    the last one.
    """

    block_size: int
    new_cache: Callable[[Params, int], Any]
    step: Callable[[Params, Any, Array, int], Array]


def _kv_decoder(name: str, vocab: int, block: int, keys: list[str], heads: int, d: int, bias: bool,
                gelu_approximate: bool) -> KVDecoder:
    """The model's :class:`KVDecoder`: inference with a key/value cache, the prefix computed once."""
    ln = LayerNorm() if bias else LayerNorm(bias=False)
    mlp = MLP(4 * d, bias=bias, gelu_approximate=gelu_approximate)

    def new_cache(params: Params, batch: int) -> list[tuple[Array, Array]]:
        dt = params["wte"]["embeddings"].dtype
        return [(np.zeros((batch, heads, block, d // heads), dt),
                 np.zeros((batch, heads, block, d // heads), dt)) for _ in keys]

    def step(params: Params, cache: list[tuple[Array, Array]], ids: Array, pos: int) -> Array:
        """The logits of the last position of ``ids`` (placed at ``pos..``), filling the cache."""
        wte, wpe = _check(name, params, ids, vocab, block, d, keys)
        t = ids.shape[1]
        _check_length(name, pos + t, block)
        x = wte[ids]
        x += wpe[pos:pos + t]
        for key, kv in zip(keys, cache):
            p = params["h"][key]
            h, _ = ln.apply(p["ln_1"], x)
            x = x + cached_self_attention(p["attn"], h, kv, pos, heads)
            h, _ = ln.apply(p["ln_2"], x)
            x = x + mlp.apply(p["mlp"], h)[0]
        h, _ = ln.apply(params["ln_f"], x[:, -1:])
        return h[:, 0] @ wte.T

    return KVDecoder(block, new_cache, step)


def _check_length(name: str, t: int, block: int) -> None:
    if t > block:
        raise ValueError(f"{name}: the sequence has {t} tokens but block_size is {block}. Crop the "
                         f"input to its last {block} tokens (as nanoGPT's generate does), or build the "
                         "model with a larger block_size.")


def _check(name: str, params: Params, ids: Any, vocab: int, block: int, d: int,
           keys: list[str]) -> tuple[Array, Array]:
    """``(wte, wpe)`` after checking the ids and the top of the params tree; clear errors otherwise."""
    if not isinstance(ids, np.ndarray) or ids.dtype.kind not in "iu":
        got = f"dtype {ids.dtype}" if isinstance(ids, np.ndarray) else type(ids).__name__
        raise TypeError(f"{name}: expected integer token ids of shape (batch, time), got {got}. "
                        "Convert them with np.asarray(ids, dtype=np.int64) (float ids are not rounded).")
    if ids.ndim != 2:
        raise ValueError(f"{name}: expected token ids of shape (batch, time), got shape {ids.shape}. "
                         "Use ids[None] for a single sequence.")
    _check_length(name, ids.shape[1], block)
    if ids.size and (ids.min() < 0 or ids.max() >= vocab):
        raise ValueError(f"{name}: token ids must lie in [0, {vocab - 1}], got values from {ids.min()} "
                         f"to {ids.max()}. Negative ids are not wrapped around.")
    if type(params) is not dict or set(params) != {"wte", "wpe", "h", "ln_f"}:
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f"{name}: expected params with keys ['h', 'ln_f', 'wpe', 'wte'] (from this "
                         f"model's init), got {got}.")
    if type(params["h"]) is not dict or params["h"].keys() != set(keys):
        got = list(params["h"]) if isinstance(params["h"], dict) else type(params["h"]).__name__
        raise ValueError(f"{name}: expected params['h'] with the blocks {keys}, got {got}.")
    wte = _checks.param(f"{name} (wte)", params["wte"], "embeddings", shape=(vocab, d))
    wpe = _checks.param(f"{name} (wpe)", params["wpe"], "embeddings", shape=(block, d))
    if wpe.dtype != wte.dtype:
        raise TypeError(f"{name}: wte is {wte.dtype} but wpe is {wpe.dtype}; initialise the model "
                        "with one dtype.")
    return wte, wpe

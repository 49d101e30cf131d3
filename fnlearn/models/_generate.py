"""Sampling text from a language model, nanoGPT's ``generate``, with a key/value cache."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._types import Array, Layer, Params

__all__ = ["generate"]


def generate(model: Layer, params: Params, idx: Array, max_new_tokens: int, *,
             temperature: float = 1.0, top_k: int | None = None, rng: np.random.Generator | None = None,
             use_cache: bool = True, block_size: int | None = None) -> Array:
    """Extend each row of ``idx`` by ``max_new_tokens`` tokens sampled from ``model``.

    nanoGPT's ``GPT.generate``: the logits of the last position are divided by ``temperature``, cut to
    the ``top_k`` largest (if given), turned into probabilities and sampled from with ``rng``.
    ``temperature=0`` picks the most likely token instead (greedy decoding; no ``rng`` needed). The
    context is cropped to the last ``block_size`` tokens: the model's own (:func:`fnlearn.models.gpt`
    records it), or the ``block_size`` argument for other models (without either, nothing is cropped).

    With ``use_cache=True`` and a model that has a key/value decoder (:func:`fnlearn.models.gpt`), the
    prompt is run once and each new token costs one position per block; once the sequence is longer
    than ``block_size``, the cropped window moves every step and is recomputed (as without the cache,
    since the positions of its tokens change). Other models, or ``use_cache=False``, run ``model.apply``
    on the whole (cropped) context for every new token. Both give the same tokens up to rounding.

    Args:
        model: a layer mapping int ids ``(B, T)`` to logits ``(B, T, V)``.
        params: its params.
        idx: int ids ``(B, T0)``, the prompt (``T0 >= 1``).
        max_new_tokens: how many tokens to add.
        temperature: ``> 0`` to sample, ``0`` for greedy decoding.
        top_k: keep only the ``top_k`` most likely tokens before sampling.
        rng: a ``numpy.random.Generator``; required when sampling.
        use_cache: use the model's key/value cache when it has one.
        block_size: the longest context the model takes; default the model's own.

    Returns:
        int64 ids ``(B, T0 + max_new_tokens)``: the prompt followed by the new tokens.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> model = fl.models.gpt(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=8)
        >>> params = model.init(np.random.default_rng(0), (-1, 4))
        >>> out = fl.models.generate(model, params, np.array([[1, 2]]), 6, temperature=0.0)
        >>> out.shape, bool((out[:, :2] == [[1, 2]]).all())
        ((1, 8), True)
        >>> same = fl.models.generate(model, params, np.array([[1, 2]]), 6, temperature=0.0, use_cache=False)
        >>> bool((out == same).all())
        True
    """
    idx, steps, temp, k = _check(model, idx, max_new_tokens, temperature, top_k, rng)
    info = getattr(model.apply, "kv_decoder", None)
    block = getattr(info, "block_size", None) if block_size is None else _positive(block_size)
    decoder = info if use_cache else None
    out = np.empty((idx.shape[0], idx.shape[1] + steps), np.int64)
    out[:, :idx.shape[1]] = idx
    end = idx.shape[1]
    cache, pos = None, 0
    for _ in range(steps):
        start = 0 if block is None else max(0, end - block)
        if decoder is None:
            logits, _ = model.apply(params, out[:, start:end])
            last = logits[:, -1]
        elif cache is None or start > 0:  # the prompt, or a window that moved: (re)compute it
            cache = decoder.new_cache(params, out.shape[0])
            last = decoder.step(params, cache, out[:, start:end], 0)
            pos = end - start
        else:
            last = decoder.step(params, cache, out[:, end - 1:end], pos)
            pos += 1
        out[:, end] = _pick(last, temp, k, rng)
        end += 1
    return out


def _pick(logits: Array, temperature: float, top_k: int | None, rng: Any) -> Array:
    """One token per row: the argmax (temperature 0), or a sample from softmax(logits / temperature)."""
    logits = np.asarray(logits, np.float64)
    if temperature == 0.0:
        return logits.argmax(axis=-1)
    # shifted first: a tiny temperature then gives -inf for the others, never inf - inf = NaN
    with np.errstate(over="ignore"):
        logits = (logits - logits.max(axis=-1, keepdims=True)) / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = np.partition(logits, -top_k, axis=-1)[:, -top_k][:, None]
        logits = np.where(logits < kth, -np.inf, logits)
    probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
    cdf = np.cumsum(probs, axis=-1)
    u = rng.random((logits.shape[0], 1)) * cdf[:, -1:]
    return np.minimum((cdf <= u).sum(axis=-1), logits.shape[-1] - 1)


def _positive(block_size: Any) -> int:
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ValueError(f"generate: block_size must be None or a positive int, got {block_size!r}.")
    return int(block_size)


def _check(model: Any, idx: Any, max_new_tokens: Any, temperature: Any, top_k: Any,
           rng: Any) -> tuple[Array, int, float, int | None]:
    if not isinstance(model, tuple) or len(model) != 2 or not callable(getattr(model, "apply", None)):
        raise TypeError(f"generate: model must be a Layer (init, apply) such as fl.models.gpt(...), got "
                        f"{type(model).__name__}.")
    if not isinstance(idx, np.ndarray) or idx.dtype.kind not in "iu" or idx.ndim != 2 or idx.shape[1] < 1:
        got = f"{idx.dtype} array of shape {idx.shape}" if isinstance(idx, np.ndarray) else type(idx).__name__
        raise ValueError(f"generate: idx must be integer ids of shape (batch, time) with time >= 1, got "
                         f"{got}. Use np.array([[token, ...]]) for one prompt.")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
        raise ValueError(f"generate: max_new_tokens must be a non-negative int, got {max_new_tokens!r}.")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.floating, np.integer)) \
            or not np.isfinite(temperature) or temperature < 0:
        raise ValueError(f"generate: temperature must be a finite number >= 0 (0 means greedy), got "
                         f"{temperature!r}.")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise ValueError(f"generate: top_k must be None or a positive int, got {top_k!r}.")
    if temperature > 0 and not isinstance(rng, np.random.Generator):
        raise ValueError(f"generate: sampling (temperature > 0) needs rng=np.random.default_rng(seed), got "
                         f"{type(rng).__name__}; pass temperature=0.0 for greedy decoding.")
    return idx, int(max_new_tokens), float(temperature), (None if top_k is None else int(top_k))

"""GPT weights in nanoGPT's and Hugging Face GPT-2's names and layouts, to and from ``models.gpt`` params.

``models.gpt`` params are nanoGPT's modules under shorter names, with fnlearn's ``(in, out)`` weights::

    nanoGPT / GPT-2 name                          fnlearn path              fnlearn shape
    transformer.wte.weight (tied: lm_head.weight) wte/embeddings            (V, d)
    transformer.wpe.weight                        wpe/embeddings            (block_size, d)
    transformer.h.{i}.ln_1.weight, .bias          h/{i}/ln_1/scale, offset  (d,)
    transformer.h.{i}.attn.c_attn.weight, .bias   h/{i}/attn/qkv/w, b       (d, 3d), (3d,)
    transformer.h.{i}.attn.c_proj.weight, .bias   h/{i}/attn/out/w, b       (d, d), (d,)
    transformer.h.{i}.ln_2.weight, .bias          h/{i}/ln_2/scale, offset  (d,)
    transformer.h.{i}.mlp.c_fc.weight, .bias      h/{i}/mlp/fc/w, b         (d, 4d), (4d,)
    transformer.h.{i}.mlp.c_proj.weight, .bias    h/{i}/mlp/proj/w, b       (4d, d), (d,)
    transformer.ln_f.weight, .bias                ln_f/scale, offset        (d,)

nanoGPT's ``nn.Linear`` weights are stored ``(out, in)``, so they are transposed; GPT-2's ``Conv1D``
weights are already ``(in, out)``. Without biases (nanoGPT's ``bias=False``) there are no ``.bias``
names and no ``b``/``offset`` entries. The causal-mask buffers (``*.attn.bias``,
``*.attn.masked_bias``) are ignored, and a ``_orig_mod.`` prefix (``torch.compile``) is stripped.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, NamedTuple

import numpy as np
from numpy.typing import DTypeLike

from .._types import Params
from ._safetensors import _flatten_dicts
from ._torch import _as_numpy

__all__ = ["from_nanogpt_state_dict", "to_nanogpt_state_dict", "from_gpt2_state_dict",
           "to_gpt2_state_dict"]


class _Row(NamedTuple):
    name: str                 # the torch name
    path: str                 # the fnlearn path
    units: tuple[Any, ...]    # the fnlearn shape: "V" vocab, "P" positions, k: k * n_embd
    linear: bool              # a Linear/Conv1D weight: (out, in) in nanoGPT, (in, out) in fnlearn


# (torch name after "transformer.", fnlearn path, units, linear, is a bias)
_TOP = (("wte.weight", "wte/embeddings", ("V", 1), False, False),
        ("wpe.weight", "wpe/embeddings", ("P", 1), False, False))
_BLOCK = (("ln_1.weight", "ln_1/scale", (1,), False, False),
          ("ln_1.bias", "ln_1/offset", (1,), False, True),
          ("attn.c_attn.weight", "attn/qkv/w", (1, 3), True, False),
          ("attn.c_attn.bias", "attn/qkv/b", (3,), False, True),
          ("attn.c_proj.weight", "attn/out/w", (1, 1), True, False),
          ("attn.c_proj.bias", "attn/out/b", (1,), False, True),
          ("ln_2.weight", "ln_2/scale", (1,), False, False),
          ("ln_2.bias", "ln_2/offset", (1,), False, True),
          ("mlp.c_fc.weight", "mlp/fc/w", (1, 4), True, False),
          ("mlp.c_fc.bias", "mlp/fc/b", (4,), False, True),
          ("mlp.c_proj.weight", "mlp/proj/w", (4, 1), True, False),
          ("mlp.c_proj.bias", "mlp/proj/b", (1,), False, True))
_FINAL = (("ln_f.weight", "ln_f/scale", (1,), False, False),
          ("ln_f.bias", "ln_f/offset", (1,), False, True))
_BUFFER = re.compile(r"transformer\.h\.\d+\.attn\.(bias|masked_bias)")
_LM_HEAD = "lm_head.weight"


def _rows(n_layer: int, bias: bool) -> list[_Row]:
    """Every parameter of a GPT with ``n_layer`` blocks, in nanoGPT's ``state_dict`` order."""
    blocks = [(f"h.{i}.{name}", f"h/{i}/{path}", *rest)
              for i in range(n_layer) for name, path, *rest in _BLOCK]
    return [_Row("transformer." + name, path, units, linear)
            for name, path, units, linear, is_bias in (*_TOP, *blocks, *_FINAL) if bias or not is_bias]


def _shape(units: tuple[Any, ...], sizes: dict[str, int]) -> tuple[int, ...]:
    return tuple(sizes[u] if isinstance(u, str) else u * sizes["d"] for u in units)


def _sizes(fn: str, wte: np.ndarray, wpe: np.ndarray, names: str) -> dict[str, int]:
    """V, P and d from the two embedding tables."""
    if wte.ndim != 2 or wpe.ndim != 2:
        raise ValueError(f"{fn}: {names} must be 2-D (rows, n_embd), got shapes {wte.shape} and "
                         f"{wpe.shape}.")
    return {"V": wte.shape[0], "P": wpe.shape[0], "d": wte.shape[1]}


def _check_names(fn: str, what: str, present: set[str], expected: set[str], hint: str) -> None:
    missing, unexpected = expected - present, present - expected
    if missing or unexpected:
        raise ValueError(f"{fn}: {what} ({len(missing)} missing, {len(unexpected)} unexpected). "
                         f"Missing: {_list(missing) or 'none'}. Unexpected: {_list(unexpected) or 'none'}. "
                         + hint)


def _list(names: Any, limit: int = 8) -> str:
    names = sorted(names)
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _put(tree: dict[str, Any], path: str, value: np.ndarray) -> None:
    *parents, leaf = path.split("/")
    for key in parents:
        tree = tree.setdefault(key, {})
    tree[leaf] = value


# ------------------------------------------------------------------------------------------ from torch

def _from_state_dict(fn: str, state_dict: Mapping[str, Any], transpose: bool, dtype: DTypeLike) -> Params:
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"{fn}: expected a mapping of names to arrays such as model.state_dict(), got "
                        f"{type(state_dict).__name__}.")
    if dtype is not None and np.dtype(dtype).kind != "f":
        raise ValueError(f"{fn}: dtype must be a floating dtype such as np.float32, got {dtype!r}.")
    names = {str(k).removeprefix("_orig_mod."): k for k in state_dict}
    names = {k: v for k, v in names.items() if not _BUFFER.fullmatch(k)}
    layers = {int(m.group(1)) for k in names if (m := re.match(r"transformer\.h\.(\d+)\.", k))}
    rows = _rows(max(layers) + 1 if layers else 0, any(k.endswith(".bias") for k in names))
    _check_names(fn, "the state dict is not a GPT's", set(names) - {_LM_HEAD}, {r.name for r in rows},
                 "Pass the whole model.state_dict() of one GPT (bias on: every LayerNorm and Linear has "
                 "its .bias; bias off: none has).")
    arrays = {k: _as_numpy(state_dict[v]) for k, v in names.items()}
    wte = arrays["transformer.wte.weight"]
    sizes = _sizes(fn, wte, arrays["transformer.wpe.weight"], "transformer.wte.weight and .wpe.weight")
    params: dict[str, Any] = {"wte": {}, "wpe": {}, "h": {}, "ln_f": {}}
    problems = []
    for row in rows:
        arr, want = arrays[row.name], _shape(row.units, sizes)
        flip = transpose and row.linear
        if (arr.shape[::-1] if flip else arr.shape) != want or arr.dtype.kind != "f":
            problems.append(f"'{row.name}' is {arr.dtype} {arr.shape}, expected floating "
                            f"{want[::-1] if flip else want}")
        else:
            _put(params, row.path, np.array(arr.T if flip else arr, order="C",
                                           dtype=arr.dtype if dtype is None else dtype))
    if problems:
        raise ValueError(f"{fn}: {len(problems)} arrays have the wrong shape or dtype for a GPT with "
                         f"n_embd={sizes['d']} (from transformer.wte.weight): " + "; ".join(problems) + ".")
    head = arrays.get(_LM_HEAD)
    if head is not None and not (head.shape == wte.shape and np.array_equal(head, wte)):
        raise ValueError(f"{fn}: lm_head.weight differs from transformer.wte.weight; models.gpt ties the "
                         "lm head to the token embedding, so an untied head cannot be loaded. Drop "
                         "lm_head.weight only if the model was trained with tied weights.")
    return params


def from_nanogpt_state_dict(state_dict: Mapping[str, Any], *, dtype: DTypeLike = None) -> Params:
    """``models.gpt`` params from nanoGPT's ``model.state_dict()`` (see the module docstring's table).

    Args:
        state_dict: ``{name: array}``: NumPy arrays, torch tensors or anything ``np.asarray`` takes.
            n_layer, n_embd, vocab and block size are read from the names and shapes, bias on or off
            from whether any ``.bias`` is present. ``lm_head.weight`` is optional and, if present,
            must equal ``transformer.wte.weight`` (tied); ``*.attn.bias`` mask buffers are ignored.
        dtype: the params' dtype; None keeps the arrays' dtypes.

    Returns:
        The params tree of ``models.gpt(vocab, block_size, n_layer, n_head, n_embd, bias=...)``: fresh
        C-contiguous arrays, Linear weights transposed to (in, out).

    Raises:
        ValueError: missing or unexpected names (all listed), a wrong shape or a non-float array, or
            an untied lm head.

    Example:
        >>> import numpy as np
        >>> from fnlearn import interop, models
        >>> params = models.gpt(11, 8, 2, 2, 8).init(np.random.default_rng(0), (-1, 8))
        >>> sd = interop.to_nanogpt_state_dict(params)
        >>> sd["transformer.h.1.attn.c_attn.weight"].shape  # nn.Linear's (out, in)
        (24, 8)
        >>> sd["lm_head.weight"] is sd["transformer.wte.weight"]  # tied
        True
        >>> back = interop.from_nanogpt_state_dict(sd)
        >>> back["h"]["1"]["attn"]["qkv"]["w"].shape
        (8, 24)
        >>> np.array_equal(back["wte"]["embeddings"], params["wte"]["embeddings"])
        True
    """
    return _from_state_dict("from_nanogpt_state_dict", state_dict, True, dtype)


def from_gpt2_state_dict(state_dict: Mapping[str, Any], *, dtype: DTypeLike = None) -> Params:
    """``models.gpt`` params from Hugging Face GPT-2 weights (``GPT2LMHeadModel.state_dict()``, or a
    ``model.safetensors`` file's tensors as ``GPT2Model`` names without the ``transformer.`` prefix).

    GPT-2's ``Conv1D`` weights are already ``(in, out)`` and are copied as they are; the
    ``attn.bias``/``attn.masked_bias`` buffers are ignored. Run the result in
    ``models.gpt(50257, 1024, 12, 12, 768, gelu_approximate=True)`` for the 124M model (GPT-2 uses the
    tanh GELU). Args, Returns and Raises as :func:`from_nanogpt_state_dict`.

    Example:
        >>> import numpy as np
        >>> from fnlearn import interop, models
        >>> params = models.gpt(11, 8, 2, 2, 8).init(np.random.default_rng(0), (-1, 8))
        >>> sd = {k.removeprefix("transformer."): v for k, v in interop.to_gpt2_state_dict(params).items()}
        >>> sd["h.0.mlp.c_fc.weight"].shape
        (8, 32)
        >>> interop.from_gpt2_state_dict(sd)["h"]["0"]["mlp"]["fc"]["w"].shape
        (8, 32)
    """
    fn = "from_gpt2_state_dict"
    if isinstance(state_dict, Mapping) and not any(
            str(k).removeprefix("_orig_mod.").startswith("transformer.") for k in state_dict):
        state_dict = {k if str(k).removeprefix("_orig_mod.") == _LM_HEAD else f"transformer.{k}": v
                      for k, v in state_dict.items()}
    return _from_state_dict(fn, state_dict, False, dtype)


# -------------------------------------------------------------------------------------------- to torch

def _to_state_dict(fn: str, params: Params, transpose: bool) -> dict[str, np.ndarray]:
    if not isinstance(params, dict) or not isinstance(params.get("h"), dict):
        raise ValueError(f"{fn}: expected the params (or gradients) of models.gpt, a dict with 'wte', "
                         f"'wpe', 'h' and 'ln_f'; got {type(params).__name__} with keys "
                         f"{list(params) if isinstance(params, dict) else None}.")
    _, flat = _flatten_dicts(fn, params)
    rows = _rows(len(params["h"]), any(p.endswith(("/b", "/offset")) for p in flat))
    _check_names(fn, "the tree is not a models.gpt params tree", set(flat), {r.path for r in rows},
                 "Blocks are keyed '0'..'n_layer-1'; with biases every Linear has its 'b' and every "
                 "LayerNorm its 'offset', without none has.")
    sizes = _sizes(fn, flat["wte/embeddings"], flat["wpe/embeddings"], "wte/embeddings and wpe/embeddings")
    wrong = [f"'{r.path}' is {flat[r.path].shape}, expected {_shape(r.units, sizes)}"
             for r in rows if flat[r.path].shape != _shape(r.units, sizes)]
    if wrong:
        raise ValueError(f"{fn}: {len(wrong)} arrays have the wrong shape for n_embd={sizes['d']} (from "
                         "wte/embeddings): " + "; ".join(wrong) + ".")
    out = {r.name: np.ascontiguousarray(flat[r.path].T) if transpose and r.linear else flat[r.path].copy()
           for r in rows}
    out[_LM_HEAD] = out["transformer.wte.weight"]
    return out


def to_nanogpt_state_dict(params: Params) -> dict[str, np.ndarray]:
    """nanoGPT's ``state_dict`` names and layouts of ``models.gpt`` params, or of their gradients.

    Args:
        params: a ``models.gpt`` params tree, or a gradient tree of the same structure.

    Returns:
        ``{name: array}`` in nanoGPT's ``state_dict()`` order, fresh C-contiguous arrays with Linear
        weights transposed to (out, in), and ``lm_head.weight`` the very array of
        ``transformer.wte.weight`` (tied, as in torch). For a gradient tree each entry equals the
        ``.grad`` of nanoGPT's parameter of that name; the tied embedding's gradient (the sum of the
        input-embedding and lm-head contributions) is the ``.grad`` of both names. Load it with
        ``model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})``.

    Raises:
        ValueError: a missing or unexpected path, or a shape inconsistent with ``wte``'s n_embd.
        TypeError: a leaf that is not a NumPy array.

    Example: see :func:`from_nanogpt_state_dict`.
    """
    return _to_state_dict("to_nanogpt_state_dict", params, True)


def to_gpt2_state_dict(params: Params) -> dict[str, np.ndarray]:
    """Hugging Face ``GPT2LMHeadModel.state_dict()`` names and layouts of ``models.gpt`` params.

    Like :func:`to_nanogpt_state_dict` but the weights keep fnlearn's ``(in, out)`` layout (GPT-2's
    ``Conv1D``). Strip the ``transformer.`` prefix and drop ``lm_head.weight`` for a ``GPT2Model``.
    GPT-2 itself always has biases; a ``bias=False`` tree gives the same names without them.

    Example: see :func:`from_gpt2_state_dict`.
    """
    return _to_state_dict("to_gpt2_state_dict", params, False)

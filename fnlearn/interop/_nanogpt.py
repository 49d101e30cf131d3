"""GPT weights in nanoGPT's and Hugging Face GPT-2's names and layouts, to and from ``models.gpt`` params.

``models.gpt`` params are nanoGPT's modules under shorter names with fnlearn's ``(in, out)`` weights:

=============================================  ==========================  ========================
nanoGPT / Hugging Face GPT-2 name               fnlearn path                layout
=============================================  ==========================  ========================
``transformer.wte.weight`` (= ``lm_head``)      ``wte/embeddings``          (V, d) as is
``transformer.wpe.weight``                      ``wpe/embeddings``          (block_size, d) as is
``transformer.h.{i}.ln_1.weight`` / ``.bias``   ``h/{i}/ln_1/scale`` / ``offset``   (d,)
``transformer.h.{i}.attn.c_attn.weight``        ``h/{i}/attn/qkv/w``        (d, 3d)
``transformer.h.{i}.attn.c_proj.weight``        ``h/{i}/attn/out/w``        (d, d)
``transformer.h.{i}.ln_2.weight`` / ``.bias``   ``h/{i}/ln_2/scale`` / ``offset``   (d,)
``transformer.h.{i}.mlp.c_fc.weight``           ``h/{i}/mlp/fc/w``          (d, 4d)
``transformer.h.{i}.mlp.c_proj.weight``         ``h/{i}/mlp/proj/w``        (4d, d)
``transformer.ln_f.weight`` / ``.bias``         ``ln_f/scale`` / ``offset`` (d,)
=============================================  ==========================  ========================

Each ``*.weight`` of a Linear has its ``*.bias`` under ``.../b``. nanoGPT's ``nn.Linear`` weights are
stored ``(out, in)``, so they are transposed; GPT-2's ``Conv1D`` weights are already ``(in, out)``.
Without biases (nanoGPT's ``bias=False``) there are no ``b``/``offset`` entries. The causal-mask buffers
(``*.attn.bias``, ``*.attn.masked_bias``) are ignored, and a ``_orig_mod.`` prefix (``torch.compile``)
is stripped.
"""

from __future__ import annotations

import re
from typing import Any, Iterator, Mapping

import numpy as np
from numpy.typing import DTypeLike

from .._types import Params
from ._safetensors import _flatten_dicts
from ._torch import _as_numpy

__all__ = ["from_nanogpt_state_dict", "to_nanogpt_state_dict", "from_gpt2_state_dict",
           "to_gpt2_state_dict"]

# (torch name after "transformer.", fnlearn path, fnlearn shape in units of d (V and P are None),
#  is a Linear/Conv1D weight, is a bias)
_TOP = (("wte.weight", "wte/embeddings", (None, 1), False, False),
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


def _rows(n_layer: int, bias: bool) -> Iterator[tuple[str, str, tuple[Any, ...], bool]]:
    """(torch name, fnlearn path, fnlearn shape in units of d, is a Linear weight), in state_dict order."""
    blocks = [(f"h.{i}.{name}", f"h/{i}/{path}", *rest)
              for i in range(n_layer) for name, path, *rest in _BLOCK]
    for name, path, units, linear, is_bias in (*_TOP, *blocks, *_FINAL):
        if bias or not is_bias:
            yield "transformer." + name, path, units, linear


def _shape(units: tuple[Any, ...], d: int, vocab: int, positions: int) -> tuple[int, ...]:
    return tuple(vocab if u is None else positions if u == "P" else u * d for u in units)


def _list(names: Any, limit: int = 8) -> str:
    names = sorted(names)
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


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
    bias = any(k.endswith(".bias") for k in names)
    rows = list(_rows(max(layers) + 1 if layers else 0, bias))
    expected = {name for name, *_ in rows}
    missing, unexpected = expected - set(names), set(names) - expected - {_LM_HEAD}
    if missing or unexpected:
        raise ValueError(f"{fn}: the state dict is not a GPT's ({len(missing)} missing, {len(unexpected)} "
                         f"unexpected names). Missing: {_list(missing) or 'none'}. Unexpected: "
                         f"{_list(unexpected) or 'none'}. Pass the whole model.state_dict() of one GPT "
                         "(bias on: every LayerNorm and Linear has its .bias; bias off: none has).")
    arrays = {k: _as_numpy(state_dict[v]) for k, v in names.items()}
    wte = arrays["transformer.wte.weight"]
    if wte.ndim != 2 or arrays["transformer.wpe.weight"].ndim != 2:
        raise ValueError(f"{fn}: transformer.wte.weight and transformer.wpe.weight must be 2-D (rows, "
                         f"n_embd), got shapes {wte.shape} and {arrays['transformer.wpe.weight'].shape}.")
    (vocab, d), positions = wte.shape, arrays["transformer.wpe.weight"].shape[0]
    params: dict[str, Any] = {"wte": {}, "wpe": {}, "h": {}, "ln_f": {}}
    problems = []
    for name, path, units, linear in rows:
        arr, want = arrays[name], _shape(units, d, vocab, positions)
        if transpose and linear:
            arr = arr.T
        if arr.shape != want or arr.dtype.kind != "f":
            torch_want = want[::-1] if transpose and linear else want
            problems.append(f"'{name}' is {arrays[name].dtype} {arrays[name].shape}, expected floating "
                            f"{torch_want}")
            continue
        *parents, leaf = path.split("/")
        node = params
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = np.array(arr, dtype=arr.dtype if dtype is None else dtype, order="C", copy=True)
    if problems:
        raise ValueError(f"{fn}: {len(problems)} arrays have the wrong shape or dtype for a GPT with "
                         f"n_embd={d} (from transformer.wte.weight): " + "; ".join(problems) + ".")
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
        >>> sd["transformer.h.1.attn.c_attn.weight"].shape, sd["lm_head.weight"] is sd["transformer.wte.weight"]
        ((24, 8), True)
        >>> back = interop.from_nanogpt_state_dict(sd)
        >>> back["h"]["1"]["attn"]["qkv"]["w"].shape, np.array_equal(back["wte"]["embeddings"], params["wte"]["embeddings"])
        ((8, 24), True)
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
    bias = any(p.endswith(("/b", "/offset")) for p in flat)
    rows = list(_rows(len(params["h"]), bias))
    expected = {path for _, path, *_ in rows}
    missing, unexpected = expected - set(flat), set(flat) - expected
    if missing or unexpected:
        raise ValueError(f"{fn}: the tree is not a models.gpt params tree ({len(missing)} missing, "
                         f"{len(unexpected)} unexpected paths). Missing: {_list(missing) or 'none'}. "
                         f"Unexpected: {_list(unexpected) or 'none'}. Blocks are keyed '0'..'n_layer-1'.")
    wte = flat["wte/embeddings"]
    if wte.ndim != 2 or flat["wpe/embeddings"].ndim != 2:
        raise ValueError(f"{fn}: wte/embeddings and wpe/embeddings must be 2-D, got shapes {wte.shape} "
                         f"and {flat['wpe/embeddings'].shape}.")
    (vocab, d), positions = wte.shape, flat["wpe/embeddings"].shape[0]
    wrong = [f"'{path}' is {flat[path].shape}, expected {_shape(units, d, vocab, positions)}"
             for _, path, units, _ in rows if flat[path].shape != _shape(units, d, vocab, positions)]
    if wrong:
        raise ValueError(f"{fn}: {len(wrong)} arrays have the wrong shape for n_embd={d} (from "
                         "wte/embeddings): " + "; ".join(wrong) + ".")
    out = {name: np.ascontiguousarray(flat[path].T) if transpose and linear else flat[path].copy()
           for name, path, _, linear in rows}
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

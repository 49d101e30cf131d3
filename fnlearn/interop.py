"""Moving parameters to and from other libraries: safetensors files and PyTorch ``nn.Linear`` weights.

**safetensors** (the optional extra ``pip install fnlearn[interop]``): :func:`save_safetensors` writes
each array of a params tree under its path (``"0/w"``), and records the tree's nesting (including
parameterless ``{}`` entries) and key order in the file's metadata under ``"fnlearn.structure"``, so
:func:`load_safetensors` gives back the same nested dict. A safetensors file written elsewhere (no
such entry) loads as a flat dict of its tensor names, e.g. ``{"0.weight": ..., "0.bias": ...}``.

**PyTorch names and layouts**: an fnlearn ``Dense`` stores ``w`` with shape ``(in, out)`` (``y = x @ w
+ b``); ``torch.nn.Linear`` stores ``weight`` with shape ``(out, in)`` (``y = x @ weight.T + bias``).
So ``"0/w" <-> "0.weight"`` transposed, and ``"0/b" <-> "0.bias"`` as is. ``fl.serial`` keys its
children by position, as ``nn.Sequential`` does, so a ``serial(Dense(8), Relu(), Dense(3))`` and a
``Sequential(Linear(4, 8), ReLU(), Linear(8, 3))`` have matching names ``0`` and ``2``.

Example:
    >>> import numpy as np
    >>> from fnlearn import interop
    >>> params = {"0": {"w": np.ones((4, 8), np.float32), "b": np.zeros(8, np.float32)}, "1": {}}
    >>> sd = interop.to_torch_linear_state_dict(params)
    >>> {k: v.shape for k, v in sd.items()}
    {'0.weight': (8, 4), '0.bias': (8,)}
    >>> back = interop.from_torch_linear_state_dict(sd, like=params)
    >>> back["0"]["w"].shape, back["1"]
    ((4, 8), {})
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Mapping

import numpy as np

from ._types import Params
from .checkpoint import CheckpointError
from .checkpoint import _archive, _template
from .tree import tree_leaves

__all__ = ["save_safetensors", "load_safetensors", "to_torch_linear_state_dict",
           "from_torch_linear_state_dict"]

STRUCTURE_KEY = "fnlearn.structure"
_MAX_HEADER = 100 * 2**20
_MAX_GAP_FILL = 10_000


def _safetensors_numpy() -> Any:
    try:
        import safetensors.numpy
    except ImportError:
        raise ImportError("fnlearn.interop needs the optional package safetensors for .safetensors "
                          "files. Install it with: pip install 'fnlearn[interop]' (or pip install "
                          "safetensors).") from None
    return safetensors.numpy


def _flatten_dicts(fn: str, params: Params, path: str = "") -> tuple[Any, dict[str, np.ndarray]]:
    """The skeleton (dicts with ``None`` for leaves) and the ``path -> array`` table of ``params``."""
    if isinstance(params, dict):
        skeleton, flat = {}, {}
        for k, v in params.items():
            if not isinstance(k, str) or "/" in k or not k:
                raise ValueError(f"{fn}: every key must be a non-empty str without '/', got {k!r} "
                                 f"under '{path or '<root>'}'. Rename it.")
            skeleton[k], sub = _flatten_dicts(fn, v, f"{path}/{k}" if path else k)
            flat.update(sub)
        return skeleton, flat
    if not isinstance(params, np.ndarray) or not path:
        raise TypeError(f"{fn}: params must be nested dicts of NumPy arrays; '{path or '<root>'}' is "
                        f"a {type(params).__name__}. Convert it with np.asarray, or save trees with "
                        "lists, tuples and scalars with fnlearn.checkpoint.save.")
    return None, {path: params}


def save_safetensors(path: str | os.PathLike[str], params: Params, *,
                     metadata: Mapping[str, str] | None = None) -> None:
    """Write ``params`` (nested dicts of arrays) to a ``.safetensors`` file, atomically.

    Args:
        path: the file to write.
        params: nested dicts with str keys (no ``/``) and NumPy array leaves of a dtype safetensors
            stores (bool, (u)int8-64, float16/32/64).
        metadata: optional extra ``str -> str`` entries for the file header.

    Raises:
        TypeError, ValueError: a leaf that is not an array, or a key that cannot be a path.
        CheckpointError: safetensors refused an array (e.g. an unsupported dtype).
        ImportError: safetensors is not installed.
    """
    skeleton, flat = _flatten_dicts("save_safetensors", params)
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta[STRUCTURE_KEY] = json.dumps(skeleton)
    st = _safetensors_numpy()
    try:
        data = st.save({k: v if v.flags.c_contiguous else v.copy(order="C") for k, v in flat.items()},
                       metadata=meta)
    except Exception as e:  # safetensors raises its own error types, not ValueError
        raise CheckpointError(f"save_safetensors: safetensors could not store the params ({e}). It "
                              "stores bool, integer and float16/32/64 arrays.") from None
    _archive.atomic_write(path, lambda f: f.write(data))


def load_safetensors(path: str | os.PathLike[str]) -> Params:
    """Read a ``.safetensors`` file: the nested params saved by :func:`save_safetensors`, or, for a
    file written elsewhere, a flat dict ``{tensor name: array}``.

    Raises:
        CheckpointError: the file is not a valid safetensors file, or its structure entry disagrees
            with its tensors.
        ImportError: safetensors is not installed.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        head = f.read(8)
        size = os.fstat(f.fileno()).st_size
        declared = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 0 < declared <= min(size - 8, _MAX_HEADER):
            raise CheckpointError(f"load_safetensors('{path}'): the file is not a safetensors file "
                                  f"(its 8-byte header length {declared} does not fit the file's "
                                  f"{size} bytes).")
        raw = head + f.read()
    st = _safetensors_numpy()
    try:
        flat = st.load(raw)
        header = json.loads(raw[8:8 + declared])
    except Exception as e:  # SafetensorError, or a numpy error for a dtype it cannot represent
        raise CheckpointError(f"load_safetensors('{path}'): the file is not a readable safetensors "
                              f"file ({type(e).__name__}: {e}).") from None
    structure = (header.get("__metadata__") or {}).get(STRUCTURE_KEY)
    return flat if structure is None else _rebuild(path, structure, flat)


def _rebuild(path: str, structure: str, flat: dict[str, np.ndarray]) -> Params:
    where = f"load_safetensors('{path}')"
    try:
        skeleton = json.loads(structure)
    except (ValueError, RecursionError):
        skeleton = None
    if not isinstance(skeleton, dict):
        raise CheckpointError(f"{where}: the '{STRUCTURE_KEY}' metadata entry is not a JSON object; "
                              "the file is corrupted.")
    used: list[str] = []

    def build(node: Any, prefix: str) -> Any:
        if node is None and prefix in flat:
            used.append(prefix)
            return flat[prefix]
        if isinstance(node, dict):
            return {k: build(v, f"{prefix}/{k}" if prefix else k) for k, v in node.items()}
        raise CheckpointError(f"{where}: the '{STRUCTURE_KEY}' entry does not match the tensors at "
                              f"'{prefix}'; the file is corrupted.")

    params = build(skeleton, "")
    if len(used) != len(flat):
        raise CheckpointError(f"{where}: tensors {sorted(set(flat) - set(used))} are not in the "
                              f"'{STRUCTURE_KEY}' entry; the file is corrupted.")
    return params


def to_torch_linear_state_dict(params: Params) -> dict[str, np.ndarray]:
    """The PyTorch ``state_dict`` names and layouts of Dense params: ``"0/w"`` (in, out) becomes
    ``"0.weight"`` (out, in), ``"0/b"`` (out,) becomes ``"0.bias"``; parameterless entries vanish.

    Returns:
        ``{name: array}`` with C-contiguous NumPy arrays (copies). Load it into a torch model with
        ``model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})``.

    Raises:
        ValueError: a leaf other than a 2-D ``w`` or 1-D ``b``, or a key containing ``"."``.
    """
    _, flat = _flatten_dicts("to_torch_linear_state_dict", params)
    out = {}
    for path, arr in flat.items():
        *prefix, name = path.split("/")
        if any("." in p for p in prefix) or (name, arr.ndim) not in (("w", 2), ("b", 1)):
            raise ValueError(f"to_torch_linear_state_dict: '{path}' (shape {arr.shape}) is not a Dense "
                             "parameter (a 2-D 'w' or a 1-D 'b' under keys without '.'); this helper "
                             "maps Dense/nn.Linear weights only.")
        torch_name = ".".join(prefix + ["weight" if name == "w" else "bias"])
        out[torch_name] = np.ascontiguousarray(arr.T if name == "w" else arr)
    return out


def _natural(name: str) -> tuple[Any, ...]:
    """Sort key: module prefixes in numeric order ("2" before "10"), each weight before its bias."""
    prefix, _, last = name.rpartition(".")
    return tuple((0, int(s), "") if s.isdigit() else (1, 0, s) for s in prefix.split(".")) + (
        last != "weight", last)


def _as_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch.Tensor, converted without importing torch
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def from_torch_linear_state_dict(state_dict: Mapping[str, Any], *, like: Params = None) -> Params:
    """fnlearn Dense params from a PyTorch ``state_dict`` of ``nn.Linear`` layers (inverse of
    :func:`to_torch_linear_state_dict`).

    Args:
        state_dict: ``{"0.weight": (out, in), "0.bias": (out,), ...}``; values are torch tensors or
            array-likes.
        like: optional params template (e.g. ``model.init(...)``). Its parameterless entries
            (``"1": {}`` for a Relu) are filled in, and every missing or extra path and every shape or
            dtype difference is reported in one ValueError. Without it, gaps in integer keys are
            filled with ``{}`` (trailing parameterless layers are not known and stay absent).

    Returns:
        Nested dict params, ``w`` with shape (in, out), C-contiguous copies in the tensors' dtypes.

    Raises:
        ValueError: a name that is not ``<prefix>.weight``/``<prefix>.bias``, a wrong rank, or a
            mismatch with ``like``.
    """
    params: dict[str, Any] = {}
    for name in sorted(state_dict, key=_natural):
        match = re.fullmatch(r"((?:[^./]+\.)*[^./]+)\.(weight|bias)", name)
        arr = _as_numpy(state_dict[name])
        if match is None or arr.ndim != (2 if match.group(2) == "weight" else 1):
            raise ValueError(f"from_torch_linear_state_dict: '{name}' (shape {arr.shape}) is not an "
                             "nn.Linear parameter ('<prefix>.weight' 2-D or '<prefix>.bias' 1-D).")
        node = params
        for part in match.group(1).split("."):
            node = node.setdefault(part, {})
        node["w" if match.group(2) == "weight" else "b"] = np.ascontiguousarray(
            arr.T if match.group(2) == "weight" else arr)
    params = _fill_integer_gaps(params)
    return params if like is None else _match_template(like, params)


def _fill_integer_gaps(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    node = {k: _fill_integer_gaps(v) for k, v in node.items()}
    if node and all(k.isdigit() for k in node) and max(map(int, node)) < _MAX_GAP_FILL:
        node = {str(i): node.get(str(i), {}) for i in range(max(map(int, node)) + 1)}
    return node


def _match_template(like: Params, params: Params) -> Params:
    def fill(tmpl: Any, got: Any) -> Any:
        if not (isinstance(tmpl, dict) and isinstance(got, dict)):
            return got
        out = {k: fill(v, got[k]) if k in got else {} for k, v in tmpl.items()
               if k in got or not tree_leaves(v)}
        out.update({k: v for k, v in got.items() if k not in tmpl and tree_leaves(v)})
        return out

    result = fill(like, params)
    problems = _template.compare(like, result)
    if problems:
        raise ValueError("from_torch_linear_state_dict: the state dict does not match the template "
                         f"`like` ({len(problems)} problems):\n  " + "\n  ".join(problems) +
                         "\nBuild the torch model with the same layer sizes (and call .double() for "
                         "a float64 fnlearn model).")
    return result

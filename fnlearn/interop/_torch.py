"""PyTorch names and layouts for ``Dense`` stacks (``nn.Linear`` weights are stored transposed)."""

from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np

from .._types import Params
from ..checkpoint import _template
from ..tree import tree_leaves
from ._safetensors import _flatten_dicts

__all__ = ["to_torch_linear_state_dict", "from_torch_linear_state_dict"]

_MAX_GAP_FILL = 10_000


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

"""PyTorch names and layouts for recurrent layers (``nn.RNN``, ``nn.LSTM``, ``nn.GRU``).

torch layer ``k`` (``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}``, and the
same with ``_reverse`` for the backward direction) is fnlearn's ``{"w_ih": weight_ih.T, "w_hh":
weight_hh.T, "b_ih": bias_ih, "b_hh": bias_hh}``; a bidirectional layer is ``{"forward": ...,
"backward": ...}`` (:func:`fnlearn.Bidirectional`). The gate order is the same in both libraries.
A torch module built with ``bias=False`` gets zero biases.

Example:
    >>> import numpy as np, fnlearn as fl
    >>> from fnlearn import interop
    >>> model = fl.serial(fl.LSTM(3, return_sequences=True), fl.Dropout(0.1), fl.LSTM(3))
    >>> params = model.init(np.random.default_rng(0), (-1, 7, 2))
    >>> sd = interop.to_torch_rnn_state_dict(params)
    >>> sd["weight_ih_l0"].shape, sd["weight_hh_l1"].shape, len(sd)
    ((12, 2), (12, 3), 8)
    >>> back = interop.from_torch_rnn_state_dict(sd, like=params)
    >>> bool(np.array_equal(back["2"]["w_hh"], params["2"]["w_hh"]))
    True
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np

from .._types import Params
from ._torch import _as_numpy

__all__ = ["to_torch_rnn_state_dict", "from_torch_rnn_state_dict"]

_KEYS = ("w_ih", "w_hh", "b_ih", "b_hh")
_TORCH = {"w_ih": "weight_ih", "w_hh": "weight_hh", "b_ih": "bias_ih", "b_hh": "bias_hh"}
_NAME = re.compile(r"(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)(_reverse)?")


def to_torch_rnn_state_dict(params: Params, *, prefix: str = "") -> dict[str, np.ndarray]:
    """The ``state_dict`` of a torch ``nn.RNN``/``nn.LSTM``/``nn.GRU`` holding these recurrent params.

    Args:
        params: one recurrent layer's params, a list of them, or any params tree (e.g. of
            ``serial``): its recurrent layers, in key order, become torch layers 0, 1, ...
        prefix: put in front of every name (e.g. ``"lstm."`` for a submodule).

    Returns:
        ``{name: array}``, weights transposed to torch's ``(G*H, in)``, C-contiguous copies. Load with
        ``module.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})``.
    """
    layers = _recurrent_entries(params)
    if not layers:
        raise ValueError("to_torch_rnn_state_dict: found no recurrent layer params (a dict with keys "
                         f"{list(_KEYS)}, or {{'forward': ..., 'backward': ...}} of two) in params.")
    out = {}
    for k, layer in enumerate(layers):
        directions = [(layer["forward"], ""), (layer["backward"], "_reverse")] if "forward" in layer \
            else [(layer, "")]
        for p, suffix in directions:
            for key in _KEYS:
                out[f"{prefix}{_TORCH[key]}_l{k}{suffix}"] = np.ascontiguousarray(
                    p[key].T if key.startswith("w") else p[key])
    return out


def from_torch_rnn_state_dict(state_dict: Mapping[str, Any], *, like: Params = None,
                              prefix: str = "") -> Any:
    """fnlearn recurrent params from a torch ``nn.RNN``/``nn.LSTM``/``nn.GRU`` ``state_dict``.

    Args:
        state_dict: torch names (``weight_ih_l0``, ``bias_hh_l1_reverse``, ...) to tensors or arrays.
        like: optional params tree (e.g. ``model.init(...)``): torch layer ``k`` replaces its ``k``-th
            recurrent entry (in key order); shapes must match and values take its dtypes.
        prefix: a prefix that every name starts with, removed (e.g. ``"lstm."``).

    Returns:
        Without ``like``, a list with one entry per torch layer; with ``like``, a copy of ``like``.
    """
    layers: dict[int, dict[str, dict[str, np.ndarray]]] = {}
    for name, value in state_dict.items():
        match = _NAME.fullmatch(name[len(prefix):]) if name.startswith(prefix) else None
        if match is None:
            raise ValueError(f"from_torch_rnn_state_dict: '{name}' is not a recurrent parameter name "
                             f"('{prefix}weight_ih_l0', '{prefix}bias_hh_l1_reverse', ...).")
        kind, k, reverse = match.group(1), int(match.group(2)), bool(match.group(3))
        arr = _as_numpy(value)
        key = next(key for key, t in _TORCH.items() if t == kind)
        direction = layers.setdefault(k, {}).setdefault("backward" if reverse else "forward", {})
        direction[key] = np.ascontiguousarray(arr.T if key.startswith("w") else arr)
    if sorted(layers) != list(range(len(layers))):
        raise ValueError(f"from_torch_rnn_state_dict: the layers must be numbered 0, 1, ...; got "
                         f"{sorted(layers)}.")
    result = [_layer_params(layers[k], k) for k in range(len(layers))]
    return result if like is None else _fill(like, result)


def _layer_params(directions: dict[str, dict[str, np.ndarray]], k: int) -> Params:
    for name, p in directions.items():
        if "w_ih" not in p or "w_hh" not in p:
            raise ValueError(f"from_torch_rnn_state_dict: layer {k} ({name}) lacks weight_ih or "
                             f"weight_hh; got {sorted(_TORCH[q] for q in p)}.")
        for b in ("b_ih", "b_hh"):
            p.setdefault(b, np.zeros(p["w_hh"].shape[1], p["w_hh"].dtype))
        directions[name] = {key: p[key] for key in _KEYS}
    if "backward" in directions:
        return {"forward": directions["forward"], "backward": directions["backward"]}
    return directions["forward"]


def _is_cell(node: Any) -> bool:
    return isinstance(node, dict) and sorted(node) == sorted(_KEYS)


def _is_recurrent(node: Any) -> bool:
    return _is_cell(node) or (isinstance(node, dict) and sorted(node) == ["backward", "forward"]
                              and _is_cell(node["forward"]) and _is_cell(node["backward"]))


def _recurrent_entries(node: Any) -> list[Any]:
    if _is_recurrent(node):
        return [node]
    children = node.values() if isinstance(node, dict) else node if isinstance(node, (list, tuple)) else ()
    return [entry for child in children for entry in _recurrent_entries(child)]


def _fill(like: Params, layers: list[Params]) -> Params:
    count = len(_recurrent_entries(like))
    if count != len(layers):
        raise ValueError(f"from_torch_rnn_state_dict: the state dict has {len(layers)} layers but `like` "
                         f"has {count} recurrent layers. Build both with the same number of layers.")
    queue = iter(layers)

    def walk(node: Any, path: str) -> Any:
        if _is_recurrent(node):
            return _cast(node, next(queue), path)
        if isinstance(node, dict):
            return {k: walk(v, f"{path}/{k}".lstrip("/")) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return type(node)(walk(v, f"{path}/{i}".lstrip("/")) for i, v in enumerate(node))
        return node

    return walk(like, "")


def _cast(tmpl: Any, got: Any, path: str) -> Any:
    if isinstance(tmpl, dict):
        if not isinstance(got, dict) or sorted(got) != sorted(tmpl):
            raise ValueError(f"from_torch_rnn_state_dict: '{path}' has keys {sorted(tmpl)} in `like` "
                             f"but the torch layer gives {sorted(got) if isinstance(got, dict) else got}"
                             ". Is one of them bidirectional and the other not?")
        return {k: _cast(v, got[k], f"{path}/{k}".lstrip("/")) for k, v in tmpl.items()}
    if tmpl.shape != got.shape:
        raise ValueError(f"from_torch_rnn_state_dict: '{path}' has shape {tmpl.shape} in `like` but "
                         f"{got.shape} from torch (after transposing). Build both with the same sizes.")
    return got.astype(tmpl.dtype)

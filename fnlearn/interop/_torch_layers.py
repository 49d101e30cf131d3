"""PyTorch ``state_dict`` names and layouts for whole models, read from the model's structure.

The layout of a parameter depends on the layer that owns it, not only on its name, so the conversion
walks the model: ``serial``/``parallel`` children (``apply.children``) give the module prefixes, as
``nn.Sequential`` numbers (or names) its children, and each leaf layer's constructor name
(``repr(layer)``, e.g. ``"Conv2D(8, 3)"``) picks its torch counterpart:

- ``Dense`` <-> ``nn.Linear``: ``weight = w.T`` (out, in), ``bias = b``.
- ``Conv2D`` <-> ``nn.Conv2d``: ``weight = w.transpose(3, 2, 0, 1)`` (HWIO -> OIHW).
- ``ConvTranspose2D`` <-> ``nn.ConvTranspose2d``: ``weight = w.transpose(2, 3, 0, 1)`` (torch's
  ``(in, out, kh, kw)``).
- ``BatchNorm`` <-> ``nn.BatchNorm1d``/``2d``: ``weight, bias = scale, offset`` and ``running_mean,
  running_var`` = the state's ``mean, var``.
- ``LayerNorm`` <-> ``nn.LayerNorm``: ``weight = scale``, ``bias = offset`` (absent with ``bias=False``).
- ``Embedding`` and ``PositionalEmbedding`` <-> ``nn.Embedding``: ``weight = embeddings`` (nanoGPT's
  ``wpe`` for the positions: the torch model adds ``wpe.weight[:T]``).
- ``PatchEmbedding(p, f)`` <-> ``nn.Conv2d(C, f, p, stride=p)``: ``weight = w.reshape(p, p, C,
  f).transpose(3, 2, 0, 1)`` (the torch model flattens ``(B, f, H/p, W/p)`` to ``(B, N, f)``).
- ``MultiHeadAttention`` <-> ``nn.MultiheadAttention(batch_first=True)``: ``in_proj_weight = qkv.w.T``
  (rows q, k, v), ``in_proj_bias = qkv.b``, ``out_proj.weight = out.w.T``, ``out_proj.bias = out.b``.
- ``SimpleRNN``/``LSTM``/``GRU`` <-> a one-layer ``nn.RNN``/``nn.LSTM``/``nn.GRU``
  (``weight_ih_l0 = w_ih.T``, ...; ``Bidirectional`` adds the ``_reverse`` names), as
  :func:`fnlearn.interop.to_torch_rnn_state_dict`.
- ``MLP`` <-> a module with Linear children ``fc`` and ``proj``; ``TransformerBlock`` <-> a module
  with children ``ln_1``, ``attn``, ``ln_2``, ``mlp`` (nanoGPT's names), mapped as above.

**Flatten order.** fnlearn feature maps are NHWC, so ``Flatten`` orders a map's features ``(h, w, c)``;
torch's ``nn.Flatten`` of an NCHW map orders them ``(c, h, w)``. With ``channels_first=True`` (the
default: the torch model takes NCHW images) the input rows of the first ``Dense`` after a ``Flatten``
of a 4-D map are permuted accordingly (and the vectors of a ``LayerNorm``/``BatchNorm`` between them),
so both models compute the same logits. This needs the feature map's shape: pass ``input_shape``.

Exported ``BatchNorm`` entries include ``num_batches_tracked`` (0: fnlearn does not count batches; torch
only reads it when ``momentum=None``); importing ignores it.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np
from numpy.typing import DTypeLike

from .._stateful import bind_state, is_stateful
from .._types import Params, Shape
from ..combinators import eval_shape
from ..tree import tree_leaves
from ._torch import _as_numpy

__all__ = ["to_torch_state_dict", "from_torch_state_dict"]


class _Entry(NamedTuple):
    """One torch tensor: its name, where its fnlearn array lives, and the two layout maps."""
    name: str
    tree: str                      # "params" or "state"
    path: tuple[str, ...]          # keys from the root of that tree
    to_torch: Callable[[np.ndarray], np.ndarray]
    from_torch: Callable[[np.ndarray], np.ndarray]


def _same(a: np.ndarray) -> np.ndarray:
    return a


def _transposed(a: np.ndarray) -> np.ndarray:
    return a.T


def _linear(prefix: str, path: tuple[str, ...], p: Params, order: np.ndarray | None = None,
            names: tuple[str, str] = ("weight", "bias")) -> list[_Entry]:
    """A ``Dense``-like ``{"w": (in, out), "b"}``; ``order`` permutes the input rows (Flatten)."""
    to_w, from_w = _transposed, _transposed
    if order is not None:
        inverse = np.argsort(order)
        to_w, from_w = (lambda w: w[order].T), (lambda t: t.T[inverse])
    entries = [_Entry(prefix + names[0], "params", path + ("w",), to_w, from_w)]
    if "b" in p:
        entries.append(_Entry(prefix + names[1], "params", path + ("b",), _same, _same))
    return entries


def _vectors(prefix: str, tree: str, path: tuple[str, ...], pairs: list[tuple[str, str]],
             order: np.ndarray | None) -> list[_Entry]:
    """Per-feature vectors (norm layers), permuted like the features when after a Flatten."""
    to_v, from_v = _same, _same
    if order is not None:
        inverse = np.argsort(order)
        to_v, from_v = (lambda v: v[order]), (lambda t: t[inverse])
    return [_Entry(prefix + torch, tree, path + (key,), to_v, from_v) for key, torch in pairs]


def _layer_entries(kind: str, prefix: str, path: tuple[str, ...], p: Params,
                   order: np.ndarray | None, patch: int = 0) -> list[_Entry] | None:
    """The entries of one leaf layer, or None for a layer without a torch counterpart here
    (``patch``: PatchEmbedding's patch size)."""
    if kind == "Dense":
        return _linear(prefix, path, p, order)
    if kind in ("Conv2D", "ConvTranspose2D"):
        axes = (3, 2, 0, 1) if kind == "Conv2D" else (2, 3, 0, 1)
        back = tuple(int(i) for i in np.argsort(axes))
        return [_Entry(prefix + "weight", "params", path + ("w",), lambda w: w.transpose(axes),
                       lambda t: t.transpose(back)),
                _Entry(prefix + "bias", "params", path + ("b",), _same, _same)]
    if kind == "BatchNorm":
        return (_vectors(prefix, "params", path, [("scale", "weight"), ("offset", "bias")], order)
                + _vectors(prefix, "state", path, [("mean", "running_mean"), ("var", "running_var")],
                           order))
    if kind == "LayerNorm":
        return _vectors(prefix, "params", path, [(k, t) for k, t in (("scale", "weight"),
                                                                     ("offset", "bias")) if k in p], order)
    if kind in ("Embedding", "PositionalEmbedding"):
        return [_Entry(prefix + "weight", "params", path + ("embeddings",), _same, _same)]
    if kind == "PatchEmbedding":       # w (p * p * C, f), rows (row, column, channel) of a patch
        (n, f), c = p["w"].shape, int(p["w"].shape[0] // patch ** 2)
        return [_Entry(prefix + "weight", "params", path + ("w",),
                       lambda w: w.reshape(patch, patch, c, f).transpose(3, 2, 0, 1),
                       lambda t: t.transpose(2, 3, 1, 0).reshape(n, f)),
                _Entry(prefix + "bias", "params", path + ("b",), _same, _same)]
    if kind == "MultiHeadAttention":
        return (_linear(prefix, path + ("qkv",), p["qkv"], None, ("in_proj_weight", "in_proj_bias"))
                + _linear(prefix + "out_proj.", path + ("out",), p["out"]))
    if kind in ("SimpleRNN", "LSTM", "GRU", "Bidirectional"):   # one single-layer nn.RNN/LSTM/GRU
        directions = ([("forward", ""), ("backward", "_reverse")] if kind == "Bidirectional"
                      else [(None, "")])
        return [_Entry(f"{prefix}{torch}_l0{suffix}", "params", path + ((d,) if d else ()) + (key,),
                       *((_transposed, _transposed) if key[0] == "w" else (_same, _same)))
                for d, suffix in directions for key, torch in _RNN_NAMES]
    if kind == "MLP":
        return (_linear(prefix + "fc.", path + ("fc",), p["fc"])
                + _linear(prefix + "proj.", path + ("proj",), p["proj"]))
    if kind == "TransformerBlock":
        parts = (("ln_1", "LayerNorm"), ("attn", "MultiHeadAttention"), ("ln_2", "LayerNorm"),
                 ("mlp", "MLP"))
        return [e for key, sub in parts
                for e in _layer_entries(sub, f"{prefix}{key}.", path + (key,), p[key], None) or ()]
    return None


_RNN_NAMES = (("w_ih", "weight_ih"), ("w_hh", "weight_hh"), ("b_ih", "bias_ih"), ("b_hh", "bias_hh"))
_SUPPORTED = ("Dense, Conv2D, ConvTranspose2D, BatchNorm, LayerNorm, Embedding, PositionalEmbedding, "
              "PatchEmbedding, MultiHeadAttention, MLP, TransformerBlock, SimpleRNN, LSTM, GRU, Bidirectional, and "
              "serial/parallel of them")
_UNKNOWN = np.empty(0, np.intp)     # "after a Flatten of a feature map whose shape is not known"
_USES_ORDER = ("Dense", "LayerNorm", "BatchNorm")


class _Walk(NamedTuple):
    entries: list[_Entry]
    extras: dict[str, np.ndarray]   # export-only tensors (num_batches_tracked)
    names: list[str]                # every torch name, in the model's order (as torch lists them)


def _walk(fn: str, layer: Any, params: Params, state: Any, shape: Any, dtype: Any,
          path: tuple[str, ...], order: np.ndarray | None, channels_first: bool,
          out: _Walk) -> tuple[Any, Any, np.ndarray | None]:
    """Add the entries of ``layer`` to ``out``; return its output shape and dtype (None when not
    known) and the pending Flatten permutation."""
    kind = getattr(layer.apply, "combinator", None)
    if kind == "serial":
        for key, child in layer.apply.children:
            child_state = state[key] if state is not None and is_stateful(child) else None
            shape, dtype, order = _walk(fn, child, params[key], child_state, shape, dtype,
                                        path + (key,), order, channels_first, out)
        return shape, dtype, order
    if kind == "parallel":
        shapes = shape if shape is not None else [None] * len(layer.apply.children)
        dtypes = dtype if isinstance(dtype, (tuple, list)) else [dtype] * len(shapes)
        outs = [_walk(fn, child, params[key], None, s, d, path + (key,), None, channels_first, out)
                for (key, child), s, d in zip(layer.apply.children, shapes, dtypes)]
        known = all(o[0] is not None for o in outs)
        return (tuple(o[0] for o in outs) if known else None), tuple(o[1] for o in outs), None
    name = repr(layer).split("(")[0]
    where = f"'{'/'.join(path) or '<root>'}' ({layer!r})"
    out_shape, out_dtype = (None, None) if shape is None else eval_shape(
        bind_state(layer, state).apply if is_stateful(layer) else layer.apply, params, shape, dtype=dtype)
    if name == "Flatten":
        if shape is None:
            return None, None, _UNKNOWN if channels_first else None
        if len(shape) == 4 and channels_first:
            h, w, c = shape[1:]
            return out_shape, out_dtype, np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1).ravel()
        return out_shape, out_dtype, None
    if not tree_leaves(params):        # Relu, Dropout, pooling, ...: the order survives a same shape
        keep = order is not None and (shape is None or out_shape == shape)
        return out_shape, out_dtype, order if keep else None
    use = order if name in _USES_ORDER else None
    if use is _UNKNOWN:
        raise ValueError(f"{fn}: {where} follows a Flatten, and the feature map's shape is needed to "
                         "reorder its inputs from NHWC (h, w, c) to NCHW (c, h, w). Pass input_shape "
                         "(e.g. (-1, 28, 28, 1)), or channels_first=False if the torch model flattens "
                         "NHWC maps.")
    prefix = "".join(p + "." for p in path)
    patch = int(repr(layer).split("(")[1].split(",")[0]) if name == "PatchEmbedding" else 0
    entries = _layer_entries(name, prefix, path, params, use, patch)
    if entries is None:
        raise ValueError(f"{fn}: {where} has no torch counterpart here; supported: {_SUPPORTED}. "
                         "Convert its params by hand.")
    out.entries.extend(entries)
    out.names.extend(e.name for e in entries)
    if name == "BatchNorm":
        out.extras[prefix + "num_batches_tracked"] = np.array(0, np.int64)
        out.names.append(prefix + "num_batches_tracked")
    return out_shape, out_dtype, (order if use is not None and name != "Dense" else None)


def _plan(fn: str, model: Any, params: Params, state: Any, input_shape: Shape | None,
          input_dtype: DTypeLike, channels_first: bool) -> _Walk:
    out = _Walk([], {}, [])
    if input_dtype is None and input_shape is not None:
        input_dtype = next((np.asarray(a).dtype for a in tree_leaves(params)), np.dtype(np.float32))
    _walk(fn, model, params, state, input_shape, input_dtype, (), None, channels_first, out)
    return out


def _get(tree: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def to_torch_state_dict(model: Any, params: Params, *, state: Any = None,
                        input_shape: Shape | None = None, input_dtype: DTypeLike = None,
                        channels_first: bool = True) -> dict[str, np.ndarray]:
    """The PyTorch ``state_dict`` of the torch model equivalent to ``model`` (see the module docs).

    Args:
        model: a Layer or StatefulLayer (e.g. ``fl.serial(...)``) whose params these are.
        params: its params; ``state``: its state (required for a stateful model, e.g. BatchNorm).
        input_shape: the model's input shape, batch first (``-1`` allowed). Needed when a Dense
            follows a Flatten of an NHWC feature map (its rows are reordered to torch's NCHW order).
        input_dtype: the input's dtype when not the params' (integer ids for an Embedding).
        channels_first: the torch model takes NCHW images (reorder after Flatten); False when it
            flattens NHWC maps itself.

    Returns:
        ``{name: array}`` in ``nn.Sequential`` naming (``"0.weight"``, ``"3.running_mean"``),
        C-contiguous copies in the params' dtypes. Load with ``module.load_state_dict({k:
        torch.from_numpy(v) for k, v in sd.items()})``.

    Raises:
        ValueError: a layer without a torch counterpart here (naming its path), or a missing state
            or input_shape.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> from fnlearn import interop
        >>> model = fl.serial(fl.Conv2D(4, 3), fl.BatchNorm(), fl.Relu(), fl.Flatten(), fl.Dense(2))
        >>> params, state = model.init(np.random.default_rng(0), (-1, 5, 5, 1))
        >>> sd = interop.to_torch_state_dict(model, params, state=state, input_shape=(-1, 5, 5, 1))
        >>> {k: v.shape for k, v in sd.items()}["0.weight"], sd["4.weight"].shape, len(sd)
        ((4, 1, 3, 3), (2, 36), 9)
    """
    fn = "to_torch_state_dict"
    if is_stateful(model) and state is None:
        raise ValueError(f"{fn}: {model!r} is stateful (BatchNorm running statistics); pass state= "
                         "(from init or training) too.")
    plan = _plan(fn, model, params, state, input_shape, input_dtype, channels_first)
    trees = {"params": params, "state": state}
    out = {e.name: np.ascontiguousarray(e.to_torch(np.asarray(_get(trees[e.tree], e.path))))
           for e in plan.entries}
    out.update({k: v.copy() for k, v in plan.extras.items()})
    return {k: out[k] for k in plan.names}


def from_torch_state_dict(model: Any, state_dict: Mapping[str, Any], *, input_shape: Shape,
                          dtype: DTypeLike = None, input_dtype: DTypeLike = None,
                          channels_first: bool = True) -> Any:
    """fnlearn params (and state) for ``model`` from the ``state_dict`` of its torch equivalent
    (the inverse of :func:`to_torch_state_dict`).

    Args:
        model: the fnlearn model; it is initialised with ``input_shape`` to know every shape.
        state_dict: torch names to tensors or array-likes (``module.state_dict()``).
        input_shape: the model's input shape, batch first (``-1`` allowed).
        dtype: the params' dtype; default the floating dtype of the tensors (float64 after
            ``module.double()``).
        input_dtype, channels_first: as in :func:`to_torch_state_dict`.

    Returns:
        ``params`` for a Layer, ``(params, state)`` for a StatefulLayer: C-contiguous copies.

    Raises:
        ValueError: naming every missing or unexpected key and every shape that does not fit (with
            the torch shape expected), in one message.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> from fnlearn import interop
        >>> model = fl.serial(fl.Embedding(10, 4), fl.LayerNorm())
        >>> sd = {"0.weight": np.ones((10, 4)), "1.weight": np.ones(4), "1.bias": np.zeros(4)}
        >>> params = interop.from_torch_state_dict(model, sd, input_shape=(-1, 3), input_dtype=np.int64)
        >>> params["0"]["embeddings"].shape, params["1"]["offset"].dtype
        ((10, 4), dtype('float64'))
    """
    fn = "from_torch_state_dict"
    arrays = {name: _as_numpy(value) for name, value in state_dict.items()}
    if dtype is None:
        floats = sorted({str(a.dtype) for a in arrays.values() if a.dtype.kind == "f"})
        if len(floats) > 1:
            raise ValueError(f"{fn}: the tensors have several float dtypes {floats}; pass dtype= "
                             "(np.float32 or np.float64).")
        dtype = floats[0] if floats else None
    kwargs: dict[str, Any] = {} if dtype is None else {"dtype": dtype}
    if input_dtype is not None and "input_dtype" in inspect.signature(model.init).parameters:
        kwargs["input_dtype"] = input_dtype
    made = model.init(np.random.default_rng(0), input_shape, **kwargs)
    params, state = made if is_stateful(model) else (made, None)
    plan = _plan(fn, model, params, state, input_shape, input_dtype, channels_first)
    if len(plan.entries) != len(tree_leaves(params)) + len(tree_leaves(state)):   # never left at init
        raise ValueError(f"{fn}: {model!r} has params that no torch name maps to; convert by hand.")
    trees = {"params": _copy_dicts(params), "state": _copy_dicts(state)}
    problems = []
    for e in plan.entries:
        like = np.asarray(_get(trees[e.tree], e.path))
        expected = e.to_torch(like).shape
        if e.name not in arrays:
            problems.append(f"missing '{e.name}' (torch shape {expected})")
        elif arrays[e.name].shape != expected:
            problems.append(f"'{e.name}' has shape {arrays[e.name].shape}, expected {expected} "
                            f"(for fnlearn '{'/'.join(e.path)}' of shape {like.shape})")
        else:
            *parent, key = e.path
            _get(trees[e.tree], tuple(parent))[key] = np.ascontiguousarray(
                e.from_torch(arrays[e.name]), dtype=like.dtype)
    known = {e.name for e in plan.entries} | set(plan.extras)
    problems += [f"unexpected '{name}' (no fnlearn parameter maps to it)"
                 for name in arrays if name not in known]
    if problems:
        raise ValueError(f"{fn}: the state dict does not fit {model!r} with input_shape "
                         f"{tuple(input_shape)} ({len(problems)} problems):\n  " + "\n  ".join(problems)
                         + "\nBuild the torch model with the same layers and sizes, in the same order.")
    return (trees["params"], trees["state"]) if is_stateful(model) else trees["params"]


def _copy_dicts(tree: Any) -> Any:
    return {k: _copy_dicts(v) for k, v in tree.items()} if isinstance(tree, dict) else tree

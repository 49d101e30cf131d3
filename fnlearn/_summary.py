"""``summary(model, input_shape)``: a table of a model's layers, output shapes and parameter counts.

The table is found by walking the model: ``serial`` and ``parallel`` record their children (see
``fnlearn.combinators``), so each child gets a row under its path (``"0"``, ``"block/conv"``), and every
other layer is one row whose output shape comes from :func:`fnlearn.eval_shape` (one call on a
one-example batch of zeros). Parameters are counted from the params themselves.
"""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import DTypeLike

from ._stateful import bind_state, is_stateful
from ._types import Params, resolve_dtype
from .combinators import eval_shape
from .tree import tree_leaves

__all__ = ["summary", "Summary", "SummaryRow"]


class SummaryRow(NamedTuple):
    """One row of a :class:`Summary`: a child layer at ``path`` (``depth`` levels down)."""

    path: str
    layer: str
    output_shape: Any
    params: int
    depth: int


class Summary(NamedTuple):
    """A model's layers (``rows``), its input and output shapes and parameter totals.

    ``str(summary)`` is the table; ``params`` counts the trainable entries, ``state`` the
    non-trainable ones (BatchNorm's running statistics), ``nbytes`` the bytes of the params.
    """

    rows: tuple[SummaryRow, ...]
    input_shape: Any
    output_shape: Any
    params: int
    state: int
    nbytes: int

    def __str__(self) -> str:
        head = ("path", "layer", "output shape", "params")
        body = [(r.path, "  " * r.depth + r.layer, str(r.output_shape), f"{r.params:,}") for r in self.rows]
        widths = [max(len(row[i]) for row in [head, *body]) for i in range(4)]

        def line(row: tuple[str, ...]) -> str:
            return "  ".join([*(c.ljust(w) for c, w in zip(row[:3], widths)), row[3].rjust(widths[3])]).rstrip()

        rule = "  ".join("-" * w for w in widths)
        out = [f"input {self.input_shape}", line(head), rule, *map(line, body), rule,
               f"total params: {self.params:,} ({_size(self.nbytes)})"]
        if self.state:
            out.append(f"non-trainable state: {self.state:,}")
        return "\n".join(out)


def summary(model: Any, input_shape: Any, *, dtype: DTypeLike = None, input_dtype: DTypeLike = None,
            params: Params = None, state: Any = None, rng: np.random.Generator | None = None) -> Summary:
    """The layers of ``model``, with their paths, output shapes and parameter counts.

    Args:
        model: a :class:`fnlearn.Layer` or :class:`fnlearn.StatefulLayer`.
        input_shape: the input shape, batch first (``-1`` allowed), as for ``init``.
        dtype: the parameter dtype when the model is initialised here (default float32).
        input_dtype: the input's dtype when it is not the parameter dtype (integer token ids); a
            tuple of dtypes for a layer with several inputs.
        params, state: the model's params (and state, for a stateful model); default: a fresh
            ``init`` with ``rng`` (default ``np.random.default_rng(0)``).

    Returns:
        A :class:`Summary`; print it for the table. Rows follow the params' paths, so names given
        to ``serial``/``parallel`` show here as they do in checkpoints.

    Example:
        >>> import fnlearn as fl
        >>> print(fl.summary(fl.serial(fl.Dense(32), fl.Relu(), fl.Dense(10)), (-1, 784)))
        input (-1, 784)
        path  layer      output shape  params
        ----  ---------  ------------  ------
        0     Dense(32)  (-1, 32)      25,120
        1     Relu()     (-1, 32)           0
        2     Dense(10)  (-1, 10)         330
        ----  ---------  ------------  ------
        total params: 25,450 (99.4 KiB)
    """
    if params is None:
        kwargs = {} if dtype is None else {"dtype": dtype}
        if input_dtype is not None and "input_dtype" in inspect.signature(model.init).parameters:
            kwargs["input_dtype"] = input_dtype
        made = model.init(np.random.default_rng(0) if rng is None else rng, input_shape, **kwargs)
        params, state = made if is_stateful(model) else (made, None)
    elif is_stateful(model) and state is None:
        raise ValueError("summary: a stateful model needs its state too: pass params= and state= "
                         "together (both from init), or neither.")
    first = (resolve_dtype(dtype, "summary") if input_dtype is None
             else tuple(map(np.dtype, input_dtype)) if isinstance(input_dtype, (tuple, list))
             else np.dtype(input_dtype))
    rows: list[SummaryRow] = []
    out, _ = _walk(model, params, state, input_shape, first, "", -1, rows)
    leaves = [np.asarray(a) for a in tree_leaves(params)]
    rows = rows[1:] if len(rows) > 1 else [rows[0]._replace(depth=0)]   # the model itself: no row
    return Summary(rows=tuple(rows), input_shape=input_shape, output_shape=out,
                   params=sum(a.size for a in leaves), state=_count(state),
                   nbytes=sum(a.nbytes for a in leaves))


def _walk(layer: Any, params: Params, state: Any, shape: Any, dtype: Any, path: str, depth: int,
          rows: list[SummaryRow]) -> tuple[Any, Any]:
    """Add the rows of ``layer`` (its own first, then its children's); return its output spec."""
    kind = getattr(layer.apply, "combinator", None)
    children = getattr(layer.apply, "children", ())
    at = len(rows)
    rows.append(SummaryRow(path, kind or repr(layer), None, _count(params), depth))
    if kind == "serial":
        for key, child in children:
            child_state = state[key] if state is not None and is_stateful(child) else None
            shape, dtype = _walk(child, params[key], child_state, shape, dtype, _join(path, key),
                                 depth + 1, rows)
    elif kind == "parallel":
        dtypes = dtype if isinstance(dtype, (tuple, list)) else [dtype] * len(children)
        outs = [_walk(child, params[key], None, s, d, _join(path, key), depth + 1, rows)
                for (key, child), s, d in zip(children, shape, dtypes)]
        shape, dtype = tuple(s for s, _ in outs), tuple(d for _, d in outs)
    else:
        apply = bind_state(layer, state).apply if is_stateful(layer) else layer.apply
        shape, dtype = eval_shape(apply, params, shape, dtype=dtype)
    rows[at] = rows[at]._replace(output_shape=shape)
    return shape, dtype


def _join(path: str, key: str) -> str:
    return f"{path}/{key}" if path else key


def _count(tree: Any) -> int:
    return 0 if tree is None else sum(np.size(a) for a in tree_leaves(tree))


def _size(nbytes: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} B"

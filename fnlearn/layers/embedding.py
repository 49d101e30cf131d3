"""The embedding layer: a lookup table indexed by integer ids."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from .. import _checks
from .._types import Array, Layer, Params, Shape, resolve_dtype
from ..initializers import Initializer, normal


def Embedding(num_embeddings: int, features: int, *, init: Initializer | None = None) -> Layer:
    """Map integer ids to rows of a table: ``y = table[x]``.

    Args:
        num_embeddings: the number of rows (ids run from 0 to ``num_embeddings - 1``).
        features: the length of each row.
        init: initializer of the table; default standard normal (as PyTorch's ``nn.Embedding``).

    Shapes: ``x`` is an integer array ``(batch, ...)``; ``y`` is ``(batch, ..., features)``; params
    ``{"embeddings": (num_embeddings, features)}``. The input is not differentiable: the VJP returns
    ``dx = None``. Ids repeated in a batch add their cotangents into the same row. Initialise a model
    that starts with this layer with ``serial(...).init(rng, shape, input_dtype=np.int64)``.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> layer = fl.Embedding(5, 2)
        >>> params = layer.init(np.random.default_rng(0), (-1, 3))
        >>> y, vjp = layer.apply(params, np.array([[0, 4, 0]]))
        >>> y.shape, y.dtype
        ((1, 3, 2), dtype('float32'))
        >>> dparams, dx = vjp(np.ones_like(y))
        >>> dparams["embeddings"][:, 0], dx
        (array([2., 0., 0., 0., 1.], dtype=float32), None)
    """
    for what, value in (("num_embeddings", num_embeddings), ("features", features)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"Embedding: {what} must be a positive int, got {value!r}.")
    num_embeddings, features = int(num_embeddings), int(features)
    table_init = normal(1.0) if init is None else init
    name = f"Embedding({num_embeddings}, {features})"

    def init_fn(rng: np.random.Generator, input_shape: Shape, *, dtype: DTypeLike = None) -> Params:
        _checks.input_shape(name, input_shape)
        dt = resolve_dtype(dtype)
        return {"embeddings": np.asarray(table_init(rng, (num_embeddings, features), dt), dtype=dt)}

    def apply(params: Params, x: Array, *, rng: Any = None, train: bool = False):
        _checks.exact_keys(name, params, ("embeddings",))
        table = _checks.param(name, params, "embeddings", shape=(num_embeddings, features))
        _check_ids(name, x, num_embeddings)
        y = table[x]

        def vjp(dy: Array, *, compute_dx: bool = True) -> tuple[Params, None]:
            _checks.cotangent(name, dy, y.shape, y.dtype)
            dtable = np.zeros_like(table)
            np.add.at(dtable, x.reshape(-1), dy.reshape(-1, features))
            return {"embeddings": dtable}, None

        return y, vjp

    return Layer(init_fn, _checks.named(apply, name))


def _check_ids(name: str, x: Any, num_embeddings: int) -> None:
    if not isinstance(x, np.ndarray) or x.dtype.kind not in "iu":
        got = f"dtype {x.dtype}" if isinstance(x, np.ndarray) else type(x).__name__
        raise TypeError(f"{name}: x must be a NumPy array of integer ids, got {got}. Convert it with "
                        "np.asarray(x, dtype=np.int64).")
    _checks.min_rank(name, x, 1, "(batch, ...)")
    if x.size and (x.min() < 0 or x.max() >= num_embeddings):
        raise ValueError(f"{name}: ids must lie in [0, {num_embeddings - 1}], got values from "
                         f"{x.min()} to {x.max()}. Negative ids are not wrapped around.")

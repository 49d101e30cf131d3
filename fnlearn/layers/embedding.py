"""The embedding layer: a lookup table indexed by integer ids."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from .. import _checks
from .._kernels import add_rows
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
            add_rows(dtable, x.reshape(-1), dy.reshape(-1, features))
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


def PositionalEmbedding(max_length: int, *, init: Initializer | None = None) -> Layer:
    """Add a learned embedding of each position: ``y[b, t] = x[b, t] + embeddings[t]``.

    The learned absolute positions of GPT-2 and nanoGPT (``wpe``) and of ViT.

    Args:
        max_length: the longest sequence the layer accepts (nanoGPT's ``block_size``).
        init: initializer of the table; default normal with standard deviation 0.02 (nanoGPT, ViT).

    Shapes: ``x`` and ``y`` are ``(batch, time, features)`` with ``time <= max_length``; params
    ``{"embeddings": (max_length, features)}``. Rows past ``time`` get a zero gradient.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> layer = fl.PositionalEmbedding(8, init=fl.initializers.zeros)
        >>> params = layer.init(np.random.default_rng(0), (-1, 5, 3))
        >>> params["embeddings"].shape
        (8, 3)
        >>> y, vjp = layer.apply(params, np.ones((2, 5, 3), np.float32))
        >>> dparams, dx = vjp(np.ones_like(y))
        >>> dparams["embeddings"][:, 0]
        array([2., 2., 2., 2., 2., 0., 0., 0.], dtype=float32)
    """
    if not isinstance(max_length, (int, np.integer)) or isinstance(max_length, bool) or max_length <= 0:
        raise ValueError(f"PositionalEmbedding: max_length must be a positive int, got {max_length!r}.")
    max_length = int(max_length)
    table_init = normal(0.02) if init is None else init
    name = f"PositionalEmbedding({max_length})"

    def init_fn(rng: np.random.Generator, input_shape: Shape, *, dtype: DTypeLike = None) -> Params:
        shape = _checks.input_shape(name, input_shape)
        if len(shape) != 3:
            raise ValueError(f"{name}: input_shape must be (batch, time, features), got {shape}.")
        _check_length(name, shape[1], max_length)
        dt = resolve_dtype(dtype, name)
        return {"embeddings": np.asarray(table_init(rng, (max_length, shape[2]), dt), dtype=dt)}

    def apply(params: Params, x: Array, *, rng: Any = None, train: bool = False):
        _checks.exact_keys(name, params, ("embeddings",))
        table = _checks.param(name, params, "embeddings", ndim=2)
        _checks.float_array(name, x)
        if x.ndim != 3 or x.shape[2] != table.shape[1] or table.shape[0] != max_length:
            raise ValueError(f"{name}: expected x of shape (batch, time, {table.shape[1]}) and "
                             f"params['embeddings'] of shape ({max_length}, features), got x "
                             f"{x.shape} and embeddings {table.shape}.")
        _check_length(name, x.shape[1], max_length)
        _checks.same_dtype(name, x, table.dtype)
        t = x.shape[1]
        y = x + table[:t]

        def vjp(dy: Array, *, compute_dx: bool = True) -> tuple[Params, Array | None]:
            _checks.cotangent(name, dy, y.shape, y.dtype)
            dtable = np.zeros_like(table)
            np.sum(dy, axis=0, out=dtable[:t])
            return {"embeddings": dtable}, (dy.copy() if compute_dx else None)

        return y, vjp

    return Layer(init_fn, _checks.named(apply, name))


def _check_length(name: str, t: int, max_length: int) -> None:
    if t > max_length:
        raise ValueError(f"{name}: the sequence has {t} positions but the layer has only "
                         f"max_length = {max_length}. Crop the input to its last {max_length} "
                         "positions, or build the model with a larger max_length (block_size).")

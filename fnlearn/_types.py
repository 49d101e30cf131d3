"""The layer contract, written down once.

A layer is a pair of pure functions, bundled as :class:`Layer`:

``init(rng, input_shape, *, dtype=None) -> params``
    ``rng`` is a :class:`numpy.random.Generator`; ``input_shape`` is a tuple whose first entry is the
    batch size and may be ``-1``. ``params`` is a nested dict of arrays (``{}`` for a layer without
    parameters) in ``dtype`` (``None`` means float32). ``dtype`` is keyword-only and optional for
    user-written layers: combinators pass it on only when the caller asked for a dtype.

``apply(params, x, *, rng=None, train=False) -> (y, vjp_fn)``
    Pure: never mutates ``params`` or ``x``. Randomness only through ``rng``; ``train`` selects
    training behaviour (dropout).

``vjp_fn(dy, *, compute_dx=True) -> (dparams, dx)``
    ``dy`` has the shape and dtype of ``y``. ``dparams`` has exactly the structure, shapes and dtypes
    of ``params``; ``dx`` those of ``x``. With ``compute_dx=False`` the layer skips the input
    cotangent and returns ``None`` for ``dx`` (combinators use this for the first layer of a model,
    which saves one matrix product per Dense layer). A user-written ``vjp_fn`` that does not accept
    ``compute_dx`` still works: combinators only pass it to functions that declare it.
    Calling ``vjp_fn`` twice gives the same answer.

Output shapes: :func:`fnlearn.serial` needs each child's output shape to initialise the next child. It
gets it by evaluation: it applies the freshly initialised child to a one-example batch of zeros
(``train=False``) and reads the shape and dtype of the result. So a layer needs no separate shape
rule, and the shape that ``init`` threads is by construction the shape ``apply`` returns.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, NamedTuple, Protocol, Union

import numpy as np
from numpy.typing import DTypeLike, NDArray

Array = NDArray[Any]
"""A NumPy array."""
Shape = tuple[int, ...]
"""An array shape; in ``init`` the first entry is the batch size and may be -1."""
Params = Any
"""A pytree: nested dicts, lists and tuples of arrays (and ``None``)."""
PyTree = Any
"""Any nested dict/list/tuple/None structure with arrays or scalars at the leaves."""
VJPFn = Callable[..., tuple[Params, Union[Array, None]]]
"""``vjp_fn(dy, *, compute_dx=True) -> (dparams, dx)``."""


class InitFn(Protocol):
    def __call__(self, rng: np.random.Generator, input_shape: Shape, *,
                 dtype: DTypeLike = None) -> Params: ...


class ApplyFn(Protocol):
    def __call__(self, params: Params, x: Array, *, rng: np.random.Generator | None = None,
                 train: bool = False) -> tuple[Array, VJPFn]: ...


class Layer(NamedTuple):
    """A layer: ``Layer(init, apply)``. See the module docstring of ``fnlearn._types`` for the contract.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> layer = fl.Dense(3)
        >>> params = layer.init(np.random.default_rng(0), (-1, 2))
        >>> y, vjp = layer.apply(params, np.ones((4, 2), np.float32))
        >>> y.shape, y.dtype
        ((4, 3), dtype('float32'))
        >>> dparams, dx = vjp(np.ones_like(y))
        >>> dparams["w"].shape, dx.shape
        ((2, 3), (4, 2))
    """

    init: InitFn
    apply: ApplyFn

    def __repr__(self) -> str:
        return layer_repr(self)


LAYER_KINDS: "weakref.WeakKeyDictionary[Callable[..., Any], str]" = weakref.WeakKeyDictionary()
"""What some of fnlearn's own layers are (``"relu"``, ``"max_pool"``), keyed by their ``apply`` function
itself, so a wrapper (even one made with ``functools.wraps``) is never taken for the layer it wraps.
``serial`` reorders a Relu and the MaxPool2D after it by these (``combinators._plan``)."""

FUSIONS: "weakref.WeakKeyDictionary[Callable[..., Any], Callable[..., Any]]" = weakref.WeakKeyDictionary()
"""Fused forms of some of fnlearn's layers, keyed like :data:`LAYER_KINDS`. For a Conv2D:
``with_relu(params, x, pool, label) -> (y, vjp)``, the convolution followed by a ReLU (and with
``pool``, by 2x2 max pooling with stride 2), or None when it cannot fuse the pooling. ``serial`` runs a
Conv2D directly followed by a Relu (and a MaxPool2D(2)) this way (``combinators._plan``)."""

POOL_WINDOWS: "weakref.WeakKeyDictionary[Callable[..., Any], tuple[Any, Any, Any]]" = weakref.WeakKeyDictionary()
"""``(window, stride, padding)`` of each MaxPool2D, keyed by its ``apply`` (for ``serial``'s fusions)."""


def layer_repr(layer: Any) -> str:
    """A layer's constructor call, read from ``apply.__qualname__``: ``Dense(32)``, ``Relu()``,
    ``serial(Dense(32), Relu(), Dense(10))``.

    Layers name their ``apply`` with ``fnlearn._checks.named`` (``"Dense(32).apply"``); a user-written
    layer's closure reads ``"Swish.<locals>.apply"`` and shows as ``Swish()``. Anything else (a
    module-level function, a lambda) shows as the plain tuple ``Layer(init=..., apply=...)``.

    Example:
        >>> import fnlearn as fl
        >>> fl.serial(fl.Dense(32), fl.Relu(), fl.Dense(10))
        serial(Dense(32), Relu(), Dense(10))
    """
    qualname = getattr(layer.apply, "__qualname__", "") or ""
    if qualname.endswith(".<locals>.apply"):    # def Swish(): ... def apply(...) inside
        name = qualname.split(".<locals>.")[-2]
    elif qualname.endswith(".apply") and ".<locals>" not in qualname:   # named: "Dense(32).apply"
        name = qualname[:-len(".apply")]
    else:
        return f"{type(layer).__name__}(init={layer.init!r}, apply={layer.apply!r})"
    return name if name.endswith(")") else name + "()"


def resolve_dtype(dtype: DTypeLike, name: str = "init") -> np.dtype:
    """The parameter dtype for ``init``: float32 unless asked otherwise; only float32/float64."""
    if dtype is None:
        return np.dtype(np.float32)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"{name}: the parameter dtype must be float32 or float64, got {dtype!r}. "
                        "Pass dtype=np.float32 (the default) or dtype=np.float64.")
    return dt

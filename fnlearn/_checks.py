"""Input validation shared by layers, combinators and losses.

Every check raises at the boundary with a sentence that names the layer, the expected and the actual
shape or dtype, and how to fix it. The checks are cheap (attribute reads), so they run on every call.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ._types import Array, Params, Shape

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
FLOAT_DTYPES = _FLOATS
"""The accepted float dtypes; ``x.dtype in FLOAT_DTYPES`` is the cheapest exact test (tens of ns)."""


def float_array(name: str, x: Any, what: str = "x") -> Array:
    """``x`` itself if it is a float32/float64 ndarray; a TypeError otherwise."""
    if type(x) is not np.ndarray and not isinstance(x, np.ndarray):
        raise TypeError(f"{name}: {what} must be a NumPy array of float32 or float64, got "
                        f"{type(x).__name__}. Convert it with np.asarray({what}, dtype=np.float32).")
    if type(x) is not np.ndarray and isinstance(x, np.ma.MaskedArray):
        not_masked(name, x, what)
    if x.dtype not in _FLOATS:
        raise TypeError(f"{name}: {what} must have dtype float32 or float64, got {x.dtype}. "
                        f"Convert it with {what}.astype(np.float32) (integer data such as images "
                        "usually also wants scaling, e.g. / 255).")
    return x


def not_masked(name: str, x: Any, what: str = "x") -> None:
    """A TypeError for a :class:`numpy.ma.MaskedArray`: layers would silently compute with the masked
    entries."""
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(f"{name}: {what} is a numpy.ma.MaskedArray; fnlearn ignores masks, so the "
                        "masked entries would be used as data. Pass a plain array: "
                        f"{what}.filled(value) to choose what masked entries become, or drop the "
                        "examples that have them.")


def same_param_dtype(name: str, key: str, p: Array, ref_key: str, ref: Array) -> None:
    """A TypeError unless ``params[key]`` has the dtype of ``params[ref_key]`` (one dtype per layer)."""
    if p.dtype != ref.dtype:
        raise TypeError(f"{name}: params['{key}'] is {p.dtype} but params['{ref_key}'] is {ref.dtype}; "
                        f"a layer's parameters must share one dtype (the {p.dtype} leaf would get a "
                        f"{ref.dtype} gradient). Cast it with params['{key}'].astype(np.{ref.dtype}), or "
                        f"initialise the model with dtype=np.{p.dtype}.")


def same_dtype(name: str, x: Array, dtype: np.dtype, what: str = "x") -> None:
    """A TypeError unless ``x.dtype == dtype`` (a float32 model never silently computes in float64)."""
    if x.dtype != dtype:
        raise TypeError(f"{name}: {what} has dtype {x.dtype} but the parameters are {dtype}. Cast "
                        f"{what} with {what}.astype(np.{dtype}), or initialise the model with "
                        f"dtype=np.{x.dtype}.")


def min_rank(name: str, x: Array, rank: int, layout: str, what: str = "x") -> None:
    """A ValueError unless ``x.ndim >= rank``."""
    if x.ndim < rank:
        raise ValueError(f"{name}: expected {what} of rank >= {rank} with layout {layout}, got shape "
                         f"{x.shape}. Add a batch axis, e.g. {what}[None] for a single example.")


def cotangent(name: str, dy: Any, y_shape: Shape, y_dtype: np.dtype) -> Array:
    """``dy`` if it has the output's shape and dtype; a clear error otherwise (nothing is broadcast)."""
    if not isinstance(dy, np.ndarray):
        raise TypeError(f"{name}: the cotangent dy must be a NumPy array shaped like the output "
                        f"{y_shape}, got {type(dy).__name__}.")
    if dy.shape != y_shape:
        raise ValueError(f"{name}: the cotangent dy must have the output's shape {y_shape}, got "
                         f"{dy.shape}. Pass a cotangent shaped exactly like y (nothing is broadcast).")
    if dy.dtype != y_dtype:
        raise TypeError(f"{name}: the cotangent dy must have the output's dtype {y_dtype}, got "
                        f"{dy.dtype}. Cast it with dy.astype(np.{y_dtype}).")
    return dy


def param(name: str, params: Params, key: str, *, shape: Shape | None = None,
          ndim: int | None = None) -> Array:
    """``params[key]``, checked to be a float array of the given ``shape`` (or rank ``ndim``)."""
    p = params.get(key) if type(params) is dict else None
    if (type(p) is np.ndarray and p.dtype in _FLOATS and (shape is None or p.shape == shape)
            and (ndim is None or p.ndim == ndim)):
        return p
    if not isinstance(params, dict) or key not in params:
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f"{name}: expected params with key '{key}' (from this layer's init), got "
                         f"{got}. Were these params initialised for another model?")
    want = f"shape {shape}" if shape is not None else f"rank {ndim}"
    desc = f"{type(p).__name__} {getattr(p, 'shape', '')} {getattr(p, 'dtype', '')}".strip()
    raise ValueError(f"{name}: expected params['{key}'] to be a float array of {want}, got {desc}. "
                     "Were these params initialised for another model or input size?")


def no_params(name: str, params: Params) -> None:
    """A ValueError unless ``params`` is the empty dict of a parameterless layer."""
    if params != {} and params is not None:
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f"{name}: this layer has no parameters and expects params == {{}}, got {got}. "
                         "Were these params initialised for another model?")


def input_shape(name: str, shape: Any) -> Shape:
    """``shape`` as a tuple of ints whose first entry (the batch) may be -1."""
    if not isinstance(shape, (tuple, list)) or not all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in shape):
        raise TypeError(f"{name}: input_shape must be a tuple of ints such as (-1, 784), got "
                        f"{shape!r}.")
    shape = tuple(int(d) for d in shape)
    if len(shape) == 0 or shape[0] < -1 or shape[0] == 0 or any(d < 0 for d in shape[1:]):
        raise ValueError(f"{name}: input_shape must be (batch, *features) with batch -1 or positive "
                         f"and non-negative features, got {shape}.")
    return shape


def generator(name: str, rng: Any) -> np.random.Generator:
    """``rng`` if it is a :class:`numpy.random.Generator`; a TypeError otherwise."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{name}: rng must be a numpy.random.Generator, got {type(rng).__name__}. "
                        "Pass np.random.default_rng(seed).")
    return rng


def exact_keys(name: str, params: Params, keys: tuple[str, ...]) -> None:
    """A ValueError unless ``params`` is a dict with exactly ``keys`` (no missing, no extra)."""
    if type(params) is not dict or len(params) != len(keys) or any(k not in params for k in keys):
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f"{name}: expected params with keys {sorted(keys)} (from this layer's init), "
                         f"got {got}. Were these params initialised for another model?")


def real_number(name: str, what: str, value: Any) -> float:
    """``value`` as a finite float; a clear error for strings, None and NaN or inf."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: {what} must be a number, got {value!r}.")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name}: {what} must be finite, got {value}.")
    return value


def axis_of(name: str, axis: int, ndim: int) -> int:
    """``axis`` normalised to ``[0, ndim)``; a ValueError naming the layer when out of range."""
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name}: axis {axis} is out of range for an input of rank {ndim}.")
    return axis % ndim


def call_vjp(vjp: Callable[..., Any], dy: Any, compute_dx: bool) -> tuple[Params, Any]:
    """Call a child's ``vjp``, passing ``compute_dx=False`` only to functions that declare it."""
    if compute_dx:
        return vjp(dy)
    if accepts_compute_dx(vjp):
        return vjp(dy, compute_dx=False)
    return vjp(dy)


_ACCEPTS: dict[Any, bool] = {}


def accepts_compute_dx(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` declares a ``compute_dx`` keyword (cached per code object: closures share it)."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return False
    hit = _ACCEPTS.get(code)
    if hit is None:
        names = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
        hit = _ACCEPTS[code] = "compute_dx" in names
    return hit


try:  # NumPy >= 2 keeps the floating-point error state in a context variable: setting it is cheap
    from numpy._core._ufunc_config import _extobj_contextvar as _FP_STATE
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        _QUIET = _FP_STATE.get()
except (ImportError, AttributeError):  # pragma: no cover  (NumPy 1.x: np.errstate, ~2 us)
    _FP_STATE = None


def quiet_fp_begin() -> Any:
    """Silence NumPy's floating-point warnings (overflow, invalid, divide) until :func:`quiet_fp_end`.

    For hot paths whose non-finite results are documented (``inf`` in, ``inf`` or NaN out): a
    ``try``/``finally`` pair that costs about half a microsecond, where ``with np.errstate(...)`` costs
    about two.
    """
    if _FP_STATE is not None:
        return _FP_STATE.set(_QUIET)
    state = np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore")
    state.__enter__()
    return state


def quiet_fp_end(token: Any) -> None:
    """Restore the floating-point error state that :func:`quiet_fp_begin` replaced."""
    if _FP_STATE is not None:
        _FP_STATE.reset(token)
    else:  # pragma: no cover
        token.__exit__(None, None, None)


def named(apply: Callable[..., Any], name: str) -> Callable[..., Any]:
    """Give a layer's ``apply`` a readable ``__qualname__`` (``Dense(128).apply``) for error messages."""
    apply.__qualname__ = f"{name}.apply"
    return apply


def projections(name: str, params: Params, x: Array, shapes: dict[str, dict[str, Shape]],
                keys: tuple[str, ...]) -> None:
    """Check a layer made of named linear projections (``{"qkv": {"w", "b"}, "out": ...}``).

    ``params`` must have exactly the parts of ``shapes``; each part exactly ``keys`` (``("w", "b")``,
    or ``("w",)`` without biases), each leaf a float array of ``shapes[part][key]`` in ``x``'s dtype.
    """
    if type(params) is not dict or params.keys() != shapes.keys():
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f"{name}: expected params with keys {sorted(shapes)} (from this layer's init), "
                         f"got {got}. Were these params initialised for another model?")
    for part, part_shapes in shapes.items():
        where = f"{name} ({part})"
        exact_keys(where, params[part], keys)
        for key in keys:
            leaf = param(where, params[part], key, shape=part_shapes[key])
            if leaf.dtype != x.dtype:
                same_dtype(name, x, leaf.dtype)


def dropout_rng(name: str, rng: Any) -> np.random.Generator:
    """``rng`` for a layer that drops out in training; the ValueError of :func:`fnlearn.Dropout` otherwise."""
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"{name}: train=True with dropout needs rng=np.random.default_rng(seed) (got "
                         f"{type(rng).__name__}); pass train=False for evaluation.")
    return rng

"""``check_layer``: the whole battery of gradient and contract properties in one call."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable, Collection

import numpy as np

from .. import tree
from ._batch import batch_independence, batch_permutation, precision
from .._types import Layer
from ._common import cast_tree, func_name
from ._gradcheck import check_vjp, working_dtype
from ._properties import (FLOAT32, Case, Skip, aliasing, determinism, dtypes, linearity, mutation,
                          named_outputs, structure, zero_cotangent)
from ._report import GradCheckError, GradCheckReport, LayerReport, NonDifferentiablePoint

PROPERTIES = ("structure", "dtypes", "init", "adjoint", "linearity", "zero_cotangent", "determinism",
              "mutation", "aliasing", "batch_independence", "batch_permutation", "precision")
"""The properties :func:`check_layer` runs by default, in this order."""
BATCH_PROPERTIES = ("batch_independence", "batch_permutation")


def check_layer(layer: Any, input_shape: Any = None, *, params: Any = None, x: Any = None,
                state: Any = None, seed: int = 0, dtype: Any = None, batch_properties: bool = True,
                properties: str | Collection[str] = "default", exclude: Collection[str] = (),
                rng: Any = None, train: bool = False,
                x_strategy: Callable[[np.random.Generator, Any, np.dtype], Any] | None = None,
                batch_size: int = 3, probes: int = 2, rtol: float | None = None,
                name: str | None = None) -> LayerReport:
    """Run the battery of properties on a layer and raise one error listing every failure.

    Properties (see ``PROPERTIES``): cotangent structure (also with ``compute_dx=False``); dtypes
    (float32 and float64 preserved); init (dtype, determinism, shapes, ``eval_shape``); the adjoint
    identity (:func:`check_vjp`); linearity of the VJP in the cotangent; ``vjp(0) == 0`` exactly;
    determinism and reentrancy; no mutation (read-only inputs); no aliasing; batch independence and
    gradients adding up over batch splits; batch-permutation equivariance; float32 agreeing with float64.

    Args:
        layer: a :class:`fnlearn.Layer` (or a ``StatefulLayer``, checked with its state fixed), or a
            bare ``apply`` function (then pass ``params`` and ``x``).
        input_shape: the shape given to ``init`` (batch first, may be -1); needed when ``params`` or
            ``x`` is not given. A tuple of shapes for multi-input layers.
        params, x: the point; default ``layer.init(np.random.default_rng(seed), input_shape,
            dtype=dtype)`` and ``x_strategy(rng, shape, dtype)`` with ``batch_size`` examples.
        state: the state of a ``StatefulLayer`` (default: from its ``init``).
        seed: seeds the point, the cotangents and the directions.
        dtype: the parameter dtype for ``init`` (default float32, or the dtype of ``params``).
        batch_properties: False for layers that mix the examples of a batch.
        properties, exclude: which properties to run ("default" is all of ``PROPERTIES``).
        rng, train: as in :func:`check_vjp` (a seed; every call gets a fresh generator). Batch
            properties are skipped for a random layer in training mode.
        x_strategy: ``(rng, shape, dtype) -> x`` for inputs that are not standard normal floats
            (integer ids, positive values, separated values for max-like layers).
        probes, rtol: passed to :func:`check_vjp`.
        name: the name used in messages.

    Returns:
        A :class:`LayerReport` whose ``results`` list each property as passed or skipped.

    Raises:
        GradCheckError: when any property fails; ``err.report`` is the :class:`LayerReport`.
        NonDifferentiablePoint: the point is at a kink (or, in a hypothesis test, the example is rejected).

    Example:
        >>> import fnlearn as fl
        >>> from fnlearn.testing import check_layer
        >>> report = check_layer(fl.Dense(3), (-1, 4))
        >>> report.passed, len(report.results)
        (True, 12)
    """
    selected = _select(properties, exclude)
    given = {"params": params is not None, "x": x is not None, "state": state is not None,
             "x_strategy": x_strategy is not None, "batch_properties": not batch_properties}
    case, layer_obj, input_shape = _make_case(layer, input_shape, params, x, state, seed, dtype, rng,
                                              train, x_strategy, batch_size, name)
    runners: dict[str, Callable[[Case], Any]] = {
        "structure": structure, "dtypes": dtypes, "linearity": linearity,
        "zero_cotangent": zero_cotangent, "determinism": determinism, "mutation": mutation,
        "aliasing": aliasing, "batch_independence": batch_independence,
        "batch_permutation": batch_permutation, "precision": precision,
        "init": lambda c: _init_property(c, layer_obj, input_shape),
        "adjoint": lambda c: check_vjp(c.apply, c.params, c.x, seed=c.seed, probes=probes, rtol=rtol,
                                       rng=c.rng, train=c.train, name=c.name)}
    results, cause = [], None
    for prop in selected:
        reason = _skip_reason(prop, batch_properties, rng, train)
        if reason:
            results.append((prop, "skipped", reason))
            continue
        status, detail, error = _run_property(runners[prop], case, prop)
        if status == "failed":
            detail = dataclasses.replace(detail, reproduce=_reproduce(prop, input_shape, given, seed, dtype,
                                                                      rng, train, batch_size))
        results.append((prop, status, detail))
        cause = cause or error
    report = LayerReport(name=case.name, results=tuple(results))
    if not report.passed:
        raise GradCheckError(report) from cause
    return report


def _reproduce(prop: str, input_shape: Any, given: dict[str, bool], seed: int, dtype: Any, rng: Any,
               train: bool, batch_size: int) -> str:
    """The check_layer call that repeats one property at the same point."""
    extra = [f"{k}={k}" if k != "batch_properties" else "batch_properties=False"
             for k, v in given.items() if v]
    extra += [f"dtype=np.{np.dtype(dtype).name}"] if dtype is not None else []
    extra += [f"rng={rng!r}"] if rng is not None else []
    extra += ["train=True"] if train else []
    extra += [f"batch_size={batch_size}"] if batch_size != 3 and not given["x"] else []
    return (f"fnlearn.testing.check_layer(layer, {input_shape!r}, " + "".join(f"{e}, " for e in extra)
            + f"properties=[{prop!r}], seed={seed!r})")


def _select(properties: Any, exclude: Collection[str]) -> list[str]:
    chosen = list(PROPERTIES) if properties == "default" else (
        [properties] if isinstance(properties, str) else list(properties))
    unknown = [p for p in [*chosen, *exclude] if p not in PROPERTIES]
    if unknown:
        raise ValueError(f"check_layer: unknown properties {unknown}; the properties are {list(PROPERTIES)}.")
    return [p for p in chosen if p not in exclude]


def _skip_reason(prop: str, batch_properties: bool, rng: Any, train: bool) -> str:
    if prop in BATCH_PROPERTIES and not batch_properties:
        return "batch_properties=False"
    if prop in BATCH_PROPERTIES and rng is not None and train:
        return "a random layer in training mode draws its noise for the whole batch"
    return ""


def _run_property(run: Callable[[Case], Any], case: Case, prop: str) -> tuple[str, Any, Exception | None]:
    try:
        return "passed", run(case), None
    except Skip as skip:
        return "skipped", str(skip), None
    except GradCheckError as err:
        return "failed", err.report, None
    except NonDifferentiablePoint:
        raise
    except Exception as err:
        if type(err).__module__.startswith("hypothesis"):
            raise   # hypothesis.reject() and friends must reach hypothesis
        return "failed", GradCheckReport(
            check=prop, name=case.name, passed=False, summary=f"the layer raised {type(err).__name__} "
            f"while this property was checked: {err}"), err


def _make_case(layer: Any, input_shape: Any, params: Any, x: Any, state: Any, seed: int, dtype: Any,
               rng: Any, train: bool, x_strategy: Any, batch: int, name: str | None) -> tuple[Case, Any, Any]:
    has_init = hasattr(layer, "init") and hasattr(layer, "apply")
    layer, state = _bind_state(layer, input_shape, params, state, seed, dtype)
    apply = layer.apply if has_init else layer
    if params is None:
        if not has_init or input_shape is None:
            raise ValueError("check_layer: pass a Layer and input_shape (so that check_layer can call "
                             "init), or pass params= and x= explicitly.")
        params = call_init(layer.init, np.random.default_rng(seed), input_shape, dtype)
    if x is None:
        if input_shape is None:
            raise ValueError("check_layer: pass input_shape (batch first) or x= so that check_layer has "
                             "an input.")
        wd = np.dtype(dtype) if dtype is not None else working_dtype(
            [np.asarray(a) for a in tree.tree_leaves(params)] or [np.zeros(0, FLOAT32)])
        x = (x_strategy or standard_normal)(np.random.default_rng([seed, 1]), concrete(input_shape, batch), wd)
    if input_shape is None:
        input_shape = tree.tree_map(lambda a: (-1,) + np.shape(a)[1:], x)
    label = name or func_name(apply).removesuffix(".apply")
    return Case(apply=apply, name=label, params=params, x=x, rng=rng, train=train, seed=seed), \
        (layer if has_init else None), input_shape


def _bind_state(layer: Any, input_shape: Any, params: Any, state: Any, seed: int, dtype: Any) -> tuple[Any, Any]:
    """A StatefulLayer becomes a plain Layer with its state fixed (from ``init`` unless given).

    The state is cast to the dtype of the parameters at each call, so the float32 and float64 copies
    of the point that the checks make both work.
    """
    try:
        from .._stateful import is_stateful
    except ImportError:   # pragma: no cover  (an fnlearn without stateful layers)
        return layer, state
    if not is_stateful(layer):
        return layer, state
    if state is None:
        if input_shape is None:
            raise ValueError("check_layer: a StatefulLayer needs input_shape or state= to get its state.")
        state = call_init(layer.init, np.random.default_rng(seed), input_shape, dtype)[1]
    cast: dict[np.dtype, Any] = {}

    def apply(params: Any, x: Any, *, rng: Any = None, train: bool = False) -> tuple[Any, Any]:
        dt = working_dtype([np.asarray(a) for a in tree.tree_leaves((params, x))])
        y, _, vjp_fn = layer.apply(params, cast.setdefault(dt, cast_tree(state, dt)), x, rng=rng, train=train)
        return y, vjp_fn

    def init(rng: np.random.Generator, input_shape: Any, *, dtype: Any = None) -> Any:
        return call_init(layer.init, rng, input_shape, dtype)[0]

    apply.__qualname__ = func_name(layer.apply)
    return Layer(init, apply), state


def call_init(init: Callable[..., Any], rng: np.random.Generator, input_shape: Any, dtype: Any) -> Any:
    """``init(rng, input_shape, dtype=dtype)``; ``dtype`` is passed only when set, and an ``init``
    without a ``dtype`` keyword (allowed for user layers) gets its float leaves cast instead."""
    if dtype is None:
        return init(rng, input_shape)
    if not accepts_dtype(init):
        return cast_tree(init(rng, input_shape), np.dtype(dtype))
    return init(rng, input_shape, dtype=dtype)


def accepts_dtype(init: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(init).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "dtype" or p.kind is p.VAR_KEYWORD for p in params)


def is_multi(shape: Any) -> bool:
    return isinstance(shape, (tuple, list)) and len(shape) > 0 and isinstance(shape[0], (tuple, list))


def concrete(shape: Any, batch: int) -> Any:
    """``shape`` with a batch entry of -1 replaced by ``batch`` (each shape, for multi-input layers)."""
    if is_multi(shape):
        return tuple(concrete(s, batch) for s in shape)
    shape = tuple(int(d) for d in shape)
    return ((batch if shape[0] == -1 else shape[0]),) + shape[1:]


def standard_normal(rng: np.random.Generator, shape: Any, dtype: np.dtype) -> Any:
    """The default input: standard normal entries in ``dtype`` (a tuple of arrays for multi-input)."""
    if is_multi(shape):
        return tuple(standard_normal(rng, s, dtype) for s in shape)
    return rng.standard_normal(shape).astype(dtype)


def _init_property(case: Case, layer: Any, input_shape: Any) -> GradCheckReport:
    """init gives float32 by default and float64 on request, is deterministic, fits apply's shapes."""
    if layer is None:
        raise Skip("a bare apply function has no init")
    params = _init_params(layer, case.seed, input_shape, None)
    _init_dtypes(case, params, FLOAT32, "init(rng, input_shape)")
    _same_tree(case, params, _init_params(layer, case.seed, input_shape, None), exact=True,
               summary="init is not deterministic: the same seed gave different parameters")
    if accepts_dtype(layer.init):
        p64 = _init_params(layer, case.seed, input_shape, np.float64)
        _init_dtypes(case, p64, np.dtype(np.float64), "init(rng, input_shape, dtype=np.float64)")
        _same_tree(case, params, p64, exact=False, summary="init(dtype=np.float64) gives other shapes")
    _same_tree(case, params, _init_params(layer, case.seed, concrete(input_shape, 2), None), exact=False,
               summary="init gives other parameter shapes for a concrete batch size than for -1")
    _apply_shapes(case, layer, input_shape)
    return case.passed("init")


def _init_params(layer: Any, seed: int, input_shape: Any, dtype: Any) -> Any:
    return call_init(layer.init, np.random.default_rng(seed), input_shape, dtype)


def _init_dtypes(case: Case, params: Any, dt: np.dtype, call: str) -> None:
    for path, leaf in tree.tree_flatten_with_path(params)[0]:
        leaf = np.asarray(leaf)
        if leaf.dtype.kind == "f" and leaf.dtype != dt:
            _fail_init(case, f"{call} gives {path} in {leaf.dtype}, expected {dt}", path)


def _same_tree(case: Case, a: Any, b: Any, *, exact: bool, summary: str) -> None:
    la, lb = tree.tree_flatten_with_path(a)[0], tree.tree_flatten_with_path(b)[0]
    if [p for p, _ in la] != [p for p, _ in lb]:
        _fail_init(case, f"{summary} (leaves {[p for p, _ in la]} vs {[p for p, _ in lb]})", "params")
    for (path, u), (_, v) in zip(la, lb):
        u, v = np.asarray(u), np.asarray(v)
        if u.shape != v.shape or (exact and not np.array_equal(u, v)):
            _fail_init(case, f"{summary} ({path}: {u.shape} vs {v.shape})", path)


def _apply_shapes(case: Case, layer: Any, input_shape: Any) -> None:
    y, _ = case.call()
    batch = {np.shape(a)[0] for a in tree.tree_leaves(case.x) if np.ndim(a)}
    for path, leaf in named_outputs(y).items():
        if leaf.ndim == 0 or leaf.shape[0] not in batch:
            _fail_init(case, f"the output {path} of shape {leaf.shape} does not keep the batch axis of x "
                       f"(batch {sorted(batch)})", path)
    eval_shape = _eval_shape()
    if eval_shape is None:
        return
    dtypes = tree.tree_map(lambda a: np.asarray(a).dtype, case.x)
    shape, dtype = eval_shape(case.apply, case.params, input_shape, dtype=dtypes)
    want = tree.tree_map(lambda a: tuple(np.shape(a)[1:]), y)
    got_shape = _strip_batch(shape)
    if got_shape != want or tree.tree_leaves(dtype) != [np.asarray(a).dtype for a in tree.tree_leaves(y)]:
        _fail_init(case, f"fnlearn.eval_shape (apply on a one-example batch) gives {shape} {dtype}, but "
                   f"apply on the batch gives features {want} and dtypes "
                   f"{[str(np.asarray(a).dtype) for a in tree.tree_leaves(y)]}", "y")


def _strip_batch(shape: Any) -> Any:
    if is_multi(shape):
        return tuple(_strip_batch(s) for s in shape)
    return tuple(shape[1:])


def _eval_shape() -> Any:
    try:
        from .. import eval_shape
    except ImportError:   # pragma: no cover
        return None
    return eval_shape


def _fail_init(case: Case, summary: str, path: str) -> None:
    raise GradCheckError(GradCheckReport(check="init", name=case.name, passed=False, summary=summary,
                                         path=path))

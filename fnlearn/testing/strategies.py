"""Hypothesis strategies for testing layers, and the project's hypothesis profiles (needs hypothesis).

The strategies avoid the traps of finite differences: floats are bounded (no NaN or inf), have no
subnormals and no tiny magnitudes, and arrays are filled element by element (``fill=st.nothing()``, so
entries are rarely equal). :func:`away_from` keeps entries off kinks (ReLU's 0, clip bounds) and
:func:`separated_arrays` gives distinct, well-separated values for max-like layers (no ties).
:func:`layer_cases` draws hyperparameters, a seed, parameters from the layer's own ``init`` and an
input. Seeds are always drawn by hypothesis, so every failure replays.

Example:
    >>> import fnlearn as fl
    >>> from hypothesis import given, settings, strategies as st
    >>> from fnlearn.testing import strategies as fst
    >>> @settings(max_examples=5, deadline=None)
    ... @given(case=fst.layer_cases(fl.Dense, out_features=fst.small_dims(),
    ...                             feature_shape=st.tuples(fst.small_dims())))
    ... def test_dense(case):
    ...     case.check_layer()
    >>> test_dense()
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from hypothesis.strategies import SearchStrategy

from ._gradcheck import check_vjp
from ._layer import accepts_dtype, check_layer, is_multi

__all__ = ["seeds", "float_dtypes", "elements", "arrays", "away_from", "separated_arrays",
           "batch_shapes", "small_dims", "layer_cases", "LayerCase", "register_profiles"]

MIN_MAGNITUDE = 2.0 ** -10
BOUND = 2.0


def seeds() -> SearchStrategy[int]:
    """Seeds for ``np.random.default_rng``: integers in ``[0, 2**32)``."""
    return st.integers(0, 2 ** 32 - 1)


def float_dtypes(*, include: Sequence[Any] = ("float32", "float64")) -> SearchStrategy[np.dtype]:
    """float32 or float64 (as ``np.dtype``)."""
    return st.sampled_from([np.dtype(d) for d in include])


def _width(dtype: Any) -> int:
    return 32 if np.dtype(dtype) == np.float32 else 64


def _inward(lo: float, hi: float, width: int) -> tuple[float, float]:
    """``[lo, hi]`` shrunk to bounds that are exactly representable at ``width`` bits."""
    if width == 64:
        return float(lo), float(hi)
    f_lo, f_hi = np.float32(lo), np.float32(hi)
    if f_lo < lo:
        f_lo = np.nextafter(f_lo, np.float32(np.inf))
    if f_hi > hi:
        f_hi = np.nextafter(f_hi, np.float32(-np.inf))
    return float(f_lo), float(f_hi)


def _interval(lo: float, hi: float, width: int) -> SearchStrategy[float]:
    lo, hi = _inward(lo, hi, width)
    return st.floats(lo, hi, width=width, allow_subnormal=False) if lo <= hi else st.nothing()


def elements(dtype: Any, *, bound: float = BOUND, min_magnitude: float = MIN_MAGNITUDE,
             allow_zero: bool = False) -> SearchStrategy[float]:
    """Floats with ``min_magnitude <= |v| <= bound`` in ``dtype`` (and exactly 0 if ``allow_zero``).

    Example:
        >>> import numpy as np
        >>> from fnlearn.testing.strategies import elements
        >>> from hypothesis import find
        >>> v = find(elements(np.float32), lambda v: v < -1.5)
        >>> -2.0 <= v < -1.5
        True
    """
    w = _width(dtype)
    out = _interval(min_magnitude, bound, w) | _interval(-bound, -min_magnitude, w)
    return out | st.just(0.0) if allow_zero else out


def arrays(dtype: Any, shape: Any, *, bound: float = BOUND, min_magnitude: float = MIN_MAGNITUDE,
           allow_zero: bool = False, unique: bool = False,
           elements_strategy: SearchStrategy[float] | None = None) -> SearchStrategy[np.ndarray]:
    """Arrays of ``dtype`` and ``shape`` (a tuple or a strategy) with bounded, non-tiny entries.

    Example:
        >>> import numpy as np
        >>> from fnlearn.testing.strategies import arrays
        >>> from hypothesis import find
        >>> a = find(arrays(np.float64, (2, 2)), lambda a: a.min() < 0)
        >>> a.shape, bool(np.all((np.abs(a) >= 2.0 ** -10) & (np.abs(a) <= 2.0)))
        ((2, 2), True)
    """
    el = elements_strategy or elements(dtype, bound=bound, min_magnitude=min_magnitude,
                                       allow_zero=allow_zero)
    return hnp.arrays(np.dtype(dtype), shape, elements=el, fill=st.nothing(), unique=unique)


def away_from(points: Sequence[float], margin: float, dtype: Any, shape: Any, *, bound: float = BOUND,
              min_magnitude: float = MIN_MAGNITUDE) -> SearchStrategy[np.ndarray]:
    """Arrays whose entries keep at least ``margin`` from every point of ``points`` (kinks).

    ReLU: ``away_from([0.0], 0.05, ...)``; hard tanh: ``away_from([-1.0, 1.0], 0.05, ...)``.

    Example:
        >>> import numpy as np
        >>> from fnlearn.testing.strategies import away_from
        >>> from hypothesis import find
        >>> a = find(away_from([-1.0, 1.0], 0.1, np.float64, (4,)), lambda a: True)
        >>> bool(np.all(np.abs(np.abs(a) - 1.0) >= 0.1))
        True
    """
    cuts = sorted([(p - margin, p + margin) for p in points] + [(-min_magnitude, min_magnitude)])
    pieces, lo = [], -float(bound)
    for a, b in cuts:
        if a > lo:
            pieces.append((lo, min(a, bound)))
        lo = max(lo, b)
    if lo < bound:
        pieces.append((lo, float(bound)))
    w = _width(dtype)
    pieces = [(a, b) for a, b in pieces if b > a]
    if not pieces:
        raise ValueError(f"away_from: no value in [-{bound}, {bound}] is {margin} away from {list(points)}.")
    strategy = st.one_of([_interval(a, b, w) for a, b in pieces])
    return hnp.arrays(np.dtype(dtype), shape, elements=strategy, fill=st.nothing())


def separated_arrays(dtype: Any, shape: Any, *, bound: float = BOUND,
                     spacing: float | None = None) -> SearchStrategy[np.ndarray]:
    """Arrays of distinct values at least ``0.6 * spacing`` apart (for max-pool, argmax, sort).

    A random permutation of a grid with step ``spacing`` (default ``min(0.25, 2 * bound / size)``),
    jittered by up to ``0.2 * spacing``; no value is closer than ``0.3 * spacing`` to zero.

    Example:
        >>> import numpy as np
        >>> from fnlearn.testing.strategies import separated_arrays
        >>> from hypothesis import find
        >>> a = find(separated_arrays(np.float64, (2, 2)), lambda a: True)
        >>> bool(np.min(np.diff(np.sort(a.ravel()))) >= 0.6 * 0.25)
        True
    """
    shapes = shape if isinstance(shape, SearchStrategy) else st.just(tuple(shape))

    @st.composite
    def build(draw: Callable[..., Any]) -> np.ndarray:
        sh = draw(shapes)
        n = math.prod(sh)
        step = spacing if spacing is not None else min(0.25, 2 * bound / max(n, 1))
        order = np.asarray(draw(st.permutations(range(n))), dtype=np.float64)
        jitter = np.asarray(draw(st.lists(st.floats(-0.2, 0.2), min_size=n, max_size=n)))
        grid = order - (n - 1) / 2 + (0.5 if n % 2 else 0.0)
        return ((grid + jitter) * step).reshape(sh).astype(dtype)

    return build()


def batch_shapes(feature_shape: Any = (), *, min_batch: int = 1, max_batch: int = 4) -> SearchStrategy[tuple[int, ...]]:
    """``(batch,) + feature_shape`` with ``batch`` in ``[min_batch, max_batch]``."""
    features = feature_shape if isinstance(feature_shape, SearchStrategy) else st.just(tuple(feature_shape))
    return st.tuples(st.integers(min_batch, max_batch), features).map(lambda t: (t[0],) + tuple(t[1]))


def small_dims(min_value: int = 1, max_value: int = 5) -> SearchStrategy[int]:
    """A small dimension (Caffe2's 1..5): big enough for bugs, small enough for fast checks."""
    return st.integers(min_value, max_value)


@dataclass(frozen=True, repr=False)
class LayerCase:
    """A layer at a drawn point: hyperparameters, a seed, params from its ``init``, and an input.

    ``case.check_layer(**kw)`` and ``case.check_vjp(**kw)`` run the checkers at this point (with the
    case's seed); ``case.apply`` is the layer's ``apply`` (a stateful layer's state is bound).
    """

    layer: Any
    params: Any
    x: Any
    dtype: np.dtype
    seed: int
    input_shape: Any
    hyperparams: dict[str, Any] = field(default_factory=dict)
    state: Any = None

    @property
    def apply(self) -> Callable[..., Any]:
        if self.state is None:
            return self.layer.apply
        from ._layer import _bind_state
        return _bind_state(self.layer, self.input_shape, self.params, self.state, self.seed, None)[0].apply

    def check_layer(self, **kwargs: Any) -> Any:
        kwargs.setdefault("seed", self.seed)
        return check_layer(self.layer, self.input_shape, params=self.params, x=self.x, state=self.state,
                           **kwargs)

    def check_vjp(self, **kwargs: Any) -> Any:
        kwargs.setdefault("seed", self.seed)
        return check_vjp(self.apply, self.params, self.x, **kwargs)

    def __repr__(self) -> str:
        name = getattr(self.layer.apply, "__qualname__", "layer").removesuffix(".apply")
        return (f"LayerCase({name}, hyperparams={self.hyperparams!r}, input_shape={self.input_shape}, "
                f"dtype={self.dtype}, seed={self.seed}, x={self.x!r})")


def layer_cases(layer_or_factory: Any, *, input_shape: Any = None, feature_shape: Any = None,
                batch: Any = None, dtype: Any = None, x_elements: Any = None,
                **hyperparams: Any) -> SearchStrategy[LayerCase]:
    """Draw a :class:`LayerCase`: hyperparameters, a seed, the layer's own ``init`` params, an input.

    Args:
        layer_or_factory: a layer, or a constructor called with the drawn ``hyperparams``.
        input_shape: the shape for ``init`` (batch first; -1 means a drawn batch), or a strategy.
        feature_shape: instead of ``input_shape``: the shape after the batch (a tuple or a strategy;
            a tuple of such shapes for multi-input layers).
        batch: the batch size (an int or a strategy; default 1 to 4).
        dtype: the parameter (and float input) dtype, or a strategy; default :func:`float_dtypes`.
        x_elements: how to draw ``x``: a strategy of elements, or ``(dtype, shape) -> strategy of
            arrays`` (integer ids, :func:`separated_arrays`, :func:`away_from`); default :func:`arrays`.
        **hyperparams: keyword arguments of the constructor, each a value or a strategy.

    Params come from ``init(np.random.default_rng(seed), input_shape, dtype=dtype)`` with a drawn seed,
    which keeps activations of order one (no saturated tanh, no overflowing softmax).

    Example:
        >>> import fnlearn as fl
        >>> from fnlearn.testing.strategies import layer_cases, small_dims
        >>> from hypothesis import find
        >>> case = find(layer_cases(fl.Dense, out_features=small_dims(), feature_shape=(3,)),
        ...             lambda case: case.x.shape[0] == 2)
        >>> case.params["w"].shape, case.x.shape, case.dtype
        ((3, 1), (2, 3), dtype('float32'))
    """
    if (input_shape is None) == (feature_shape is None):
        raise ValueError("layer_cases: pass exactly one of input_shape= (batch first) and feature_shape=.")
    dtypes = _as_strategy(dtype, float_dtypes(), np.dtype)
    batches = _as_strategy(batch, st.integers(1, 4), int)

    @st.composite
    def build(draw: Callable[..., Any]) -> LayerCase:
        hp = {k: draw(v) if isinstance(v, SearchStrategy) else v for k, v in hyperparams.items()}
        layer = _make_layer(layer_or_factory, hp)
        dt, seed = draw(dtypes), draw(seeds())
        shape = _draw_shape(draw, input_shape, feature_shape)
        params, state = _init(layer, seed, shape, dt)
        x = _draw_x(draw, x_elements, dt, _concrete(shape, draw(batches)))
        return LayerCase(layer=layer, params=params, x=x, dtype=dt, seed=seed, input_shape=shape,
                         hyperparams=hp, state=state)

    return build()


def _as_strategy(value: Any, default: SearchStrategy[Any], convert: Callable[[Any], Any]) -> SearchStrategy[Any]:
    if value is None:
        return default
    return value if isinstance(value, SearchStrategy) else st.just(convert(value))


def _make_layer(layer_or_factory: Any, hp: dict[str, Any]) -> Any:
    if hasattr(layer_or_factory, "init") and hasattr(layer_or_factory, "apply"):
        if hp:
            raise ValueError(f"layer_cases: hyperparameters {sorted(hp)} need a layer constructor "
                             "(e.g. fl.Dense), not a layer that is already built.")
        return layer_or_factory
    return layer_or_factory(**hp)


def _draw_shape(draw: Callable[..., Any], input_shape: Any, feature_shape: Any) -> Any:
    if input_shape is not None:
        return draw(input_shape) if isinstance(input_shape, SearchStrategy) else input_shape
    feats = draw(feature_shape) if isinstance(feature_shape, SearchStrategy) else feature_shape
    if is_multi(feats):
        return tuple((-1,) + tuple(f) for f in feats)
    return (-1,) + tuple(feats)


def _concrete(shape: Any, batch: int) -> Any:
    from ._layer import concrete
    return concrete(shape, batch)


def _init(layer: Any, seed: int, shape: Any, dt: np.dtype) -> tuple[Any, Any]:
    from .. import tree
    rng = np.random.default_rng(seed)
    out = layer.init(rng, shape, dtype=dt) if accepts_dtype(layer.init) else layer.init(rng, shape)
    try:
        from .._stateful import is_stateful
        params, state = out if is_stateful(layer) else (out, None)
    except ImportError:   # pragma: no cover
        params, state = out, None
    params = tree.tree_map(lambda a: np.asarray(a, dt) if np.asarray(a).dtype.kind == "f" else a, params)
    return params, state


def _draw_x(draw: Callable[..., Any], x_elements: Any, dt: np.dtype, shape: Any) -> Any:
    if is_multi(shape):
        return tuple(_draw_x(draw, x_elements, dt, s) for s in shape)
    if x_elements is None:
        return draw(arrays(dt, shape))
    if isinstance(x_elements, SearchStrategy):
        return draw(hnp.arrays(dt, shape, elements=x_elements, fill=st.nothing()))
    return draw(x_elements(dt, shape))


PROFILES = {
    "ci": dict(derandomize=True, database=None, deadline=None, print_blob=True, max_examples=50,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]),
    "dev": dict(max_examples=20, deadline=None),
    "nightly": dict(max_examples=1000, deadline=None),
    "debug": dict(max_examples=10, deadline=None, verbosity=Verbosity.verbose,
                  phases=[Phase.explicit, Phase.reuse, Phase.generate]),
}
"""The hypothesis profiles of :func:`register_profiles`."""


def register_profiles(*, load: bool = True, profile: str | None = None) -> str | None:
    """Register the profiles ``ci``, ``dev``, ``nightly`` and ``debug``, and load one.

    ``ci`` is derandomized, with no example database, no deadline and ``print_blob=True`` (every
    failure prints a ``@reproduce_failure`` line). The profile loaded is ``profile``, else the
    ``HYPOTHESIS_PROFILE`` environment variable, else ``ci`` when ``CI`` is set, else ``dev``.

    Returns:
        The name of the loaded profile (None when ``load=False``).

    Example:
        >>> from fnlearn.testing.strategies import register_profiles
        >>> register_profiles(load=False) is None
        True
    """
    for name, options in PROFILES.items():
        settings.register_profile(name, **options)
    if not load:
        return None
    name = profile or os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
    settings.load_profile(name)
    return name

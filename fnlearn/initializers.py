"""Parameter initializers: ``init(rng, shape, dtype) -> array``.

``zeros`` and ``ones`` are initializers; the others are factories that return one (as in
``jax.nn.initializers``). Fan sizes follow the weight layouts used here: a dense weight is
``(in, out)``; a convolution kernel is ``(kh, kw, in, out)``, whose receptive field multiplies both fans.

Example:
    >>> import numpy as np
    >>> from fnlearn import initializers
    >>> w = initializers.glorot_uniform()(np.random.default_rng(0), (784, 128), np.float32)
    >>> w.dtype, bool(np.abs(w).max() <= np.sqrt(6 / (784 + 128)))
    (dtype('float32'), True)
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import numpy as np
from numpy.typing import DTypeLike

from ._types import Array, Shape

Initializer = Callable[[np.random.Generator, Shape, DTypeLike], Array]

__all__ = ["Initializer", "zeros", "ones", "constant", "normal", "uniform", "variance_scaling",
           "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform",
           "lecun_normal"]


def zeros(rng: np.random.Generator, shape: Shape, dtype: DTypeLike = np.float32) -> Array:
    """All zeros."""
    return np.zeros(shape, dtype)


def ones(rng: np.random.Generator, shape: Shape, dtype: DTypeLike = np.float32) -> Array:
    """All ones."""
    return np.ones(shape, dtype)


def constant(value: float) -> Initializer:
    """Every entry equal to ``value``."""
    def init(rng: np.random.Generator, shape: Shape, dtype: DTypeLike = np.float32) -> Array:
        return np.full(shape, value, dtype)
    return init


def normal(stddev: float = 1e-2) -> Initializer:
    """Gaussian entries with mean 0 and standard deviation ``stddev``."""
    def init(rng: np.random.Generator, shape: Shape, dtype: DTypeLike = np.float32) -> Array:
        dt = np.dtype(dtype)
        out = rng.standard_normal(shape, dtype=dt)
        out *= dt.type(stddev)
        return out
    return init


def uniform(scale: float = 1e-2) -> Initializer:
    """Entries uniform in ``[-scale, scale)``."""
    def init(rng: np.random.Generator, shape: Shape, dtype: DTypeLike = np.float32) -> Array:
        dt = np.dtype(dtype)
        out = rng.random(shape, dtype=dt)
        out *= dt.type(2 * scale)
        out -= dt.type(scale)
        return out
    return init


def _fans(shape: Shape) -> tuple[int, int]:
    if len(shape) < 2:
        raise ValueError(f"fan-scaled initializers need a weight of rank >= 2 (in, out) or "
                         f"(..., in, out), got shape {shape}. Use zeros or normal for biases.")
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def variance_scaling(scale: float, mode: Literal["fan_in", "fan_out", "fan_avg"],
                     distribution: Literal["normal", "uniform"]) -> Initializer:
    """Entries with variance ``scale / fan``, Gaussian or uniform (the family of the named ones below)."""
    if mode not in ("fan_in", "fan_out", "fan_avg") or distribution not in ("normal", "uniform"):
        raise ValueError(f"variance_scaling: mode must be fan_in, fan_out or fan_avg and distribution "
                         f"normal or uniform, got {mode!r} and {distribution!r}.")

    def init(rng: np.random.Generator, shape: Shape, dtype: DTypeLike = np.float32) -> Array:
        fan_in, fan_out = _fans(tuple(shape))
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
        variance = scale / max(1.0, fan)
        if distribution == "normal":
            return normal(math.sqrt(variance))(rng, shape, dtype)
        return uniform(math.sqrt(3.0 * variance))(rng, shape, dtype)
    return init


def glorot_uniform() -> Initializer:
    """Glorot/Xavier uniform: ``U(-a, a)`` with ``a = sqrt(6 / (fan_in + fan_out))``."""
    return variance_scaling(1.0, "fan_avg", "uniform")


def glorot_normal() -> Initializer:
    """Glorot/Xavier normal: variance ``2 / (fan_in + fan_out)``."""
    return variance_scaling(1.0, "fan_avg", "normal")


def he_uniform() -> Initializer:
    """He/Kaiming uniform for ReLU networks: ``U(-a, a)`` with ``a = sqrt(6 / fan_in)``."""
    return variance_scaling(2.0, "fan_in", "uniform")


def he_normal() -> Initializer:
    """He/Kaiming normal for ReLU networks: variance ``2 / fan_in``."""
    return variance_scaling(2.0, "fan_in", "normal")


def lecun_uniform() -> Initializer:
    """LeCun uniform: ``U(-a, a)`` with ``a = sqrt(3 / fan_in)``."""
    return variance_scaling(1.0, "fan_in", "uniform")


def lecun_normal() -> Initializer:
    """LeCun normal: variance ``1 / fan_in`` (the default for :func:`fnlearn.Dense` weights)."""
    return variance_scaling(1.0, "fan_in", "normal")

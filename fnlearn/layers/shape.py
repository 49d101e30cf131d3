"""Layers that only move data: Identity, Flatten, Dropout."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from .. import _checks
from .._types import Array, Layer, Params, Shape


def _parameterless(name: str):
    def init(rng: np.random.Generator, input_shape: Shape, *, dtype: DTypeLike = None) -> Params:
        _checks.input_shape(name, input_shape)
        return {}
    return init


def Identity() -> Layer:
    """``y = x`` (a copy, so the output never aliases the input).

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> fl.Identity().apply({}, np.ones((1, 2)))[0]
        array([[1., 1.]])
    """
    def apply(params: Params, x: Array, *, rng: Any = None, train: bool = False):
        _checks.no_params("Identity", params)
        _checks.float_array("Identity", x)
        y = x.copy()

        def vjp(dy: Array, *, compute_dx: bool = True):
            _checks.cotangent("Identity", dy, y.shape, y.dtype)
            return {}, (dy.copy() if compute_dx else None)
        return y, vjp
    return Layer(_parameterless("Identity"), _checks.named(apply, "Identity"))


def Flatten() -> Layer:
    """Flatten all axes but the batch: ``(batch, d1, d2, ...) -> (batch, d1 * d2 * ...)``.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> fl.Flatten().apply({}, np.zeros((2, 28, 28), np.float32))[0].shape
        (2, 784)
    """
    def apply(params: Params, x: Array, *, rng: Any = None, train: bool = False):
        _checks.no_params("Flatten", params)
        _checks.float_array("Flatten", x)
        _checks.min_rank("Flatten", x, 1, "(batch, ...)")
        y = x.reshape(x.shape[0], math.prod(x.shape[1:])).copy()

        def vjp(dy: Array, *, compute_dx: bool = True):
            _checks.cotangent("Flatten", dy, y.shape, y.dtype)
            return {}, (dy.reshape(x.shape).copy() if compute_dx else None)
        return y, vjp
    return Layer(_parameterless("Flatten"), _checks.named(apply, "Flatten"))


def Dropout(drop_rate: float) -> Layer:
    """Inverted dropout: with ``train=True`` each entry is zeroed with probability ``drop_rate`` and
    the survivors are scaled by ``1 / (1 - drop_rate)``; with ``train=False`` it is the identity.

    ``drop_rate`` is the probability of *dropping* (PyTorch, haiku, flax), not stax's keep rate.
    Training needs an explicit ``rng`` (a ``numpy.random.Generator``).

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> layer = fl.Dropout(0.5)
        >>> y, _ = layer.apply({}, np.ones((2, 4)), rng=np.random.default_rng(0), train=True)
        >>> sorted(set(y.ravel().tolist())) in ([0.0, 2.0], [2.0], [0.0])
        True
    """
    rate = float(drop_rate)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"Dropout: drop_rate is the probability of dropping an entry and must be in "
                         f"[0, 1], got {drop_rate!r}.")
    name = f"Dropout({rate})"

    def apply(params: Params, x: Array, *, rng: Any = None, train: bool = False):
        _checks.no_params(name, params)
        _checks.float_array(name, x)
        if not train or rate == 0.0:
            y, mask = x.copy(), None
        else:
            if not isinstance(rng, np.random.Generator):
                raise ValueError(f"{name}: train=True needs rng=np.random.default_rng(seed) (got "
                                 f"{type(rng).__name__}); pass train=False for evaluation.")
            keep = rng.random(x.shape) >= rate  # drawn in float64: the same mask for either dtype
            mask = keep * x.dtype.type(1.0 / (1.0 - rate)) if rate < 1.0 else np.zeros_like(x)
            y = x * mask

        def vjp(dy: Array, *, compute_dx: bool = True):
            _checks.cotangent(name, dy, y.shape, y.dtype)
            if not compute_dx:
                return {}, None
            return {}, (dy.copy() if mask is None else dy * mask)
        return y, vjp
    return Layer(_parameterless(name), _checks.named(apply, name))

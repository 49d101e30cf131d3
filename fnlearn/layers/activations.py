"""Activation layers: parameterless, elementwise (or along one axis), one line per rule.

Each rule is a forward ``f(x) -> y`` and a backward ``df(x, y, dy) -> dx`` that closes over nothing
else. Constants are Python floats so a float32 input stays float32 (NEP 50).

Example:
    >>> import numpy as np, fnlearn as fl
    >>> y, vjp = fl.Relu().apply({}, np.array([[-1.0, 0.0, 2.0]]))
    >>> y, vjp(np.ones_like(y))[1]
    (array([[0., 0., 2.]]), array([[0., 0., 1.]]))
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
from numpy.typing import DTypeLike
from scipy import special

from .. import _checks
from .._types import Array, Layer, Params, Shape

Forward = Callable[[Array], Array]
Backward = Callable[[Array, Array, Array], Array]

_SQRT_2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _elementwise(name: str, forward: Forward, backward: Backward) -> Layer:
    """A parameterless layer from a forward rule and its VJP rule."""

    def init(rng: np.random.Generator, input_shape: Shape, *, dtype: DTypeLike = None) -> Params:
        _checks.input_shape(name, input_shape)
        return {}

    def apply(params: Params, x: Array, *, rng: Any = None, train: bool = False):
        if params:
            _checks.no_params(name, params)
        if type(x) is not np.ndarray or x.dtype not in _checks.FLOAT_DTYPES:
            _checks.float_array(name, x)
        y = forward(x)

        def vjp(dy: Array, *, compute_dx: bool = True) -> tuple[Params, Array | None]:
            if type(dy) is not np.ndarray or dy.shape != y.shape or dy.dtype != y.dtype:
                _checks.cotangent(name, dy, y.shape, y.dtype)
            return {}, (backward(x, y, dy) if compute_dx else None)

        return y, vjp

    return Layer(init, _checks.named(apply, name))


def Relu() -> Layer:
    """``max(x, 0)``; the derivative at 0 is taken as 0 (PyTorch and JAX agree)."""
    return _elementwise("Relu", _relu, _relu_vjp)


def _relu(x: Array) -> Array:
    # Against an array of zeros np.maximum runs its SIMD loop; against the scalar 0.0 it is 2-2.5x
    # slower (NumPy 2.x). The zeros are a private temporary, so they can take the result.
    y = np.zeros(x.shape, x.dtype)
    return np.maximum(x, y, out=y)


def _relu_vjp(x: Array, y: Array, dy: Array) -> Array:
    dx = (x > 0.0).astype(dy.dtype)  # a private float mask: float * float beats float * bool
    dx *= dy
    return dx


def LeakyRelu(negative_slope: float = 0.01) -> Layer:
    """``x`` for ``x > 0``, else ``negative_slope * x``; derivative at 0 is ``negative_slope``."""
    a = _checks.real_number("LeakyRelu", "negative_slope", negative_slope)
    return _elementwise(f"LeakyRelu({a})", lambda x: np.where(x > 0.0, x, x * a),
                        lambda x, y, dy: np.where(x > 0.0, dy, dy * a))


def Elu(alpha: float = 1.0) -> Layer:
    """``x`` for ``x > 0``, else ``alpha * (exp(x) - 1)``."""
    a = _checks.real_number("Elu", "alpha", alpha)
    return _elementwise(f"Elu({a})",
                        lambda x: np.where(x > 0.0, x, np.expm1(np.minimum(x, 0.0)) * a),
                        lambda x, y, dy: np.where(x > 0.0, dy, dy * (y + a)))


def Sigmoid() -> Layer:
    """The logistic function ``1 / (1 + exp(-x))`` (``scipy.special.expit``, stable)."""
    return _elementwise("Sigmoid", special.expit, lambda x, y, dy: dy * (y * (1.0 - y)))


def Tanh() -> Layer:
    """The hyperbolic tangent."""
    return _elementwise("Tanh", np.tanh, lambda x, y, dy: dy * (1.0 - y * y))


def Softplus() -> Layer:
    """``log(1 + exp(x))``, stable for large ``|x|``; its derivative is the sigmoid."""
    return _elementwise("Softplus", lambda x: np.logaddexp(x, 0.0),
                        lambda x, y, dy: dy * special.expit(x))


def Gelu(approximate: bool = False) -> Layer:
    """GELU ``x * Phi(x)`` with the exact normal CDF, or the tanh approximation (PyTorch's names)."""
    if approximate:
        return _elementwise("Gelu(approximate=True)", _gelu_tanh, _gelu_tanh_vjp)
    return _elementwise("Gelu", lambda x: x * _phi_cdf(x),
                        lambda x, y, dy: dy * (_phi_cdf(x) + x * np.exp(-0.5 * x * x) * _INV_SQRT_2PI))


def _phi_cdf(x: Array) -> Array:
    return 0.5 * (1.0 + special.erf(x / _SQRT_2))


def _gelu_tanh(x: Array) -> Array:
    return 0.5 * x * (1.0 + np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)))


def _gelu_tanh_vjp(x: Array, y: Array, dy: Array) -> Array:
    t = np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x ** 3))
    du = _SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * x * x)
    return dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du)


def Softmax(axis: int = -1) -> Layer:
    """``exp(x) / sum(exp(x))`` along ``axis``, computed from ``x - max(x)`` (stable)."""
    _int_axis("Softmax", axis)

    def forward(x: Array) -> Array:
        _checks.axis_of(f"Softmax(axis={axis})", axis, x.ndim)
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        e /= e.sum(axis=axis, keepdims=True)
        return e
    return _elementwise(f"Softmax(axis={axis})", forward,
                        lambda x, y, dy: y * (dy - (dy * y).sum(axis=axis, keepdims=True)))


def LogSoftmax(axis: int = -1) -> Layer:
    """``x - logsumexp(x)`` along ``axis`` (stable)."""
    _int_axis("LogSoftmax", axis)

    def forward(x: Array) -> Array:
        _checks.axis_of(f"LogSoftmax(axis={axis})", axis, x.ndim)
        shifted = x - x.max(axis=axis, keepdims=True)
        shifted -= np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
        return shifted
    return _elementwise(f"LogSoftmax(axis={axis})", forward,
                        lambda x, y, dy: dy - np.exp(y) * dy.sum(axis=axis, keepdims=True))


def _int_axis(name: str, axis: object) -> None:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{name}: axis must be an int, got {axis!r}.")

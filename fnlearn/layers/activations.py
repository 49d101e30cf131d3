"""Activation layers: parameterless, elementwise (or along one axis), one line per rule.

Each rule is a forward ``f(x) -> y`` and a backward ``df(x, y, dy) -> dx`` that closes over nothing
else; a rule that needs another residual than ``y`` returns ``(y, r)`` and gets ``df(x, r, dy)``.
Constants are Python floats so a float32 input stays float32 (NEP 50). ``scipy.special`` is imported by
the rules that use it, when they are built or called, not with fnlearn.

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

from .. import _checks
from .._types import LAYER_KINDS, Array, Layer, Params, Shape

Forward = Callable[[Array], Array]
Backward = Callable[[Array, Array, Array], Array]

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _elementwise(name: str, forward: Forward, backward: Backward, *, residual: bool = False) -> Layer:
    """A parameterless layer from a forward rule and its VJP rule.

    ``backward(x, y, dy)``; with ``residual=True``, ``forward(x) -> (y, r)`` and ``backward(x, r, dy)``.
    """

    def init(rng: np.random.Generator, input_shape: Shape, *, dtype: DTypeLike = None) -> Params:
        _checks.input_shape(name, input_shape)
        return {}

    def apply(params: Params, x: Array, *, rng: Any = None, train: bool = False):
        if params:
            _checks.no_params(name, params)
        if type(x) is not np.ndarray or x.dtype not in _checks.FLOAT_DTYPES:
            _checks.float_array(name, x)
        y, r = forward(x) if residual else (forward(x),) * 2

        def vjp(dy: Array, *, compute_dx: bool = True) -> tuple[Params, Array | None]:
            if type(dy) is not np.ndarray or dy.shape != y.shape or dy.dtype != y.dtype:
                _checks.cotangent(name, dy, y.shape, y.dtype)
            return {}, (backward(x, r, dy) if compute_dx else None)

        return y, vjp

    return Layer(init, _checks.named(apply, name))


def Relu() -> Layer:
    """``max(x, 0)``; the derivative at 0 is taken as 0 (PyTorch and JAX agree).

    Inside :func:`fnlearn.serial`, a Relu directly followed by :func:`fnlearn.MaxPool2D` runs after
    the pooling instead, on the pooled entries (a quarter of them for 2x2 windows): ``max(relu(a),
    relu(b)) = relu(max(a, b))``, and both orders give the same gradients except in a window that
    holds a NaN (``fnlearn.combinators._execution_order``). A Conv2D directly before it runs the ReLU
    (and a following 2x2 MaxPool2D) fused into its own chunks (``fnlearn.combinators._plan``)."""
    layer = _elementwise("Relu", _relu, _relu_vjp)
    LAYER_KINDS[layer.apply] = "relu"
    return layer


def _relu(x: Array) -> Array:
    # Against an array of zeros np.maximum runs its SIMD loop; against the scalar 0.0 it is 2-2.5x
    # slower (NumPy 2.x). A small x's zeros are a private temporary that takes the result. A large x
    # is done a chunk at a time against one chunk of zeros, which saves writing the whole output
    # twice: 1.13 -> 0.88 ms on the (64, 24, 24, 64) float32 activations of PyTorch's MNIST example.
    if x.size <= _RELU_CHUNK:
        y = np.zeros(x.shape, x.dtype)
        return np.maximum(x, y, out=y)
    y = np.empty(x.shape, x.dtype)
    zeros = np.zeros(_RELU_CHUNK, x.dtype)
    flat_x, flat_y = x.reshape(-1), y.reshape(-1)
    for part in _flat_chunks(flat_y.size):
        np.maximum(flat_x[part], zeros[:part.stop - part.start], out=flat_y[part])
    return y


def _relu_vjp(x: Array, y: Array, dy: Array) -> Array:
    # dy times a float mask (x > 0): dy * 0.0 keeps the sign of dy and its NaN. np.where (a branch per
    # entry) and masked copies are several times slower. A large x's mask is made in dx itself a
    # chunk at a time and multiplied while it is in cache: on the MNIST CNNs' shapes 1.2-1.35x faster
    # than a whole mask, then a product, when x and dy are in the L3 cache; about as fast (+-10%)
    # when they come from memory.
    if x.size <= _RELU_CHUNK:
        dx = (x > 0.0).astype(dy.dtype)  # float * float beats float * bool
        dx *= dy
        return dx
    dx = np.empty(x.shape, dy.dtype)
    flat_x, flat_dy, flat_dx = x.reshape(-1), dy.reshape(-1), dx.reshape(-1)
    for part in _flat_chunks(flat_dx.size):
        np.greater(flat_x[part], 0.0, out=flat_dx[part])
        flat_dx[part] *= flat_dy[part]
    return dx


def _flat_chunks(size: int) -> list[slice]:
    """``range(size)`` as slices of :data:`_RELU_CHUNK` entries (the last one may be shorter)."""
    return [slice(start, min(start + _RELU_CHUNK, size)) for start in range(0, size, _RELU_CHUNK)]


_RELU_CHUNK = 1 << 17
"""Entries of Relu's forward pass and VJP handled at once (512 KiB of float32)."""


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
    from scipy.special import expit
    return _elementwise("Sigmoid", expit, lambda x, y, dy: dy * (y * (1.0 - y)))


def Tanh() -> Layer:
    """The hyperbolic tangent."""
    return _elementwise("Tanh", np.tanh, lambda x, y, dy: dy * (1.0 - y * y))


def Softplus() -> Layer:
    """``log(1 + exp(x))``, stable for large ``|x|``; its derivative is the sigmoid."""
    from scipy.special import expit
    return _elementwise("Softplus", lambda x: np.logaddexp(x, 0.0), lambda x, y, dy: dy * expit(x))


def Gelu(approximate: bool | str = False) -> Layer:
    """GELU ``x * Phi(x)``, ``Phi`` the standard normal CDF (Hendrycks and Gimpel, 2016).

    Args:
        approximate: ``False`` or ``"none"``: the exact GELU. ``True`` or ``"tanh"``: the tanh
            approximation ``x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x**3))) / 2`` of GPT-2. The
            strings are PyTorch's (``torch.nn.GELU(approximate=...)``).

    The exact GELU of float64 input uses ``scipy.special.ndtr`` (exact to float64 rounding). For float32
    input ``Phi(x) = (1 + tanh(x * P(x**2))) / 2`` with a degree-6 polynomial ``P`` fitted to float32
    accuracy: within 1e-7 of ``Phi`` for every float32 ``x`` (several times faster than float32
    ``erf``). The VJP keeps ``Phi(x)`` from the forward pass.

    Shapes: ``x`` and ``y`` of any shape, float32 or float64; no params.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> y, vjp = fl.Gelu().apply({}, np.array([-1.0, 0.0, 2.0]))
        >>> y.round(6), vjp(np.ones(3))[1].round(6)
        (array([-0.158655,  0.      ,  1.9545  ]), array([-0.083315,  0.5     ,  1.085232]))
        >>> fl.Gelu(approximate="tanh").apply({}, np.array([2.0], np.float32))[0]
        array([1.9545977], dtype=float32)
    """
    if _gelu_is_tanh(approximate):
        return _elementwise("Gelu(approximate=True)", _gelu_tanh, _gelu_tanh_vjp, residual=True)
    return _elementwise("Gelu", _gelu_exact, _gelu_exact_vjp, residual=True)


def _gelu_is_tanh(approximate: object) -> bool:
    if isinstance(approximate, str) and approximate in ("none", "tanh"):
        return approximate == "tanh"
    if isinstance(approximate, (bool, np.bool_)):
        return bool(approximate)
    raise (ValueError if isinstance(approximate, str) else TypeError)(
        f"Gelu: approximate must be False or 'none' (the exact GELU), or True or 'tanh' (the tanh "
        f"approximation), got {approximate!r}.")


# The exact GELU in float32. scipy's float32 erf costs as much as ~40 tanh's, so
#     Phi(x) = (1 + tanh(x * P(x**2))) / 2,   P(s) = sum(_GELU_P[k] * s**k),
# the tanh approximation's form with P of degree 6 instead of 1. P was fitted in float64 to
# atanh(2 * Phi(x) - 1) / x on [0, 6], minimising the largest error of Phi (weights 2 Phi (1 - Phi),
# Lawson's iteratively re-weighted least squares). Its float32 evaluation is within 1e-7 of Phi and
# y within 2 ulps of max(|x|, 1): 9.9e-8 and 1.89 ulps over every float32 with 2**-12 <= |x| < 16
# (tests/test_gelu.py measures both on a dense grid). Beyond |x| = 6,
# x**2 is clamped to 36: |x * P(36)| > 11, where tanh is +-1 in float32.
_GELU_P = (0.7978849411010742, 0.03633308410644531, -3.259497680119239e-05, -5.530619091587141e-05,
           3.964744337281445e-06, -1.3226330963789223e-07, 1.7561698761880962e-09)
# The tanh GELU's argument sqrt(2 / pi) * (x + 0.044715 x**3), x**2 clamped to 100 (beyond |x| = 10 the
# argument exceeds 43: tanh is +-1 in float64).
_TANH_P = (_SQRT_2_OVER_PI, 0.044715 * _SQRT_2_OVER_PI)


def _gelu_exact(x: Array) -> tuple[Array, Array]:
    """``(x * Phi(x), Phi(x))``: two new arrays, the rest in place."""
    if x.dtype != np.float32:
        from scipy.special import ndtr
        cdf = ndtr(x)
        return x * cdf, cdf
    with np.errstate(over="ignore"):  # x * x = inf beyond 1.8e19 is clamped; x * P = +-inf gives +-1
        s = x * x
        np.minimum(s, 36.0, out=s)
        cdf = s * _GELU_P[-1]
        for c in _GELU_P[-2:0:-1]:
            cdf += c
            cdf *= s
        cdf += _GELU_P[0]
        cdf *= x
    _tanh_to_cdf(cdf)
    return np.multiply(x, cdf, out=s), cdf


def _gelu_exact_vjp(x: Array, cdf: Array, dy: Array) -> Array:
    # d/dx x Phi(x) = Phi(x) + x pdf(x); exp(-x**2 / 2) is 0 beyond the clip, in either dtype.
    xc = np.clip(x, -40.0, 40.0) if x.dtype == np.float64 else np.clip(x, -15.0, 15.0)
    g = xc * xc
    g *= -0.5
    np.exp(g, out=g)
    xc *= _INV_SQRT_2PI
    g *= xc
    g += cdf
    g *= dy
    return g


def _gelu_tanh(x: Array) -> tuple[Array, Array]:
    """``(x * Phi(x), Phi(x))`` with ``Phi(x) = (1 + tanh(u)) / 2``: two new arrays."""
    with np.errstate(over="ignore"):  # as in _gelu_exact
        cdf = x * x
        np.minimum(cdf, 100.0, out=cdf)
        cdf *= _TANH_P[1]
        cdf += _TANH_P[0]
        cdf *= x
    _tanh_to_cdf(cdf)
    return x * cdf, cdf


def _gelu_tanh_vjp(x: Array, cdf: Array, dy: Array) -> Array:
    # d/dx x Phi(x) = Phi + x Phi' with Phi = (1 + tanh u) / 2, Phi' = 2 Phi (1 - Phi) u'(x).
    xc = np.clip(x, -10.0, 10.0)
    g = xc * xc
    g *= 6.0 * _TANH_P[1]
    g += 2.0 * _TANH_P[0]
    g *= xc  # 2 x u'(x)
    h = np.subtract(1.0, cdf, out=xc)
    h *= cdf
    g *= h
    g += cdf
    g *= dy
    return g


def _tanh_to_cdf(u: Array) -> None:
    """``u <- (1 + tanh(u)) / 2`` in place."""
    np.tanh(u, out=u)
    u *= 0.5
    u += 0.5


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

"""Layers that turn images into token sequences and back: the front and the head of a Vision Transformer.

``PatchEmbedding`` cuts NHWC images into non-overlapping square patches and projects each patch to a
token; ``ClassToken`` prepends one learned token to every sequence; ``SelectToken`` takes one token
(the class token) out of each sequence for the classification head.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from .. import _checks
from .._kernels import column_sums
from .._types import Array, Layer, Params, Shape, resolve_dtype
from ..initializers import Initializer, lecun_normal, normal, zeros


def _positive_int(name: str, what: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name}: {what} must be a positive int, got {value!r}.")
    return int(value)


def _image_grid(name: str, shape: Shape, patch: int) -> tuple[int, int]:
    """``(H // patch, W // patch)`` for an NHWC shape whose height and width ``patch`` divides."""
    if len(shape) != 4:
        raise ValueError(f"{name}: expected images of shape (batch, height, width, channels) (NHWC), got "
                         f"shape {shape}. Reshape them, e.g. x.reshape(-1, 28, 28, 1).")
    if shape[1] % patch or shape[2] % patch:
        raise ValueError(f"{name}: the patch size {patch} must divide the image height and width, got "
                         f"{shape[1]}x{shape[2]}. Pad or crop the images, or choose a patch size that "
                         "divides both.")
    return shape[1] // patch, shape[2] // patch


def PatchEmbedding(patch_size: int, features: int, *, w_init: Initializer | None = None,
                   b_init: Initializer = zeros) -> Layer:
    """Cut NHWC images into ``patch_size x patch_size`` patches and project each to ``features``.

    Args:
        patch_size: the side ``p`` of the square, non-overlapping patches; it must divide the image
            height and width.
        features: the length of each output token.
        w_init: initializer of ``w`` (shape ``(p * p * channels, features)``); default LeCun normal.
        b_init: initializer of ``b`` (shape ``(features,)``); default zeros.

    Shapes: ``x`` is ``(batch, H, W, C)``; ``y`` is ``(batch, N, features)`` with ``N = (H // p) *
    (W // p)`` tokens in row-major patch order; params ``{"w": (p * p * C, features), "b":
    (features,)}``. A patch is flattened in ``(row, column, channel)`` order, so ``w.reshape(p, p, C,
    features)`` is the kernel of ``Conv2D(features, p, stride=p)`` computing the same thing (and
    PyTorch's ``Conv2d`` weight ``(features, C, p, p)`` is ``w.reshape(p, p, C, features)
    .transpose(3, 2, 0, 1)``). The forward pass is one copy into patch rows and one matrix product;
    the VJP is two products (one with ``compute_dx=False``) and one copy back.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> layer = fl.PatchEmbedding(7, 16)
        >>> params = layer.init(np.random.default_rng(0), (-1, 28, 28, 1))
        >>> params["w"].shape
        (49, 16)
        >>> y, vjp = layer.apply(params, np.ones((2, 28, 28, 1), np.float32))
        >>> y.shape, y.dtype
        ((2, 16, 16), dtype('float32'))
        >>> dparams, dx = vjp(np.ones_like(y))
        >>> dparams["w"].shape, dx.shape
        ((49, 16), (2, 28, 28, 1))
    """
    p = _positive_int("PatchEmbedding", "patch_size", patch_size)
    features = _positive_int("PatchEmbedding", "features", features)
    w_init = lecun_normal() if w_init is None else w_init
    name = f"PatchEmbedding({p}, {features})"

    def init(rng: np.random.Generator, input_shape: Shape, *, dtype: DTypeLike = None) -> Params:
        shape = _checks.input_shape(name, input_shape)
        _image_grid(name, shape, p)
        dt = resolve_dtype(dtype, name)
        w_rng, b_rng = _checks.generator(name, rng).spawn(2)
        return {"w": np.asarray(w_init(w_rng, (p * p * shape[3], features), dt), dtype=dt),
                "b": np.asarray(b_init(b_rng, (features,), dt), dtype=dt)}

    def apply(params: Params, x: Array, *, rng: Any = None, train: bool = False):
        w, b = _patch_params(name, params, x, p, features)
        batch, height, width, channels = x.shape
        gh, gw = height // p, width // p
        # (B, gh, p, gw, p, C) -> (B, gh, gw, p, p, C): one copy into one row per patch
        rows = x.reshape(batch, gh, p, gw, p, channels).transpose(0, 1, 3, 2, 4, 5).reshape(-1, w.shape[0])
        y = rows @ w
        y += b
        y = y.reshape(batch, gh * gw, features)

        def vjp(dy: Array, *, compute_dx: bool = True) -> tuple[Params, Array | None]:
            _checks.cotangent(name, dy, y.shape, y.dtype)
            dy2 = dy.reshape(-1, features)
            dparams = {"w": rows.T @ dy2, "b": column_sums(dy2)}
            if not compute_dx:
                return dparams, None
            drows = (dy2 @ w.T).reshape(batch, gh, gw, p, p, channels)
            return dparams, drows.transpose(0, 1, 3, 2, 4, 5).reshape(x.shape)

        return y, vjp

    return Layer(init, _checks.named(apply, name))


def _patch_params(name: str, params: Params, x: Any, p: int, features: int) -> tuple[Array, Array]:
    """``(w, b)`` checked against each other and against the images ``x``."""
    _checks.exact_keys(name, params, ("w", "b"))
    w = _checks.param(name, params, "w", ndim=2)
    b = _checks.param(name, params, "b", shape=(features,))
    _checks.float_array(name, x)
    _image_grid(name, x.shape, p)
    if w.shape != (p * p * x.shape[3], features):
        raise ValueError(f"{name}: expected params['w'] of shape ({p * p * x.shape[3]}, {features}) for "
                         f"images with {x.shape[3]} channels, got {w.shape}. Check the input shape the "
                         "model was initialised with.")
    _checks.same_dtype(name, x, w.dtype)
    return w, b


def _sequences(name: str, x: Any, what: str = "x") -> Array:
    _checks.float_array(name, x, what)
    if x.ndim != 3:
        raise ValueError(f"{name}: expected {what} of shape (batch, tokens, features), got shape "
                         f"{x.shape}. Tokens come from e.g. PatchEmbedding.")
    return x


def ClassToken(*, init: Initializer | None = None) -> Layer:
    """Prepend one learned token to every sequence: ``(batch, N, d) -> (batch, N + 1, d)``.

    Args:
        init: initializer of the token (shape ``(d,)``); default normal with standard deviation 0.02.

    Shapes: ``x`` is ``(batch, N, d)``; ``y[:, 0]`` is the token and ``y[:, 1:]`` is ``x``; params
    ``{"token": (d,)}``. The token's gradient is the sum over the batch of ``dy[:, 0]``. After the
    encoder, :func:`SelectToken` takes this token out for the head (as in ViT and BERT).

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> layer = fl.ClassToken(init=fl.initializers.ones)
        >>> params = layer.init(np.random.default_rng(0), (-1, 3, 2))
        >>> y, vjp = layer.apply(params, np.zeros((1, 3, 2), np.float32))
        >>> y[0]
        array([[1., 1.],
               [0., 0.],
               [0., 0.],
               [0., 0.]], dtype=float32)
        >>> vjp(np.ones_like(y))[0]["token"]
        array([1., 1.], dtype=float32)
    """
    token_init = normal(0.02) if init is None else init
    name = "ClassToken"

    def init_fn(rng: np.random.Generator, input_shape: Shape, *, dtype: DTypeLike = None) -> Params:
        shape = _checks.input_shape(name, input_shape)
        if len(shape) != 3:
            raise ValueError(f"{name}: input_shape must be (batch, tokens, features), got {shape}.")
        dt = resolve_dtype(dtype, name)
        return {"token": np.asarray(token_init(_checks.generator(name, rng), (shape[2],), dt), dtype=dt)}

    def apply(params: Params, x: Array, *, rng: Any = None, train: bool = False):
        _checks.exact_keys(name, params, ("token",))
        token = _checks.param(name, params, "token", ndim=1)
        _sequences(name, x)
        if x.shape[2] != token.shape[0]:
            raise ValueError(f"{name}: expected x of shape (batch, tokens, {token.shape[0]}) to match "
                             f"params['token'] of shape {token.shape}, got {x.shape}. Check the input "
                             "size the model was initialised with.")
        _checks.same_dtype(name, x, token.dtype)
        y = np.empty((x.shape[0], x.shape[1] + 1, x.shape[2]), x.dtype)
        y[:, 0] = token
        y[:, 1:] = x

        def vjp(dy: Array, *, compute_dx: bool = True) -> tuple[Params, Array | None]:
            _checks.cotangent(name, dy, y.shape, y.dtype)
            dparams = {"token": column_sums(dy[:, 0])}
            return dparams, (dy[:, 1:].copy() if compute_dx else None)

        return y, vjp

    return Layer(init_fn, _checks.named(apply, name))


def SelectToken(index: int = 0) -> Layer:
    """Take one token out of every sequence: ``(batch, N, d) -> (batch, d)``, ``y = x[:, index]``.

    Args:
        index: the token's position (negative counts from the end); 0 is the token of
            :func:`ClassToken`.

    The VJP scatters ``dy`` into that position of a zero cotangent. No parameters.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> x = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
        >>> y, vjp = fl.SelectToken().apply({}, x)
        >>> y
        array([[0., 1., 2., 3.]], dtype=float32)
        >>> vjp(np.ones_like(y))[1][0, :, 0]
        array([1., 0., 0.], dtype=float32)
    """
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise TypeError(f"SelectToken: index must be an int, got {index!r}.")
    index = int(index)
    name = f"SelectToken({index})"

    def init(rng: np.random.Generator, input_shape: Shape, *, dtype: DTypeLike = None) -> Params:
        shape = _checks.input_shape(name, input_shape)
        if len(shape) != 3 or not -shape[1] <= index < shape[1]:
            raise ValueError(f"{name}: input_shape must be (batch, tokens, features) with more than "
                             f"{index if index >= 0 else -index - 1} tokens, got {shape}.")
        return {}

    def apply(params: Params, x: Array, *, rng: Any = None, train: bool = False):
        _checks.no_params(name, params)
        _sequences(name, x)
        if not -x.shape[1] <= index < x.shape[1]:
            raise ValueError(f"{name}: token {index} is out of range for x of shape {x.shape} "
                             f"({x.shape[1]} tokens).")
        y = x[:, index].copy()

        def vjp(dy: Array, *, compute_dx: bool = True) -> tuple[Params, Array | None]:
            _checks.cotangent(name, dy, y.shape, y.dtype)
            if not compute_dx:
                return {}, None
            dx = np.zeros_like(x)
            dx[:, index] = dy
            return {}, dx

        return y, vjp

    return Layer(init, _checks.named(apply, name))

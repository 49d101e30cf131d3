"""A Vision Transformer (Dosovitskiy et al., 2021) built from fnlearn layers.

::

    x (B, H, W, C) -> PatchEmbedding -> ClassToken -> PositionalEmbedding   # (B, N + 1, d)
      -> n_layer TransformerBlocks (pre-LN, not causal):  x = x + attn(ln_1(x));  x = x + mlp(ln_2(x))
      -> SelectToken(0) -> LayerNorm -> Dense(num_classes)                   # (B, num_classes)

``mlp`` is ``Dense(mlp_ratio * d) -> GELU -> Dense(d)``. The final LayerNorm acts on the class token
only: LayerNorm is per token, so this gives the logits of normalising every token and then taking the
class token, with ``1 / (N + 1)`` of the work.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from .. import _checks
from .._types import Array, Layer, Params, Shape
from ..combinators import serial
from ..initializers import normal
from ..layers import (ClassToken, Dense, Dropout, LayerNorm, PatchEmbedding, PositionalEmbedding,
                      SelectToken, TransformerBlock)

__all__ = ["vit"]


def vit(image_size: int, patch_size: int, num_classes: int, n_layer: int, n_head: int, n_embd: int, *,
        channels: int = 1, mlp_ratio: int = 4, dropout: float = 0.0,
        gelu_approximate: bool = False) -> Layer:
    """A Vision Transformer classifier for square NHWC images: ``(B, H, W, C) -> (B, num_classes)``.

    Args:
        image_size: the height and width ``H = W`` of the images.
        patch_size: the side ``p`` of the square patches; it must divide ``image_size``.
        num_classes: the number of logits.
        n_layer: the number of encoder blocks.
        n_head: the number of attention heads; it must divide ``n_embd``.
        n_embd: the token width ``d``.
        channels: the number of image channels ``C``.
        mlp_ratio: the hidden width of each block's MLP is ``mlp_ratio * n_embd``.
        dropout: the drop probability after the position embedding, on the attention weights, and
            after each block's attention and MLP (no Dropout layers at all when 0).
        gelu_approximate: the tanh approximation of GELU instead of the exact (erf) one.

    Params (a nested dict keyed by these names): ``"patch"`` ``{"w": (p * p * C, d), "b": (d,)}``,
    ``"cls"`` ``{"token": (d,)}``, ``"pos"`` ``{"embeddings": (N + 1, d)}`` with ``N = (H / p) ** 2``,
    ``"h_0"`` ... ``"h_{n_layer-1}"`` each a :func:`fnlearn.TransformerBlock` ``{"ln_1", "attn",
    "ln_2", "mlp"}``, ``"ln_f"`` and ``"head"`` ``{"w": (d, num_classes), "b": (num_classes,)}``
    (and ``{}`` for the parameterless ``"select"`` and, with dropout, ``"drop"``). Linear weights,
    the class token and the positions start normal with standard deviation 0.02, biases at zero
    (timm's ViT); the patch projection LeCun normal. Initialise with ``init(rng, (-1, image_size,
    image_size, channels))``.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> model = fl.models.vit(28, 7, 10, n_layer=2, n_head=4, n_embd=32)
        >>> params = model.init(np.random.default_rng(0), (-1, 28, 28, 1))
        >>> params["pos"]["embeddings"].shape, params["h_1"]["mlp"]["fc"]["w"].shape
        ((17, 32), (32, 128))
        >>> logits, vjp = model.apply(params, np.zeros((5, 28, 28, 1), np.float32))
        >>> logits.shape
        (5, 10)
    """
    for what, value in (("image_size", image_size), ("patch_size", patch_size),
                        ("num_classes", num_classes), ("n_layer", n_layer), ("n_head", n_head),
                        ("n_embd", n_embd), ("channels", channels), ("mlp_ratio", mlp_ratio)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"vit: {what} must be a positive int, got {value!r}.")
    if image_size % patch_size:
        raise ValueError(f"vit: patch_size {patch_size} must divide image_size {image_size}.")
    if n_embd % n_head:
        raise ValueError(f"vit: n_embd = {n_embd} must be divisible by n_head = {n_head}.")
    rate = float(dropout)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"vit: dropout is a drop probability in [0, 1), got {dropout!r}.")
    tokens = (image_size // patch_size) ** 2 + 1
    layers: list[tuple[str, Layer]] = [("patch", PatchEmbedding(patch_size, n_embd)), ("cls", ClassToken()),
                                       ("pos", PositionalEmbedding(tokens))]
    if rate:
        layers.append(("drop", Dropout(rate)))
    w_init = normal(0.02)
    for i in range(n_layer):
        layers.append((f"h_{i}", TransformerBlock(n_head, dropout=rate, mlp_ratio=mlp_ratio,
                                                  gelu_approximate=gelu_approximate, w_init=w_init,
                                                  out_init=w_init)))
    layers += [("select", SelectToken(0)), ("ln_f", LayerNorm()),
               ("head", Dense(num_classes, w_init=w_init))]
    body = serial(*(layer for _, layer in layers), names=[key for key, _ in layers])
    name = (f"vit({image_size}, {patch_size}, {num_classes}, n_layer={n_layer}, n_head={n_head}, "
            f"n_embd={n_embd})")
    images = (int(image_size), int(image_size), int(channels))

    def init(rng: np.random.Generator, input_shape: Shape, *, dtype: DTypeLike = None) -> Params:
        shape = _checks.input_shape(name, input_shape)
        _check_images(name, shape, images)
        return body.init(rng, shape, dtype=dtype)

    def apply(params: Params, x: Array, *, rng: Any = None, train: bool = False):
        _checks.float_array(name, x)
        _check_images(name, x.shape, images)
        return body.apply(params, x, rng=rng, train=train)

    return Layer(init, _checks.named(apply, name))


def _check_images(name: str, shape: Shape, images: tuple[int, int, int]) -> None:
    if tuple(shape[1:]) != images:
        raise ValueError(f"{name}: expected images of shape (batch, {images[0]}, {images[1]}, "
                         f"{images[2]}) (NHWC), got {tuple(shape)}. Reshape the images (e.g. "
                         f"x.reshape(-1, {images[0]}, {images[1]}, {images[2]})) or build the model "
                         "with their size and channels.")

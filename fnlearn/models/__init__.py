"""Whole models built from fnlearn layers, one model per module.

- :func:`gpt`: nanoGPT's GPT (GPT-2's architecture), int ids to logits, tied embedding.
- :func:`generate`: sampling from a language model with a key/value cache.
- :func:`vit`: a Vision Transformer classifier for NHWC images.
"""

from ._generate import generate
from ._gpt import KVDecoder, gpt
from ._vit import vit

__all__ = ["gpt", "generate", "KVDecoder", "vit"]

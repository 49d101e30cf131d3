"""fnlearn: a functional, stateless neural-network library in pure NumPy/SciPy.

A layer is a pair of pure functions ``Layer(init, apply)``; ``apply(params, x)`` returns the output and
a hand-written VJP. See :mod:`fnlearn._types` for the contract.

Example:
    >>> import numpy as np, fnlearn as fl
    >>> model = fl.serial(fl.Dense(8), fl.Relu(), fl.Dense(3))
    >>> params = model.init(np.random.default_rng(0), (-1, 4))
    >>> logits, vjp = model.apply(params, np.ones((2, 4), np.float32))
    >>> logits.shape
    (2, 3)
"""

from . import data, datasets, initializers, losses, metrics, optim, tree
from ._grad import value_and_grad
from ._memory import reuse_freed_memory
from ._stateful import StatefulLayer, bind_state
from ._summary import Summary, summary
from ._train import train_step
from ._types import Layer
from .combinators import FanInConcat, FanInSum, FanOut, eval_shape, parallel, serial
from .layers import (GRU, LSTM, Bidirectional, Cell, GRUCell, LSTMCell, SimpleRNN, SimpleRNNCell, scan,
                     sequence_mask)
from .layers import (AvgPool2D, BatchNorm, Conv2D, ConvTranspose2D, Dense, Dropout, Elu, Embedding,
                     Flatten, Gelu, GlobalAvgPool, Identity, LayerNorm, LeakyRelu, LogSoftmax,
                     MaxPool2D, MultiHeadAttention, PositionalEmbedding, Relu, Sigmoid, Softmax,
                     Softplus, Tanh)
from .layers import ClassToken, PatchEmbedding, Residual, SelectToken
from .layers import MLP, TransformerBlock
from . import models

__version__ = "0.1.0"

__all__ = [
    "Layer", "serial", "parallel", "FanOut", "FanInSum", "FanInConcat", "eval_shape",
    "Dense", "Relu", "Sigmoid", "Tanh", "LeakyRelu", "Elu", "Gelu", "Softplus", "Softmax",
    "LogSoftmax", "Flatten", "Identity", "Dropout",
    "Conv2D", "ConvTranspose2D", "MaxPool2D", "AvgPool2D", "GlobalAvgPool", "LayerNorm", "BatchNorm",
    "SimpleRNN", "LSTM", "GRU", "Bidirectional", "scan", "Cell", "sequence_mask",
    "SimpleRNNCell", "LSTMCell", "GRUCell",
    "Embedding", "PositionalEmbedding", "MultiHeadAttention", "PatchEmbedding", "ClassToken", "SelectToken", "Residual",
    "MLP", "TransformerBlock",
    "StatefulLayer", "bind_state",
    "value_and_grad", "train_step", "summary", "Summary", "reuse_freed_memory", "data", "datasets", "initializers", "losses", "metrics", "optim", "tree",
]

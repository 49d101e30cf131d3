"""Layer constructors. Each returns a :class:`fnlearn.Layer` ``(init, apply)``."""

from .activations import Elu, Gelu, LeakyRelu, LogSoftmax, Relu, Sigmoid, Softmax, Softplus, Tanh
from .conv import Conv2D, ConvTranspose2D
from .dense import Dense
from .embedding import Embedding
from .norm import BatchNorm, LayerNorm
from .pooling import AvgPool2D, GlobalAvgPool, MaxPool2D
from .shape import Dropout, Flatten, Identity

__all__ = ["Dense", "Relu", "Sigmoid", "Tanh", "LeakyRelu", "Elu", "Gelu", "Softplus", "Softmax",
           "LogSoftmax", "Flatten", "Identity", "Dropout", "Conv2D", "ConvTranspose2D", "MaxPool2D",
           "AvgPool2D", "GlobalAvgPool", "LayerNorm", "BatchNorm", "Embedding"]

"""Layer constructors. Each returns a :class:`fnlearn.Layer` ``(init, apply)``."""

from .activations import Elu, Gelu, LeakyRelu, LogSoftmax, Relu, Sigmoid, Softmax, Softplus, Tanh
from .dense import Dense
from .shape import Dropout, Flatten, Identity

__all__ = ["Dense", "Relu", "Sigmoid", "Tanh", "LeakyRelu", "Elu", "Gelu", "Softplus", "Softmax",
           "LogSoftmax", "Flatten", "Identity", "Dropout"]

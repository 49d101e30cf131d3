"""Layer constructors. Each returns a :class:`fnlearn.Layer` ``(init, apply)``."""

from .activations import Elu, Gelu, LeakyRelu, LogSoftmax, Relu, Sigmoid, Softmax, Softplus, Tanh
from .conv import Conv2D, ConvTranspose2D
from .dense import Dense
from .attention import MultiHeadAttention
from .embedding import Embedding, PositionalEmbedding
from .norm import BatchNorm, LayerNorm
from .patches import ClassToken, PatchEmbedding, SelectToken
from .pooling import AvgPool2D, GlobalAvgPool, MaxPool2D
from .residual import Residual
from .bidirectional import Bidirectional
from .recurrent import GRU, LSTM, SimpleRNN, sequence_mask
from .cells import GRUCell, LSTMCell, SimpleRNNCell
from .scan import Cell, scan
from .shape import Dropout, Flatten, Identity
from .transformer import MLP, TransformerBlock

__all__ = ["Dense", "Relu", "Sigmoid", "Tanh", "LeakyRelu", "Elu", "Gelu", "Softplus", "Softmax",
           "LogSoftmax", "Flatten", "Identity", "Dropout", "Conv2D", "ConvTranspose2D", "MaxPool2D",
           "AvgPool2D", "GlobalAvgPool", "LayerNorm", "BatchNorm", "Embedding",
           "SimpleRNN", "LSTM", "GRU", "Bidirectional", "scan", "Cell", "sequence_mask",
           "SimpleRNNCell", "LSTMCell", "GRUCell",
           "PositionalEmbedding", "MultiHeadAttention", "PatchEmbedding", "ClassToken", "SelectToken",
           "Residual", "MLP", "TransformerBlock"]

"""Moving parameters to and from other libraries: safetensors files and PyTorch ``nn.Linear`` weights.

**safetensors** (the optional extra ``pip install fnlearn[interop]``): :func:`save_safetensors` writes
each array of a params tree under its path (``"0/w"``), and records the tree's nesting (including
parameterless ``{}`` entries) and key order in the file's metadata under ``"fnlearn.structure"``, so
:func:`load_safetensors` gives back the same nested dict. A safetensors file written elsewhere (no
such entry) loads as a flat dict of its tensor names, e.g. ``{"0.weight": ..., "0.bias": ...}``.

**GPT weights**: :func:`from_nanogpt_state_dict` / :func:`to_nanogpt_state_dict` and
:func:`from_gpt2_state_dict` / :func:`to_gpt2_state_dict` map ``fnlearn.models.gpt`` params to and from
nanoGPT's and Hugging Face GPT-2's ``state_dict`` names and layouts.

**Whole models**: :func:`to_torch_state_dict` / :func:`from_torch_state_dict` walk a model (``serial``
of Dense, Conv2D, ConvTranspose2D, BatchNorm, LayerNorm, Embedding, MultiHeadAttention, ...) and map
each layer to its torch module's names and layout (Conv2D HWIO <-> OIHW, BatchNorm running statistics,
the NHWC-vs-NCHW order of a Dense after Flatten).

**Recurrent layers**: :func:`to_torch_rnn_state_dict` / :func:`from_torch_rnn_state_dict` map
SimpleRNN, LSTM, GRU and Bidirectional params to and from ``nn.RNN``/``nn.LSTM``/``nn.GRU`` names
(``weight_ih_l0``, ``bias_hh_l1_reverse``, ...), weights transposed.

**PyTorch names and layouts**: an fnlearn ``Dense`` stores ``w`` with shape ``(in, out)`` (``y = x @ w
+ b``); ``torch.nn.Linear`` stores ``weight`` with shape ``(out, in)`` (``y = x @ weight.T + bias``).
So ``"0/w" <-> "0.weight"`` transposed, and ``"0/b" <-> "0.bias"`` as is. ``fl.serial`` keys its
children by position, as ``nn.Sequential`` does, so a ``serial(Dense(8), Relu(), Dense(3))`` and a
``Sequential(Linear(4, 8), ReLU(), Linear(8, 3))`` have matching names ``0`` and ``2``.

Example:
    >>> import numpy as np
    >>> from fnlearn import interop
    >>> params = {"0": {"w": np.ones((4, 8), np.float32), "b": np.zeros(8, np.float32)}, "1": {}}
    >>> sd = interop.to_torch_linear_state_dict(params)
    >>> {k: v.shape for k, v in sd.items()}
    {'0.weight': (8, 4), '0.bias': (8,)}
    >>> back = interop.from_torch_linear_state_dict(sd, like=params)
    >>> back["0"]["w"].shape, back["1"]
    ((4, 8), {})
"""

from ._nanogpt import from_gpt2_state_dict, from_nanogpt_state_dict, to_gpt2_state_dict, to_nanogpt_state_dict
from ._rnn import from_torch_rnn_state_dict, to_torch_rnn_state_dict
from ._safetensors import STRUCTURE_KEY, load_safetensors, save_safetensors
from ._torch import from_torch_linear_state_dict, to_torch_linear_state_dict
from ._torch_layers import from_torch_state_dict, to_torch_state_dict

__all__ = ["STRUCTURE_KEY", "save_safetensors", "load_safetensors", "to_torch_linear_state_dict",
           "from_torch_linear_state_dict", "to_torch_state_dict", "from_torch_state_dict",
           "to_torch_rnn_state_dict",
           "from_torch_rnn_state_dict", "from_nanogpt_state_dict", "to_nanogpt_state_dict",
           "from_gpt2_state_dict", "to_gpt2_state_dict"]

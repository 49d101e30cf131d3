"""The registry of every public layer and loss: an entry here gives it the whole property battery.

Each :class:`LayerSpec` says how to build the layer (a constructor and strategies for its
hyperparameters) and what its inputs look like; test_registry.py runs ``fnlearn.testing.check_layer``
(adjoint identity against float64 finite differences, linearity, purity, dtypes, init shapes, batch
properties, ...) over hypothesis-drawn cases of every entry. The optimizers have their own registry in
test_optim_properties.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fnlearn as fl
from fnlearn.testing import strategies as fst

dims = fst.small_dims(1, 4)


def kinks_at(*points: float, margin: float = 0.05) -> Callable[[Any, Any], Any]:
    return lambda dtype, shape: fst.away_from(points, margin, dtype, shape)


def separated(dtype: Any, shape: Any) -> Any:
    return fst.separated_arrays(dtype, shape)


def token_ids(num: int) -> Callable[[Any, Any], Any]:
    return lambda dtype, shape: hnp.arrays(np.int64, shape, elements=st.integers(0, num - 1))


def images(min_side: int = 2, max_side: int = 5) -> Any:
    return st.tuples(st.integers(min_side, max_side), st.integers(min_side, max_side), dims)


def with_mask(dtype: Any, shape: Any) -> Any:
    """Float steps ``(B, T, F)`` and a bool mask ``(B, T)`` for the inputs ``(x, mask)`` of recurrent layers."""
    return hnp.arrays(np.bool_, shape) if len(shape) == 2 else fst.arrays(dtype, shape)


sequences = st.tuples(dims, dims)                                   # (steps, features)
masked_sequences = sequences.map(lambda tf: (tf, tf[:1]))          # ((steps, features), (steps,))
rnn_options = {"hidden": dims, "return_sequences": st.booleans(), "return_state": st.booleans()}


@dataclass(frozen=True)
class LayerSpec:
    name: str
    factory: Callable[..., Any]
    feature_shape: Any                              # a tuple or a strategy (batch axis excluded)
    hyperparams: dict[str, Any] = field(default_factory=dict)
    x_elements: Any = None                          # see fnlearn.testing.strategies.layer_cases
    train: bool = False
    random: bool = False                            # needs an rng (dropout in training)
    batch_properties: bool = True                   # False for layers that mix the examples
    batch: Any = None                               # the batch size strategy (default 1 to 4)

    def __str__(self) -> str:
        return self.name


def _mlp(width: int) -> fl.Layer:
    return fl.serial(fl.Dense(width), fl.Tanh(), fl.Dense(3), fl.LogSoftmax())


def _fan_concat() -> fl.Layer:
    return fl.serial(fl.FanOut(2), fl.parallel(fl.Dense(3), fl.Sigmoid()), fl.FanInConcat())


def _fan_sum() -> fl.Layer:
    return fl.serial(fl.FanOut(3), fl.parallel(fl.Dense(4), fl.Tanh(), fl.Identity()), fl.FanInSum())


def _rnn_stack(hidden: int) -> fl.Layer:
    return fl.serial(fl.Bidirectional(fl.LSTM(hidden, return_sequences=True)), fl.Dropout(0.5),
                     fl.GRU(hidden), fl.Dense(2))


def _small_cnn() -> fl.Layer:
    return fl.serial(fl.Conv2D(2, 2, padding="same"), fl.Tanh(), fl.AvgPool2D(2), fl.Flatten(),
                     fl.Dense(3))


def _conv_relu_pool(channels: int) -> fl.Layer:
    """serial runs the three fused: ReLU and 2x2 pooling on Winograd's output blocks."""
    return fl.serial(fl.Conv2D(channels, 3, padding="same", algorithm="winograd"), fl.Relu(), fl.MaxPool2D(2))


def _conv_relu(channels: int, pool: bool) -> fl.Layer:
    """serial runs them fused: ReLU (and pooling) inside im2col's chunks."""
    return fl.serial(fl.Conv2D(channels, 2, padding="same", algorithm="im2col"), fl.Relu(),
                     *([fl.MaxPool2D(2)] if pool else []))


def _residual_mlp(width: int) -> fl.Layer:
    return fl.Residual(fl.serial(fl.Dense(width), fl.Tanh(), fl.Dense(3)))


def _tiny_vit(channels: int, gelu_approximate: bool) -> fl.Layer:
    return fl.models.vit(4, 2, 3, n_layer=2, n_head=2, n_embd=4, channels=channels, mlp_ratio=2,
                         gelu_approximate=gelu_approximate)


LAYERS: list[LayerSpec] = [
    LayerSpec("Dense", fl.Dense, st.tuples(dims), {"out_features": dims}),
    LayerSpec("Dense-3d", fl.Dense, st.tuples(dims, dims), {"out_features": dims}),
    LayerSpec("Relu", fl.Relu, st.tuples(dims), x_elements=kinks_at(0.0)),
    LayerSpec("LeakyRelu", fl.LeakyRelu, st.tuples(dims), {"negative_slope": st.sampled_from([0.01, 0.3])},
              x_elements=kinks_at(0.0)),
    LayerSpec("Elu", fl.Elu, st.tuples(dims), {"alpha": st.sampled_from([0.5, 1.0])},
              x_elements=kinks_at(0.0)),
    LayerSpec("Sigmoid", fl.Sigmoid, st.tuples(dims)),
    LayerSpec("Tanh", fl.Tanh, st.tuples(dims)),
    LayerSpec("Softplus", fl.Softplus, st.tuples(dims)),
    LayerSpec("Gelu", fl.Gelu, st.tuples(dims), {"approximate": st.sampled_from([False, True, "none", "tanh"])}),
    LayerSpec("Softmax", fl.Softmax, st.tuples(dims, dims), {"axis": st.sampled_from([-1, 1])}),
    LayerSpec("LogSoftmax", fl.LogSoftmax, st.tuples(dims)),
    LayerSpec("Flatten", fl.Flatten, st.tuples(dims, dims)),
    LayerSpec("Identity", fl.Identity, st.tuples(dims)),
    LayerSpec("Dropout-eval", fl.Dropout, st.tuples(dims), {"drop_rate": st.floats(0.0, 0.9)}),
    LayerSpec("Dropout-train", fl.Dropout, st.tuples(dims), {"drop_rate": st.floats(0.1, 0.9)},
              train=True, random=True),
    LayerSpec("Conv2D", fl.Conv2D, images(), {"out_channels": dims, "kernel_size": st.integers(1, 2),
                                               "padding": st.sampled_from(["valid", "same", 1])}),
    LayerSpec("Conv2D-winograd", fl.Conv2D, images(3, 9), {"out_channels": dims, "kernel_size": 3,
                                                             "algorithm": "winograd",
                                                             "padding": st.sampled_from(["valid", "same", 1])}),
    LayerSpec("Conv2D-strided", fl.Conv2D, images(3, 5), {"out_channels": dims, "kernel_size": 2,
                                                            "stride": 2, "dilation": st.integers(1, 2)}),
    LayerSpec("ConvTranspose2D", fl.ConvTranspose2D, images(1), {"out_channels": dims,
                                                                 "kernel_size": st.integers(1, 2)}),
    LayerSpec("MaxPool2D", fl.MaxPool2D, images(), {"window": st.integers(1, 2)}, x_elements=separated),
    LayerSpec("AvgPool2D", fl.AvgPool2D, images(), {"window": st.integers(1, 2)}),
    LayerSpec("GlobalAvgPool", fl.GlobalAvgPool, images(1)),
    # Normalising two values gives +-1 whatever they are: the input cotangent is pure cancellation,
    # which the checker's measured float32 rounding floor must (and does) tell from a bug.
    LayerSpec("LayerNorm", fl.LayerNorm, st.tuples(st.integers(2, 5))),
    LayerSpec("LayerNorm-no-bias", fl.LayerNorm, st.tuples(dims, st.integers(2, 5)), {"bias": False}),
    LayerSpec("BatchNorm-eval", fl.BatchNorm, st.tuples(dims)),
    # Batch statistics of 2 examples give +-1 whatever they are (the LayerNorm case above), and the
    # float32-vs-float64 property has no correct float32 digits to compare there: batches of 3 to 5.
    LayerSpec("BatchNorm-train", fl.BatchNorm, st.tuples(dims), train=True, batch_properties=False,
              batch=st.integers(3, 5)),
    LayerSpec("Embedding", fl.Embedding, st.tuples(dims), {"num_embeddings": 5, "features": dims},
              x_elements=token_ids(5)),
    LayerSpec("PositionalEmbedding", fl.PositionalEmbedding, st.tuples(dims, dims), {"max_length": 5}),
    # d in {2, 4} is divisible by either number of heads; T = 1 is the single-token case.
    LayerSpec("MultiHeadAttention", fl.MultiHeadAttention,
              st.tuples(st.integers(1, 4), st.sampled_from([2, 4])),
              {"num_heads": st.sampled_from([1, 2]), "causal": st.booleans(), "bias": st.booleans()}),
    LayerSpec("MultiHeadAttention-dropout", fl.MultiHeadAttention,
              st.tuples(st.integers(2, 4), st.just(4)),
              {"num_heads": 2, "causal": st.booleans(), "dropout": st.sampled_from([0.2, 0.5])},
              train=True, random=True),
    LayerSpec("SimpleRNN", fl.SimpleRNN, sequences, {**rnn_options, "nonlinearity": st.sampled_from(["tanh", "relu"])}),
    LayerSpec("LSTM", fl.LSTM, sequences, rnn_options),
    LayerSpec("GRU", fl.GRU, sequences, rnn_options),
    LayerSpec("SimpleRNN-masked", fl.SimpleRNN, masked_sequences, rnn_options, x_elements=with_mask),
    LayerSpec("LSTM-masked", fl.LSTM, masked_sequences, rnn_options, x_elements=with_mask),
    LayerSpec("GRU-masked", fl.GRU, masked_sequences, rnn_options, x_elements=with_mask),
    LayerSpec("scan-LSTMCell", lambda hidden, **kw: fl.scan(fl.LSTMCell(hidden), **kw), masked_sequences,
              rnn_options, x_elements=with_mask),
    LayerSpec("scan-GRUCell", lambda hidden, **kw: fl.scan(fl.GRUCell(hidden), **kw), sequences, rnn_options),
    LayerSpec("Bidirectional-LSTM", lambda **kw: fl.Bidirectional(fl.LSTM(**kw)), masked_sequences,
              rnn_options, x_elements=with_mask),
    LayerSpec("Bidirectional-GRU", lambda **kw: fl.Bidirectional(fl.GRU(**kw)), sequences, rnn_options),
    LayerSpec("serial-rnn-dropout", _rnn_stack, sequences, {"hidden": dims}, train=True, random=True),
    LayerSpec("MLP", fl.MLP, st.tuples(dims, dims), {"hidden": dims, "bias": st.booleans(),
                                                      "gelu_approximate": st.booleans()}),
    LayerSpec("TransformerBlock", fl.TransformerBlock, st.tuples(st.integers(1, 3), st.sampled_from([2, 4])),
              {"num_heads": st.sampled_from([1, 2]), "causal": st.booleans(), "mlp_ratio": st.integers(1, 2)}),
    LayerSpec("TransformerBlock-dropout", fl.TransformerBlock, st.tuples(st.integers(2, 3), st.just(4)),
              {"num_heads": 2, "causal": True, "dropout": 0.3}, train=True, random=True),
    # the whole GPT: ids in, logits out; the tied embedding's gradient sums the head and the lookup
    LayerSpec("models.gpt", fl.models.gpt, st.tuples(st.integers(1, 4)),
              {"vocab_size": 5, "block_size": 4, "n_layer": st.integers(1, 2), "n_head": 2,
               "n_embd": st.sampled_from([2, 4]), "gelu_approximate": st.booleans()},
              x_elements=token_ids(5)),
    LayerSpec("serial-mlp", _mlp, st.tuples(dims), {"width": dims}),
    LayerSpec("fan-concat", _fan_concat, st.tuples(dims)),
    LayerSpec("fan-sum", _fan_sum, (4,)),
    LayerSpec("serial-cnn", _small_cnn, (4, 4, 2)),
    # outputs whose 4x4 Winograd blocks fit exactly and one where they overhang (windows dropped)
    LayerSpec("serial-conv-relu-pool-fused", _conv_relu_pool,
              st.tuples(st.sampled_from([4, 8]), st.sampled_from([4, 6]), dims), {"channels": dims}),
    LayerSpec("serial-conv-relu-fused", _conv_relu, images(), {"channels": dims, "pool": st.booleans()}),
    # images whose sides both patch sizes divide
    LayerSpec("PatchEmbedding", fl.PatchEmbedding, st.sampled_from([(2, 2, 1), (2, 4, 2), (4, 4, 3)]),
              {"patch_size": st.integers(1, 2), "features": dims}),
    LayerSpec("ClassToken", fl.ClassToken, st.tuples(dims, dims)),
    LayerSpec("SelectToken", fl.SelectToken, st.tuples(st.integers(2, 4), dims),
              {"index": st.sampled_from([0, 1, -1])}),
    LayerSpec("Residual", _residual_mlp, (3,), {"width": dims}),
    LayerSpec("vit-tiny", _tiny_vit, (4, 4, 2),
              {"channels": 2, "gelu_approximate": st.booleans()}),
]


@dataclass(frozen=True)
class LossSpec:
    name: str
    loss: Callable[..., tuple[float, np.ndarray]]
    target: Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]
    feature_shape: tuple[int, ...]

    def __str__(self) -> str:
        return self.name


def _prob_rows(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    p = rng.random(shape) + 0.1
    return p / p.sum(axis=-1, keepdims=True)


def _ids_some_ignored(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Class ids for logits ``shape``, about a third of them -100 (ignored), the first never."""
    ids = rng.integers(0, shape[-1], size=shape[:-1])
    ids[rng.random(ids.shape) < 0.35] = -100
    ids.flat[0] = 0
    return ids


LOSSES: list[LossSpec] = [
    LossSpec("mse", fl.losses.mse, lambda rng, s: rng.normal(size=s), (3,)),
    LossSpec("mse-sum", lambda p, t: fl.losses.mse(p, t, reduction="sum"),
             lambda rng, s: rng.normal(size=s), (2, 2)),
    LossSpec("softmax_cross_entropy-ids", fl.losses.softmax_cross_entropy,
             lambda rng, s: rng.integers(0, s[-1], size=s[0]), (4,)),
    LossSpec("softmax_cross_entropy-probs", fl.losses.softmax_cross_entropy, _prob_rows, (4,)),
    LossSpec("softmax_cross_entropy-3d-ids", fl.losses.softmax_cross_entropy,
             lambda rng, s: rng.integers(0, s[-1], size=s[:-1]), (3, 4)),
    LossSpec("softmax_cross_entropy-ignore_index", fl.losses.softmax_cross_entropy, _ids_some_ignored, (3, 4)),
    LossSpec("softmax_cross_entropy-ignore_index-sum",
             lambda p, t: fl.losses.softmax_cross_entropy(p, t, reduction="sum"), _ids_some_ignored, (2, 2, 3)),
    LossSpec("softmax_cross_entropy-3d-probs", fl.losses.softmax_cross_entropy, _prob_rows, (2, 3)),
    LossSpec("softmax_cross_entropy-sum", lambda p, t: fl.losses.softmax_cross_entropy(p, t, reduction="sum"),
             lambda rng, s: rng.integers(0, s[-1], size=s[0]), (3,)),
    LossSpec("sigmoid_binary_cross_entropy", fl.losses.sigmoid_binary_cross_entropy,
             lambda rng, s: rng.random(s), (3,)),
]

"""``interop.to_torch_state_dict`` / ``from_torch_state_dict``: whole models to and from torch modules.

Without torch: round trips of the NumPy dicts, the Flatten reordering against its closed form, and the
errors. With torch (float64): the MNIST CNN of examples/mnist_cnn.py and each supported layer alone give
the same outputs as the equivalent torch module, in both directions, and load back exactly.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import fnlearn as fl
from fnlearn import interop

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mnist_cnn.py"
IMAGES = (-1, 28, 28, 1)


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("mnist_cnn_for_interop", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _randomized(tree, rng):
    """Every leaf replaced by random numbers of its shape and dtype (positive for variances)."""
    if isinstance(tree, dict):
        return {k: (_randomized(v, rng) if k != "var" else rng.uniform(0.5, 2.0, v.shape).astype(v.dtype))
                for k, v in tree.items()}
    return rng.normal(size=tree.shape).astype(tree.dtype)


def _assert_same_tree(a, b):
    assert isinstance(a, dict) == isinstance(b, dict)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _assert_same_tree(a[k], b[k])
    else:
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


def _cnn(example, batch_norm, dtype=np.float64):
    model = example.cnn_model(batch_norm=batch_norm)
    rng = np.random.default_rng(3)
    made = model.init(rng, IMAGES, dtype=dtype)
    params, state = made if batch_norm else (made, None)
    return model, _randomized(params, rng), (None if state is None else _randomized(state, rng))


# ------------------------------------------------------------------------------ without torch

@pytest.mark.parametrize("batch_norm", [False, True])
def test_cnn_round_trip_is_exact(example, batch_norm):
    model, params, state = _cnn(example, batch_norm)
    sd = interop.to_torch_state_dict(model, params, state=state, input_shape=IMAGES)
    assert sd["0.weight"].shape == (32, 1, 3, 3)
    back = interop.from_torch_state_dict(model, sd, input_shape=IMAGES)
    if batch_norm:
        assert sd["1.num_batches_tracked"].dtype == np.int64
        _assert_same_tree(back[0], params)
        _assert_same_tree(back[1], state)
    else:
        _assert_same_tree(back, params)


def test_dense_after_flatten_takes_torch_channel_major_order():
    h, w, c = 2, 3, 4
    model = fl.serial(fl.Conv2D(c, 1), fl.Flatten(), fl.Dense(5))
    params = _randomized(model.init(np.random.default_rng(0), (-1, h, w, 2)), np.random.default_rng(1))
    sd = interop.to_torch_state_dict(model, params, input_shape=(-1, h, w, 2))
    dense = params["2"]["w"]                      # rows (h, w, c)
    for i, j, k in np.ndindex(h, w, c):           # torch column (c, h, w)
        np.testing.assert_array_equal(sd["2.weight"][:, k * h * w + i * w + j], dense[(i * w + j) * c + k])
    flat = interop.to_torch_state_dict(model, params, channels_first=False)
    np.testing.assert_array_equal(flat["2.weight"], dense.T)


def test_norm_between_flatten_and_dense_is_reordered_too():
    model = fl.serial(fl.Flatten(), fl.LayerNorm(), fl.Relu(), fl.Dense(3))
    shape = (-1, 2, 2, 3)
    params = _randomized(model.init(np.random.default_rng(0), shape), np.random.default_rng(1))
    sd = interop.to_torch_state_dict(model, params, input_shape=shape)
    order = np.arange(12).reshape(2, 2, 3).transpose(2, 0, 1).ravel()
    np.testing.assert_array_equal(sd["1.weight"], params["1"]["scale"][order])
    np.testing.assert_array_equal(sd["3.weight"], params["3"]["w"][order].T)
    _assert_same_tree(interop.from_torch_state_dict(model, sd, input_shape=shape), params)


def test_named_serial_children_give_module_names():
    model = fl.serial(fl.Embedding(7, 4), fl.TransformerBlock(2), fl.LayerNorm(bias=False),
                      names=["wte", "block", "ln_f"])
    params = model.init(np.random.default_rng(0), (-1, 5), input_dtype=np.int64)
    sd = interop.to_torch_state_dict(model, params)
    assert list(sd) == ["wte.weight", "block.ln_1.weight", "block.ln_1.bias", "block.attn.in_proj_weight",
                        "block.attn.in_proj_bias", "block.attn.out_proj.weight", "block.attn.out_proj.bias",
                        "block.ln_2.weight", "block.ln_2.bias", "block.mlp.fc.weight", "block.mlp.fc.bias",
                        "block.mlp.proj.weight", "block.mlp.proj.bias", "ln_f.weight"]
    back = interop.from_torch_state_dict(model, sd, input_shape=(-1, 5), input_dtype=np.int64)
    _assert_same_tree(back, params)


def _cnn_sd(example):
    model, params, state = _cnn(example, True)
    return model, interop.to_torch_state_dict(model, params, state=state, input_shape=IMAGES)


def test_missing_key_is_named(example):
    model, sd = _cnn_sd(example)
    del sd["5.running_var"]
    with pytest.raises(ValueError, match=r"missing '5\.running_var' \(torch shape \(64,\)\)"):
        interop.from_torch_state_dict(model, sd, input_shape=IMAGES)


def test_wrong_shape_is_named_with_the_expected_one(example):
    model, sd = _cnn_sd(example)
    sd["0.weight"] = sd["0.weight"].transpose(2, 3, 1, 0)      # HWIO left as it was
    with pytest.raises(ValueError, match=r"'0\.weight' has shape \(3, 3, 1, 32\), expected \(32, 1, 3, 3\)"):
        interop.from_torch_state_dict(model, sd, input_shape=IMAGES)


def test_unexpected_key_is_named_and_num_batches_tracked_is_ignored(example):
    model, sd = _cnn_sd(example)
    del sd["1.num_batches_tracked"]
    interop.from_torch_state_dict(model, sd, input_shape=IMAGES)
    sd["12.weight"] = np.ones((3, 10))
    with pytest.raises(ValueError, match=r"unexpected '12\.weight'"):
        interop.from_torch_state_dict(model, sd, input_shape=IMAGES)


def test_errors_for_unsupported_layers_missing_state_and_missing_shape(example):
    model = fl.serial(fl.Dense(4), fl.ClassToken())
    params = model.init(np.random.default_rng(0), (-1, 3, 2))
    with pytest.raises(ValueError, match=r"'1' \(ClassToken\(\)\) has no torch counterpart"):
        interop.to_torch_state_dict(model, params)
    with pytest.raises(ValueError, match=r"'1' \(ClassToken\(\)\) has no torch counterpart"):
        interop.from_torch_state_dict(model, {}, input_shape=(-1, 3, 2))
    cnn, params, state = _cnn(example, True)
    with pytest.raises(ValueError, match="stateful.*pass state="):
        interop.to_torch_state_dict(cnn, params)
    with pytest.raises(ValueError, match=r"'9' \(Dense\(128\)\) follows a Flatten.*Pass input_shape"):
        interop.to_torch_state_dict(cnn, params, state=state)


# ------------------------------------------------------------------------------ with torch

def _torch():
    return pytest.importorskip("torch", reason="torch is not installed (pip install torch==2.13.0)")


def _torch_cnn(torch, batch_norm):
    nn = torch.nn
    layers = []
    for c_in, c_out in ((1, 32), (32, 64)):
        layers.append(nn.Conv2d(c_in, c_out, 3, padding=1))
        layers += [nn.BatchNorm2d(c_out)] if batch_norm else []
        layers += [nn.ReLU(), nn.MaxPool2d(2)]
    layers += [nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10)]
    return nn.Sequential(*layers).double().eval()


def _load(torch, net, sd):
    net.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})   # strict: every key used
    return net


def _torch_out(torch, net, *xs):
    with torch.no_grad():
        y = net(*(torch.from_numpy(x) for x in xs))
    return (y[0] if isinstance(y, tuple) else y).numpy()


def _nhwc_to_nchw(x):
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


@pytest.mark.parametrize("batch_norm", [False, True])
def test_mnist_cnn_matches_torch_both_ways(example, batch_norm):
    torch = _torch()
    model, params, state = _cnn(example, batch_norm)
    x = np.random.default_rng(5).normal(size=(3, 28, 28, 1))
    predict = fl.bind_state(model, state) if batch_norm else model
    ours, _ = predict.apply(params, x)
    sd = interop.to_torch_state_dict(model, params, state=state, input_shape=IMAGES)
    net = _load(torch, _torch_cnn(torch, batch_norm), sd)
    np.testing.assert_allclose(_torch_out(torch, net, _nhwc_to_nchw(x)), ours, rtol=1e-10, atol=1e-12)
    back = interop.from_torch_state_dict(model, net.state_dict(), input_shape=IMAGES)
    if batch_norm:
        _assert_same_tree(back[0], params)
        _assert_same_tree(back[1], state)
    else:
        _assert_same_tree(back, params)
    # the other way: torch's own initialisation, read into fnlearn
    torch.manual_seed(0)
    fresh = _torch_cnn(torch, batch_norm)
    for module in fresh.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            with torch.no_grad():
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
                module.bias.normal_()
    loaded = interop.from_torch_state_dict(model, fresh.state_dict(), input_shape=IMAGES)
    p, s = loaded if batch_norm else (loaded, None)
    ours, _ = (fl.bind_state(model, s) if batch_norm else model).apply(p, x)
    np.testing.assert_allclose(ours, _torch_out(torch, fresh, _nhwc_to_nchw(x)), rtol=1e-10, atol=1e-12)


def _layer_cases(torch):
    """(fnlearn layer, torch module, fnlearn input shape, input maker, NHWC -> NCHW?)."""
    nn = torch.nn
    rng = np.random.default_rng(0)
    normal = lambda *s: rng.normal(size=s)                       # noqa: E731
    ids = lambda *s: rng.integers(0, 11, size=s)                 # noqa: E731
    return {
        "dense": (fl.Dense(5), nn.Linear(3, 5), (-1, 3), normal(4, 3), False),
        "conv": (fl.Conv2D(4, (2, 3), stride=2, padding=1), nn.Conv2d(3, 4, (2, 3), stride=2, padding=1),
                 (-1, 7, 6, 3), normal(2, 7, 6, 3), True),
        "conv_transpose": (fl.ConvTranspose2D(4, (3, 2), stride=2), nn.ConvTranspose2d(3, 4, (3, 2), stride=2),
                           (-1, 4, 5, 3), normal(2, 4, 5, 3), True),
        "batch_norm_2d": (fl.BatchNorm(), nn.BatchNorm2d(3), (-1, 4, 5, 3), normal(2, 4, 5, 3), True),
        "batch_norm_1d": (fl.BatchNorm(), nn.BatchNorm1d(6), (-1, 6), normal(5, 6), False),
        "layer_norm": (fl.LayerNorm(), nn.LayerNorm(6), (-1, 2, 6), normal(3, 2, 6), False),
        "layer_norm_no_bias": (fl.LayerNorm(bias=False), nn.LayerNorm(6, bias=False), (-1, 6), normal(3, 6),
                               False),
        "embedding": (fl.Embedding(11, 4), nn.Embedding(11, 4), (-1, 5), ids(3, 5), False),
        "attention": (fl.MultiHeadAttention(2), nn.MultiheadAttention(8, 2, batch_first=True), (-1, 5, 8),
                      normal(3, 5, 8), False),
        "attention_no_bias": (fl.MultiHeadAttention(4, bias=False),
                              nn.MultiheadAttention(8, 4, bias=False, batch_first=True), (-1, 5, 8),
                              normal(3, 5, 8), False),
    }


LAYER_CASES = ["dense", "conv", "conv_transpose", "batch_norm_2d", "batch_norm_1d", "layer_norm",
               "layer_norm_no_bias", "embedding", "attention", "attention_no_bias"]


@pytest.mark.parametrize("case", LAYER_CASES)
def test_each_layer_matches_torch_both_ways(case):
    torch = _torch()
    torch.manual_seed(1)
    layer, net, shape, x, nchw = _layer_cases(torch)[case]
    net = net.double().eval()
    with torch.no_grad():                 # non-default values for what torch initialises to 0 or 1
        for name, tensor in net.state_dict().items():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand_like(tensor) + 0.5 if name.endswith("var") else torch.randn_like(tensor))
    torch_in = _nhwc_to_nchw(x) if nchw else x
    theirs = _torch_out(torch, net, torch_in, torch_in, torch_in) if "attention" in case else \
        _torch_out(torch, net, torch_in)
    theirs = np.ascontiguousarray(theirs.transpose(0, 2, 3, 1)) if nchw else theirs
    input_dtype = np.int64 if case == "embedding" else None
    loaded = interop.from_torch_state_dict(layer, net.state_dict(), input_shape=shape, input_dtype=input_dtype)
    params, state = loaded if isinstance(layer, fl.StatefulLayer) else (loaded, None)
    ours, _ = (fl.bind_state(layer, state) if state is not None else layer).apply(params, x)
    assert ours.dtype == np.float64
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
    sd = interop.to_torch_state_dict(layer, params, state=state, input_shape=shape, input_dtype=input_dtype)
    expected = net.state_dict()
    assert list(sd) == list(expected)
    for name, tensor in expected.items():
        np.testing.assert_array_equal(sd[name], tensor.numpy() if name != "num_batches_tracked" else 0)


def test_transformer_block_matches_a_torch_module_with_the_same_names():
    torch = _torch()
    nn = torch.nn

    class Mlp(nn.Module):
        def __init__(self, d):
            super().__init__()
            self.fc, self.gelu, self.proj = nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d)

        def forward(self, x):
            return self.proj(self.gelu(self.fc(x)))

    class Block(nn.Module):
        def __init__(self, d, heads):
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
            self.mlp = Mlp(d)

        def forward(self, x):
            h = self.ln_1(x)
            x = x + self.attn(h, h, h, need_weights=False)[0]
            return x + self.mlp(self.ln_2(x))

    torch.manual_seed(2)
    net = Block(8, 2).double().eval()
    with torch.no_grad():
        for tensor in net.state_dict().values():
            tensor.copy_(torch.randn_like(tensor) * 0.5)
    block = fl.TransformerBlock(2)
    x = np.random.default_rng(3).normal(size=(2, 5, 8))
    params = interop.from_torch_state_dict(block, net.state_dict(), input_shape=(-1, 5, 8))
    np.testing.assert_allclose(block.apply(params, x)[0], _torch_out(torch, net, x), rtol=1e-10, atol=1e-12)
    _assert_same_tree(interop.from_torch_state_dict(
        block, interop.to_torch_state_dict(block, params), input_shape=(-1, 5, 8)), params)


def test_float32_stays_float32_and_dtype_follows_the_tensors():
    model = fl.serial(fl.Conv2D(3, 2), fl.BatchNorm(), fl.Flatten(), fl.Dense(2))
    shape = (-1, 4, 4, 2)
    params, state = model.init(np.random.default_rng(0), shape)
    sd = interop.to_torch_state_dict(model, params, state=state, input_shape=shape)
    assert {str(v.dtype) for k, v in sd.items() if "num_batches" not in k} == {"float32"}
    back, back_state = interop.from_torch_state_dict(model, sd, input_shape=shape)
    _assert_same_tree(back, params)
    _assert_same_tree(back_state, state)
    wide = {k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in sd.items()}
    assert interop.from_torch_state_dict(model, wide, input_shape=shape)[0]["3"]["w"].dtype == np.float64
    mixed = dict(wide, **{"3.bias": sd["3.bias"]})
    with pytest.raises(ValueError, match="several float dtypes.*pass dtype="):
        interop.from_torch_state_dict(model, mixed, input_shape=shape)
    narrow = interop.from_torch_state_dict(model, mixed, input_shape=shape, dtype=np.float32)[0]
    _assert_same_tree(narrow, params)


def test_patch_and_positional_embeddings_match_torch_conv_and_embedding():
    torch = _torch()
    torch.manual_seed(4)
    conv = torch.nn.Conv2d(3, 6, 4, stride=4).double()
    wpe = torch.nn.Embedding(9, 6).double()
    model = fl.serial(fl.PatchEmbedding(4, 6), fl.PositionalEmbedding(9), names=["patch", "wpe"])
    shape = (-1, 8, 12, 3)
    x = np.random.default_rng(5).normal(size=(2, 8, 12, 3))
    sd = {f"patch.{k}": v for k, v in conv.state_dict().items()}
    sd.update({f"wpe.{k}": v for k, v in wpe.state_dict().items()})
    params = interop.from_torch_state_dict(model, sd, input_shape=shape)
    with torch.no_grad():
        tokens = conv(torch.from_numpy(_nhwc_to_nchw(x))).flatten(2).transpose(1, 2)   # (B, N, f)
        theirs = (tokens + wpe.weight[:tokens.shape[1]]).numpy()
    np.testing.assert_allclose(model.apply(params, x)[0], theirs, rtol=1e-10, atol=1e-12)
    back = interop.to_torch_state_dict(model, params)
    assert list(back) == list(sd)
    for name, tensor in sd.items():
        np.testing.assert_array_equal(back[name], tensor.numpy())


def test_recurrent_layers_agree_with_the_rnn_helper():
    model = fl.serial(fl.Embedding(6, 3), fl.Bidirectional(fl.LSTM(4, return_sequences=True)),
                      fl.GRU(2, return_sequences=True), fl.SimpleRNN(3), names=["emb", "lstm", "gru", "rnn"])
    params = _randomized(model.init(np.random.default_rng(0), (-1, 5), input_dtype=np.int64),
                         np.random.default_rng(1))
    sd = interop.to_torch_state_dict(model, params)
    for key in ("lstm", "gru", "rnn"):                # each is a one-layer torch module of its own
        helper = interop.to_torch_rnn_state_dict(params[key], prefix=key + ".")
        assert [k for k in sd if k.startswith(key + ".")] == list(helper)
        for name, value in helper.items():
            np.testing.assert_array_equal(sd[name], value)
    assert sd["lstm.weight_hh_l0_reverse"].shape == (16, 4)
    back = interop.from_torch_state_dict(model, sd, input_shape=(-1, 5), input_dtype=np.int64)
    _assert_same_tree(back, params)

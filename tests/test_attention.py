"""MultiHeadAttention and PositionalEmbedding: PyTorch's attention, causality, dropout, bad input.

The VJPs are checked against finite differences by the registry (test_registry.py); here the forward
and every gradient are compared with ``torch.nn.functional.scaled_dot_product_attention`` in float64,
with the layout of the issue (q, k, v the column blocks of one projection, heads split as (B, T, H, D)).
"""

import numpy as np
import pytest

import fnlearn as fl


def _params(rng, d, bias, dtype=np.float64):
    layer_params = {"qkv": {"w": rng.normal(size=(d, 3 * d)) / np.sqrt(d)},
                    "out": {"w": rng.normal(size=(d, d)) / np.sqrt(d)}}
    if bias:
        layer_params["qkv"]["b"] = rng.normal(size=3 * d)
        layer_params["out"]["b"] = rng.normal(size=d)
    return {k: {kk: vv.astype(dtype) for kk, vv in v.items()} for k, v in layer_params.items()}


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape,heads", [((3, 7, 12), 3), ((2, 1, 8), 2), ((1, 5, 6), 1)])
def test_attention_equals_torch_sdpa_in_float64(causal, bias, shape, heads):
    torch = pytest.importorskip("torch", reason="PyTorch (the compare extra) is the reference here")
    F = torch.nn.functional
    rng = np.random.default_rng(0)
    n, t, d = shape
    params = _params(rng, d, bias)
    x = rng.normal(size=shape)
    dy = rng.normal(size=shape)
    y, vjp = fl.MultiHeadAttention(heads, causal=causal, bias=bias).apply(params, x)
    grads, dx = vjp(dy)

    tp = {k: {kk: torch.tensor(vv, requires_grad=True) for kk, vv in v.items()} for k, v in params.items()}
    tx = torch.tensor(x, requires_grad=True)
    proj = tx @ tp["qkv"]["w"] + (tp["qkv"]["b"] if bias else 0.0)
    q, k, v = (a.reshape(n, t, heads, d // heads).transpose(1, 2) for a in proj.split(d, dim=2))
    heads_out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    ty = heads_out.transpose(1, 2).reshape(n, t, d) @ tp["out"]["w"] + (tp["out"]["b"] if bias else 0.0)
    ty.backward(torch.tensor(dy))

    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=0, atol=1e-9)
    assert {k: sorted(v) for k, v in grads.items()} == {k: sorted(v) for k, v in params.items()}
    for part in params:
        for key in params[part]:
            np.testing.assert_allclose(grads[part][key], tp[part][key].grad.numpy(), rtol=0, atol=1e-9,
                                       err_msg=f"{part}/{key}")


def test_causal_attention_does_not_look_ahead():
    layer = fl.MultiHeadAttention(2, causal=True)
    params = layer.init(np.random.default_rng(0), (-1, 6, 4), dtype=np.float64)
    x = np.random.default_rng(1).normal(size=(2, 6, 4))
    changed = x.copy()
    changed[:, 4:] += 10.0
    y, _ = layer.apply(params, x)
    y2, _ = layer.apply(params, changed)
    np.testing.assert_array_equal(y[:, :4], y2[:, :4])
    assert not np.allclose(y[:, 4:], y2[:, 4:])
    # without the mask the past does see the future
    y3, _ = fl.MultiHeadAttention(2).apply(params, x)
    y4, _ = fl.MultiHeadAttention(2).apply(params, changed)
    assert not np.allclose(y3[:, :4], y4[:, :4])


def test_single_head_attention_by_hand():
    """One head, T = 2, no bias: the closed form softmax-weighted average."""
    d = 2
    params = {"qkv": {"w": np.hstack([np.eye(d), np.eye(d), np.eye(d)])}, "out": {"w": np.eye(d)}}
    x = np.array([[[1.0, 0.0], [0.0, 2.0]]])
    y, _ = fl.MultiHeadAttention(1, bias=False).apply(params, x)
    s = x[0] @ x[0].T / np.sqrt(d)
    p = np.exp(s) / np.exp(s).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(y[0], p @ x[0], rtol=1e-12)
    yc, _ = fl.MultiHeadAttention(1, bias=False, causal=True).apply(params, x)
    np.testing.assert_allclose(yc[0, 0], x[0, 0], rtol=1e-12)  # the first token sees only itself


def test_attention_dropout_uses_the_call_rng_and_is_off_in_evaluation():
    layer = fl.MultiHeadAttention(2, dropout=0.5)
    params = layer.init(np.random.default_rng(0), (-1, 5, 4))
    x = np.random.default_rng(1).normal(size=(3, 5, 4)).astype(np.float32)
    y_eval, _ = layer.apply(params, x)
    y_plain, _ = fl.MultiHeadAttention(2).apply(params, x)
    np.testing.assert_array_equal(y_eval, y_plain)
    a, _ = layer.apply(params, x, rng=np.random.default_rng(7), train=True)
    b, _ = layer.apply(params, x, rng=np.random.default_rng(7), train=True)
    c, _ = layer.apply(params, x, rng=np.random.default_rng(8), train=True)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c) and not np.allclose(a, y_eval)
    with pytest.raises(ValueError, match="rng"):
        layer.apply(params, x, train=True)


def test_attention_keeps_float64_and_float32():
    for dtype in (np.float32, np.float64):
        layer = fl.MultiHeadAttention(2, causal=True)
        params = layer.init(np.random.default_rng(0), (-1, 3, 4), dtype=dtype)
        y, vjp = layer.apply(params, np.ones((2, 3, 4), dtype))
        grads, dx = vjp(np.ones_like(y))
        assert y.dtype == dx.dtype == dtype
        assert all(leaf.dtype == dtype for leaf in fl.tree.tree_leaves(grads))
        assert vjp(np.ones_like(y), compute_dx=False)[1] is None


@pytest.mark.parametrize("bad,match", [
    (lambda: fl.MultiHeadAttention(3).init(np.random.default_rng(0), (-1, 4, 8)), "not divisible by num_heads = 3"),
    (lambda: fl.MultiHeadAttention(2).init(np.random.default_rng(0), (-1, 8)), r"\(batch, time, features\)"),
    (lambda: fl.MultiHeadAttention(0), "num_heads must be a positive int"),
    (lambda: fl.MultiHeadAttention(2, dropout=1.0), "dropout"),
])
def test_attention_construction_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        bad()


def test_attention_apply_errors_name_the_layer_and_the_fix():
    layer = fl.MultiHeadAttention(2, causal=True)
    params = layer.init(np.random.default_rng(0), (-1, 3, 4))
    with pytest.raises(ValueError, match=r"MultiHeadAttention\(2, causal=True\).*\(batch, time, features\).*x\[None\]"):
        layer.apply(params, np.ones((3, 4), np.float32))
    with pytest.raises(ValueError, match="not divisible by num_heads = 2"):
        fl.MultiHeadAttention(2).apply(params, np.ones((1, 3, 5), np.float32))
    with pytest.raises(ValueError, match=r"expected params\['w'\].*\(6, 18\)"):
        layer.apply(params, np.ones((1, 3, 6), np.float32))
    with pytest.raises(TypeError, match="float64 but the parameters are float32"):
        layer.apply(params, np.ones((1, 3, 4)))
    with pytest.raises(TypeError, match="float32 or float64"):
        layer.apply(params, np.ones((1, 3, 4), np.int64))
    no_bias = fl.MultiHeadAttention(2, bias=False)
    with pytest.raises(ValueError, match=r"keys \['w'\]"):
        no_bias.apply(params, np.ones((1, 3, 4), np.float32))
    model = fl.serial(fl.Dense(4), layer)
    model_params = model.init(np.random.default_rng(0), (-1, 3, 4))
    with pytest.raises(ValueError, match=r"serial layer 1 \('1', MultiHeadAttention\(2, causal=True\)\)"):
        model.apply(model_params, np.ones((2, 4), np.float32))


def test_positional_embedding_adds_rows_and_rejects_long_sequences():
    layer = fl.PositionalEmbedding(4)
    params = layer.init(np.random.default_rng(0), (-1, 3, 2), dtype=np.float64)
    assert params["embeddings"].shape == (4, 2)
    np.testing.assert_allclose(params["embeddings"].std(), 0.02, rtol=1.0)
    x = np.random.default_rng(1).normal(size=(2, 3, 2))
    y, vjp = layer.apply(params, x)
    np.testing.assert_array_equal(y, x + params["embeddings"][:3])
    dy = np.random.default_rng(2).normal(size=y.shape)
    grads, dx = vjp(dy)
    np.testing.assert_array_equal(dx, dy)
    np.testing.assert_allclose(grads["embeddings"][:3], dy.sum(axis=0))
    np.testing.assert_array_equal(grads["embeddings"][3], 0.0)
    with pytest.raises(ValueError, match="max_length = 4.*Crop"):
        layer.apply(params, np.ones((1, 5, 2)))
    with pytest.raises(ValueError, match=r"\(batch, time, 2\)"):
        layer.apply(params, np.ones((1, 2)))

"""PatchEmbedding (against Conv2D with stride = kernel, and torch's Conv2d), ClassToken, SelectToken and
Residual (closed forms), and their errors. The property battery runs on each through registry.py."""

from __future__ import annotations

import numpy as np
import pytest

import fnlearn as fl


def _conv_equivalent(params, x, p, features):
    """PatchEmbedding computed by fl.Conv2D(features, p, stride=p), tokens in row-major order."""
    conv = fl.Conv2D(features, p, stride=p)
    kernel = {"w": params["w"].reshape(p, p, x.shape[3], features), "b": params["b"]}
    y, vjp = conv.apply(kernel, x)
    return y.reshape(x.shape[0], -1, features), vjp, y.shape


@pytest.mark.parametrize("p, shape", [(7, (3, 28, 28, 1)), (2, (2, 4, 6, 3)), (1, (2, 3, 2, 2)),
                                      (3, (1, 3, 3, 2))])
def test_patch_embedding_is_a_strided_convolution(p, shape):
    rng = np.random.default_rng(0)
    layer = fl.PatchEmbedding(p, 5)
    params = layer.init(rng, (-1, *shape[1:]), dtype=np.float64)
    params["b"] = rng.standard_normal(5)
    x = rng.standard_normal(shape)
    y, vjp = layer.apply(params, x)
    want, conv_vjp, conv_shape = _conv_equivalent(params, x, p, 5)
    assert y.shape == (shape[0], (shape[1] // p) * (shape[2] // p), 5)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dparams, dx = vjp(dy)
    conv_dparams, conv_dx = conv_vjp(dy.reshape(conv_shape))
    np.testing.assert_allclose(dparams["w"], conv_dparams["w"].reshape(params["w"].shape), rtol=1e-12)
    np.testing.assert_allclose(dparams["b"], conv_dparams["b"], rtol=1e-12)
    np.testing.assert_allclose(dx, conv_dx, rtol=1e-12, atol=1e-12)
    same, none = vjp(dy, compute_dx=False)
    assert none is None and np.array_equal(same["w"], dparams["w"])


def test_patch_embedding_equals_torch_conv2d():
    torch = pytest.importorskip("torch", reason="torch is the peer reference (the `compare` extra)")
    rng = np.random.default_rng(1)
    p, c, f = 4, 3, 6
    layer = fl.PatchEmbedding(p, f)
    params = layer.init(rng, (-1, 8, 12, c), dtype=np.float64)
    params["b"] = rng.standard_normal(f)
    x = rng.standard_normal((2, 8, 12, c))
    y, vjp = layer.apply(params, x)
    dy = rng.standard_normal(y.shape)
    dparams, dx = vjp(dy)

    weight = torch.tensor(params["w"].reshape(p, p, c, f).transpose(3, 2, 0, 1).copy(), requires_grad=True)
    bias = torch.tensor(params["b"], requires_grad=True)
    xt = torch.tensor(x.transpose(0, 3, 1, 2).copy(), requires_grad=True)   # NCHW
    yt = torch.nn.functional.conv2d(xt, weight, bias, stride=p).flatten(2).transpose(1, 2)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dparams["w"].reshape(p, p, c, f).transpose(3, 2, 0, 1),
                               weight.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dparams["b"], bias.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-12, atol=1e-12)


def test_patch_embedding_keeps_float32_and_float64():
    for dt in (np.float32, np.float64):
        layer = fl.PatchEmbedding(2, 3)
        params = layer.init(np.random.default_rng(0), (-1, 4, 4, 1), dtype=dt)
        y, vjp = layer.apply(params, np.ones((2, 4, 4, 1), dt))
        dparams, dx = vjp(np.ones_like(y))
        assert y.dtype == dx.dtype == dparams["w"].dtype == dparams["b"].dtype == dt


def test_patch_embedding_errors():
    layer = fl.PatchEmbedding(7, 4)
    with pytest.raises(ValueError, match=r"PatchEmbedding\(7, 4\): the patch size 7 must divide the image "
                                         r"height and width, got 28x30"):
        layer.init(np.random.default_rng(0), (-1, 28, 30, 1))
    params = layer.init(np.random.default_rng(0), (-1, 28, 28, 1))
    with pytest.raises(ValueError, match=r"expected images of shape \(batch, height, width, channels\) "
                                         r"\(NHWC\), got shape \(2, 28, 28\)"):
        layer.apply(params, np.zeros((2, 28, 28), np.float32))
    with pytest.raises(ValueError, match=r"expected params\['w'\] of shape \(147, 4\) for images with 3 "
                                         r"channels, got \(49, 4\)"):
        layer.apply(params, np.zeros((2, 28, 28, 3), np.float32))
    with pytest.raises(TypeError, match=r"x has dtype float64 but the parameters are float32"):
        layer.apply(params, np.zeros((2, 28, 28, 1)))
    with pytest.raises(TypeError, match=r"dtype float32 or float64, got uint8"):
        layer.apply(params, np.zeros((2, 28, 28, 1), np.uint8))
    with pytest.raises(ValueError, match=r"patch_size must be a positive int, got 0"):
        fl.PatchEmbedding(0, 4)


def test_class_token_prepends_the_token_and_sums_its_gradient():
    rng = np.random.default_rng(2)
    layer = fl.ClassToken()
    params = layer.init(rng, (-1, 3, 4), dtype=np.float64)
    assert params["token"].shape == (4,) and 0.0 < params["token"].std() < 0.1
    x = rng.standard_normal((2, 3, 4))
    y, vjp = layer.apply(params, x)
    np.testing.assert_array_equal(y[:, 0], np.broadcast_to(params["token"], (2, 4)))
    np.testing.assert_array_equal(y[:, 1:], x)
    dy = rng.standard_normal(y.shape)
    dparams, dx = vjp(dy)
    np.testing.assert_allclose(dparams["token"], dy[0, 0] + dy[1, 0], rtol=1e-15)
    np.testing.assert_array_equal(dx, dy[:, 1:])
    assert vjp(dy, compute_dx=False)[1] is None
    with pytest.raises(ValueError, match=r"ClassToken: expected x of shape \(batch, tokens, 4\) to match "
                                         r"params\['token'\] of shape \(4,\), got \(2, 3, 5\)"):
        layer.apply(params, np.zeros((2, 3, 5)))
    with pytest.raises(ValueError, match=r"ClassToken: expected x of shape \(batch, tokens, features\), "
                                         r"got shape \(2, 4\)"):
        layer.apply(params, np.zeros((2, 4)))


def test_select_token_takes_one_token_and_scatters_its_cotangent():
    x = np.random.default_rng(3).standard_normal((2, 5, 3))
    for index in (0, 2, -1):
        y, vjp = fl.SelectToken(index).apply({}, x)
        np.testing.assert_array_equal(y, x[:, index])
        dy = np.ones_like(y)
        _, dx = vjp(dy)
        want = np.zeros_like(x)
        want[:, index] = 1.0
        np.testing.assert_array_equal(dx, want)
    with pytest.raises(ValueError, match=r"SelectToken\(5\): token 5 is out of range for x of shape "
                                         r"\(2, 5, 3\) \(5 tokens\)"):
        fl.SelectToken(5).apply({}, x)
    with pytest.raises(TypeError, match=r"SelectToken: index must be an int"):
        fl.SelectToken(0.0)


def test_residual_adds_the_input_and_its_cotangent():
    rng = np.random.default_rng(4)
    inner = fl.serial(fl.Dense(6), fl.Tanh(), fl.Dense(4))
    block = fl.Residual(inner)
    params = block.init(rng, (-1, 3, 4), dtype=np.float64)
    assert sorted(params) == ["0", "1", "2"]                    # the wrapped layer's own params
    x = rng.standard_normal((2, 3, 4))
    y, vjp = block.apply(params, x)
    fx, inner_vjp = inner.apply(params, x)
    np.testing.assert_allclose(y, x + fx, rtol=1e-15)
    dy = rng.standard_normal(y.shape)
    dparams, dx = vjp(dy)
    inner_dparams, inner_dx = inner_vjp(dy)
    np.testing.assert_allclose(dx, dy + inner_dx, rtol=1e-15)
    np.testing.assert_array_equal(dparams["0"]["w"], inner_dparams["0"]["w"])
    again, none = vjp(dy, compute_dx=False)
    assert none is None and np.array_equal(again["2"]["b"], dparams["2"]["b"])


def test_residual_never_writes_into_a_cotangent_that_the_wrapped_layer_hands_back():
    def apply(params, x, *, rng=None, train=False):
        return 2.0 * x, lambda dy, compute_dx=True: ({}, dy)      # a user VJP that returns dy itself
    block = fl.Residual(fl.Layer(lambda rng, shape, dtype=None: {}, apply))
    y, vjp = block.apply({}, np.ones((1, 2)))
    dy = np.ones((1, 2))
    _, dx = vjp(dy)
    np.testing.assert_array_equal(dx, [[2.0, 2.0]])
    np.testing.assert_array_equal(dy, [[1.0, 1.0]])


def test_residual_errors():
    with pytest.raises(ValueError, match=r"Residual\(Dense\(3\)\): the wrapped layer maps inputs of shape "
                                         r"\(-1, 4\) to \(-1, 3\); a residual connection needs"):
        fl.Residual(fl.Dense(3)).init(np.random.default_rng(0), (-1, 4))
    with pytest.raises(TypeError, match=r"Residual: expected a Layer \(init, apply\), got function"):
        fl.Residual(fl.Relu)
    with pytest.raises(TypeError, match=r"stateful layers \(e.g. BatchNorm\) are not supported"):
        fl.Residual(fl.BatchNorm())

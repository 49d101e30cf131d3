"""models.vit: params, the forward pass against a plain NumPy ViT, logits and every gradient against a
PyTorch ViT (float64), dropout, bad input, and examples/mnist_vit.py run for a few steps.

The VJP of the whole model is checked against finite differences by the registry (test_registry.py,
entry "vit-tiny").
"""

from __future__ import annotations

import importlib.util
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import special

import fnlearn as fl

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mnist_vit.py"
CONFIG = dict(image_size=8, patch_size=4, num_classes=5, n_layer=2, n_head=2, n_embd=8, channels=3)


def _model(**kw):
    return fl.models.vit(**{**CONFIG, **kw})


def _init(model, dtype=np.float64, seed=0):
    params = model.init(np.random.default_rng(seed), (-1, 8, 8, 3), dtype=dtype)
    rng = np.random.default_rng(seed + 1)   # non-zero biases and norms, so that every term is tested
    return fl.tree.tree_map(lambda a: a + 0.1 * rng.standard_normal(a.shape).astype(a.dtype), params)


def test_vit_params_and_init():
    model = fl.models.vit(28, 7, 10, n_layer=3, n_head=4, n_embd=64, mlp_ratio=2)
    params = model.init(np.random.default_rng(0), (-1, 28, 28, 1))
    assert list(params) == ["patch", "cls", "pos", "h_0", "h_1", "h_2", "select", "ln_f", "head"]
    assert params["patch"]["w"].shape == (49, 64) and params["cls"]["token"].shape == (64,)
    assert params["pos"]["embeddings"].shape == (17, 64) and params["head"]["w"].shape == (64, 10)
    block = params["h_2"]
    assert sorted(block) == ["attn", "ln_1", "ln_2", "mlp"]
    assert block["attn"]["qkv"]["w"].shape == (64, 192) and block["mlp"]["fc"]["w"].shape == (64, 128)
    for w in (params["pos"]["embeddings"], block["attn"]["qkv"]["w"], block["attn"]["out"]["w"],
              block["mlp"]["proj"]["w"], params["head"]["w"]):
        assert abs(w.std() - 0.02) < 0.003
    assert abs(params["patch"]["w"].std() - 1 / 7) < 0.02          # LeCun normal, fan-in 49
    assert not params["head"]["b"].any() and not block["mlp"]["fc"]["b"].any()
    assert all(leaf.dtype == np.float32 for leaf in fl.tree.tree_leaves(params))


def _layer_norm(x, p):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * p["scale"] + p["offset"]


def _numpy_vit(params, x, n_head, approximate):
    """A direct NumPy ViT: patches by explicit slicing, attention by einsum over heads."""
    b, size, _, c = x.shape
    p = CONFIG["patch_size"]
    patches = [x[:, i:i + p, j:j + p, :].reshape(b, -1) for i in range(0, size, p) for j in range(0, size, p)]
    h = np.stack(patches, 1) @ params["patch"]["w"] + params["patch"]["b"]
    token = np.broadcast_to(params["cls"]["token"], (b, 1, h.shape[2]))
    h = np.concatenate([token, h], 1) + params["pos"]["embeddings"]
    t, d = h.shape[1], h.shape[2]
    for i in range(CONFIG["n_layer"]):
        blk = params[f"h_{i}"]
        a = _layer_norm(h, blk["ln_1"]) @ blk["attn"]["qkv"]["w"] + blk["attn"]["qkv"]["b"]
        q, k, v = (a[..., j * d:(j + 1) * d].reshape(b, t, n_head, d // n_head) for j in range(3))
        s = np.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d // n_head)
        w = np.exp(s - s.max(-1, keepdims=True))
        w /= w.sum(-1, keepdims=True)
        heads = np.einsum("bhqk,bkhd->bqhd", w, v).reshape(b, t, d)
        h = h + heads @ blk["attn"]["out"]["w"] + blk["attn"]["out"]["b"]
        u = _layer_norm(h, blk["ln_2"]) @ blk["mlp"]["fc"]["w"] + blk["mlp"]["fc"]["b"]
        if approximate:
            g = 0.5 * u * (1 + np.tanh(math.sqrt(2 / math.pi) * (u + 0.044715 * u ** 3)))
        else:
            g = 0.5 * u * (1 + special.erf(u / math.sqrt(2)))
        h = h + g @ blk["mlp"]["proj"]["w"] + blk["mlp"]["proj"]["b"]
    return _layer_norm(h, params["ln_f"])[:, 0] @ params["head"]["w"] + params["head"]["b"]


@pytest.mark.parametrize("approximate", [False, True])
def test_vit_forward_equals_a_plain_numpy_vit(approximate):
    model = _model(gelu_approximate=approximate)
    params = _init(model)
    x = np.random.default_rng(2).standard_normal((3, 8, 8, 3))
    logits, _ = model.apply(params, x)
    assert logits.shape == (3, 5) and logits.dtype == np.float64
    np.testing.assert_allclose(logits, _numpy_vit(params, x, 2, approximate), rtol=1e-12, atol=1e-12)


def _torch_vit(torch, params, x, n_head, approximate):
    """The same ViT in PyTorch: conv2d patches (NCHW), F.layer_norm, scaled_dot_product_attention."""
    F = torch.nn.functional
    p, c, d = CONFIG["patch_size"], x.shape[1], params["cls"]["token"].shape[0]
    weight = params["patch"]["w"].reshape(p, p, c, d).permute(3, 2, 0, 1)
    h = F.conv2d(x, weight, params["patch"]["b"], stride=p).flatten(2).transpose(1, 2)
    h = torch.cat([params["cls"]["token"].expand(x.shape[0], 1, d), h], 1) + params["pos"]["embeddings"]
    b, t, _ = h.shape

    def ln(z, q):
        return F.layer_norm(z, (d,), q["scale"], q["offset"], eps=1e-5)

    for i in range(CONFIG["n_layer"]):
        blk = params[f"h_{i}"]
        qkv = F.linear(ln(h, blk["ln_1"]), blk["attn"]["qkv"]["w"].T, blk["attn"]["qkv"]["b"])
        q, k, v = (z.reshape(b, t, n_head, d // n_head).transpose(1, 2) for z in qkv.split(d, dim=2))
        heads = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, d)
        h = h + F.linear(heads, blk["attn"]["out"]["w"].T, blk["attn"]["out"]["b"])
        u = F.linear(ln(h, blk["ln_2"]), blk["mlp"]["fc"]["w"].T, blk["mlp"]["fc"]["b"])
        g = F.gelu(u, approximate="tanh" if approximate else "none")
        h = h + F.linear(g, blk["mlp"]["proj"]["w"].T, blk["mlp"]["proj"]["b"])
    return F.linear(ln(h, params["ln_f"])[:, 0], params["head"]["w"].T, params["head"]["b"])


@pytest.mark.parametrize("approximate", [False, True])
def test_vit_logits_and_gradients_equal_pytorch(approximate):
    torch = pytest.importorskip("torch", reason="PyTorch (the compare extra) is the reference here")
    model = _model(gelu_approximate=approximate)
    params = _init(model)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 8, 8, 3))
    logits, vjp = model.apply(params, x)
    dy = rng.standard_normal(logits.shape)
    grads, dx = vjp(dy)

    tparams = fl.tree.tree_map(lambda a: torch.tensor(a, requires_grad=True), params)
    xt = torch.tensor(x.transpose(0, 3, 1, 2).copy(), requires_grad=True)
    tlogits = _torch_vit(torch, tparams, xt, 2, approximate)
    (tlogits * torch.tensor(dy)).sum().backward()
    np.testing.assert_allclose(logits, tlogits.detach().numpy(), rtol=1e-10, atol=1e-12)
    flat, _ = fl.tree.tree_flatten_with_path(grads)
    tflat = dict(fl.tree.tree_flatten_with_path(tparams)[0])
    assert len(flat) == len(tflat) == 4 + 12 * CONFIG["n_layer"] + 4
    for path, g in flat:
        np.testing.assert_allclose(g, tflat[path].grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=path)
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-9, atol=1e-12)


def test_vit_keeps_float32_and_float64():
    for dt in (np.float32, np.float64):
        model = _model()
        params = model.init(np.random.default_rng(0), (-1, 8, 8, 3), dtype=dt)
        logits, vjp = model.apply(params, np.ones((2, 8, 8, 3), dt))
        grads, dx = vjp(np.ones_like(logits))
        assert logits.dtype == dx.dtype == dt
        assert {leaf.dtype for leaf in fl.tree.tree_leaves(grads)} == {np.dtype(dt)}


def test_vit_dropout_draws_from_the_call_time_rng():
    model = _model(dropout=0.3)
    params = _init(model, np.float32)
    assert "drop" in params
    x = np.random.default_rng(4).standard_normal((2, 8, 8, 3)).astype(np.float32)
    eval_a, _ = model.apply(params, x)
    eval_b, _ = model.apply(params, x, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(eval_a, eval_b)                  # no dropout when evaluating
    a, _ = model.apply(params, x, rng=np.random.default_rng(6), train=True)
    b, _ = model.apply(params, x, rng=np.random.default_rng(6), train=True)
    c, _ = model.apply(params, x, rng=np.random.default_rng(7), train=True)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c) and not np.allclose(a, eval_a)
    with pytest.raises(ValueError, match=r"needs rng=np.random.default_rng"):
        model.apply(params, x, train=True)


def test_vit_bad_input():
    model = fl.models.vit(28, 7, 10, n_layer=1, n_head=2, n_embd=8)
    params = model.init(np.random.default_rng(0), (-1, 28, 28, 1))
    with pytest.raises(ValueError, match=r"expected images of shape \(batch, 28, 28, 1\) \(NHWC\), got "
                                         r"\(2, 14, 14, 1\)"):
        model.apply(params, np.zeros((2, 14, 14, 1), np.float32))
    with pytest.raises(ValueError, match=r"got \(2, 784\)\. Reshape the images \(e\.g\. "
                                         r"x\.reshape\(-1, 28, 28, 1\)\)"):
        model.apply(params, np.zeros((2, 784), np.float32))
    with pytest.raises(ValueError, match=r"expected images of shape \(batch, 28, 28, 1\)"):
        model.init(np.random.default_rng(0), (-1, 28, 28, 3))
    with pytest.raises(TypeError, match=r"vit\(28, 7, 10.*dtype float32 or float64, got uint8"):
        model.apply(params, np.zeros((2, 28, 28, 1), np.uint8))
    with pytest.raises(TypeError, match=r"x has dtype float64 but the parameters are float32"):
        model.apply(params, np.zeros((2, 28, 28, 1)))
    with pytest.raises(ValueError, match=r"vit: patch_size 5 must divide image_size 28"):
        fl.models.vit(28, 5, 10, n_layer=1, n_head=2, n_embd=8)
    with pytest.raises(ValueError, match=r"vit: n_embd = 10 must be divisible by n_head = 4"):
        fl.models.vit(28, 7, 10, n_layer=1, n_head=4, n_embd=10)
    with pytest.raises(ValueError, match=r"vit: n_layer must be a positive int, got 0"):
        fl.models.vit(28, 7, 10, n_layer=0, n_head=2, n_embd=8)


def test_mnist_vit_example_runs_a_few_steps(mnist_dir):
    result = subprocess.run([sys.executable, str(EXAMPLE), "--data-dir", str(mnist_dir), "--limit", "2000",
                             "--test-limit", "500", "--epochs", "2", "--batch-size", "50", "--lr", "5e-3",
                             "--n-layer", "1", "--n-embd", "16", "--warmup", "5", "--shift", "1"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.split()[:2] for line in lines[:2]] == [["epoch", "1/2"], ["epoch", "2/2"]]
    final = re.fullmatch(r"test loss ([\d.]+)  test accuracy ([\d.]+)%  training time [\d.]+ s  "
                         r"wall time [\d.]+ s", lines[-1])
    assert final, lines[-1]
    assert 15.0 < float(final[2]) <= 100.0    # 80 steps: better than chance (10%)


def test_mnist_vit_shift_moves_each_image_by_its_own_offset():
    spec = importlib.util.spec_from_file_location("mnist_vit_example", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    x = np.random.default_rng(8).standard_normal((6, 28, 28, 1)).astype(np.float32)
    shifted = example.shift_images(x, 2, np.random.default_rng(9))
    assert shifted.shape == x.shape and shifted.dtype == np.float32
    background = np.float32(-example.MEAN / example.STD)
    for image, moved in zip(x[..., 0], shifted[..., 0]):
        padded = np.pad(image, 2, constant_values=background)
        offsets = [(a, b) for a in range(5) for b in range(5)
                   if np.array_equal(moved, padded[a:a + 28, b:b + 28])]
        assert len(offsets) == 1
    np.testing.assert_array_equal(example.shift_images(x, 0, np.random.default_rng(9)), x)

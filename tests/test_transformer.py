"""TransformerBlock and MLP: the block's formula by composition, and bad input.

Their VJPs are checked against finite differences by the registry (test_registry.py).
"""

import numpy as np
import pytest

import fnlearn as fl


def test_block_is_the_two_residual_branches():
    block = fl.TransformerBlock(2, causal=True)
    params = block.init(np.random.default_rng(0), (-1, 5, 4), dtype=np.float64)
    x = np.random.default_rng(1).normal(size=(3, 5, 4))
    y, _ = block.apply(params, x)
    ln, attn, mlp = fl.LayerNorm(), fl.MultiHeadAttention(2, causal=True), fl.MLP(16)
    h = x + attn.apply(params["attn"], ln.apply(params["ln_1"], x)[0])[0]
    want = h + mlp.apply(params["mlp"], ln.apply(params["ln_2"], h)[0])[0]
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)


def test_mlp_is_gelu_between_two_projections():
    mlp = fl.MLP(6, bias=False)
    params = mlp.init(np.random.default_rng(0), (-1, 3), dtype=np.float64)
    x = np.random.default_rng(1).normal(size=(2, 3))
    y, _ = mlp.apply(params, x)
    gelu, _ = fl.Gelu().apply({}, x @ params["fc"]["w"])
    np.testing.assert_allclose(y, gelu @ params["proj"]["w"], rtol=1e-12)
    assert sorted(params["fc"]) == ["w"]


def test_block_and_mlp_errors_name_the_layer_and_part():
    block = fl.TransformerBlock(2)
    params = block.init(np.random.default_rng(0), (-1, 3, 4))
    with pytest.raises(ValueError, match=r"TransformerBlock\(2\).*\(batch, time, features\)"):
        block.apply(params, np.ones((3, 4), np.float32))
    with pytest.raises(TypeError, match="float64 but the parameters are float32"):
        block.apply(params, np.ones((1, 3, 4)))
    with pytest.raises(ValueError, match=r"keys \['attn', 'ln_1', 'ln_2', 'mlp'\]"):
        block.apply({"attn": params["attn"]}, np.ones((1, 3, 4), np.float32))
    mlp = fl.MLP(8)
    p = mlp.init(np.random.default_rng(0), (-1, 4))
    with pytest.raises(ValueError, match=r"MLP\(8\) \(fc\).*shape \(5, 8\)"):
        mlp.apply(p, np.ones((2, 5), np.float32))
    with pytest.raises(ValueError, match=r"keys \['fc', 'proj'\]"):
        mlp.apply({"fc": p["fc"]}, np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match="mlp_ratio must be a positive int"):
        fl.TransformerBlock(2, mlp_ratio=0)

"""fnlearn.interop's GPT converters: nanoGPT and Hugging Face GPT-2 names and layouts.

Without torch: exact round trips both ways, the names and layouts against literal nanoGPT names, the
buffers and prefixes that are ignored, and the errors. With torch (tests/nanogpt_torch.py, the reference
GPT with nanoGPT's module names): ``models.gpt`` loaded from the reference's state_dict gives the same
logits, loss and every gradient in float64, and a GPT-2-shaped dict runs with the tanh GELU.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

import fnlearn as fl
from fnlearn import interop

BLOCK_SHAPES = {  # fnlearn path inside a block -> shape in units of d
    "ln_1/scale": (1,), "ln_1/offset": (1,), "attn/qkv/w": (1, 3), "attn/qkv/b": (3,),
    "attn/out/w": (1, 1), "attn/out/b": (1,), "ln_2/scale": (1,), "ln_2/offset": (1,),
    "mlp/fc/w": (1, 4), "mlp/fc/b": (4,), "mlp/proj/w": (4, 1), "mlp/proj/b": (1,)}


def _put(tree, path, value):
    *parents, leaf = path.split("/")
    for key in parents:
        tree = tree.setdefault(key, {})
    tree[leaf] = value


def random_tree(rng, vocab, positions, n_layer, d, *, bias=True, dtype=np.float32):
    """A models.gpt-shaped params tree with every leaf random, built from the documented structure."""
    def leaf(shape):
        return rng.normal(size=shape).astype(dtype)

    tree = {"wte": {"embeddings": leaf((vocab, d))}, "wpe": {"embeddings": leaf((positions, d))}, "h": {}}
    for i in range(n_layer):
        for path, units in BLOCK_SHAPES.items():
            if bias or not path.endswith(("/b", "/offset")):
                _put(tree["h"], f"{i}/{path}", leaf(tuple(u * d for u in units)))
    tree["ln_f"] = {"scale": leaf((d,))} | ({"offset": leaf((d,))} if bias else {})
    return tree


def assert_same_tree(a, b):
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert_same_tree(a[k], b[k])
    else:
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def assert_same_state_dict(a, b):
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert a[k].tobytes() == b[k].tobytes(), k


trees = st.builds(
    lambda seed, vocab, positions, n_layer, d, bias, dtype: random_tree(
        np.random.default_rng(seed), vocab, positions, n_layer, d, bias=bias, dtype=dtype),
    st.integers(0, 2**32 - 1), st.integers(1, 7), st.integers(1, 6), st.integers(0, 3),
    st.integers(1, 5), st.booleans(), st.sampled_from([np.float32, np.float64]))

CONVERTERS = [(interop.to_nanogpt_state_dict, interop.from_nanogpt_state_dict),
              (interop.to_gpt2_state_dict, interop.from_gpt2_state_dict)]


# ---------------------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("to, back", CONVERTERS, ids=["nanogpt", "gpt2"])
@given(tree=trees)
def test_round_trips_are_exact(to, back, tree):
    sd = to(tree)
    assert sd["lm_head.weight"] is sd["transformer.wte.weight"]
    assert all(v.flags.c_contiguous for v in sd.values())
    assert_same_tree(back(sd), tree)
    assert_same_state_dict(to(back(sd)), sd)


@given(tree=trees)
def test_gpt2_without_the_transformer_prefix_or_lm_head(tree):
    sd = {k.removeprefix("transformer."): v for k, v in interop.to_gpt2_state_dict(tree).items()
          if k != "lm_head.weight"}
    assert_same_tree(interop.from_gpt2_state_dict(sd), tree)


def test_the_results_are_fresh_arrays():
    tree = random_tree(np.random.default_rng(0), 5, 4, 1, 2)
    sd = interop.to_gpt2_state_dict(tree)
    assert not any(np.shares_memory(v, w) for v in sd.values() for w in fl.tree.tree_leaves(tree))
    back = interop.from_gpt2_state_dict(sd)
    assert not any(np.shares_memory(v, w) for v in sd.values() for w in fl.tree.tree_leaves(back))


# -------------------------------------------------------------------------------- names and layouts

NANOGPT_ONE_LAYER = [  # nanoGPT's GPT(GPTConfig(n_layer=1, bias=True)).state_dict() keys, in order
    "transformer.wte.weight", "transformer.wpe.weight",
    "transformer.h.0.ln_1.weight", "transformer.h.0.ln_1.bias",
    "transformer.h.0.attn.c_attn.weight", "transformer.h.0.attn.c_attn.bias",
    "transformer.h.0.attn.c_proj.weight", "transformer.h.0.attn.c_proj.bias",
    "transformer.h.0.ln_2.weight", "transformer.h.0.ln_2.bias",
    "transformer.h.0.mlp.c_fc.weight", "transformer.h.0.mlp.c_fc.bias",
    "transformer.h.0.mlp.c_proj.weight", "transformer.h.0.mlp.c_proj.bias",
    "transformer.ln_f.weight", "transformer.ln_f.bias", "lm_head.weight"]


@pytest.mark.parametrize("bias", [True, False])
def test_nanogpt_names_and_layouts(bias):
    d = 3
    tree = random_tree(np.random.default_rng(1), 7, 5, 1, d, bias=bias, dtype=np.float64)
    sd = interop.to_nanogpt_state_dict(tree)
    assert list(sd) == [k for k in NANOGPT_ONE_LAYER if bias or not k.endswith(".bias")]
    block = tree["h"]["0"]
    qkv = sd["transformer.h.0.attn.c_attn.weight"]                  # nn.Linear (out, in) = (3d, d)
    for j in range(3):                                             # rows of q, k, v in that order
        cols = slice(j * d, (j + 1) * d)
        np.testing.assert_array_equal(qkv[cols], block["attn"]["qkv"]["w"][:, cols].T)
    np.testing.assert_array_equal(sd["transformer.h.0.mlp.c_fc.weight"], block["mlp"]["fc"]["w"].T)
    np.testing.assert_array_equal(sd["transformer.h.0.mlp.c_proj.weight"], block["mlp"]["proj"]["w"].T)
    np.testing.assert_array_equal(sd["transformer.h.0.attn.c_proj.weight"], block["attn"]["out"]["w"].T)
    np.testing.assert_array_equal(sd["transformer.h.0.ln_2.weight"], block["ln_2"]["scale"])
    np.testing.assert_array_equal(sd["lm_head.weight"], tree["wte"]["embeddings"])
    if bias:
        np.testing.assert_array_equal(sd["transformer.h.0.attn.c_attn.bias"], block["attn"]["qkv"]["b"])
        np.testing.assert_array_equal(sd["transformer.ln_f.bias"], tree["ln_f"]["offset"])


def test_gpt2_keeps_the_conv1d_layout():
    tree = random_tree(np.random.default_rng(2), 7, 5, 2, 3)
    sd = interop.to_gpt2_state_dict(tree)
    assert list(sd) == list(interop.to_nanogpt_state_dict(tree))
    for name, path in [("h.1.attn.c_attn", "attn/qkv"), ("h.1.mlp.c_proj", "mlp/proj")]:
        node = tree["h"]["1"]
        for key in path.split("/"):
            node = node[key]
        np.testing.assert_array_equal(sd[f"transformer.{name}.weight"], node["w"])


def test_a_gpt2_dict_and_its_nanogpt_form_give_the_same_params():
    hf = _gpt2_shaped_dict(np.random.default_rng(9), 7, 6, 2, 4)   # built by hand, Conv1D (in, out)
    nano = {k: np.ascontiguousarray(v.T) if k.endswith(CONV1D_WEIGHTS) else v for k, v in hf.items()}
    assert_same_tree(interop.from_gpt2_state_dict(hf), interop.from_nanogpt_state_dict(nano))


def test_buffers_prefixes_and_dtype():
    tree = random_tree(np.random.default_rng(3), 7, 5, 2, 4)
    sd = dict(interop.to_nanogpt_state_dict(tree))
    sd["transformer.h.1.attn.bias"] = np.tril(np.ones((5, 5)))[None, None]      # nanoGPT's mask buffer
    compiled = {"_orig_mod." + k: v for k, v in sd.items()}                   # torch.compile's prefix
    assert_same_tree(interop.from_nanogpt_state_dict(compiled), tree)
    hf = {k.removeprefix("transformer."): v for k, v in interop.to_gpt2_state_dict(tree).items()}
    hf["h.0.attn.bias"] = np.ones((1, 1, 5, 5), bool)
    hf["h.0.attn.masked_bias"] = np.array(-1e4, np.float32)
    back = interop.from_gpt2_state_dict(hf, dtype=np.dtype("float64"))  # an instance is falsy
    assert all(leaf.dtype == np.float64 for leaf in fl.tree.tree_leaves(back))
    np.testing.assert_array_equal(back["h"]["1"]["mlp"]["fc"]["w"], tree["h"]["1"]["mlp"]["fc"]["w"])


def test_models_gpt_init_has_the_documented_structure():
    models = pytest.importorskip("fnlearn.models", reason="fnlearn.models is not written yet")
    for bias in (True, False):
        params = models.gpt(11, 6, 2, 2, 4, bias=bias).init(np.random.default_rng(0), (-1, 6))
        expected = random_tree(np.random.default_rng(0), 11, 6, 2, 4, bias=bias)
        assert fl.tree.tree_structure(params) == fl.tree.tree_structure(expected)
        assert [a.shape for a in fl.tree.tree_leaves(params)] == [
            a.shape for a in fl.tree.tree_leaves(expected)]


# -------------------------------------------------------------------------------------------- errors

def _nanogpt_sd(**kw):
    return dict(interop.to_nanogpt_state_dict(random_tree(np.random.default_rng(4), 7, 5, 2, 4, **kw)))


@pytest.mark.parametrize("edit, needle", [
    (lambda sd: sd.pop("transformer.h.1.mlp.c_fc.weight"), r"1 missing.*h\.1\.mlp\.c_fc\.weight"),
    (lambda sd: sd.pop("transformer.ln_f.bias"), r"Missing: transformer\.ln_f\.bias"),
    (lambda sd: sd.update({"transformer.h.0.attn.extra": np.ones(2)}),
     r"Unexpected: transformer\.h\.0\.attn\.extra"),
    (lambda sd: sd.update({"transformer.h.3.ln_1.weight": np.ones(4)}), r"Missing: transformer\.h\.2\.attn"),
    (lambda sd: sd.update({"transformer.h.0.mlp.c_fc.weight": np.ones((4, 16))}),
     r"'transformer\.h\.0\.mlp\.c_fc\.weight' is float64 \(4, 16\), expected floating \(16, 4\)"),
    (lambda sd: sd.update({"transformer.h.0.ln_1.weight": np.ones(4, np.int64)}), r"is int64 \(4,\)"),
    (lambda sd: sd.update({"transformer.wte.weight": np.ones(4)}), "must be 2-D"),
    (lambda sd: sd.update({"lm_head.weight": sd["transformer.wte.weight"] + 1}), "untied"),
])
def test_from_nanogpt_errors_name_the_problem(edit, needle):
    sd = _nanogpt_sd()
    edit(sd)
    with pytest.raises(ValueError, match=needle) as info:
        interop.from_nanogpt_state_dict(sd)
    assert "from_nanogpt_state_dict" in str(info.value)


def test_a_gpt2_dict_is_not_a_nanogpt_dict():
    hf = interop.to_gpt2_state_dict(random_tree(np.random.default_rng(5), 7, 5, 1, 4))
    needle = r"c_attn\.weight' is float32 \(4, 12\), expected floating \(12, 4\)"
    with pytest.raises(ValueError, match=needle):
        interop.from_nanogpt_state_dict(hf)


def test_from_rejects_a_non_mapping_and_an_integer_dtype():
    with pytest.raises(TypeError, match="model.state_dict()"):
        interop.from_nanogpt_state_dict([("transformer.wte.weight", np.ones((2, 2)))])
    with pytest.raises(ValueError, match="floating dtype"):
        interop.from_gpt2_state_dict(_nanogpt_sd(), dtype=np.int32)


@pytest.mark.parametrize("to", [interop.to_nanogpt_state_dict, interop.to_gpt2_state_dict])
def test_to_errors_name_the_problem(to):
    tree = random_tree(np.random.default_rng(6), 7, 5, 2, 4)
    del tree["h"]["1"]["attn"]["out"]["b"]
    with pytest.raises(ValueError, match=rf"{to.__name__}: .*Missing: h/1/attn/out/b"):
        to(tree)
    tree = random_tree(np.random.default_rng(6), 7, 5, 2, 4)
    tree["h"]["0"]["mlp"]["fc"]["w"] = np.ones((4, 8), np.float32)
    with pytest.raises(ValueError, match=r"'h/0/mlp/fc/w' is \(4, 8\), expected \(4, 16\)"):
        to(tree)
    with pytest.raises(ValueError, match="params .*of models.gpt"):
        to({"0": {"w": np.ones((2, 2))}})


# ------------------------------------------------------------------- against nanoGPT (torch reference)

TORCH_REASON = "torch is not installed (pip install torch==2.13.0); the nanoGPT comparisons need it"
CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def _peers():
    torch = pytest.importorskip("torch", reason=TORCH_REASON)
    models = pytest.importorskip("fnlearn.models", reason="fnlearn.models is not written yet")
    import nanogpt_torch
    return torch, models, nanogpt_torch


def _reference(torch, nanogpt_torch, seed, **config):
    """nanoGPT's GPT in float64 with nanoGPT's init, then every parameter moved off its init (LayerNorm
    scales off one, biases off zero) so that no mapping error hides behind a constant."""
    torch.manual_seed(seed)
    model = nanogpt_torch.GPT(nanogpt_torch.GPTConfig(**config)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _numpy_state_dict(model):
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


def assert_close(ours, theirs, what):
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else np.asarray(theirs)
    assert ours.dtype == np.float64 and ours.shape == theirs.shape, what
    np.testing.assert_allclose(ours, theirs, rtol=1e-8, atol=1e-8 * np.abs(theirs).max(), err_msg=what)


def _fnlearn_loss_and_grads(model, params, idx, targets):
    logits, vjp = model.apply(params, idx)
    vocab = logits.shape[-1]
    loss, dlogits = fl.losses.softmax_cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1))
    grads, dx = vjp(dlogits.reshape(logits.shape))
    assert dx is None
    return logits, loss, grads


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("steps", [8, 5], ids=["T=block", "T<block"])
def test_models_gpt_equals_nanogpt_logits_loss_and_every_gradient(bias, steps):
    torch, models, nanogpt_torch = _peers()
    config = dict(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=8, bias=bias)
    reference = _reference(torch, nanogpt_torch, 0, **config)
    rng = np.random.default_rng(steps)
    idx, targets = rng.integers(0, 13, (2, 3, steps))
    theirs, their_loss = reference(torch.from_numpy(idx), torch.from_numpy(targets))
    their_loss.backward()

    params = interop.from_nanogpt_state_dict(_numpy_state_dict(reference))
    logits, loss, grads = _fnlearn_loss_and_grads(models.gpt(**config), params, idx, targets)
    assert_close(logits, theirs, "logits")
    assert_close(np.float64(loss), their_loss, "loss")
    ours = interop.to_nanogpt_state_dict(grads)
    named = dict(reference.named_parameters(remove_duplicate=False))
    assert list(ours) == list(named)                         # lm_head.weight included, tied
    for name, p in named.items():
        assert_close(ours[name], p.grad, name)               # wte's: input embedding + lm head, summed


def test_the_causal_mask_hides_the_future():
    torch, models, nanogpt_torch = _peers()
    config = dict(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=8)
    params = interop.from_nanogpt_state_dict(_numpy_state_dict(_reference(torch, nanogpt_torch, 1, **config)))
    model = models.gpt(**config)
    rng = np.random.default_rng(1)
    idx = rng.integers(0, 13, (2, 6))
    changed = idx.copy()
    changed[:, 3:] = (changed[:, 3:] + 1) % 13
    before, _ = model.apply(params, idx)
    after, _ = model.apply(params, changed)
    np.testing.assert_allclose(after[:, :3], before[:, :3], rtol=1e-12, atol=1e-12)
    assert np.abs(after[:, 3:] - before[:, 3:]).min() > 1e-6
    prefix, _ = model.apply(params, idx[:, :4])              # a shorter sequence sees the same past
    np.testing.assert_allclose(prefix, before[:, :4], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_converted_params_load_into_nanogpt_both_ways(bias):
    torch, models, nanogpt_torch = _peers()
    config = dict(vocab_size=11, block_size=6, n_layer=2, n_head=2, n_embd=4, bias=bias)
    params = models.gpt(**config).init(np.random.default_rng(2), (-1, 6))
    sd = interop.to_nanogpt_state_dict(params)
    reference = nanogpt_torch.GPT(nanogpt_torch.GPTConfig(**config))
    assert list(sd) == list(reference.state_dict())
    reference.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    assert_same_state_dict(_numpy_state_dict(reference), sd)
    torch.manual_seed(2)
    theirs = _numpy_state_dict(nanogpt_torch.GPT(nanogpt_torch.GPTConfig(**config)))
    assert_same_state_dict(interop.to_nanogpt_state_dict(interop.from_nanogpt_state_dict(theirs)), theirs)


def _gpt2_shaped_dict(rng, vocab, positions, n_layer, d):
    """Random weights under Hugging Face GPT2LMHeadModel's names, Conv1D weights (in, out), with the
    mask buffers and the tied lm head, built here independently of the converters."""
    def normal(*shape, mean=0.0):
        return mean + 0.2 * rng.normal(size=shape)

    sd = {"transformer.wte.weight": normal(vocab, d), "transformer.wpe.weight": normal(positions, d)}
    for i in range(n_layer):
        h = f"transformer.h.{i}."
        sd |= {h + "ln_1.weight": normal(d, mean=1.0), h + "ln_1.bias": normal(d),
               h + "attn.bias": np.tril(np.ones((positions, positions), bool))[None, None],
               h + "attn.masked_bias": np.array(-1e4),
               h + "attn.c_attn.weight": normal(d, 3 * d), h + "attn.c_attn.bias": normal(3 * d),
               h + "attn.c_proj.weight": normal(d, d), h + "attn.c_proj.bias": normal(d),
               h + "ln_2.weight": normal(d, mean=1.0), h + "ln_2.bias": normal(d),
               h + "mlp.c_fc.weight": normal(d, 4 * d), h + "mlp.c_fc.bias": normal(4 * d),
               h + "mlp.c_proj.weight": normal(4 * d, d), h + "mlp.c_proj.bias": normal(d)}
    sd |= {"transformer.ln_f.weight": normal(d, mean=1.0), "transformer.ln_f.bias": normal(d),
           "lm_head.weight": sd["transformer.wte.weight"].copy()}
    return sd


def test_a_gpt2_shaped_dict_gives_the_reference_logits_with_the_tanh_gelu():
    torch, models, nanogpt_torch = _peers()
    vocab, positions, n_layer, n_head, d = 17, 12, 2, 2, 8
    hf = _gpt2_shaped_dict(np.random.default_rng(7), vocab, positions, n_layer, d)
    as_linear = {k: torch.from_numpy(np.ascontiguousarray(v.T if k.endswith(CONV1D_WEIGHTS) else v))
                 for k, v in hf.items() if not k.endswith((".attn.bias", ".attn.masked_bias"))}
    reference = nanogpt_torch.GPT(nanogpt_torch.GPTConfig(
        vocab_size=vocab, block_size=positions, n_layer=n_layer, n_head=n_head, n_embd=d,
        gelu_approximate="tanh")).double()
    reference.load_state_dict(as_linear, strict=True)
    idx = np.random.default_rng(8).integers(0, vocab, (2, 10))
    theirs, _ = reference(torch.from_numpy(idx), torch.from_numpy(idx))

    params = interop.from_gpt2_state_dict(hf)
    logits, _ = models.gpt(vocab, positions, n_layer, n_head, d, gelu_approximate=True).apply(params, idx)
    assert_close(logits, theirs, "logits")
    exact, _ = models.gpt(vocab, positions, n_layer, n_head, d).apply(params, idx)
    assert np.abs(exact - logits).max() > 1e-6              # the GELU form matters: the test can fail

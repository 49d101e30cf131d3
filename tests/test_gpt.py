"""models.gpt and models.generate: init, the KV cache, sampling, bad input.

The VJP of the whole model (the tied embedding included) is checked against finite differences by the
registry (test_registry.py, entry "models.gpt"); its equality with nanoGPT is in test_peer_nanogpt.py.
"""

import math

import numpy as np
import pytest

import fnlearn as fl


def _model(**kw):
    cfg = dict(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16)
    cfg.update(kw)
    return fl.models.gpt(**cfg)


def test_gpt_init_follows_nanogpt():
    model = fl.models.gpt(vocab_size=50, block_size=16, n_layer=3, n_head=4, n_embd=64)
    params = model.init(np.random.default_rng(0), (-1, 16), dtype=np.float64)
    assert sorted(params) == ["h", "ln_f", "wpe", "wte"] and list(params["h"]) == ["0", "1", "2"]
    block = params["h"]["1"]
    assert block["attn"]["qkv"]["w"].shape == (64, 192) and block["mlp"]["fc"]["w"].shape == (64, 256)
    for w in (params["wte"]["embeddings"], params["wpe"]["embeddings"], block["attn"]["qkv"]["w"],
              block["mlp"]["fc"]["w"]):
        assert abs(w.std() - 0.02) < 0.002
    for w in (block["attn"]["out"]["w"], block["mlp"]["proj"]["w"]):
        assert abs(w.std() - 0.02 / math.sqrt(6)) < 0.001
    for b in (block["attn"]["qkv"]["b"], block["mlp"]["proj"]["b"], params["ln_f"]["offset"]):
        assert not b.any()
    np.testing.assert_array_equal(block["ln_1"]["scale"], 1.0)
    assert all(leaf.dtype == np.float32 for leaf in fl.tree.tree_leaves(model.init(np.random.default_rng(0), (-1, 4))))


def test_gpt_without_bias_has_no_bias_leaves():
    model = _model(bias=False)
    params = model.init(np.random.default_rng(0), (-1, 8))
    paths = [p for p, _ in fl.tree.tree_flatten_with_path(params)[0]]
    assert not any(p.endswith("/b") or p.endswith("/offset") for p in paths)
    logits, vjp = model.apply(params, np.array([[1, 2, 3]]))
    grads, _ = vjp(np.ones_like(logits))
    assert [p for p, _ in fl.tree.tree_flatten_with_path(grads)[0]] == paths


def test_tied_embedding_gradient_is_the_sum_of_head_and_lookup():
    """The wte gradient equals the head's dlogits^T h plus the scatter of the input cotangent."""
    model = _model(n_layer=1)
    params = model.init(np.random.default_rng(0), (-1, 8), dtype=np.float64)
    ids = np.array([[1, 2, 1, 5]])
    logits, vjp = model.apply(params, ids)
    dy = np.random.default_rng(1).normal(size=logits.shape)
    grads, _ = vjp(dy)
    # perturb the table only where it acts as the head: the rows of ids 0, 3, 4, 6.. are unused inputs
    unused = [i for i in range(11) if i not in (1, 2, 5)]
    eps = 1e-6
    for row in unused[:3]:
        p2 = fl.tree.tree_map(np.copy, params)
        p2["wte"]["embeddings"][row, 0] += eps
        l2, _ = model.apply(p2, ids)
        fd = float(np.vdot(dy, l2 - logits)) / eps
        assert abs(fd - grads["wte"]["embeddings"][row, 0]) < 1e-5


def test_gpt_rejects_bad_ids_and_shapes():
    model = _model()
    params = model.init(np.random.default_rng(0), (-1, 8))
    with pytest.raises(TypeError, match="integer token ids.*got dtype float32"):
        model.apply(params, np.ones((1, 3), np.float32))
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 10\], got values from 0 to 11"):
        model.apply(params, np.array([[0, 11]]))
    with pytest.raises(ValueError, match="negative|Negative"):
        model.apply(params, np.array([[-1, 2]]))
    with pytest.raises(ValueError, match="9 tokens but block_size is 8.*Crop"):
        model.apply(params, np.zeros((1, 9), np.int64))
    with pytest.raises(ValueError, match=r"shape \(batch, time\).*ids\[None\]"):
        model.apply(params, np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="n_embd = 10 is not divisible by n_head = 4"):
        fl.models.gpt(11, 8, 1, 4, 10)
    with pytest.raises(ValueError, match="block_size is 8"):
        model.init(np.random.default_rng(0), (-1, 9))


def test_gpt_dropout_needs_rng_and_is_deterministic_given_it():
    model = _model(dropout=0.2)
    params = model.init(np.random.default_rng(0), (-1, 8))
    ids = np.array([[1, 2, 3, 4]])
    a, _ = model.apply(params, ids, rng=np.random.default_rng(3), train=True)
    b, _ = model.apply(params, ids, rng=np.random.default_rng(3), train=True)
    e, _ = model.apply(params, ids)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, e)
    with pytest.raises(ValueError, match="train=True with dropout needs rng"):
        model.apply(params, ids, train=True)
    with pytest.raises(ValueError, match=r"gpt\(.*dropout.*must be in \[0, 1\)"):
        _model(dropout=1.0)
    assert repr(model) == "gpt(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=0.2)"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bias", [True, False])
def test_cached_greedy_decoding_equals_uncached_token_for_token(dtype, bias):
    model = _model(bias=bias)
    params = model.init(np.random.default_rng(1), (-1, 8), dtype=dtype)
    # a sharper model than at init, so that greedy decoding does not sit on ties
    params = fl.tree.tree_map(lambda a: a * dtype(8.0) if a.ndim == 2 else a, params)
    prompt = np.array([[1, 2, 3], [4, 4, 9]])
    cached = fl.models.generate(model, params, prompt, 12, temperature=0.0)  # runs past block_size 8
    plain = fl.models.generate(model, params, prompt, 12, temperature=0.0, use_cache=False)
    assert cached.shape == (2, 15) and cached.dtype == np.int64
    np.testing.assert_array_equal(cached[:, :3], prompt)
    np.testing.assert_array_equal(cached, plain)
    # and the uncached path is nanoGPT's loop: argmax of the last logits of the cropped context
    out = prompt.copy()
    for _ in range(12):
        logits, _ = model.apply(params, out[:, -8:])
        out = np.concatenate([out, logits[:, -1].argmax(-1)[:, None]], axis=1)
    np.testing.assert_array_equal(plain, out)


def test_the_cache_runs_the_prompt_once_then_one_token_per_step():
    model = _model()
    params = model.init(np.random.default_rng(0), (-1, 8))
    decoder = model.apply.kv_decoder
    seen = []

    def spy(params, cache, ids, pos):
        seen.append((ids.shape[1], pos))
        return decoder.step(params, cache, ids, pos)

    spied = fl.Layer(model.init, model.apply)
    apply = lambda *a, **k: model.apply(*a, **k)  # noqa: E731
    apply.kv_decoder = decoder._replace(step=spy)
    spied = fl.Layer(model.init, apply)
    fl.models.generate(spied, params, np.array([[1, 2, 3]]), 7, temperature=0.0)
    # the prompt (3 tokens at 0), then single tokens at 3..7; at 8 tokens the window is full, and
    # the next token moves it: the last window is recomputed as a whole
    assert seen[:6] == [(3, 0), (1, 3), (1, 4), (1, 5), (1, 6), (1, 7)]
    assert seen[6] == (8, 0)


def test_sampling_uses_the_rng_and_top_k():
    model = _model()
    params = model.init(np.random.default_rng(0), (-1, 8))
    prompt = np.array([[1, 2]])
    a = fl.models.generate(model, params, prompt, 5, rng=np.random.default_rng(0))
    b = fl.models.generate(model, params, prompt, 5, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(a, b)
    draws = {tuple(fl.models.generate(model, params, prompt, 5, rng=np.random.default_rng(s))[0])
             for s in range(10)}
    assert len(draws) > 1  # near-uniform logits at init: samples differ
    greedy = fl.models.generate(model, params, prompt, 5, temperature=0.0)
    top1 = fl.models.generate(model, params, prompt, 5, top_k=1, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(greedy, top1)


def test_sampling_frequencies_follow_the_softmax():
    from fnlearn.models._generate import _pick
    logits = np.log(np.array([[0.1, 0.2, 0.7]] * 20000))
    picks = _pick(logits, 1.0, None, np.random.default_rng(0))
    np.testing.assert_allclose(np.bincount(picks, minlength=3) / 20000, [0.1, 0.2, 0.7], atol=0.015)
    picks = _pick(logits, 1.0, 2, np.random.default_rng(0))
    np.testing.assert_allclose(np.bincount(picks, minlength=3) / 20000, [0.0, 2 / 9, 7 / 9], atol=0.015)


def test_generate_errors():
    model = _model()
    params = model.init(np.random.default_rng(0), (-1, 8))
    with pytest.raises(ValueError, match="needs rng"):
        fl.models.generate(model, params, np.array([[1]]), 2)
    with pytest.raises(ValueError, match=r"shape \(batch, time\)"):
        fl.models.generate(model, params, np.array([1, 2]), 2, temperature=0.0)
    with pytest.raises(ValueError, match="temperature"):
        fl.models.generate(model, params, np.array([[1]]), 2, temperature=-1.0)
    with pytest.raises(ValueError, match="top_k"):
        fl.models.generate(model, params, np.array([[1]]), 2, top_k=0, rng=np.random.default_rng(0))


def test_value_and_grad_and_train_step_take_integer_ids():
    model = _model(n_layer=1)
    params = model.init(np.random.default_rng(0), (-1, 8), dtype=np.float64)
    ids, targets = np.array([[1, 2, 3, 4]]), np.array([[2, 3, 4, -100]])  # the last position ignored
    loss, grads = fl.value_and_grad(model.apply, fl.losses.softmax_cross_entropy)(params, ids, targets)
    logits, vjp = model.apply(params, ids)
    value, dlogits = fl.losses.softmax_cross_entropy(logits, targets)
    assert loss == value
    want, _ = vjp(dlogits)
    for (path, a), (_, b) in zip(fl.tree.tree_flatten_with_path(grads)[0], fl.tree.tree_flatten_with_path(want)[0]):
        np.testing.assert_array_equal(a, b, err_msg=path)
    opt = fl.optim.sgd(0.1)
    step = fl.train_step(model.apply, fl.losses.softmax_cross_entropy, opt)
    new_params, _, step_loss = step(params, opt.init(params), ids, targets)
    assert step_loss == value
    np.testing.assert_allclose(new_params["wte"]["embeddings"],
                               params["wte"]["embeddings"] - 0.1 * want["wte"]["embeddings"], rtol=1e-12)


def test_blocks_are_found_by_key_whatever_their_order():
    model = _model(n_layer=12)
    params = model.init(np.random.default_rng(0), (-1, 8))
    shuffled = dict(params, h={k: params["h"][k] for k in sorted(params["h"])})  # '0', '1', '10', ...
    ids = np.array([[1, 2, 3]])
    np.testing.assert_array_equal(model.apply(shuffled, ids)[0], model.apply(params, ids)[0])


def test_a_tiny_temperature_is_greedy_not_token_zero():
    from fnlearn.models._generate import _pick
    logits = np.array([[1.0, 5.0, 2.0], [3.0, -1.0, 0.0]])
    with np.errstate(all="raise"):
        np.testing.assert_array_equal(_pick(logits, 1e-308, None, np.random.default_rng(0)), [1, 0])


def test_generate_crops_other_models_with_block_size():
    model = _model(block_size=4)
    params = model.init(np.random.default_rng(0), (-1, 4))
    wrapped = fl.Layer(model.init, lambda p, x, **kw: model.apply(p, x, **kw))  # no kv_decoder
    prompt = np.array([[1, 2]])
    with pytest.raises(ValueError, match="block_size is 4"):
        fl.models.generate(wrapped, params, prompt, 5, temperature=0.0)
    out = fl.models.generate(wrapped, params, prompt, 5, temperature=0.0, block_size=4)
    np.testing.assert_array_equal(out, fl.models.generate(model, params, prompt, 5, temperature=0.0))

"""Wrappers, building blocks and schedules: known values, state contents, save/load, errors."""

import io
import math

import numpy as np
import pytest

from fnlearn import optim
from fnlearn.tree import TreeMismatchError, tree_flatten_with_path, tree_leaves, tree_structure, tree_unflatten


def _params():
    return {"0": {"w": np.full((2, 2), 2.0), "b": np.full(2, 2.0)}, "1": {"w": np.full(3, -1.0)}}


def _ones():
    return {"0": {"w": np.ones((2, 2)), "b": np.ones(2)}, "1": {"w": np.ones(3)}}


# ---- masks and groups -------------------------------------------------------------------------------

def test_adamw_mask_skips_decay_on_biases():
    params = _params()
    mask = {"0": {"w": True, "b": False}, "1": True}
    decayed = optim.adamw(0.1, weight_decay=0.5, mask=mask)
    plain = optim.adam(0.1)
    zero_grads = {"0": {"w": np.zeros((2, 2)), "b": np.zeros(2)}, "1": {"w": np.zeros(3)}}
    u, _ = decayed.update(zero_grads, decayed.init(params), params)
    u0, _ = plain.update(zero_grads, plain.init(params), params)
    np.testing.assert_allclose(u["0"]["w"], -0.1 * 0.5 * params["0"]["w"])
    np.testing.assert_array_equal(u["0"]["b"], u0["0"]["b"])  # no decay: the plain Adam update (0)
    np.testing.assert_allclose(u["1"]["w"], -0.1 * 0.5 * params["1"]["w"])


def test_masked_state_holds_no_arrays_for_masked_out_leaves():
    opt = optim.masked(optim.trace(0.9), lambda p: {"0": True, "1": False})
    state = opt.init(_params())
    assert state["inner"]["trace"]["1"] == {"w": None}
    assert [a.shape for a in tree_leaves(state)] == [(2, 2), (2,)]


def test_masked_rejects_a_mask_that_does_not_fit():
    opt = optim.masked(optim.scale(2.0), {"0": True})
    with pytest.raises(TreeMismatchError, match="masked: the mask/labels tree differs from the params at path '<root>'"):
        opt.init(_params())


def test_partition_uses_one_rule_per_group():
    params = _params()
    opt = optim.partition({"fast": optim.sgd(1.0), "slow": optim.sgd(0.01, momentum=0.9)},
                          {"0": {"w": "fast", "b": "slow"}, "1": "slow"})
    state = opt.init(params)
    assert set(state) == {"fast", "slow"}
    assert state["slow"]["momentum"]["0"]["w"] is None
    u, state = opt.update(_ones(), state, params)
    np.testing.assert_allclose(u["0"]["w"], -1.0)
    np.testing.assert_allclose(u["0"]["b"], -0.01)
    np.testing.assert_allclose(u["1"]["w"], -0.01)
    np.testing.assert_allclose(state["slow"]["momentum"]["1"]["w"], 1.0)


def test_partition_names_unknown_labels():
    with pytest.raises(ValueError, match="labels \\['oops'\\] have no transform"):
        optim.partition({"a": optim.sgd(0.1)}, {"0": "a", "1": "oops"}).init(_params())


# ---- MultiSteps, inject_hyperparams, apply_if_finite ---------------------------------------------------

def test_multisteps_averages_k_gradients():
    opt = optim.MultiSteps(optim.sgd(1.0), every_k_schedule=3)
    state = opt.init({"w": np.zeros(2)})
    outs = []
    for g in ([1.0, 2.0], [2.0, 2.0], [6.0, 2.0], [1.0, 1.0]):
        u, state = opt.update({"w": np.array(g)}, state)
        outs.append(u["w"])
    np.testing.assert_array_equal(outs[0], 0.0)
    np.testing.assert_array_equal(outs[1], 0.0)
    np.testing.assert_allclose(outs[2], [-3.0, -2.0])
    np.testing.assert_array_equal(outs[3], 0.0)
    assert state["mini_step"] == 1 and state["gradient_step"] == 1


def test_multisteps_schedule_of_k():
    opt = optim.MultiSteps(optim.sgd(1.0), every_k_schedule=lambda step: 1 if step < 2 else 2)
    state = opt.init({"w": np.zeros(1)})
    moved = []
    for _ in range(6):
        u, state = opt.update({"w": np.ones(1)}, state)
        moved.append(bool(u["w"].any()))
    assert moved == [True, True, False, True, False, True]


def test_inject_hyperparams_records_and_obeys_the_state():
    sched = optim.linear_schedule(0.1, 0.0, transition_steps=4)
    opt = optim.inject_hyperparams(optim.adam)(learning_rate=sched, b1=0.5)
    state = opt.init({"w": np.zeros(1)})
    assert state["hyperparams"] == {"learning_rate": 0.1, "b1": 0.5}
    _, state = opt.update({"w": np.ones(1)}, state)
    _, state = opt.update({"w": np.ones(1)}, state)
    assert state["hyperparams"]["learning_rate"] == pytest.approx(0.075)
    state["hyperparams"]["b1"] = 0.0  # b1 = 0: the first moment is the gradient itself
    u, state = opt.update({"w": np.ones(1)}, state)
    assert state["hyperparams"]["b1"] == 0.0
    m_hat = 1.0  # b1 = 0: m = g
    v_hat = 1.0
    np.testing.assert_allclose(u["w"], -0.05 * m_hat / (math.sqrt(v_hat) + 1e-8))


def test_inject_hyperparams_equals_the_plain_rule():
    params = _params()
    a, b = optim.inject_hyperparams(optim.sgd)(0.1, momentum=0.9, nesterov=True), optim.sgd(0.1, 0.9, True)
    sa, sb = a.init(params), b.init(params)
    for _ in range(3):
        ua, sa = a.update(_ones(), sa, params)
        ub, sb = b.update(_ones(), sb, params)
    for x, y in zip(tree_leaves(ua), tree_leaves(ub)):
        np.testing.assert_array_equal(x, y)


def test_apply_if_finite_skips_counts_and_gives_up_after_the_limit():
    opt = optim.apply_if_finite(optim.sgd(1.0, momentum=0.5), max_consecutive_errors=2)
    state = opt.init({"w": np.zeros(1)})
    _, state = opt.update({"w": np.ones(1)}, state)
    kept = state["inner"]
    bad = {"w": np.array([np.inf])}
    u, state = opt.update(bad, state)
    assert state["inner"] is kept and not u["w"].any()
    u, state = opt.update(bad, state)
    assert state["notfinite_count"] == 2 and not u["w"].any()
    u, state = opt.update(bad, state)  # third in a row > 2: applied
    assert np.isinf(u["w"]).all() and state["total_notfinite"] == 3
    _, state = opt.update({"w": np.ones(1)}, state)
    assert state["notfinite_count"] == 0 and state["last_finite"] and state["total_notfinite"] == 3


# ---- building blocks ---------------------------------------------------------------------------------

def test_clip_by_global_norm_known_value_and_no_op_below():
    grads = {"a": np.array([3.0]), "b": np.array([[4.0]])}
    u, _ = optim.clip_by_global_norm(2.5).update(grads, {})
    np.testing.assert_allclose(u["a"], [1.5])
    np.testing.assert_allclose(u["b"], [[2.0]])
    u, _ = optim.clip_by_global_norm(5.0).update(grads, {})
    np.testing.assert_array_equal(u["a"], [3.0])


def test_chain_composes_left_to_right():
    opt = optim.chain(optim.clip(1.0), optim.scale(-0.5))
    u, state = opt.update({"w": np.array([-3.0, 0.5])}, opt.init(None))
    np.testing.assert_allclose(u["w"], [0.5, -0.25])
    assert state == {"0": {}, "1": {}}
    with pytest.raises(TypeError, match="chain: argument 1 must be an Optimizer"):
        optim.chain(optim.clip(1.0), 0.5)


def test_state_saves_and_loads_by_path_without_pickle():
    """A state flattened to {path: array}, written with np.savez, read back, resumes identically."""
    params = _params()
    opt = optim.chain(optim.clip_by_global_norm(10.0), optim.nadam(0.01))
    state = opt.init(params)
    for _ in range(2):
        _, state = opt.update(_ones(), state, params)
    pairs, treedef = tree_flatten_with_path(state)
    buffer = io.BytesIO()
    np.savez(buffer, **{path: np.asarray(leaf) for path, leaf in pairs})
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as data:
        loaded = tree_unflatten(treedef, [data[path] for path, _ in pairs])
    u_a, s_a = opt.update(_ones(), state, params)
    u_b, s_b = opt.update(_ones(), loaded, params)
    for x, y in zip(tree_leaves((u_a, s_a)), tree_leaves((u_b, s_b))):
        np.testing.assert_array_equal(x, y)
    assert tree_structure(s_a) == tree_structure(s_b)


# ---- schedules ---------------------------------------------------------------------------------------

def test_schedules_known_values():
    assert optim.constant_schedule(0.3)(123) == 0.3
    lin = optim.linear_schedule(1.0, 3.0, transition_steps=4, transition_begin=2)
    assert [lin(c) for c in (0, 2, 4, 6, 9)] == [1.0, 1.0, 2.0, 3.0, 3.0]
    cos = optim.cosine_decay_schedule(2.0, decay_steps=4, alpha=0.5)
    assert [cos(c) for c in (0, 2, 4, 8)] == pytest.approx([2.0, 1.5, 1.0, 1.0])
    exp = optim.exponential_decay(1.0, transition_steps=10, decay_rate=0.1, end_value=0.05)
    assert [exp(c) for c in (0, 5, 10, 30)] == pytest.approx([1.0, 0.1 ** 0.5, 0.1, 0.05])
    pw = optim.piecewise_constant_schedule(0.1, {3: 0.1, 1: 2.0})
    assert [pw(c) for c in (0, 1, 2, 3)] == pytest.approx([0.1, 0.2, 0.2, 0.02])


def test_warmup_cosine_decay_and_join():
    s = optim.warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps=4, decay_steps=12, end_value=0.1)
    assert [s(c) for c in (0, 2, 4)] == pytest.approx([0.0, 0.5, 1.0])
    assert s(8) == pytest.approx(0.1 + 0.9 * 0.5)
    assert s(12) == pytest.approx(0.1) and s(100) == pytest.approx(0.1)
    joined = optim.join_schedules([lambda c: 10.0 + c, lambda c: -float(c)], [5])
    assert [joined(c) for c in (4, 5, 7)] == [14.0, 0.0, -2.0]
    with pytest.raises(ValueError, match="one more schedule than boundaries"):
        optim.join_schedules([optim.constant_schedule(1.0)], [3])
    with pytest.raises(ValueError, match="decay_steps must be a positive integer"):
        optim.cosine_decay_schedule(1.0, 0)


def test_every_rule_takes_a_schedule():
    seen = []

    def lr(count):
        seen.append(count)
        return 0.01

    for rule in (optim.sgd, optim.adam, optim.adamw, optim.amsgrad, optim.adamax, optim.nadam,
                 optim.rmsprop, optim.adagrad, optim.adadelta, optim.lion, optim.lamb):
        seen.clear()
        opt = rule(lr)
        params = {"w": np.ones(2)}
        state = opt.init(params)
        for _ in range(2):
            _, state = opt.update({"w": np.ones(2)}, state, params)
        assert seen == [0, 1], rule.__name__

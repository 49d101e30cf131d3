"""Issue 16's fixes: 0-d leaves, schedules at degenerate arguments, schedule outputs checked, negative
learning rates, ``freeze``, and the optax option names (``nesterov``, ``eps_in_sqrt``)."""

import warnings

import numpy as np
import pytest

from fnlearn import optim


def test_a_negative_learning_rate_ascends():
    params = {"w": np.zeros(2)}
    for opt in (optim.sgd(-0.5), optim.adam(-0.5), optim.scale_by_learning_rate(-0.5)):
        u, _ = opt.update({"w": np.array([1.0, -1.0])}, opt.init(params), params)
        assert u["w"][0] > 0 > u["w"][1]


@pytest.mark.parametrize("bad, error, match", [
    ("0.1", TypeError, r"the schedule \w+ returned '0.1' at step count 2; a schedule must return a real number"),
    (None, TypeError, "returned None at step count 2"),
    (float("nan"), ValueError, "returned nan at step count 2; a hyperparameter must be finite"),
    (np.array([0.1, 0.2]), TypeError, r"returned array\(\[0.1, 0.2\]\) at step count 2"),
])
def test_a_schedule_that_returns_a_non_number_is_named(bad, error, match):
    def lr_schedule(count):
        return 0.1 if count < 2 else bad

    opt = optim.sgd(lr_schedule)
    params = {"w": np.zeros(1)}
    state = opt.init(params)
    for _ in range(2):
        _, state = opt.update({"w": np.ones(1)}, state)
    with pytest.raises(error, match=match):
        opt.update({"w": np.ones(1)}, state)


def test_schedule_outputs_that_are_numbers_are_accepted():
    for value in (np.float32(0.5), np.array(0.5), 1, np.int64(1)):
        opt = optim.sgd(lambda c, v=value: v)
        u, _ = opt.update({"w": np.ones(1)}, opt.init({"w": np.zeros(1)}))
        assert u["w"].dtype == np.float64 and u["w"][0] == -float(value)


def test_exponential_decay_end_value_bounds_every_count_like_optax():
    s = optim.exponential_decay(1.0, transition_steps=1, decay_rate=1.0, transition_begin=3, end_value=0.1)
    assert [s(c) for c in range(5)] == [0.1] * 5
    s = optim.exponential_decay(1.0, transition_steps=1, decay_rate=0.5, transition_begin=2, end_value=0.2)
    assert [s(c) for c in range(6)] == [1.0, 1.0, 1.0, 0.5, 0.25, 0.2]
    s = optim.exponential_decay(1.0, transition_steps=1, decay_rate=2.0, end_value=3.0)
    assert [s(c) for c in range(4)] == [1.0, 2.0, 3.0, 3.0]


def test_a_growing_exponential_decay_is_capped_even_past_the_float_range():
    s = optim.exponential_decay(0.1, transition_steps=3, decay_rate=1.5, end_value=0.5)
    assert s(100_000) == 0.5
    unbounded = optim.sgd(optim.exponential_decay(0.1, transition_steps=3, decay_rate=1.5))
    state = {"count": 100_000}
    with pytest.raises(ValueError, match="returned inf at step count 100000"):
        unbounded.update({"w": np.ones(1)}, state)


@pytest.mark.parametrize("make, why", [
    (lambda: optim.exponential_decay(0.3, transition_steps=0, decay_rate=0.5), "transition_steps=0"),
    (lambda: optim.exponential_decay(0.3, transition_steps=-2, decay_rate=0.5), "transition_steps=-2"),
    (lambda: optim.exponential_decay(0.3, transition_steps=3, decay_rate=0.0), "decay_rate=0"),
    (lambda: optim.polynomial_schedule(0.3, 0.0, 2, transition_steps=0), "transition_steps=0"),
    (lambda: optim.linear_schedule(0.3, 0.0, transition_steps=-1), "transition_steps=-1"),
])
def test_degenerate_schedules_are_constant_with_a_warning(make, why):
    with pytest.warns(UserWarning, match=f"{why} makes this the constant schedule init_value=0.3"):
        s = make()
    assert [s(c) for c in (0, 1, 5, 100)] == [0.3] * 4


def test_an_ordinary_schedule_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        optim.exponential_decay(1.0, 2, 0.5)
        optim.linear_schedule(1.0, 0.0, 3)


def test_freeze_zeroes_masked_leaves_and_masked_passes_raw_updates():
    params = {"w": np.ones(2), "b": np.ones(2)}
    grads = {"w": np.full(2, 3.0), "b": np.full(2, 3.0)}
    frozen = optim.chain(optim.sgd(0.1), optim.freeze({"w": True, "b": False}))
    u, _ = frozen.update(grads, frozen.init(params), params)
    np.testing.assert_array_equal(u["w"], [0.0, 0.0])
    np.testing.assert_allclose(u["b"], [-0.3, -0.3])
    raw = optim.masked(optim.sgd(0.1), {"w": False, "b": True})
    u, _ = raw.update(grads, raw.init(params), params)
    np.testing.assert_array_equal(u["w"], grads["w"])  # documented: the raw gradient, not frozen
    assert "freeze" in optim.masked.__doc__ and "partition" in optim.masked.__doc__


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_0d_leaves_work_in_the_in_place_rules(dtype):
    """Issue 16: ``np.sqrt(v_hat, out=v_hat)`` failed for a 0-d leaf (``v / c`` is a NumPy scalar)."""
    rules = [optim.adam(0.1), optim.adamw(0.1), optim.amsgrad(0.1), optim.nadam(0.1), optim.rmsprop(0.1),
             optim.rmsprop(0.1, centered=True, momentum=0.9), optim.adagrad(0.1), optim.lamb(0.1),
             optim.adamax(0.1), optim.MultiSteps(optim.adam(0.1), 2)]
    for opt in rules:
        params, same_as_1d = {"t": np.asarray(1.5, dtype)}, {"t": np.array([1.5], dtype)}
        state, state_1d = opt.init(params), opt.init(same_as_1d)
        for step in range(3):
            g = 0.5 - step
            u, state = opt.update({"t": np.asarray(g, dtype)}, state, params)
            params = optim.apply_updates(params, u)
            u_1d, state_1d = opt.update({"t": np.array([g], dtype)}, state_1d, same_as_1d)
            same_as_1d = optim.apply_updates(same_as_1d, u_1d)
        assert type(u["t"]) is np.ndarray and u["t"].shape == () and u["t"].dtype == dtype
        assert type(params["t"]) is np.ndarray and params["t"].dtype == dtype
        np.testing.assert_array_equal(params["t"], same_as_1d["t"][0])


def test_adam_nesterov_and_rmsprop_eps_in_sqrt_follow_their_formulas():
    b1, b2, eps, lr = 0.9, 0.999, 1e-8, 0.1
    g = np.array([0.3, -2.0])
    opt = optim.adam(lr, nesterov=True)
    u, _ = opt.update({"w": g}, opt.init({"w": g}))
    m, v = (1 - b1) * g, (1 - b2) * g * g
    m_hat = b1 * m / (1 - b1 ** 2) + (1 - b1) * g / (1 - b1)
    np.testing.assert_allclose(u["w"], -lr * m_hat / (np.sqrt(v / (1 - b2)) + eps), rtol=1e-14)
    opt = optim.rmsprop(lr, decay=0.9, eps=0.5, eps_in_sqrt=True)
    u, _ = opt.update({"w": g}, opt.init({"w": g}))
    np.testing.assert_allclose(u["w"], -lr * g / np.sqrt(0.1 * g * g + 0.5), rtol=1e-14)


def test_chains_pass_the_loss_to_the_transforms_that_take_it():
    params = {"w": np.ones(2)}
    opt = optim.chain(optim.sgd(1.0), optim.reduce_on_plateau(factor=0.5, patience=1))
    state = opt.init(params)
    for loss in (1.0, 1.0):  # the second does not improve: the scale halves
        u, state = opt.update({"w": np.ones(2)}, state, params, value=loss)
    np.testing.assert_array_equal(u["w"], [-0.5, -0.5])
    named = optim.named_chain(("clip", optim.clip(0.5)), ("polyak", optim.polyak_sgd(max_learning_rate=10.0)))
    u, _ = named.update({"w": np.ones(2)}, named.init(params), params, value=0.25)
    np.testing.assert_allclose(u["w"], [-0.5 * 0.25 / 0.5] * 2)  # (f - f_min) / ||d||^2 = 0.25 / 0.5
    with pytest.raises(TypeError, match=r"no transform in this chain takes the keyword argument\(s\) \['valu'\]"):
        opt.update({"w": np.ones(2)}, state, params, valu=1.0)
    injected = optim.inject_hyperparams(optim.polyak_sgd)(max_learning_rate=10.0)
    u, state = injected.update({"w": np.ones(2)}, injected.init(params), params, value=0.5)
    np.testing.assert_allclose(u["w"], [-0.25, -0.25])  # 0.5 / ||g||^2 = 0.25
    assert state["hyperparams"]["max_learning_rate"] == 10.0

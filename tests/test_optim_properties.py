"""Hypothesis properties over a registry of every optimizer: structure, dtypes, composition, masks,
gradient accumulation, and convergence on a random convex quadratic and on Rosenbrock."""

import warnings

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fnlearn import optim
from fnlearn.tree import tree_leaves, tree_map, tree_structure

# name -> factory. Every public rule, some non-default options, and the wrappers around a rule.
REGISTRY = {
    "sgd": lambda: optim.sgd(0.1),
    "sgd_momentum": lambda: optim.sgd(0.1, momentum=0.9, dampening=0.1, weight_decay=0.01),
    "sgd_nesterov": lambda: optim.sgd(optim.linear_schedule(0.1, 0.01, 5), momentum=0.9, nesterov=True),
    "adam": lambda: optim.adam(0.01, weight_decay=0.01),
    "adamw": lambda: optim.adamw(0.01),
    "amsgrad": lambda: optim.amsgrad(0.01),
    "adamax": lambda: optim.adamax(0.01),
    "nadam": lambda: optim.nadam(0.01),
    "rmsprop": lambda: optim.rmsprop(0.01),
    "rmsprop_centered_momentum": lambda: optim.rmsprop(0.01, centered=True, momentum=0.9),
    "adagrad": lambda: optim.adagrad(0.1),
    "adadelta": lambda: optim.adadelta(),
    "lion": lambda: optim.lion(0.01),
    "lamb": lambda: optim.lamb(0.01, weight_decay=0.01),
    "chain_clip_adam": lambda: optim.chain(optim.clip_by_global_norm(1.0), optim.clip(0.5), optim.adam(0.01)),
    "masked_trace": lambda: optim.masked(optim.trace(0.9), lambda p: tree_map(lambda x: x.ndim > 1, p)),
    "partition": lambda: optim.partition({"a": optim.adam(0.01), "b": optim.set_to_zero()},
                                         lambda p: tree_map(lambda x: "a" if x.ndim > 1 else "b", p)),
    "inject_adam": lambda: optim.inject_hyperparams(optim.adam)(optim.cosine_decay_schedule(0.01, 10)),
    "apply_if_finite": lambda: optim.apply_if_finite(optim.sgd(0.1, momentum=0.5), 2),
    "multisteps": lambda: optim.MultiSteps(optim.adam(0.01), every_k_schedule=2),
    "schedule_trust_ratio": lambda: optim.chain(optim.scale_by_trust_ratio(),
                                                optim.scale_by_schedule(lambda c: -0.1 / (1 + c))),
    "sgd_schedule": lambda: optim.sgd(optim.exponential_decay(0.1, 1, 0.5)),
    "named_chain_of_scales": lambda: optim.named_chain(
        ("half", optim.scale(0.5)), ("id", optim.identity()),
        ("lr", optim.scale_by_learning_rate(optim.linear_schedule(0.1, 0.01, 2)))),
}
def _polyak_sgd_with_a_loss(max_learning_rate=1.0, scaling=1.0, f_min=0.0, eps=0.0, variant="sps"):
    """polyak_sgd's update needs the loss; the registry's problems pass a fixed one."""
    opt = optim.polyak_sgd(max_learning_rate, scaling, f_min, eps, variant)
    return optim.Optimizer(opt.init, lambda g, state, params=None: opt.update(g, state, params, value=1.0))


def _reduce_on_plateau_with_a_loss(factor=0.1, patience=10):
    """reduce_on_plateau's update needs the loss; a constant one, so the scale falls every patience steps."""
    opt = optim.reduce_on_plateau(factor, patience)
    return optim.Optimizer(opt.init, lambda g, state, params=None: opt.update(g, state, params, value=1.0))


def _lookahead_adam(sync_period=2, slow_step_size=0.5):
    return optim.lookahead(optim.adam(0.01), sync_period, slow_step_size)


def _sam_sgd(sync_period=2):
    return optim.sam(optim.sgd(0.1), optim.chain(optim.normalize(), optim.sgd(0.05)), sync_period)


def _sam_opaque_with_a_gradient(sync_period=2):
    """Opaque SAM asks for gradients at the ascended points: those of sum(p**2)."""
    opt = optim.sam(optim.sgd(0.1), optim.sgd(0.05), sync_period, opaque_mode=True)
    grad_fn = lambda p, i: tree_map(lambda x: 2 * x, p)  # noqa: E731
    return optim.Optimizer(opt.init, lambda g, state, params=None: opt.update(g, state, params, grad_fn=grad_fn))


def _mechanize_sgd(weight_decay=1e-2):
    return optim.mechanize(optim.sgd(0.1, momentum=0.5), weight_decay)


# Rules and transforms as (constructor, keyword arguments), so that inject_hyperparams can rebuild them;
# each also joins REGISTRY under its name.
RULES = {
    "radam": (optim.radam, dict(learning_rate=0.01)),
    "radam_l2": (optim.radam, dict(learning_rate=0.01, weight_decay=0.1)),
    "radam_decoupled": (optim.radam, dict(learning_rate=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    "nadamw": (optim.nadamw, dict(learning_rate=0.01)),
    "rprop": (optim.rprop, dict(learning_rate=0.01, eta_minus=0.4)),
    "asgd": (optim.asgd, dict(learning_rate=0.01, lambd=0.1, t0=1, weight_decay=0.01)),
    "adam_nesterov": (optim.adam, dict(learning_rate=0.01, nesterov=True)),
    "rmsprop_eps_in_sqrt": (optim.rmsprop, dict(learning_rate=0.01, eps_in_sqrt=True, centered=True)),
    "scale_by_sign": (optim.scale_by_sign, dict()),
    "centralize": (optim.centralize, dict()),
    "clip_by_block_rms": (optim.clip_by_block_rms, dict(threshold=0.5)),
    "adaptive_grad_clip": (optim.adaptive_grad_clip, dict(clipping=0.05, eps=1e-3)),
    "zero_nans": (optim.zero_nans, dict()),
    "keep_params_nonnegative": (optim.keep_params_nonnegative, dict()),
    "ema": (optim.ema, dict(decay=0.9)),
    "ema_biased": (optim.ema, dict(decay=0.9, debias=False)),
    "apply_every": (optim.apply_every, dict(k=2)),
    "add_noise": (optim.add_noise, dict(eta=0.01, gamma=0.55, key=3)),
    "freeze": (optim.freeze, dict(mask=lambda p: tree_map(lambda x: x.ndim > 1, p))),
    "adabelief": (optim.adabelief, dict(learning_rate=0.01, nesterov=True)),
    "yogi": (optim.yogi, dict(learning_rate=0.01)),
    "novograd": (optim.novograd, dict(learning_rate=0.01, weight_decay=0.01)),
    "adan": (optim.adan, dict(learning_rate=0.01, weight_decay=0.01)),
    "adamaxw": (optim.adamaxw, dict(learning_rate=0.01)),
    "lars": (optim.lars, dict(learning_rate=0.1, weight_decay=0.01, nesterov=True)),
    "sign_sgd": (optim.sign_sgd, dict(learning_rate=0.01)),
    "signum": (optim.signum, dict(learning_rate=0.01)),
    "optimistic_gradient_descent": (optim.optimistic_gradient_descent, dict(learning_rate=0.01, alpha=0.7, beta=0.1)),
    "sm3": (optim.sm3, dict(learning_rate=0.1)),
    "fromage": (optim.fromage, dict(learning_rate=0.01)),
    "noisy_sgd": (optim.noisy_sgd, dict(learning_rate=0.01, key=2)),
    "polyak_sgd": (_polyak_sgd_with_a_loss, dict(max_learning_rate=0.5, f_min=-1.0)),
    "adopt": (optim.adopt, dict(learning_rate=0.01, nesterov=True)),
    "ademamix": (optim.ademamix, dict(learning_rate=0.01, weight_decay=0.01)),
    "prodigy": (optim.prodigy, dict(learning_rate=1.0, weight_decay=0.01)),
    "dog": (optim.dog, dict(learning_rate=1.0, weight_decay=0.01)),
    "cocob": (optim.cocob, dict(learning_rate=1.0)),
    "schedule_free_adamw": (optim.schedule_free_adamw, dict(learning_rate=0.01, warmup_steps=2, weight_decay=0.01)),
    "reduce_on_plateau": (_reduce_on_plateau_with_a_loss, dict(factor=0.5, patience=1)),
    "lookahead": (_lookahead_adam, dict(sync_period=2, slow_step_size=0.5)),
    "mechanize": (_mechanize_sgd, dict(weight_decay=0.01)),
    "adafactor": (optim.adafactor, dict(learning_rate=0.01, min_dim_size_to_factor=2, momentum=0.9,
                                        weight_decay_rate=0.01)),
    "muon": (optim.muon, dict(learning_rate=0.01, weight_decay=0.01, adaptive=True)),
    # the rules that were there before issue 16, through inject_hyperparams too
    "sgd_kw": (optim.sgd, dict(learning_rate=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    "adam_kw": (optim.adam, dict(learning_rate=0.01, weight_decay=0.01)),
    "adamw_kw": (optim.adamw, dict(learning_rate=0.01)),
    "amsgrad_kw": (optim.amsgrad, dict(learning_rate=0.01)),
    "adamax_kw": (optim.adamax, dict(learning_rate=0.01)),
    "nadam_kw": (optim.nadam, dict(learning_rate=0.01)),
    "rmsprop_kw": (optim.rmsprop, dict(learning_rate=0.01, centered=True, momentum=0.9)),
    "adagrad_kw": (optim.adagrad, dict(learning_rate=0.1)),
    "adadelta_kw": (optim.adadelta, dict(learning_rate=1.0)),
    "lion_kw": (optim.lion, dict(learning_rate=0.01)),
    "lamb_kw": (optim.lamb, dict(learning_rate=0.01, weight_decay=0.01)),
    "clip_kw": (optim.clip, dict(max_delta=0.5)),
    "clip_by_global_norm_kw": (optim.clip_by_global_norm, dict(max_norm=1.0)),
    "trace_kw": (optim.trace, dict(decay=0.9, nesterov=True)),
    "scale_by_trust_ratio_kw": (optim.scale_by_trust_ratio, dict(trust_coefficient=0.5)),
    "sam": (_sam_sgd, dict(sync_period=2)),
    "sam_opaque": (_sam_opaque_with_a_gradient, dict(sync_period=3)),
    "normalize": (optim.normalize, dict()),
}
REGISTRY.update({name: (lambda fn=fn, kw=kw: fn(**kw)) for name, (fn, kw) in RULES.items()})
# The rules that declare a scalar rule (their updates are a number times the gradients).
SCALAR = {"sgd", "sgd_schedule", "named_chain_of_scales"}


@st.composite
def param_trees(draw):
    """A params-like tree: layers "0", "1", ... of {"w": (m, n), "b": (n,)}, sometimes an empty layer,
    sometimes a tuple holding a 0-d leaf and a vector."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    sizes = draw(st.lists(st.integers(1, 4), min_size=2, max_size=4))
    params = {}
    for i, (m, n) in enumerate(zip(sizes, sizes[1:])):
        params[str(i)] = {"w": rng.normal(size=(m, n)).astype(dtype), "b": rng.normal(size=n).astype(dtype)}
    if draw(st.booleans()):
        params["act"] = {}
    if draw(st.booleans()):  # a 0-d leaf (a temperature, a scale) inside a tuple
        params["extra"] = (np.asarray(rng.normal(), dtype), rng.normal(size=2).astype(dtype))
    grads = [tree_map(lambda x: rng.normal(size=x.shape).astype(dtype), params) for _ in range(3)]
    return params, grads


def _run(opt, params, grads):
    state0 = opt.init(params)
    state, all_updates = state0, []
    for g in grads:
        updates, state = opt.update(g, state, params)
        params = optim.apply_updates(params, updates)
        all_updates.append(updates)
    return state0, state, all_updates, params


def _shapes_dtypes(tree):
    return [(np.shape(x), getattr(x, "dtype", type(x))) for x in tree_leaves(tree)]


@pytest.mark.parametrize("name", sorted(REGISTRY))
@settings(max_examples=25)  # about 60 entries: the entries, not the examples, are what varies most
@given(data=param_trees())
def test_structure_and_dtype_are_preserved(name, data):
    params, grads = data
    state0, state, all_updates, new_params = _run(REGISTRY[name](), params, grads)
    assert tree_structure(state) == tree_structure(state0)
    assert [s for s, _ in _shapes_dtypes(state)] == [s for s, _ in _shapes_dtypes(state0)]
    for updates in all_updates:
        assert tree_structure(updates) == tree_structure(params)
        assert _shapes_dtypes(updates) == _shapes_dtypes(params)
    assert _shapes_dtypes(new_params) == _shapes_dtypes(params)
    dtype = tree_leaves(params)[0].dtype
    assert all(x.dtype == dtype for x in tree_leaves(state) if isinstance(x, np.ndarray)), \
        f"{name}: state arrays must have the params' dtype {dtype}"


@pytest.mark.parametrize("name", sorted(RULES))
@settings(max_examples=10)
@given(data=param_trees())
def test_inject_hyperparams_gives_the_same_updates(name, data):
    """Every rule and transform through inject_hyperparams: the same updates, and its numeric
    hyperparameters readable in the state."""
    params, grads = data
    fn, kwargs = RULES[name]
    _, _, want, _ = _run(fn(**kwargs), params, grads)
    opt = optim.inject_hyperparams(fn)(**kwargs)
    _, state, got, _ = _run(opt, params, grads)
    for a, b in zip(tree_leaves(got), tree_leaves(want)):
        np.testing.assert_array_equal(a, b)
    numeric = {k for k, v in kwargs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert set(state["hyperparams"]) == numeric


@pytest.mark.parametrize("name", sorted(n for n in REGISTRY if n != "multisteps"))
@settings(max_examples=10)
@given(data=param_trees(), k=st.integers(1, 3))
def test_every_rule_inside_multisteps(name, data, k):
    """MultiSteps(rule, k): zeros for k-1 calls, then the rule's step on the mean gradient (here k
    calls with the same g, so exactly the rule's step on g), with the params' dtypes kept."""
    params, grads = data
    opt = optim.MultiSteps(REGISTRY[name](), every_k_schedule=k)
    state = opt.init(params)
    for i in range(k):
        updates, state = opt.update(grads[0], state, params)
    inner = REGISTRY[name]()
    want, _ = inner.update(grads[0], inner.init(params), params)
    assert _shapes_dtypes(updates) == _shapes_dtypes(params)
    for a, b in zip(tree_leaves(updates), tree_leaves(want)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(REGISTRY))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_0d_leaf_gives_0d_arrays(name, dtype):
    """A tree holding 0-d leaves (a temperature) beside a matrix: every update and state array keeps
    shape () and the dtype, and the 0-d leaf moves as the same value in a 1-element array would
    (elementwise rules; ``centralize``, ``adaptive_grad_clip`` and the masks treat a matrix and a
    scalar differently, so only the scalar is compared)."""
    rng = np.random.default_rng(0)
    params = {"t": np.asarray(0.7, dtype), "w": rng.normal(size=(2, 3)).astype(dtype)}
    like_1d = {"t": np.array([0.7], dtype), "w": params["w"]}
    opt, opt_1d = REGISTRY[name](), REGISTRY[name]()
    state, state_1d = opt.init(params), opt_1d.init(like_1d)
    for step in range(3):
        g = {"t": np.asarray(0.3 - 0.4 * step, dtype), "w": rng.normal(size=(2, 3)).astype(dtype)}
        updates, state = opt.update(g, state, params)
        params = optim.apply_updates(params, updates)
        updates_1d, state_1d = opt_1d.update({"t": g["t"].reshape(1), "w": g["w"]}, state_1d, like_1d)
        like_1d = optim.apply_updates(like_1d, updates_1d)
        assert type(updates["t"]) is np.ndarray and updates["t"].shape == () and updates["t"].dtype == dtype
    assert type(params["t"]) is np.ndarray and params["t"].dtype == dtype
    np.testing.assert_allclose(params["t"], like_1d["t"][0], rtol=4 * np.finfo(dtype).eps)


@pytest.mark.parametrize("name", sorted(REGISTRY))
@settings(max_examples=10)
@given(data=param_trees())
def test_chain_of_one_equals_the_transform(name, data):
    params, grads = data
    _, _, ours, _ = _run(REGISTRY[name](), params, grads)
    _, _, chained, _ = _run(optim.chain(REGISTRY[name]()), params, grads)
    for a, b in zip(tree_leaves(ours), tree_leaves(chained)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(REGISTRY))
@given(data=param_trees())
def test_a_declared_scalar_rule_tells_the_truth(name, data):
    """``scalar_rule(opt)(state) == (f, s)`` promises ``update(g, state) == (f * g, s)``: checked over
    three steps against ``update`` itself (train_step relies on it)."""
    params, grads = data
    opt = REGISTRY[name]()
    rule = optim.scalar_rule(opt)
    assert (rule is not None) == (name in SCALAR)
    if rule is None:
        return
    state = opt.init(params)
    for g in grads:
        updates, new_state = opt.update(g, state, params)
        factor, rule_state = rule(state)
        assert isinstance(factor, float)
        assert rule_state == new_state
        for u, gl in zip(tree_leaves(updates), tree_leaves(g)):
            np.testing.assert_allclose(u, gl * factor, rtol=4 * np.finfo(gl.dtype).eps, atol=0)
        state = new_state


@pytest.mark.parametrize("name", ["sgd_momentum", "adam", "lamb", "rmsprop_centered_momentum", "lion"])
@given(data=param_trees(), bits=st.lists(st.booleans(), min_size=8, max_size=8))
def test_masked_leaves_are_untouched(name, data, bits):
    params, grads = data
    flags = iter(bits * 2)
    mask = tree_map(lambda x: next(flags), params)
    _, _, all_updates, _ = _run(optim.masked(REGISTRY[name](), mask), params, grads)
    for updates, g in zip(all_updates, grads):
        for u, gg, m in zip(tree_leaves(updates), tree_leaves(g), tree_leaves(mask)):
            if not m:
                np.testing.assert_array_equal(u, gg)


@pytest.mark.parametrize("name", ["sgd_momentum", "adam", "nadam", "adadelta", "lamb", "chain_clip_adam"])
@given(data=param_trees(), k=st.integers(1, 4))
def test_multisteps_k_steps_of_g_equal_one_step_of_g(name, data, k):
    params, grads = data
    g = grads[0]
    opt = optim.MultiSteps(REGISTRY[name](), every_k_schedule=k)
    state = opt.init(params)
    for i in range(k):
        updates, state = opt.update(g, state, params)
        if i < k - 1:
            assert not any(u.any() for u in tree_leaves(updates))
    inner = REGISTRY[name]()
    want, _ = inner.update(g, inner.init(params), params)
    for a, b in zip(tree_leaves(updates), tree_leaves(want)):
        np.testing.assert_array_equal(a, b)


# ---- convergence -------------------------------------------------------------------------------------

def _cd(lr, steps):
    return optim.cosine_decay_schedule(lr, steps)


# rule -> a factory of the number of steps, with sensible hyperparameters for the problem.
QUADRATIC = {
    "sgd": lambda n: optim.sgd(0.05),
    "sgd_nesterov": lambda n: optim.sgd(0.02, momentum=0.9, nesterov=True),
    "adam": lambda n: optim.adam(_cd(0.1, n)),
    "adamw": lambda n: optim.adamw(_cd(0.1, n), weight_decay=0.0),
    "amsgrad": lambda n: optim.amsgrad(_cd(0.1, n)),
    "adamax": lambda n: optim.adamax(_cd(0.1, n), b2=0.99),
    "nadam": lambda n: optim.nadam(_cd(0.1, n)),
    "rmsprop": lambda n: optim.rmsprop(_cd(0.02, n), momentum=0.5),
    "adagrad": lambda n: optim.adagrad(0.5),
    "adadelta": lambda n: optim.adadelta(_cd(10.0, n), rho=0.9, eps=1e-4),
    "lion": lambda n: optim.lion(_cd(0.05, n), weight_decay=0.0),
    "lamb": lambda n: optim.lamb(_cd(0.05, n)),
    # issue 16's rules (adan, adopt, mechanize and schedule-free need other settings or more steps here)
    # radam's first steps (rho_t <= 5) are momentum SGD and can throw it far; with 0.1, 5 of 601
    # random problems (seed 2194, dim 5 among them) ended 0.06-0.15 away after 400 steps; with 0.2, none.
    "radam": lambda n: optim.radam(_cd(0.2, n)),
    "nadamw": lambda n: optim.nadamw(_cd(0.1, n), weight_decay=0.0),
    "adabelief": lambda n: optim.adabelief(_cd(0.1, n)),
    "yogi": lambda n: optim.yogi(_cd(0.1, n)),
    "adamaxw": lambda n: optim.adamaxw(_cd(0.1, n), b2=0.99, weight_decay=0.0),
    "signum": lambda n: optim.signum(_cd(0.05, n)),
    "prodigy": lambda n: optim.prodigy(_cd(1.0, n)),
    "dog": lambda n: optim.dog(),
    "rprop": lambda n: optim.rprop(0.01),
    "novograd": lambda n: optim.novograd(_cd(0.1, n)),
    "lookahead": lambda n: optim.lookahead(optim.adam(_cd(0.2, n)), 5, 0.5),  # 0.1: 1 of 300 missed
    "adafactor": lambda n: optim.adafactor(_cd(0.1, n)),
    "cocob": lambda n: optim.cocob(),
}


QUADRATIC_STEPS = {"cocob": 800}
"""Rules that need more than 400 steps: cocob (no learning rate) ended 0.10 from the minimiser of the
example below after 400, and at most 0.014 from those of 602 random problems after 800."""


@pytest.mark.parametrize("name", sorted(QUADRATIC))
@settings(max_examples=10)  # 400 steps per example; the problems, not edge cases, are what varies
@given(seed=st.integers(0, 2 ** 32 - 1), dim=st.integers(2, 6))
@example(seed=2194, dim=5)  # found by a random run (radam with lr 0.1 ended 0.09 away)
@example(seed=1321361842, dim=2)  # lookahead with lr 0.1 ended 0.08 away
def test_converges_on_a_random_convex_quadratic(name, seed, dim):
    """f(x) = x.A.x/2 - b.x with eigenvalues of A in [1, 10]; the minimiser is A^-1 b."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    a = q @ np.diag(rng.uniform(1.0, 10.0, dim)) @ q.T
    b = rng.normal(size=dim)
    x_star = np.linalg.solve(a, b)
    steps = QUADRATIC_STEPS.get(name, 400)
    opt = QUADRATIC[name](steps)
    params = {"x": x_star + rng.normal(size=dim)}
    state = opt.init(params)
    for _ in range(steps):
        updates, state = opt.update({"x": a @ params["x"] - b}, state, params)
        params = optim.apply_updates(params, updates)
    assert np.linalg.norm(params["x"] - x_star) < 0.05


def _rosenbrock_grad(p):
    x, y = p["x"], p["y"]
    return {"x": -2.0 * (1.0 - x) - 400.0 * x * (y - x * x), "y": 200.0 * (y - x * x)}


# Rosenbrock (a=1, b=100) is hard for accumulating rules (Adagrad, AMSGrad): they get more steps.
ROSENBROCK = {
    "sgd": (lambda n: optim.sgd(_cd(5e-4, n), momentum=0.9), 6000),  # lr 1e-3 diverged from some starts
    "sgd_nesterov": (lambda n: optim.sgd(_cd(5e-4, n), momentum=0.9, nesterov=True), 6000),  # 4000 left seed 693 at 0.16
    "adam": (lambda n: optim.adam(_cd(0.02, n), b2=0.99), 3000),
    "adamw": (lambda n: optim.adamw(_cd(0.02, n), b2=0.99, weight_decay=0.0), 3000),
    "amsgrad": (lambda n: optim.amsgrad(_cd(0.1, n)), 10000),
    "adamax": (lambda n: optim.adamax(_cd(0.02, n), b2=0.99), 3000),
    "nadam": (lambda n: optim.nadam(_cd(0.02, n), b2=0.99), 3000),
    "rmsprop": (lambda n: optim.rmsprop(_cd(0.01, n), momentum=0.9), 3000),
    "adagrad": (lambda n: optim.adagrad(0.5), 20000),
    "adadelta": (lambda n: optim.adadelta(_cd(2.0, n), rho=0.95), 8000),  # 4000 left 3 of 8 seeds short
    "lion": (lambda n: optim.lion(_cd(0.01, n), weight_decay=0.0), 3000),
    "lamb": (lambda n: optim.lamb(_cd(0.05, n)), 3000),
}


@pytest.mark.parametrize("name", sorted(ROSENBROCK))
@settings(max_examples=2)  # each example is 32 starts x thousands of steps; the starts are the randomness
@given(seed=st.integers(0, 2 ** 32 - 1))
def test_converges_on_rosenbrock_from_32_random_starts(name, seed):
    """Elementwise rules treat the 32 (x, y) pairs as 32 independent Rosenbrock problems in one run."""
    rng = np.random.default_rng(seed)
    params = {"x": rng.uniform(-1.5, 1.5, 32), "y": rng.uniform(-0.5, 2.0, 32)}
    factory, steps = ROSENBROCK[name]
    opt = factory(steps)
    state = opt.init(params)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow is a failure, not a warning
        for _ in range(steps):
            updates, state = opt.update(_rosenbrock_grad(params), state, params)
            params = optim.apply_updates(params, updates)
    distance = np.hypot(params["x"] - 1.0, params["y"] - 1.0)
    assert distance.max() < 0.1, f"{name}: {np.sum(distance >= 0.1)} of 32 starts did not reach (1, 1)"

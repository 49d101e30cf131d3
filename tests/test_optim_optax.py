"""Every rule and transform that carries an optax name equals optax 0.2.8 in float64.

Three problems, as in optax's ``alias_test.py``: its parabola (``[-1, 10, 1]`` towards ``[1, -1, 1]``),
its Rosenbrock (from ``[0, 0]``, ``a=1``, ``b=100``) and a nested tree of mixed dtypes (float64 and
float32 leaves, a 0-d leaf, a list) under ``sum(p**2 + 0.025 p**4)``. On each:

- **update by update**: at every step both libraries get the same gradients, params and history
  (optax's trajectory), and the updates agree to 1e-12 relative in float64 (1e-5 in float32);
- **whole trajectories**: fnlearn run on its own from the same start ends where optax ends.

Schedules are compared value by value. Skipped with the reason when optax or jax is absent.
"""

import numpy as np
import pytest

from fnlearn import optim
from fnlearn.tree import tree_leaves, tree_map

optax = pytest.importorskip("optax", reason="optax is not installed (pip install 'optax==0.2.8' jax jaxlib, "
                                            "the compare extra); the optax comparisons need it")
jax = pytest.importorskip("jax", reason="jax is not installed; the optax comparisons need it")
jnp = pytest.importorskip("jax.numpy", reason="jax is not installed; the optax comparisons need it")


@pytest.fixture(autouse=True, scope="module")
def _float64_in_jax():
    """jax computes in float32 unless x64 is on; switched on for this module only, then restored."""
    previous = bool(jax.config.jax_enable_x64)
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


# ---- the problems: (initial params, gradient function, objective) -----------------------------------

def parabola():
    target = np.array([1.0, -1.0, 1.0])
    return ({"x": np.array([-1.0, 10.0, 1.0])}, lambda p: {"x": 2.0 * (p["x"] - target)},
            lambda p: float(np.sum((p["x"] - target) ** 2)))


def rosenbrock():
    a, b = 1.0, 100.0

    def grad(p):
        x, y = p["x"]
        return {"x": np.array([-2.0 * (a - x) - 4.0 * b * x * (y - x * x), 2.0 * b * (y - x * x)])}

    def value(p):
        x, y = p["x"]
        return float((a - x) ** 2 + b * (y - x * x) ** 2)

    return {"x": np.array([0.0, 0.0])}, grad, value


def nested():
    rng = np.random.default_rng(7)
    params = {"layer": {"w": rng.normal(size=(3, 2)), "b": rng.normal(size=2).astype(np.float32)},
              "scale": np.asarray(1.5), "stack": [rng.normal(size=4).astype(np.float32), rng.normal(size=(2, 2))]}

    def grad(p):
        return tree_map(lambda x: (2.0 * x + 0.1 * x ** 3).astype(x.dtype), p)

    def value(p):
        return float(sum(np.sum(x.astype(np.float64) ** 2 + 0.025 * x.astype(np.float64) ** 4) for x in tree_leaves(p)))

    return params, grad, value


def nested_without_0d():
    """For optax's sm3, which fails on a 0-d leaf (IndexError; fnlearn's treats it as a 1-vector)."""
    params, grad, value = nested()
    del params["scale"]
    return params, grad, value


def nested_float64():
    """For rules whose scalar state optax keeps in the params' lowest dtype (float32 in a mixed tree)."""
    params, grad, value = nested()
    return tree_map(lambda x: x.astype(np.float64), params), grad, value


PROBLEMS = {"parabola": parabola, "rosenbrock": rosenbrock, "nested": nested, "nested_without_0d": nested_without_0d,
            "nested_float64": nested_float64}
SCALAR_STATE = ("parabola", "rosenbrock", "nested_float64")
DEFAULT_PROBLEMS = ("nested", "parabola", "rosenbrock")


def _to_jax(tree):
    return jax.tree.map(jnp.asarray, tree)


def _to_numpy(tree):
    return jax.tree.map(np.asarray, tree)


def _assert_close(ours, theirs, what, float64_rtol=1e-12, float32_rtol=1e-5, cast_theirs=False):
    mine, their_leaves = jax.tree.leaves(ours), jax.tree.leaves(theirs)  # both in jax's (sorted) order
    assert len(mine) == len(their_leaves), f"{what}: {len(mine)} leaves vs optax's {len(their_leaves)}"
    for a, b in zip(mine, their_leaves):
        a, b = np.asarray(a), np.asarray(b)
        if cast_theirs:  # optax upcast a float32 leaf (documented in docs/optim.md)
            b = b.astype(a.dtype)
        assert a.shape == b.shape and a.dtype == b.dtype, f"{what}: {a.shape} {a.dtype} vs {b.shape} {b.dtype}"
        rtol = float64_rtol if a.dtype == np.float64 else float32_rtol
        scale = max(1.0, float(np.max(np.abs(b)))) if b.size else 1.0
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * 1e-3 * scale, err_msg=what)


def compare(ours_factory, theirs_factory, problem, steps, *, extra=None, free_rtol=1e-9, cast_theirs=False):
    """Run optax on ``problem``; feed fnlearn the same inputs at every step; then run fnlearn alone.

    ``extra(params, value) -> dict`` gives keyword arguments that both updates need (e.g. ``value``).
    """
    params0, grad, value = PROBLEMS[problem]()
    theirs = theirs_factory()
    their_state = theirs.init(_to_jax(params0))
    forced, alone = ours_factory(), ours_factory()
    forced_state, alone_state = forced.init(params0), alone.init(params0)
    params, alone_params = params0, params0
    kwargs = (lambda p: extra(p, value)) if extra else (lambda p: {})
    for step in range(steps):
        g = grad(params)
        their_updates, their_state = theirs.update(_to_jax(g), their_state, _to_jax(params), **kwargs(params))
        their_updates = _to_numpy(their_updates)
        updates, forced_state = forced.update(g, forced_state, params, **kwargs(params))
        _assert_close(updates, their_updates, f"{problem}: update {step} differs from optax's",
                      cast_theirs=cast_theirs)
        if cast_theirs:
            their_updates = jax.tree.map(lambda u, p: u.astype(p.dtype), their_updates, params)
        params = jax.tree.map(lambda p, u: p + u, params, their_updates)
        updates, alone_state = alone.update(grad(alone_params), alone_state, alone_params, **kwargs(alone_params))
        alone_params = optim.apply_updates(alone_params, updates)
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(tree_leaves(params), tree_leaves(params0)))
    assert moved > 1e-3, f"{problem}: the comparison is vacuous, optax's params barely moved"
    _assert_close(alone_params, params, f"{problem}: fnlearn's own trajectory ends elsewhere",
                  float64_rtol=free_rtol, float32_rtol=1e-3)


STEPS = 20


def _jitted(transform):
    """optax's update compiled once: muon and reduce_on_plateau are slow eagerly (tracing per call)."""
    return optax.GradientTransformationExtraArgs(transform.init, jax.jit(transform.update))


def _then_descend(transform, their_transform, lr=1e-3):
    """A transform alone may ascend; compared as ``chain(transform, scale(-lr))``."""
    return (lambda: optim.chain(transform(), optim.scale(-lr)),
            lambda: optax.chain(their_transform(), optax.scale(-lr)))


def _falling(count):
    return 0.1 / (1.0 + 0.5 * float(count))


def _slow(count):
    return 0.99 - 0.09 / (1.0 + float(count))


# id -> (our factory, optax's factory, number of steps[, the problems if not all])
CASES = {
    "adam_nesterov": (lambda: optim.adam(0.1, nesterov=True), lambda: optax.adam(0.1, nesterov=True), STEPS),
    "adamw": (lambda: optim.adamw(0.1, weight_decay=1e-4), lambda: optax.adamw(0.1), STEPS),
    "adamax": (lambda: optim.adamax(0.1), lambda: optax.adamax(0.1), STEPS),
    "rmsprop_optax_defaults": (lambda: optim.rmsprop(5e-3, decay=0.9, eps_in_sqrt=True),
                               lambda: optax.rmsprop(5e-3), STEPS),
    "rmsprop_momentum": (lambda: optim.rmsprop(5e-3, decay=0.9, eps_in_sqrt=True, momentum=0.9),
                         lambda: optax.rmsprop(5e-3, momentum=0.9), STEPS),
    "rmsprop_centered": (lambda: optim.rmsprop(5e-3, decay=0.9, eps_in_sqrt=False, centered=True),
                         lambda: optax.rmsprop(5e-3, centered=True, eps_in_sqrt=False), STEPS),
    "adadelta": (lambda: optim.adadelta(0.1), lambda: optax.adadelta(0.1), STEPS),
    "lion": (lambda: optim.lion(1e-2, weight_decay=1e-4), lambda: optax.lion(1e-2, weight_decay=1e-4), STEPS),
    "lamb": (lambda: optim.lamb(1e-3), lambda: optax.lamb(1e-3), STEPS),
    "sgd_momentum": (lambda: optim.sgd(1e-3, momentum=0.9), lambda: optax.sgd(1e-3, momentum=0.9), STEPS),
    # the rules issue 16 added, with the hyperparameters of optax's alias_test (defaults otherwise)
    "adabelief": (lambda: optim.adabelief(1e-2), lambda: optax.adabelief(1e-2), STEPS),
    "adabelief_nesterov": (lambda: optim.adabelief(1e-2, nesterov=True), lambda: optax.adabelief(1e-2, nesterov=True), STEPS),
    "yogi": (lambda: optim.yogi(1e-1), lambda: optax.yogi(1e-1), STEPS),
    "novograd": (lambda: optim.novograd(1e-3), lambda: optax.novograd(1e-3), STEPS),
    "novograd_decay": (lambda: optim.novograd(1e-2, b1=0.8, b2=0.5, weight_decay=0.1),
                       lambda: optax.novograd(1e-2, b1=0.8, b2=0.5, weight_decay=0.1), STEPS),
    "adan": (lambda: optim.adan(1e-1), lambda: optax.adan(1e-1), STEPS),
    "adan_decay": (lambda: optim.adan(1e-2, weight_decay=0.1), lambda: optax.adan(1e-2, weight_decay=0.1), STEPS),
    "adamaxw": (lambda: optim.adamaxw(1e-1), lambda: optax.adamaxw(1e-1), STEPS),
    "lars": (lambda: optim.lars(1.0), lambda: optax.lars(1.0), STEPS),
    "lars_options": (lambda: optim.lars(0.5, weight_decay=0.1, trust_coefficient=0.01, eps=1e-3, nesterov=True),
                     lambda: optax.lars(0.5, weight_decay=0.1, trust_coefficient=0.01, eps=1e-3, nesterov=True), STEPS),
    "sign_sgd": (lambda: optim.sign_sgd(1e-1), lambda: optax.sign_sgd(1e-1), STEPS),
    "signum": (lambda: optim.signum(1e-2), lambda: optax.signum(1e-2), STEPS),
    "optimistic_gradient_descent": (lambda: optim.optimistic_gradient_descent(2e-3, alpha=0.7, beta=0.1),
                                    lambda: optax.optimistic_gradient_descent(2e-3, alpha=0.7, beta=0.1), STEPS),
    "sm3": (lambda: optim.sm3(1.0), lambda: optax.sm3(1.0), STEPS, ("parabola", "rosenbrock", "nested_without_0d")),
    "fromage": (lambda: optim.fromage(5e-3), lambda: optax.fromage(5e-3), STEPS, ("parabola", "nested")),
    # optax's own schedules evaluate in float32 at its int32 counts, even with x64: a schedule in Python
    "fromage_schedule": (lambda: optim.fromage(_falling), lambda: optax.fromage(_falling), STEPS, ("parabola", "nested")),
    "noisy_sgd_without_noise": (lambda: optim.noisy_sgd(1e-3, eta=0.0), lambda: optax.noisy_sgd(1e-3, eta=0.0, key=0), STEPS),
    # adafactor scales its step by the parameters' RMS: it barely leaves Rosenbrock's [0, 0]
    "adafactor": (lambda: optim.adafactor(5e-3), lambda: optax.adafactor(5e-3), STEPS, ("parabola", "nested")),
    "adafactor_defaults": (lambda: optim.adafactor(), lambda: optax.adafactor(), STEPS, ("parabola", "nested")),
    "adafactor_factored": (lambda: optim.adafactor(1e-2, min_dim_size_to_factor=2, weight_decay_rate=0.01,
                                                   multiply_by_parameter_scale=False, clipping_threshold=None),
                           lambda: optax.adafactor(1e-2, min_dim_size_to_factor=2, weight_decay_rate=0.01,
                                                   multiply_by_parameter_scale=False, clipping_threshold=None), STEPS),
    # optax.contrib
    "adopt": (lambda: optim.adopt(1e-2), lambda: optax.contrib.adopt(1e-2), STEPS),
    "adopt_nesterov_unclipped": (lambda: optim.adopt(1e-2, nesterov=True, use_clipping=False),
                                 lambda: optax.contrib.adopt(1e-2, nesterov=True, use_clipping=False), STEPS),
    "ademamix": (lambda: optim.ademamix(1e-2), lambda: optax.contrib.ademamix(1e-2), STEPS),
    "ademamix_schedules": (lambda: optim.ademamix(1e-2, b3=_slow, alpha=_falling, weight_decay=0.1),
                           lambda: optax.contrib.ademamix(1e-2, b3=_slow, alpha=_falling, weight_decay=0.1), STEPS),
    "prodigy": (lambda: optim.prodigy(), lambda: optax.contrib.prodigy(), STEPS, SCALAR_STATE),
    "prodigy_options": (lambda: optim.prodigy(0.5, betas=(0.8, 0.99), weight_decay=0.1, safeguard_warmup=True,
                                              estim_lr0=1e-3),
                        lambda: optax.contrib.prodigy(0.5, betas=(0.8, 0.99), weight_decay=0.1,
                                                      safeguard_warmup=True, estim_lr0=1e-3), STEPS, SCALAR_STATE),
    "dog": (lambda: optim.dog(), lambda: optax.contrib.dog(), 2 * STEPS, SCALAR_STATE),  # starts slowly
    "dog_distance": (lambda: optim.dog(0.5, init_step=("distance", 0.1), weight_decay=0.01),
                     lambda: optax.contrib.dog(0.5, init_step=("distance", 0.1), weight_decay=0.01), STEPS, SCALAR_STATE),
    "dog_learning_rate": (lambda: optim.dog(init_step=("learning_rate", 1e-3)),
                          lambda: optax.contrib.dog(init_step=("learning_rate", 1e-3)), STEPS, SCALAR_STATE),
    "cocob": (lambda: optim.cocob(), lambda: optax.contrib.cocob(), STEPS),
    "cocob_options": (lambda: optim.cocob(0.5, alpha=10.0, weight_decay=0.01),
                      lambda: optax.contrib.cocob(0.5, alpha=10.0, weight_decay=0.01), STEPS),
    "muon": (lambda: optim.muon(1e-2), lambda: _jitted(optax.contrib.muon(1e-2)), STEPS),
    "muon_options": (lambda: optim.muon(1e-2, ns_coeffs="dion", beta=0.9, weight_decay=0.1, nesterov=False,
                                        adaptive=True, preconditioning="spectral", adam_learning_rate=3e-3,
                                        adam_weight_decay=0.01, consistent_rms=0.2),
                     lambda: _jitted(optax.contrib.muon(1e-2, ns_coeffs="dion", beta=0.9, weight_decay=0.1,
                                                        nesterov=False, adaptive=True, preconditioning="spectral",
                                                        adam_learning_rate=3e-3, adam_weight_decay=0.01,
                                                        consistent_rms=0.2)), STEPS),
    "muon_aol": (lambda: optim.muon(1e-2, preconditioning="aol"),
                 lambda: _jitted(optax.contrib.muon(1e-2, preconditioning="aol")), STEPS, ("nested",)),
    "muon_schatten": (lambda: optim.muon(1e-2, preconditioning="schatten"),
                      lambda: _jitted(optax.contrib.muon(1e-2, preconditioning="schatten")), STEPS, ("nested",)),
    "sam": (lambda: optim.sam(optim.sgd(1e-3), optim.chain(optim.normalize(), optim.sgd(0.05))),
            lambda: optax.contrib.sam(optax.sgd(1e-3), optax.chain(optax.contrib.normalize(), optax.sgd(0.05))), STEPS,
            SCALAR_STATE),  # optax's normalize divides float32 leaves by a float64 norm: float64 updates
    "sam_adam_period_3": (lambda: optim.sam(optim.adam(0.05), optim.sgd(1e-3), sync_period=3, reset_state=False),
                          lambda: optax.contrib.sam(optax.adam(0.05), optax.sgd(1e-3), sync_period=3,
                                                    reset_state=False), STEPS),
    "scale_by_sign": (*_then_descend(optim.scale_by_sign, optax.scale_by_sign), STEPS),
    "centralize": (*_then_descend(optim.centralize, optax.centralize), STEPS),
    "clip_by_block_rms": (*_then_descend(lambda: optim.clip_by_block_rms(0.5),
                                         lambda: optax.clip_by_block_rms(0.5)), STEPS),
    "adaptive_grad_clip": (*_then_descend(lambda: optim.adaptive_grad_clip(0.1, eps=0.1),  # moves <= 10%
                                          lambda: optax.adaptive_grad_clip(0.1, eps=0.1), lr=1.0), STEPS),
    "zero_nans": (*_then_descend(optim.zero_nans, optax.zero_nans), 10),
    "keep_params_nonnegative": (lambda: optim.chain(optim.sgd(0.2), optim.keep_params_nonnegative()),
                                lambda: optax.chain(optax.sgd(0.2), optax.keep_params_nonnegative()), STEPS),
    "ema": (*_then_descend(lambda: optim.ema(0.9), lambda: optax.ema(0.9)), STEPS),
    "ema_biased": (*_then_descend(lambda: optim.ema(0.8, debias=False), lambda: optax.ema(0.8, debias=False)), STEPS),
    "apply_every": (*_then_descend(lambda: optim.apply_every(3), lambda: optax.apply_every(3)), STEPS),
}


@pytest.mark.parametrize("name, problem", [(name, problem) for name in sorted(CASES)
                                           for problem in (CASES[name][3:] or (DEFAULT_PROBLEMS,))[0]])
def test_equals_optax(name, problem):
    """Fromage scales its step by the parameter norm, so it cannot leave Rosenbrock's start [0, 0]."""
    ours, theirs, steps = CASES[name][:3]
    compare(ours, theirs, problem, steps)


@pytest.mark.parametrize("problem", DEFAULT_PROBLEMS)
@pytest.mark.parametrize("variant", ["sps", "sps+"])
def test_polyak_sgd_equals_optax(problem, variant):
    """sps+ clips the gap at 0 (f_min above the minimum stops it); sps with f_min below the minimum."""
    kwargs = dict(max_learning_rate=0.3, scaling=0.5, f_min=0.1 if variant == "sps+" else -1.0, variant=variant)
    compare(lambda: optim.polyak_sgd(**kwargs), lambda: optax.polyak_sgd(**kwargs), problem, STEPS,
            extra=lambda params, value: {"value": value(params)}, cast_theirs=True,  # optax: float32 -> float64
            free_rtol=1e-6)  # optax sums the float32 leaves' squares in float64, fnlearn in float32


def test_noisy_sgd_noise_has_optax_variance():
    """The draws differ from jax's; the law is the same: the noise of step t has variance eta/t**gamma."""
    eta, gamma, n = 0.5, 0.55, 200_000
    opt = optim.noisy_sgd(1.0, eta=eta, gamma=gamma, key=5)
    state = opt.init({"w": np.zeros(n)})
    for t in (1, 2, 3):
        u, state = opt.update({"w": np.zeros(n)}, state)
        assert abs(float(np.var(u["w"])) / (eta / t ** gamma) - 1.0) < 0.02  # 0.3% is one sd here
        assert abs(float(np.mean(u["w"]))) < 0.01


@pytest.mark.parametrize("problem", SCALAR_STATE)
@pytest.mark.parametrize("kwargs", [dict(learning_rate=0.1), dict(learning_rate=0.05, b1=0.8, b2=0.99, weight_decay=0.1,
                                                              weight_lr_power=1.0)])
def test_schedule_free_adamw_equals_optax(problem, kwargs):
    compare(lambda: optim.schedule_free_adamw(**kwargs), lambda: optax.contrib.schedule_free_adamw(**kwargs),
            problem, STEPS)


def test_schedule_free_eval_params_and_warmup_equal_optax():
    """With warmup, optax evaluates its warmup schedule in float32 (int32 counts): float32 tolerance."""
    params, grad, _ = parabola()
    ours, theirs = optim.schedule_free_adamw(0.1, warmup_steps=5), optax.contrib.schedule_free_adamw(0.1, warmup_steps=5)
    state, their_state = ours.init(params), theirs.init(_to_jax(params))
    for _ in range(12):
        g = grad(params)
        u, state = ours.update(g, state, params)
        their_u, their_state = theirs.update(_to_jax(g), their_state, _to_jax(params))
        _assert_close(u, _to_numpy(their_u), "schedule_free_adamw with warmup", float64_rtol=1e-6)
        params = optim.apply_updates(params, u)
    _assert_close(optim.schedule_free_eval_params(state, params),
                  _to_numpy(optax.contrib.schedule_free_eval_params(their_state, _to_jax(params))),
                  "schedule_free_eval_params", float64_rtol=1e-6)


@pytest.mark.parametrize("problem", DEFAULT_PROBLEMS)
@pytest.mark.parametrize("reset_state", [False, True])
def test_lookahead_fast_params_equal_optax(problem, reset_state):
    """optax's params are LookaheadParams(fast, slow); fnlearn's params are the fast ones and the slow
    ones live in the state."""
    params, grad, _ = PROBLEMS[problem]()
    ours = optim.lookahead(optim.adam(0.05), sync_period=3, slow_step_size=0.5, reset_state=reset_state)
    theirs = optax.lookahead(optax.adam(0.05), sync_period=3, slow_step_size=0.5, reset_state=reset_state)
    state = ours.init(params)
    their_params = optax.LookaheadParams.init_synced(_to_jax(params))
    their_state = theirs.init(their_params)
    for step in range(20):
        u, state = ours.update(grad(params), state, params)
        params = optim.apply_updates(params, u)
        their_u, their_state = theirs.update(_to_jax(grad(_to_numpy(their_params.fast))), their_state, their_params)
        their_params = optax.apply_updates(their_params, their_u)
        # both run on their own, so float32 leaves drift apart by float32 roundings
        _assert_close(params, _to_numpy(their_params.fast), f"lookahead fast params at step {step}",
                      float64_rtol=1e-10, float32_rtol=1e-4)
        _assert_close(state["slow"], _to_numpy(their_params.slow), f"lookahead slow params at step {step}",
                      float64_rtol=1e-10, float32_rtol=1e-4)


def test_reduce_on_plateau_equals_optax():
    kwargs = dict(factor=0.5, patience=2, rtol=1e-3, atol=1e-4, cooldown=1, accumulation_size=2, min_scale=0.1)
    ours, theirs = optim.reduce_on_plateau(**kwargs), _jitted(optax.contrib.reduce_on_plateau(**kwargs))
    g = {"w": np.array([1.0, -2.0])}
    state, their_state = ours.init(g), theirs.init(_to_jax(g))
    losses = [3.0, 2.0, 2.0, 2.0, 2.0, 1.999, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5] + [0.5] * 20
    scales = []
    for loss in losses:
        u, state = ours.update(g, state, value=loss)
        their_u, their_state = theirs.update(_to_jax(g), their_state, value=loss)
        _assert_close(u, _to_numpy(their_u), f"reduce_on_plateau at loss {loss}")
        scales.append(state["scale"])
    assert min(scales) == 0.1 and len(set(scales)) > 2, "the schedule of scales was not exercised"


@pytest.mark.parametrize("problem", SCALAR_STATE)
def test_mechanize_equals_optax(problem):
    compare(lambda: optim.mechanize(optim.adam(0.05)), lambda: optax.contrib.mechanize(optax.adam(0.05)),
            problem, 2 * STEPS, free_rtol=1e-7)  # its learned scale starts at 1e-6


@pytest.mark.parametrize("problem", ["parabola", "rosenbrock", "nested_float64"])
def test_sam_opaque_mode_equals_optax(problem):
    params, grad, _ = PROBLEMS[problem]()
    make = lambda m: m.contrib.sam(m.sgd(1e-3), m.sgd(0.01), sync_period=3, opaque_mode=True) if m is optax \
        else optim.sam(optim.sgd(1e-3), optim.sgd(0.01), sync_period=3, opaque_mode=True)
    ours, theirs = make(optim), make(optax)
    state, their_state, their_params = ours.init(params), theirs.init(_to_jax(params)), params
    for step in range(STEPS):
        u, state = ours.update(grad(params), state, params, grad_fn=lambda p, i: grad(p))
        their_u, their_state = theirs.update(_to_jax(grad(their_params)), their_state, _to_jax(their_params),
                                             grad_fn=lambda p, i: _to_jax(grad(_to_numpy(p))))
        _assert_close(u, _to_numpy(their_u), f"sam opaque mode, update {step}", float64_rtol=1e-10)
        params = optim.apply_updates(params, u)
        their_params = jax.tree.map(lambda p, d: p + np.asarray(d), their_params, their_u)


def test_zero_nans_replaces_nans_like_optax():
    grads = {"a": np.array([np.nan, 1.0, -2.0]), "b": np.array([[0.5, np.nan]], np.float32)}
    ours = optim.zero_nans()
    u, state = ours.update(grads, ours.init(grads))
    theirs = optax.zero_nans()
    their_u, their_state = theirs.update(_to_jax(grads), theirs.init(_to_jax(grads)))
    _assert_close(u, _to_numpy(their_u), "zero_nans")
    assert state["found_nan"] == {"a": True, "b": True} == jax.tree.map(bool, their_state.found_nan)


# ---- schedules: (ours, optax's, the counts) ---------------------------------------------------------
COUNTS = list(range(0, 25)) + [30, 50, 99, 100, 101, 150, 500, 1000, 2500, 5500]
SCHEDULES = {
    "exponential_decay_end_value_before_begin": (
        lambda m: m.exponential_decay(1.0, transition_steps=1, decay_rate=1.0, transition_begin=3, end_value=0.1)),
    "exponential_decay_staircase": (
        lambda m: m.exponential_decay(0.1, transition_steps=7, decay_rate=0.5, transition_begin=2, staircase=True)),
    "exponential_decay_growth_capped": (
        lambda m: m.exponential_decay(0.1, transition_steps=3, decay_rate=1.5, end_value=0.5)),
    "polynomial": (lambda m: m.polynomial_schedule(1.0, 0.1, power=2, transition_steps=10, transition_begin=3)),
    "warmup_constant": (lambda m: m.warmup_constant_schedule(0.0, 1.0, warmup_steps=7)),
    "warmup_exponential_decay": (
        lambda m: m.warmup_exponential_decay_schedule(0.0, 1.0, warmup_steps=5, transition_steps=4,
                                                      decay_rate=0.8, transition_begin=2, end_value=0.3)),
    "piecewise_interpolate_linear": (
        lambda m: m.piecewise_interpolate_schedule("linear", 1.0, {10: 0.5, 20: 2.0, 25: 0.0})),
    "piecewise_interpolate_cosine": (
        lambda m: m.piecewise_interpolate_schedule("cosine", 2.0, {0: 0.5, 5: 0.3, 17: 4.0})),
    "cosine_onecycle": (lambda m: m.cosine_onecycle_schedule(100, 1.0)),
    "cosine_onecycle_options": (lambda m: m.cosine_onecycle_schedule(20, 0.3, pct_start=0.2, div_factor=10,
                                                                     final_div_factor=100)),
    "linear_onecycle": (lambda m: m.linear_onecycle_schedule(100, 1.0)),
    "linear_onecycle_options": (lambda m: m.linear_onecycle_schedule(20, 0.3, pct_start=0.25, pct_final=0.5,
                                                                     div_factor=5, final_div_factor=50)),
    "sgdr": (lambda m: m.sgdr_schedule([dict(init_value=0.0, peak_value=1.0, warmup_steps=2, decay_steps=10),
                                        dict(init_value=0.1, peak_value=0.5, warmup_steps=0, decay_steps=8,
                                             end_value=0.05)])),
    "warmup_cosine_decay": (lambda m: m.warmup_cosine_decay_schedule(0.0, 1.0, 5, 50, end_value=0.01)),
    # the configurations of optax's own schedule tests
    "optax_exponential_decay_end_value": (
        lambda m: m.exponential_decay(1.0, transition_steps=2, decay_rate=0.2, transition_begin=3, end_value=0.1)),
    "optax_exponential_decay_end_value_staircase": (
        lambda m: m.exponential_decay(1.0, transition_steps=2, decay_rate=2.0, transition_begin=3, staircase=True,
                                      end_value=3.0)),
    "optax_polynomial": (lambda m: m.polynomial_schedule(25.0, 10.0, power=2, transition_steps=10)),
    "optax_piecewise_interpolate_linear": (
        lambda m: m.piecewise_interpolate_schedule("linear", 200.0, {5: 1.5, 10: 0.25})),
    "optax_piecewise_interpolate_cosine": (
        lambda m: m.piecewise_interpolate_schedule("cosine", 400.0, {5: 1.2, 3: 0.6, 7: 1.0})),
    "optax_piecewise_interpolate_empty": (lambda m: m.piecewise_interpolate_schedule("linear", 13.0, {})),
    "optax_piecewise_interpolate_none": (lambda m: m.piecewise_interpolate_schedule("cosine", 17.0)),
    "optax_piecewise_interpolate_zero_interval": (
        lambda m: m.piecewise_interpolate_schedule("linear", 13.0, {0: 2.0, 5: 3.0})),
    "optax_linear_onecycle": (lambda m: m.linear_onecycle_schedule(10, 1000.0, pct_start=0.3, pct_final=0.7,
                                                                   div_factor=10.0, final_div_factor=100.0)),
    "optax_cosine_onecycle": (lambda m: m.cosine_onecycle_schedule(5, 1000.0, pct_start=0.4, div_factor=10.0,
                                                                   final_div_factor=100.0)),
    "optax_sgdr": (lambda m: m.sgdr_schedule([dict(decay_steps=steps, peak_value=lr, init_value=0.0, end_value=0.0,
                                                   warmup_steps=500)
                                              for steps, lr in ((2000, 1.6), (3000, 0.8), (5000, 0.4))])),
}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_equals_optax(name):
    ours, theirs = SCHEDULES[name](optim), SCHEDULES[name](optax)
    for count in COUNTS:
        np.testing.assert_allclose(ours(count), float(theirs(count)), rtol=1e-12, atol=1e-15,
                                   err_msg=f"{name} at count {count}")


def test_degenerate_schedules_are_optax_constants():
    for make in (lambda m: m.exponential_decay(0.3, 0, 0.5), lambda m: m.exponential_decay(0.3, 5, 0.0),
                 lambda m: m.polynomial_schedule(0.3, 0.0, 1, 0)):
        with pytest.warns(UserWarning):
            ours = make(optim)
        theirs = make(optax)
        assert [ours(c) for c in (0, 3, 50)] == [float(theirs(c)) for c in (0, 3, 50)] == [0.3] * 3


@pytest.mark.parametrize("ours, theirs", [
    (lambda: optim.adam(0.1, b2=0.998), lambda: optax.adam(0.1)),
    (lambda: optim.adam(0.1, eps=1e-7), lambda: optax.adam(0.1)),
    (lambda: optim.rmsprop(5e-3), lambda: optax.rmsprop(5e-3)),  # torch's defaults against optax's
], ids=["b2_off", "eps_off", "rmsprop_defaults"])
def test_the_comparison_fails_on_a_different_rule(ours, theirs):
    """The harness can fail: a hyperparameter off by a little, or torch's RMSprop against optax's."""
    with pytest.raises(AssertionError, match="update [0-9] differs from optax's"):
        compare(ours, theirs, "parabola", 5)

"""fnlearn.optim.sgd and apply_updates: known values, torch.optim.SGD trajectories, dtypes and errors."""

import numpy as np
import pytest

from fnlearn import optim
from fnlearn.tree import TreeMismatchError, tree_map


def _params(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return {"0": {"w": rng.normal(size=(3, 2)).astype(dtype), "b": rng.normal(size=2).astype(dtype)},
            "1": {"w": rng.normal(size=(2,)).astype(dtype)}}


def _grad_fn(params):
    """Gradient of a fixed quadratic-plus-quartic, so trajectories depend on where the params are."""
    return tree_map(lambda v: 2.0 * v + 0.1 * v ** 3, params)


def _run(opt, params, steps):
    state = opt.init(params)
    for _ in range(steps):
        updates, state = opt.update(_grad_fn(params), state, params)
        params = optim.apply_updates(params, updates)
    return params, state


def test_plain_sgd_known_value():
    p = {"w": np.array([1.0, -2.0])}
    opt = optim.sgd(0.1)
    params, state = _run(opt, p, 1)
    g = 2.0 * p["w"] + 0.1 * p["w"] ** 3
    np.testing.assert_allclose(params["w"], p["w"] - 0.1 * g, rtol=1e-15)
    assert state == {"count": 1}


def test_momentum_dampening_weight_decay_by_hand():
    x = np.array([0.5, -1.5])
    lr, mu, damp, wd = 0.05, 0.8, 0.3, 0.01
    opt = optim.sgd(lr, momentum=mu, dampening=damp, weight_decay=wd)
    got, _ = _run(opt, {"w": x}, 3)
    buf = None
    for _ in range(3):
        d = 2.0 * x + 0.1 * x ** 3 + wd * x
        buf = d.copy() if buf is None else mu * buf + (1 - damp) * d   # torch: no dampening on step 1
        x = x - lr * buf
    np.testing.assert_allclose(got["w"], x, rtol=1e-14)


def test_nesterov_by_hand():
    x = np.array([0.5, -1.5])
    lr, mu = 0.05, 0.9
    got, _ = _run(optim.sgd(lr, momentum=mu, nesterov=True), {"w": x}, 3)
    buf = np.zeros(2)
    for _ in range(3):
        d = 2.0 * x + 0.1 * x ** 3
        buf = mu * buf + d
        x = x - lr * (d + mu * buf)
    np.testing.assert_allclose(got["w"], x, rtol=1e-14)


def test_schedule_learning_rate_sees_the_step_count():
    seen = []

    def schedule(count):
        seen.append(count)
        return 0.1 / (1 + count)

    _run(optim.sgd(schedule), {"w": np.ones(2)}, 3)
    assert seen == [0, 1, 2]


TORCH_CASES = [
    dict(learning_rate=0.05),
    dict(learning_rate=0.05, momentum=0.9),
    dict(learning_rate=0.05, momentum=0.9, nesterov=True),
    dict(learning_rate=0.03, momentum=0.5, dampening=0.5, weight_decay=0.1),
    dict(learning_rate=0.02, momentum=0.9, nesterov=True, weight_decay=0.01),
]


@pytest.mark.parametrize("hyper", TORCH_CASES, ids=lambda h: ",".join(f"{k}={v}" for k, v in h.items()))
def test_matches_torch_sgd_float64_100_steps(hyper):
    torch = pytest.importorskip("torch", reason="torch is not installed: pip install torch==2.13.0")
    params = _params()
    ours, _ = _run(optim.sgd(**hyper), params, 100)
    tensors = {k: {n: torch.tensor(v, dtype=torch.float64, requires_grad=True) for n, v in sub.items()}
               for k, sub in params.items()}
    flat = [t for sub in tensors.values() for t in sub.values()]
    kwargs = {("lr" if k == "learning_rate" else k): v for k, v in hyper.items()}
    topt = torch.optim.SGD(flat, **kwargs)
    for _ in range(100):
        topt.zero_grad()
        sum(((t ** 2).sum() + 0.025 * (t ** 4).sum()) for t in flat).backward()
        topt.step()
    for k, sub in tensors.items():
        for n, t in sub.items():
            np.testing.assert_allclose(ours[k][n], t.detach().numpy(), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("hyper", [{}, {"momentum": 0.9}, {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1}])
def test_float32_stays_float32_and_inputs_are_not_mutated(hyper):
    params = _params(np.float32)
    grads = _grad_fn(params)
    copies = [{k: {n: v.copy() for n, v in s.items()} for k, s in t.items()} for t in (params, grads)]
    opt = optim.sgd(np.float64(0.1), **hyper)
    state = opt.init(params)
    updates, state2 = opt.update(grads, state, params)
    updates, state2 = opt.update(grads, state2, params)
    new = optim.apply_updates(params, updates)
    for tree in (updates, new, state2.get("momentum", {})):
        for sub in tree.values():
            assert all(v.dtype == np.float32 for v in sub.values())
    for orig, copy in zip((params, grads), copies):
        for k in orig:
            for n in orig[k]:
                np.testing.assert_array_equal(orig[k][n], copy[k][n])
    if "momentum" in hyper:
        assert all(not v.any() for s in state["momentum"].values() for v in s.values())


def test_no_momentum_buffer_without_momentum():
    assert optim.sgd(0.1).init(_params()) == {"count": 0}


def test_structure_errors_name_the_path():
    params = _params()
    opt = optim.sgd(0.1, momentum=0.9)
    state = opt.init(params)
    bad = _grad_fn(params)
    del bad["1"]["w"]
    with pytest.raises(TreeMismatchError, match="sgd.update.*path '1'"):
        opt.update(bad, state, params)
    with pytest.raises(TreeMismatchError, match="momentum.*path '1'"):
        opt.update(bad, state)
    wrong_shape = _grad_fn(params)
    wrong_shape["0"]["b"] = np.zeros(3)
    with pytest.raises(ValueError, match="path '0/b' has shape \\(3,\\)"):
        opt.update(wrong_shape, state, params)
    with pytest.raises(ValueError, match="apply_updates.*path '0/b'"):
        optim.apply_updates(params, wrong_shape)
    with pytest.raises(TreeMismatchError, match="apply_updates"):
        optim.apply_updates(params, bad)


def test_bad_hyperparameters_raise_sentences():
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0"):
        optim.sgd(0.1, nesterov=True)
    with pytest.raises(ValueError, match="learning_rate must be in"):
        optim.sgd(float("nan"))
    with pytest.raises(TypeError, match="learning_rate must be a number or a schedule"):
        optim.sgd("fast")
    with pytest.raises(ValueError, match="weight_decay > 0 needs the params"):
        opt = optim.sgd(0.1, weight_decay=0.1)
        opt.update(_params(), opt.init(_params()))


def test_other_dtypes_are_refused_not_cast():
    params = {"0": {"w": np.ones(2, np.float32)}}
    with pytest.raises(TypeError, match="apply_updates: the updates leaf at path '0/w' has dtype float64"):
        optim.apply_updates(params, {"0": {"w": np.ones(2, np.float64)}})
    opt = optim.sgd(0.1, momentum=0.9)
    for dtype in (np.float64, np.int64, bool, np.complex64):
        with pytest.raises(TypeError, match=f"sgd.update: the grads leaf at path '0/w' has dtype {np.dtype(dtype)}"):
            opt.update({"0": {"w": np.ones(2, dtype)}}, opt.init(params), params)


@pytest.mark.parametrize("state", [None, {"count": 0}, {"momentum": {"w": np.zeros(2)}}, ({"count": 0},)])
def test_a_state_from_another_optimizer_is_refused(state):
    opt = optim.sgd(0.1, momentum=0.9)
    with pytest.raises(ValueError, match="sgd.update: the state was not made by this optimizer's init"):
        opt.update({"w": np.ones(2)}, state, {"w": np.ones(2)})

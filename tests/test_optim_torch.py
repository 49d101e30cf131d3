"""Every rule that torch.optim also has follows torch's trajectory: float64, 100 steps, 1e-6 relative.

The objective is ``sum(p**2 + 0.025 * p**4)`` over a small params tree, so the gradient changes with the
params and any difference in the update rule compounds over the steps.
"""

import numpy as np
import pytest

from fnlearn import optim
from fnlearn.tree import tree_map

torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch==2.13.0); "
                                           "the trajectory comparisons need it")

STEPS = 100


def _params():
    rng = np.random.default_rng(1)
    return {"0": {"w": rng.normal(size=(4, 3)), "b": rng.normal(size=3) * 1e-3},
            "1": {"w": rng.normal(size=(3,)) * 3.0}}


def _ours(opt, params, steps=STEPS, keep_state=False):
    state = opt.init(params)
    for _ in range(steps):
        grads = tree_map(lambda p: 2.0 * p + 0.1 * p ** 3, params)
        updates, state = opt.update(grads, state, params)
        params = optim.apply_updates(params, updates)
    return (params, state) if keep_state else params


def _torch(cls, kwargs, params, steps=STEPS, keep_optimizer=False):
    """torch's trajectory. torch keeps scalar state (step, NAdam's mu_product) in the *default* dtype,
    float32 unless changed, so the default is float64 while it runs."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return _torch_run(cls, kwargs, params, steps, keep_optimizer)
    finally:
        torch.set_default_dtype(previous)


def _torch_run(cls, kwargs, params, steps, keep_optimizer):
    tensors = tree_map(lambda v: torch.tensor(v, dtype=torch.float64, requires_grad=True), params)
    flat = [t for sub in tensors.values() for t in sub.values()]
    topt = cls(flat, **kwargs)
    for _ in range(steps):
        topt.zero_grad()
        sum(((t ** 2).sum() + 0.025 * (t ** 4).sum()) for t in flat).backward()
        topt.step()
    result = tree_map(lambda t: t.detach().numpy(), tensors)
    return (result, topt, tensors) if keep_optimizer else result


# (our rule, our kwargs, torch class name, torch kwargs)
CASES = [
    (optim.adam, dict(learning_rate=0.05), "Adam", dict(lr=0.05)),
    (optim.adam, dict(learning_rate=0.05, b1=0.8, b2=0.99, eps=1e-6, weight_decay=0.1), "Adam",
     dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    (optim.amsgrad, dict(learning_rate=0.05, b2=0.9), "Adam", dict(lr=0.05, betas=(0.9, 0.9), amsgrad=True)),
    (optim.adamw, dict(learning_rate=0.05), "AdamW", dict(lr=0.05)),
    (optim.adamw, dict(learning_rate=0.05, weight_decay=0.3, b1=0.5), "AdamW",
     dict(lr=0.05, weight_decay=0.3, betas=(0.5, 0.999))),
    (optim.adamax, dict(learning_rate=0.05), "Adamax", dict(lr=0.05)),
    (optim.adamax, dict(learning_rate=0.05, eps=1e-3, weight_decay=0.05), "Adamax",
     dict(lr=0.05, eps=1e-3, weight_decay=0.05)),
    (optim.nadam, dict(learning_rate=0.05), "NAdam", dict(lr=0.05)),
    (optim.nadam, dict(learning_rate=0.05, momentum_decay=0.02, weight_decay=0.1), "NAdam",
     dict(lr=0.05, momentum_decay=0.02, weight_decay=0.1)),
    (optim.rmsprop, dict(learning_rate=0.01), "RMSprop", dict(lr=0.01)),
    (optim.rmsprop, dict(learning_rate=0.01, decay=0.9, centered=True), "RMSprop",
     dict(lr=0.01, alpha=0.9, centered=True)),
    (optim.rmsprop, dict(learning_rate=0.005, momentum=0.9, weight_decay=0.1, eps=1e-4), "RMSprop",
     dict(lr=0.005, momentum=0.9, weight_decay=0.1, eps=1e-4)),
    (optim.rmsprop, dict(learning_rate=0.005, momentum=0.5, centered=True), "RMSprop",
     dict(lr=0.005, momentum=0.5, centered=True)),
    (optim.adagrad, dict(learning_rate=0.1), "Adagrad", dict(lr=0.1)),
    (optim.adagrad, dict(learning_rate=0.1, initial_accumulator_value=0.5, eps=1e-3, weight_decay=0.1),
     "Adagrad", dict(lr=0.1, initial_accumulator_value=0.5, eps=1e-3, weight_decay=0.1)),
    (optim.adadelta, dict(), "Adadelta", dict()),
    (optim.adadelta, dict(learning_rate=0.5, rho=0.5, eps=1e-3, weight_decay=0.1), "Adadelta",
     dict(lr=0.5, rho=0.5, eps=1e-3, weight_decay=0.1)),
    (optim.sgd, dict(learning_rate=0.02, momentum=0.9, nesterov=True), "SGD",
     dict(lr=0.02, momentum=0.9, nesterov=True)),
]


@pytest.mark.parametrize("rule, ours, cls, theirs", CASES,
                         ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(CASES)])
def test_trajectory_matches_torch(rule, ours, cls, theirs):
    params = _params()
    got = _ours(rule(**ours), params)
    want = _torch(getattr(torch.optim, cls), theirs, params)
    moved = max(float(np.abs(w - p).max()) for w, p in zip(
        [v for s in want.values() for v in s.values()], [v for s in params.values() for v in s.values()]))
    assert moved > 1e-3, "the comparison is vacuous: torch's params barely moved"
    for key in params:
        for name in params[key]:
            np.testing.assert_allclose(got[key][name], want[key][name], rtol=1e-6, atol=1e-10,
                                       err_msg=f"{rule.__name__}{ours} differs from torch at {key}/{name}")


def test_adagrad_lr_decay_is_a_schedule():
    lr, lr_decay = 0.1, 0.05
    params = _params()
    got = _ours(optim.adagrad(lambda count: lr / (1 + count * lr_decay)), params)
    want = _torch(torch.optim.Adagrad, dict(lr=lr, lr_decay=lr_decay), params)
    np.testing.assert_allclose(got["1"]["w"], want["1"]["w"], rtol=1e-6)


def test_a_schedule_matches_torch_cosine_annealing():
    lr, steps = 0.05, STEPS
    params = _params()
    got = _ours(optim.sgd(optim.cosine_decay_schedule(lr, steps), momentum=0.9), params)
    tensors = tree_map(lambda v: torch.tensor(v, dtype=torch.float64, requires_grad=True), params)
    flat = [t for sub in tensors.values() for t in sub.values()]
    topt = torch.optim.SGD(flat, lr=lr, momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(topt, T_max=steps)
    for _ in range(steps):
        topt.zero_grad()
        sum(((t ** 2).sum() + 0.025 * (t ** 4).sum()) for t in flat).backward()
        topt.step()
        sched.step()
    np.testing.assert_allclose(got["0"]["w"], tensors["0"]["w"].detach().numpy(), rtol=1e-6)


# The rules issue 16 added from torch.optim: 200 steps each.
LONG_STEPS = 200
NEW_CASES = [
    (optim.radam, dict(learning_rate=0.05), "RAdam", dict(lr=0.05)),
    (optim.radam, dict(learning_rate=0.02, b1=0.8, b2=0.99, eps=1e-6, weight_decay=0.1), "RAdam",
     dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    (optim.radam, dict(learning_rate=0.02, weight_decay=0.3, decoupled_weight_decay=True), "RAdam",
     dict(lr=0.02, weight_decay=0.3, decoupled_weight_decay=True)),
    (optim.nadamw, dict(learning_rate=0.01), "NAdam", dict(lr=0.01, weight_decay=1e-2, decoupled_weight_decay=True)),
    (optim.nadamw, dict(learning_rate=0.02, momentum_decay=0.02, weight_decay=0.3), "NAdam",
     dict(lr=0.02, momentum_decay=0.02, weight_decay=0.3, decoupled_weight_decay=True)),
    (optim.rprop, dict(learning_rate=0.01), "Rprop", dict(lr=0.01)),
    (optim.rprop, dict(learning_rate=0.05, eta_minus=0.3, eta_plus=1.5, min_step_size=1e-3, max_step_size=0.2),
     "Rprop", dict(lr=0.05, etas=(0.3, 1.5), step_sizes=(1e-3, 0.2))),
    (optim.asgd, dict(learning_rate=0.01), "ASGD", dict(lr=0.01)),
    (optim.asgd, dict(learning_rate=0.02, lambd=0.01, alpha=0.5, t0=50, weight_decay=0.1), "ASGD",
     dict(lr=0.02, lambd=0.01, alpha=0.5, t0=50, weight_decay=0.1)),
]


@pytest.mark.parametrize("rule, ours, cls, theirs", NEW_CASES,
                         ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(NEW_CASES)])
def test_new_rules_follow_torch_for_200_steps(rule, ours, cls, theirs):
    params = _params()
    got, state = _ours(rule(**ours), params, LONG_STEPS, keep_state=True)
    want, topt, tensors = _torch(getattr(torch.optim, cls), theirs, params, LONG_STEPS, keep_optimizer=True)
    moved = max(float(np.abs(want[k][n] - params[k][n]).max()) for k in params for n in params[k])
    assert moved > 1e-2, "the comparison is vacuous: torch's params barely moved"
    for key in params:
        for name in params[key]:
            np.testing.assert_allclose(got[key][name], want[key][name], rtol=1e-6, atol=1e-10,
                                       err_msg=f"{rule.__name__}{ours} differs from torch at {key}/{name}")
    if cls == "ASGD":  # the averaged parameters too
        for key in params:
            for name in params[key]:
                np.testing.assert_allclose(state["ax"][key][name], topt.state[tensors[key][name]]["ax"].numpy(),
                                           rtol=1e-6, atol=1e-10)

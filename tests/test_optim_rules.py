"""Known values: every named rule against its formula written out by hand, for a few steps (no torch).

Each ``_by_hand_*`` function is the rule as a paper or torch's documentation states it, on one array,
written independently of fnlearn's code.
"""

import math

import numpy as np
import pytest

from fnlearn import optim

STEPS = 4
X0 = np.array([0.7, -1.3, 0.05])


def _grad(x):
    return 2.0 * x + 0.1 * x ** 3 - 0.3


def _ours(opt, steps=STEPS):
    params = {"x": X0.copy()}
    state = opt.init(params)
    for _ in range(steps):
        updates, state = opt.update({"x": _grad(params["x"])}, state, params)
        params = optim.apply_updates(params, updates)
    return params["x"]


def _by_hand_adam(lr, b1, b2, eps, wd=0.0, ams=False, decoupled=0.0):
    x, m, v, vmax = X0.copy(), 0.0, 0.0, 0.0
    for t in range(1, STEPS + 1):
        g = _grad(x) + wd * x
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        vmax = np.maximum(vmax, v)
        m_hat = m / (1 - b1 ** t)
        v_hat = (vmax if ams else v) / (1 - b2 ** t)
        x = x - lr * decoupled * x - lr * m_hat / (np.sqrt(v_hat) + eps)
    return x


def _by_hand_adamax(lr, b1, b2, eps):
    x, m, u = X0.copy(), 0.0, 0.0
    for t in range(1, STEPS + 1):
        g = _grad(x)
        m = b1 * m + (1 - b1) * g
        u = np.maximum(b2 * u, np.abs(g) + eps)
        x = x - lr / (1 - b1 ** t) * m / u
    return x


def _by_hand_nadam(lr, b1, b2, eps, psi):
    x, m, v, prod = X0.copy(), 0.0, 0.0, 1.0
    for t in range(1, STEPS + 1):
        g = _grad(x)
        mu = b1 * (1 - 0.5 * 0.96 ** (t * psi))
        mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
        prod *= mu
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        v_hat = v / (1 - b2 ** t)
        x = x - lr * (1 - mu) / (1 - prod) * g / (np.sqrt(v_hat) + eps) \
              - lr * mu_next / (1 - prod * mu_next) * m / (np.sqrt(v_hat) + eps)
    return x


def _by_hand_rmsprop(lr, alpha, eps, centered=False, momentum=0.0):
    x, v, gbar, buf = X0.copy(), 0.0, 0.0, 0.0
    for _ in range(STEPS):
        g = _grad(x)
        v = alpha * v + (1 - alpha) * g ** 2
        gbar = alpha * gbar + (1 - alpha) * g
        denom = np.sqrt(v - gbar ** 2 if centered else v) + eps
        buf = momentum * buf + g / denom
        x = x - lr * buf
    return x


def _by_hand_adagrad(lr, init, eps):
    x, s = X0.copy(), init
    for _ in range(STEPS):
        g = _grad(x)
        s = s + g ** 2
        x = x - lr * g / (np.sqrt(s) + eps)
    return x


def _by_hand_adadelta(lr, rho, eps):
    x, eg, ex = X0.copy(), 0.0, 0.0
    for _ in range(STEPS):
        g = _grad(x)
        eg = rho * eg + (1 - rho) * g ** 2
        dx = np.sqrt(ex + eps) / np.sqrt(eg + eps) * g
        ex = rho * ex + (1 - rho) * dx ** 2
        x = x - lr * dx
    return x


def _by_hand_lion(lr, b1, b2, wd):
    x, m = X0.copy(), 0.0
    for _ in range(STEPS):
        g = _grad(x)
        c = np.sign(b1 * m + (1 - b1) * g)
        m = b2 * m + (1 - b2) * g
        x = x - lr * (c + wd * x)
    return x


def _by_hand_lamb(lr, b1, b2, eps, wd):
    x, m, v = X0.copy(), 0.0, 0.0
    for t in range(1, STEPS + 1):
        g = _grad(x)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        r = (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps) + wd * x
        x = x - lr * math.sqrt(np.sum(x ** 2)) / math.sqrt(np.sum(r ** 2)) * r
    return x


def _by_hand_sgd(lr, mu, nesterov=False, wd=0.0):
    x, buf = X0.copy(), None
    for _ in range(STEPS):
        g = _grad(x) + wd * x
        buf = g if buf is None else mu * buf + g
        x = x - lr * (g + mu * buf if nesterov else buf)
    return x


CASES = [
    ("sgd", optim.sgd(0.1), _by_hand_sgd(0.1, 0.0)),
    ("sgd momentum", optim.sgd(0.1, momentum=0.9, weight_decay=0.1), _by_hand_sgd(0.1, 0.9, wd=0.1)),
    ("sgd nesterov", optim.sgd(0.1, momentum=0.9, nesterov=True), _by_hand_sgd(0.1, 0.9, nesterov=True)),
    ("adam", optim.adam(0.1, b1=0.8, b2=0.9, eps=1e-3), _by_hand_adam(0.1, 0.8, 0.9, 1e-3)),
    ("adam l2", optim.adam(0.1, weight_decay=0.2), _by_hand_adam(0.1, 0.9, 0.999, 1e-8, wd=0.2)),
    ("amsgrad", optim.amsgrad(0.1, b2=0.5), _by_hand_adam(0.1, 0.9, 0.5, 1e-8, ams=True)),
    ("adamw", optim.adamw(0.1, weight_decay=0.2), _by_hand_adam(0.1, 0.9, 0.999, 1e-8, decoupled=0.2)),
    ("adamax", optim.adamax(0.1, b2=0.5, eps=1e-2), _by_hand_adamax(0.1, 0.9, 0.5, 1e-2)),
    ("nadam", optim.nadam(0.1, momentum_decay=0.05), _by_hand_nadam(0.1, 0.9, 0.999, 1e-8, 0.05)),
    ("rmsprop", optim.rmsprop(0.05, decay=0.8, eps=1e-2), _by_hand_rmsprop(0.05, 0.8, 1e-2)),
    ("rmsprop centered momentum", optim.rmsprop(0.05, decay=0.8, centered=True, momentum=0.5),
     _by_hand_rmsprop(0.05, 0.8, 1e-8, centered=True, momentum=0.5)),
    ("adagrad", optim.adagrad(0.3, initial_accumulator_value=0.1, eps=1e-2), _by_hand_adagrad(0.3, 0.1, 1e-2)),
    ("adadelta", optim.adadelta(2.0, rho=0.7, eps=1e-2), _by_hand_adadelta(2.0, 0.7, 1e-2)),
    ("lion", optim.lion(0.05, b1=0.8, b2=0.9, weight_decay=0.1), _by_hand_lion(0.05, 0.8, 0.9, 0.1)),
    ("lamb", optim.lamb(0.05, weight_decay=0.1), _by_hand_lamb(0.05, 0.9, 0.999, 1e-6, 0.1)),
]


@pytest.mark.parametrize("name, opt, want", CASES, ids=[c[0] for c in CASES])
def test_rule_matches_its_formula(name, opt, want):
    got = _ours(opt)
    assert np.abs(want - X0).max() > 1e-3, "the hand-written rule barely moved: the test would be vacuous"
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_adam_first_step_is_lr_times_sign():
    """With zero moments, Adam's first bias-corrected step is -lr * g/|g| (up to eps): a closed form."""
    g = np.array([3.0, -0.001, 50.0])
    opt = optim.adam(0.01)
    u, _ = opt.update({"x": g}, opt.init({"x": np.zeros(3)}))
    np.testing.assert_allclose(u["x"], -0.01 * np.sign(g), rtol=1e-5)


def test_lion_steps_have_magnitude_lr():
    u, _ = optim.lion(0.1, weight_decay=0.0).update({"x": np.array([1e-9, -7.0])},
                                                     optim.lion(0.1).init({"x": np.zeros(2)}))
    np.testing.assert_array_equal(u["x"], [-0.1, 0.1])


def test_state_holds_the_step_count_and_moments_by_name():
    opt = optim.adam(0.1)
    state = opt.init({"x": X0})
    for _ in range(3):
        _, state = opt.update({"x": X0}, state)
    assert state["adam"]["count"] == 3 and state["learning_rate"]["count"] == 3
    np.testing.assert_allclose(state["adam"]["mu"]["x"], (1 - 0.9 ** 3) * X0)


@pytest.mark.parametrize("rule", [optim.sgd, optim.adam, optim.adamw, optim.amsgrad, optim.adamax, optim.nadam,
                                  optim.rmsprop, optim.adagrad, optim.adadelta, optim.lion, optim.lamb])
def test_numpy_float64_hyperparameters_do_not_upcast_float32(rule):
    params = {"x": X0.astype(np.float32)}
    opt = rule(np.float64(0.01)) if rule is not optim.sgd else rule(np.float64(0.01), momentum=np.float64(0.9))
    state = opt.init(params)
    for _ in range(2):
        updates, state = opt.update({"x": _grad(params["x"])}, state, params)
        params = optim.apply_updates(params, updates)
    assert updates["x"].dtype == np.float32 and params["x"].dtype == np.float32

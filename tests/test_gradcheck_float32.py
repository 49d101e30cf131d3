"""Issue 18 item 19: a float32 check that fails by cancellation says so and suggests float64."""

import numpy as np
import pytest

import fnlearn as fl
from fnlearn import testing


def _mlp_point(scale):
    model = fl.serial(fl.Dense(8), fl.Tanh(), fl.Dense(3))
    params = model.init(np.random.default_rng(0), (-1, 5))
    x = (np.random.default_rng(1).normal(size=(4, 5)) * scale).astype(np.float32)
    return model, params, x


@pytest.mark.parametrize("kinks", ["auto", "raise", "ignore"])
def test_float32_cancellation_is_named_and_float64_suggested(kinks):
    model, params, x = _mlp_point(100.0)
    testing.check_vjp(model.apply, params, x)                       # float64 differences: passes
    with pytest.raises(testing.GradCheckError) as info:
        testing.check_vjp(model.apply, params, x, fd_dtype="native", kinks=kinks)
    message = str(info.value)
    first = message.splitlines()[0]
    assert "float32 finite differences are too coarse" in first and "Likely a kink" not in first
    assert "fd_dtype='float64'" in message and "cancellation" in message


def test_native_differences_keep_float32_leaves_float32():
    # a float64 tangent used to turn one perturbed leaf into float64 beside float32 ones
    model, params, x = _mlp_point(1.0)
    assert testing.check_vjp(model.apply, params, x, fd_dtype="native").passed


def test_a_wrong_vjp_is_still_blamed_under_native_differences():
    def apply(params, x, *, rng=None, train=False):
        y = x * params["s"]
        return y, lambda dy: ({"s": (dy * x).sum(axis=0)}, 2 * dy * params["s"])   # dx off by 2

    params = {"s": np.array([1.5, -2.0], np.float32)}
    with pytest.raises(testing.GradCheckError) as info:
        testing.check_vjp(apply, params, np.ones((3, 2), np.float32), fd_dtype="native")
    assert "VJP disagrees with finite differences w.r.t. x" in str(info.value)
    assert "too coarse" not in str(info.value)

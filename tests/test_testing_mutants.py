"""Tests of the tester: correct reference layers pass, deliberately wrong VJPs are caught."""

import numpy as np
import pytest

from fnlearn import testing
from fnlearn.testing import GradCheckError, NonDifferentiablePoint


def dense(bug=None):
    """A dense layer y = x @ w + b; ``bug`` names a deliberate mistake in its VJP."""
    def apply(params, x, *, rng=None, train=False):
        w, b = params["w"], params["b"]
        y = x @ w + b

        def vjp(dy, *, compute_dx=True):
            dw = x.T @ dy
            if bug == "one_entry":
                dw = dw.copy()
                dw[0, 0] *= 1.01
            return {"w": dw, "b": dy.sum(axis=0)}, (dy @ w.T if compute_dx else None)
        return y, vjp
    return apply


def dense_point(dtype=np.float64, n_in=4, n_out=3, batch=5, seed=0):
    rng = np.random.default_rng(seed)
    params = {"w": rng.standard_normal((n_in, n_out)).astype(dtype),
              "b": rng.standard_normal(n_out).astype(dtype)}
    return params, rng.standard_normal((batch, n_in)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_correct_dense_passes(dtype):
    params, x = dense_point(dtype)
    report = testing.check_vjp(dense(), params, x)
    assert report.passed and {r.path for r in report.leaves} == {"w", "b", "x"}


def test_one_percent_error_in_one_weight_entry_is_caught():
    params, x = dense_point()
    with pytest.raises(GradCheckError) as info:
        testing.check_vjp(dense("one_entry"), params, x)
    report = info.value.report
    assert report.check == "adjoint identity" and report.failure.path == "w"
    assert report.drilldown.rows[0][0] == (0, 0) and report.drilldown.bad == 1


def test_relu_at_zero_is_a_non_differentiable_point():
    def relu(params, x, *, rng=None, train=False):
        return np.maximum(x, 0.0), lambda dy: ({}, dy * (x > 0))
    with pytest.raises(NonDifferentiablePoint) as info:
        testing.check_vjp(relu, {}, np.array([[0.0, 1.0, -1.0]]))
    assert not isinstance(info.value, AssertionError) and info.value.leaf == "x"

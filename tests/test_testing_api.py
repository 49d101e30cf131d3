"""fnlearn.testing's API: reports, reproduce lines, leaf selection, integer inputs, random layers,
losses, strategies and profiles."""

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fnlearn as fl
from fnlearn import testing
from fnlearn.testing import GradCheckError, NonDifferentiablePoint
from fnlearn.testing import strategies as fst


def scale_layer(bug=None):
    """y = x * s (per feature); ``bug="one"`` makes ds[0] 1% too large."""
    def apply(params, x, *, rng=None, train=False):
        s = params["s"]

        def vjp(dy, *, compute_dx=True):
            ds = (dy * x).sum(axis=0)
            if bug == "one":
                ds[0] *= 1.01
            return {"s": ds}, (dy * s if compute_dx else None)
        return x * s, vjp
    return apply


def lookup(bug=None):
    """An embedding-like layer: integer ids in, rows of a table out."""
    def apply(params, ids, *, rng=None, train=False):
        table = params["table"]

        def vjp(dy, *, compute_dx=True):
            d = np.zeros_like(table)
            np.add.at(d, ids, dy)
            return {"table": d}, (np.zeros(ids.shape) if bug == "dx" else None)
        return table[ids], vjp
    return apply


def test_errors_are_assertion_errors_but_kinks_are_not():
    assert issubclass(GradCheckError, AssertionError)
    assert not issubclass(NonDifferentiablePoint, AssertionError)


def test_failure_report_has_every_part_and_its_reproduce_line_reproduces():
    params, x = {"s": np.array([1.5, -0.5, 2.0])}, np.random.default_rng(0).standard_normal((4, 3))
    apply = scale_layer("one")
    with pytest.raises(GradCheckError) as info:
        testing.check_vjp(apply, params, x, seed=7)
    text, report = str(info.value), info.value.report
    for part in ("w.r.t. s (shape (3,), float64)", "analytic", "numeric", "tol =", "x over tolerance",
                 "drill-down", "index", "(0,)", "1/3 entries out of tolerance", "point", "reproduce"):
        assert part in text, part
    assert report.reproduce.startswith("fnlearn.testing.check_vjp(apply, params, x, wrt=['s'], seed=7")
    with pytest.raises(GradCheckError) as again:
        eval(report.reproduce, {"fnlearn": fl, "apply": apply, "params": params, "x": x})
    assert again.value.report.failure == report.failure
    json.dumps(report.to_dict())   # plain data for tools


def test_passing_report_lists_every_leaf_and_probe():
    report = testing.check_vjp(scale_layer(), {"s": np.ones(2)}, np.ones((3, 2)), probes=3)
    assert report.passed and [(r.path, r.probe) for r in report.leaves] == [
        ("s", 0), ("x", 0), ("s", 1), ("x", 1), ("s", 2), ("x", 2)]
    assert all(r.tolerance > 0 and r.error <= r.tolerance for r in report.leaves)


def test_wrt_selects_leaves_by_path_and_prefix():
    model = fl.serial(fl.Dense(3), fl.Tanh(), fl.Dense(2))
    params = model.init(np.random.default_rng(0), (-1, 4), dtype=np.float64)
    x = np.random.default_rng(1).standard_normal((2, 4))
    paths = lambda wrt: {r.path for r in testing.check_vjp(model.apply, params, x, wrt=wrt).leaves}  # noqa: E731
    assert paths("0") == {"0/w", "0/b"} and paths(["2/w", "x"]) == {"2/w", "x"}
    with pytest.raises(ValueError, match="not a leaf path"):
        testing.check_vjp(model.apply, params, x, wrt="3/w")


def test_integer_inputs_are_not_differentiated_and_need_a_none_cotangent():
    params, ids = {"table": np.random.default_rng(0).standard_normal((5, 2))}, np.array([0, 3, 3, 1])
    report = testing.check_vjp(lookup(), params, ids)
    assert {r.path for r in report.leaves} == {"table"}
    with pytest.raises(GradCheckError) as info:
        testing.check_vjp(lookup("dx"), params, ids)
    assert (info.value.report.check, info.value.report.path) == ("cotangent structure", "x")
    with pytest.raises(ValueError, match="not float arrays"):
        testing.check_vjp(lookup(), params, ids, wrt="x")


def test_check_layer_takes_a_bare_apply_with_params_and_x():
    report = testing.check_layer(scale_layer(), params={"s": np.array([0.5, 2.0], np.float32)},
                                 x=np.ones((3, 2), np.float32))
    assert dict((p, s) for p, s, _ in report.results)["init"] == "skipped"


def test_a_vjp_without_compute_dx_keyword_is_accepted():
    def apply(params, x):
        return np.sin(x), lambda dy: ({}, dy * np.cos(x))
    report = testing.check_layer(apply, params={}, x=np.linspace(-1, 1, 6).reshape(3, 2))
    assert report.passed


def test_random_layer_gets_a_fresh_generator_per_call_and_global_randomness_is_caught():
    def noisy(use_global):
        def apply(params, x, *, rng=None, train=False):
            noise = np.random.random(x.shape) if use_global else rng.random(x.shape)
            mask = (noise > 0.3).astype(x.dtype)
            return x * mask, lambda dy, *, compute_dx=True: ({}, dy * mask if compute_dx else None)
        return apply
    x = np.random.default_rng(0).standard_normal((3, 4))
    assert testing.check_layer(noisy(False), params={}, x=x, rng=5, train=True).passed
    with pytest.raises(GradCheckError) as info:
        testing.check_layer(noisy(True), params={}, x=x, rng=5, train=True, properties=["determinism"])
    assert info.value.report.failures[0].check == "determinism"


def test_unknown_properties_are_refused():
    with pytest.raises(ValueError, match="unknown properties"):
        testing.check_layer(fl.Relu(), (-1, 2), properties=["adjoint", "speed"])
    report = testing.check_layer(fl.Relu(), (-1, 2), exclude=["precision", "init"])
    assert [p for p, _, _ in report.results] == [p for p in testing.PROPERTIES if p not in ("precision", "init")]


def test_check_layer_report_lists_each_property():
    text = str(testing.check_layer(fl.Dense(2), (-1, 3)))
    assert text.startswith("check_layer passed for Dense(2)") and all(p in text for p in testing.PROPERTIES)


def test_loss_checks_structure_and_purity():
    pred, target = np.ones((2, 3)), np.zeros((2, 3))

    def in_place(p, t):
        p -= t
        return float((p ** 2).sum()), 2 * p

    def wrong_dtype(p, t):
        return float((p ** 2).sum()), (2 * p).astype(np.float32)
    for loss, check in ((in_place, "mutation"), (wrong_dtype, "loss structure")):
        with pytest.raises(GradCheckError) as info:
            testing.check_loss_grad(loss, pred, target)
        assert info.value.report.check == check


@pytest.mark.parametrize("loss, target", [
    (fl.losses.mse, np.array([[0.5, -1.0, 2.0], [0.0, 0.25, 1.0]])),
    (fl.losses.softmax_cross_entropy, np.array([2, 0])),
    (fl.losses.sigmoid_binary_cross_entropy, np.array([[0.0, 1.0, 0.5], [1.0, 0.0, 0.25]]))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fnlearn_losses_pass(loss, target, dtype):
    pred = np.array([[0.3, -1.2, 0.8], [1.5, 0.1, -0.4]], dtype)
    assert testing.check_loss_grad(loss, pred, target).passed


def test_taylor_test_passes_a_linear_function_at_rounding_level():
    x = np.array([1.0, -2.0, 3.0])
    result = testing.taylor_test(lambda p: float(np.dot([1.0, 2.0, 3.0], p)), x, np.array([1.0, 2.0, 3.0]))
    assert result.passed and abs(result.linear_error) <= result.allowed


def test_fnlearn_testing_imports_without_hypothesis():
    code = ("import sys; sys.modules['hypothesis'] = None\n"
            "import numpy as np, fnlearn.testing as t\n"
            "print(t.check_vjp(lambda p, x: (x * 2, lambda dy: ({}, dy * 2)), {}, np.ones((2, 2))).passed)\n"
            "try:\n    import fnlearn.testing.strategies\nexcept ImportError:\n    print('strategies need hypothesis')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["True", "strategies need hypothesis"]


# ---------------------------------------------------------------------------------- strategies

@given(a=fst.arrays(np.float32, fst.batch_shapes((3,))), b=fst.arrays(np.float64, (2, 2), allow_zero=True))
def test_arrays_are_bounded_finite_and_not_tiny(a, b):
    assert a.dtype == np.float32 and 1 <= a.shape[0] <= 4 and a.shape[1:] == (3,)
    assert np.all(np.isfinite(a)) and np.all((np.abs(a) >= 2.0 ** -10) & (np.abs(a) <= 2.0))
    assert np.all((b == 0) | (np.abs(b) >= 2.0 ** -10))


@given(a=fst.away_from([-1.0, 0.0, 1.0], 0.05, np.float32, (3, 3)))
def test_away_from_keeps_the_margin(a):
    assert np.all(np.min(np.abs(a[..., None] - np.array([-1.0, 0.0, 1.0])), axis=-1) >= 0.05 * (1 - 1e-6))


@given(a=fst.separated_arrays(np.float64, st.tuples(fst.small_dims(), fst.small_dims())))
def test_separated_arrays_are_distinct_and_spread(a):
    values = np.sort(a.ravel())
    step = min(0.25, 4.0 / a.size)
    assert np.all(np.diff(values) >= 0.6 * step - 1e-12) and np.all(np.abs(values) >= 0.3 * step - 1e-12)


@given(case=fst.layer_cases(fl.Embedding, num_embeddings=st.just(5), features=fst.small_dims(),
                            feature_shape=(2,), dtype=np.float64,
                            x_elements=lambda dt, shape: fst.hnp.arrays(np.int64, shape,
                                                                       elements=st.integers(0, 4))))
def test_layer_cases_builds_params_with_the_layers_own_init(case):
    assert case.params["embeddings"].shape == (5, case.hyperparams["features"])
    assert case.params["embeddings"].dtype == np.float64 and case.x.dtype == np.int64
    again = fl.Embedding(5, case.hyperparams["features"]).init(np.random.default_rng(case.seed), (-1, 2),
                                                               dtype=np.float64)
    np.testing.assert_array_equal(again["embeddings"], case.params["embeddings"])
    case.check_vjp()


def test_register_profiles_keeps_names_and_ci_settings(monkeypatch):
    from hypothesis import settings
    monkeypatch.setenv("HYPOTHESIS_PROFILE", "ci")
    current = settings.get_current_profile_name()
    try:
        assert fst.register_profiles() == "ci"
        ci = settings.get_profile("ci")
        assert ci.derandomize and ci.database is None and ci.deadline is None and ci.print_blob
        assert {"dev", "nightly"} <= set(fst.PROFILES)
    finally:
        settings.load_profile(current)

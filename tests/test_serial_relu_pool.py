"""serial runs a Relu directly followed by MaxPool2D after the pooling (combinators._execution_order):
the output and the gradients are those of the two layers called in their own order, ties included."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fnlearn as fl
from fnlearn.combinators import _execution_order
from fnlearn.testing import check_vjp
from fnlearn.testing import strategies as fst


def _in_order(layers, params, x):
    """The layers called one after the other by hand, in their own order, and the chained VJP."""
    vjps = []
    for layer, p in zip(layers, params):
        x, vjp = layer.apply(p, x)
        vjps.append(vjp)

    def vjp(dy):
        for f in reversed(vjps):
            dy = f(dy)[1]
        return dy
    return x, vjp


# small integers with zeros and negatives: many ties, windows whose maximum is 0 or negative
ties = hnp.arrays(np.float64, st.tuples(st.integers(1, 2), st.integers(2, 6), st.integers(2, 6),
                                        st.integers(1, 2)),
                  elements=st.integers(-3, 3).map(float))


@given(x=ties, window=st.integers(1, 3), stride=st.sampled_from([None, 1, 2]),
       padding=st.sampled_from(["valid", "same"]), seed=fst.seeds())
# a window whose maximum is 0 and whose first entry is negative: relu first sends the cotangent to the
# negative entry (the first of four zeros), pooling first to the zero; ReLU's derivative 0 at 0 makes
# both zero (with 1 at 0 they would differ)
@example(x=np.array([[[[-1.0], [0.0]], [[-2.0], [-3.0]]]]), window=2, stride=None, padding="valid", seed=0)
def test_relu_then_max_pool_gives_the_output_and_gradient_of_the_two_in_order(x, window, stride,
                                                                               padding, seed):
    assume(padding == "same" or min(x.shape[1:3]) >= window)
    layers = [fl.Relu(), fl.MaxPool2D(window, stride=stride, padding=padding)]
    model = fl.serial(*layers)
    params = model.init(np.random.default_rng(0), (-1, *x.shape[1:]), dtype=np.float64)
    y, vjp = model.apply(params, x)
    y_ref, vjp_ref = _in_order(layers, [{}, {}], x)
    np.testing.assert_array_equal(y, y_ref)
    dy = np.random.default_rng(seed).standard_normal(y.shape)
    grads, dx = vjp(dy)
    np.testing.assert_array_equal(dx, vjp_ref(dy))
    assert grads == {"0": {}, "1": {}}
    assert vjp(dy, compute_dx=False) == ({"0": {}, "1": {}}, None)


special = hnp.arrays(st.sampled_from([np.float32, np.float64]),
                     st.tuples(st.integers(1, 2), st.integers(1, 5), st.integers(1, 5), st.integers(1, 2)),
                     elements=st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.5, -np.inf, np.inf]))


@given(x=special, window=st.integers(1, 3), stride=st.integers(1, 3),
       padding=st.sampled_from(["same", 0, 1, (1, 0)]), seed=fst.seeds())
def test_the_reorder_keeps_values_and_gradients_with_infinities_signed_zeros_and_padding(
        x, window, stride, padding, seed):
    """float32 and float64, infinities, both zeros, integer padding, overlapping windows: the same
    output bits and the same gradient values (a zero's sign may differ where windows overlap)."""
    try:
        layers = [fl.Relu(), fl.MaxPool2D(window, stride=stride, padding=padding)]
        params = fl.serial(*layers).init(np.random.default_rng(0), (-1, *x.shape[1:]))
    except ValueError:
        return  # padding or window that does not fit (MaxPool2D says so)
    y, vjp = fl.serial(*layers).apply(params, x)
    y_ref, vjp_ref = _in_order(layers, [{}, {}], x)
    np.testing.assert_array_equal(y, y_ref, strict=True)
    dy = np.random.default_rng(seed).standard_normal(y.shape).astype(x.dtype)
    np.testing.assert_array_equal(vjp(dy)[1], vjp_ref(dy), strict=True)


def test_a_wrapped_max_pool_is_not_reordered():
    """A wrapper made with functools.wraps copies the function's attributes, not its identity: the
    pair runs in its own order (here the wrapper negates, so the order shows)."""
    import functools
    pool = fl.MaxPool2D(2)

    @functools.wraps(pool.apply)
    def negated(params, x, **kw):
        y, vjp = pool.apply(params, x, **kw)
        return -y, lambda dy, **k: vjp(-dy, **k)
    model = fl.serial(fl.Relu(), fl.Layer(pool.init, negated))
    y, _ = model.apply({"0": {}, "1": {}}, np.full((1, 2, 2, 1), -4.0))
    np.testing.assert_array_equal(y, [[[[-0.0]]]])
    assert _execution_order([("0", fl.Relu()), ("1", fl.Layer(pool.init, negated))]) == [0, 1]


def test_the_pair_is_reordered_only_when_relu_directly_precedes_max_pool():
    relu, pool = fl.Relu(), fl.MaxPool2D(2)
    pairs = lambda *ls: [(str(i), layer) for i, layer in enumerate(ls)]  # noqa: E731
    assert _execution_order(pairs(relu, pool)) == [1, 0]
    assert _execution_order(pairs(fl.Conv2D(2, 3), relu, pool, fl.Flatten())) == [0, 2, 1, 3]
    assert _execution_order(pairs(relu, pool, relu, pool)) == [1, 0, 3, 2]
    assert _execution_order(pairs(pool, relu)) == [0, 1]
    assert _execution_order(pairs(relu, fl.AvgPool2D(2))) == [0, 1]
    assert _execution_order(pairs(fl.Tanh(), pool)) == [0, 1]
    assert _execution_order(pairs(relu, relu, pool)) == [0, 2, 1]


def test_relu_runs_on_the_pooled_entries(monkeypatch):
    from fnlearn.layers import activations
    sizes = []
    real = activations._relu
    monkeypatch.setattr(activations, "_relu", lambda x: sizes.append(x.shape) or real(x))
    model = fl.serial(fl.Relu(), fl.MaxPool2D(2))
    model.apply({"0": {}, "1": {}}, np.ones((2, 8, 8, 3)))
    assert sizes == [(2, 4, 4, 3)]


def test_a_cnn_with_the_pair_passes_the_gradient_check():
    model = fl.serial(fl.Conv2D(3, 3), fl.Relu(), fl.MaxPool2D(2), fl.Flatten(), fl.Dense(2))
    rng = np.random.default_rng(0)
    params = model.init(rng, (-1, 8, 8, 2), dtype=np.float64)
    x = rng.standard_normal((2, 8, 8, 2))
    assert check_vjp(model.apply, params, x).passed


def test_errors_name_the_layer_that_raised():
    model = fl.serial(fl.Relu(), fl.MaxPool2D(2))
    with pytest.raises(ValueError, match=r"serial layer 1 .*MaxPool2D"):
        model.apply({"0": {}, "1": {}}, np.ones((2, 8, 8), np.float32))
    y, vjp = model.apply({"0": {}, "1": {}}, np.ones((2, 8, 8, 1), np.float32))
    with pytest.raises(ValueError, match=r"serial layer 0 .*Relu"):
        vjp(np.ones((2, 4, 4, 2), np.float32))

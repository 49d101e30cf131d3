"""Known values, conventions and error messages of the core layers, losses and combinators.

The property battery (finite differences over hypothesis examples) is in test_registry.py; these tests
pin down what finite differences cannot: closed forms, conventions at kinks, and the exact errors.
"""

import math

import numpy as np
import pytest
from scipy import special

import fnlearn as fl

RNG = np.random.default_rng(0)


def fd_grad(f, x, h=1e-6):
    """Element-wise central differences of a scalar function, in float64 (an independent oracle)."""
    x = np.asarray(x, np.float64)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


# --- the NumPy-Learn regressions -------------------------------------------------------------------

def test_relu_vjp_masks_by_input_sign_instead_of_clipping_the_cotangent():
    # NumPy-Learn returned np.maximum(dy, 0): a negative cotangent on an active unit was lost, and a
    # positive cotangent on an inactive unit leaked through.
    x = np.array([[2.0, -3.0, 1.0, -1.0]])
    y, vjp = fl.Relu().apply({}, x)
    dy = np.array([[-5.0, 4.0, 0.5, -0.5]])
    np.testing.assert_array_equal(vjp(dy)[1], [[-5.0, 0.0, 0.5, 0.0]])


def test_relu_derivative_at_zero_is_zero():
    _, vjp = fl.Relu().apply({}, np.zeros((1, 3)))
    np.testing.assert_array_equal(vjp(np.ones((1, 3)))[1], np.zeros((1, 3)))


@pytest.fixture(params=[7, None], ids=["chunks-of-7", "one-piece"])
def relu_chunk(request, monkeypatch):
    """Relu in one piece, or in chunks of 7 entries (the last one short)."""
    from fnlearn.layers import activations
    if request.param:
        monkeypatch.setattr(activations, "_RELU_CHUNK", request.param)


def _special_floats(dtype):
    return np.array([0.0, -0.0, 1.0, -1.0, np.nan, np.inf, -np.inf, np.finfo(dtype).smallest_subnormal],
                    dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_vjp_is_dy_times_a_zero_one_mask_bit_for_bit(relu_chunk, dtype):
    # dy * 0.0 where x <= 0 or x is NaN: -0.0 for a negative dy, NaN for a NaN or infinite dy. In
    # one piece and in chunks; inputs that are not contiguous.
    special = _special_floats(dtype)
    x, dy = (a.ravel() for a in np.meshgrid(special, special))
    x = np.concatenate([x, RNG.standard_normal(37).astype(dtype)])
    dy = np.concatenate([dy, RNG.standard_normal(37).astype(dtype)])
    for x_, dy_ in [(x, dy), (np.stack([x, x[::-1]]).T, np.stack([dy[::-1], dy]).T),
                    (np.repeat(x, 2)[::2], dy)]:
        with np.errstate(invalid="ignore"):
            want = dy_ * (x_ > 0).astype(dtype)
            got = fl.Relu().apply({}, x_)[1](dy_)[1]
        assert got.dtype == dtype and got.shape == x_.shape
        assert np.ascontiguousarray(got).tobytes() == np.ascontiguousarray(want).tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_forward_is_the_maximum_with_zeros_bit_for_bit(relu_chunk, dtype):
    # In one piece and in chunks against one chunk of zeros; signed zeros, NaN and infinities;
    # inputs that are not contiguous.
    x = np.concatenate([np.repeat(_special_floats(dtype), 3), RNG.standard_normal(37).astype(dtype)])
    for x_ in (x, np.stack([x, x[::-1]]).T, np.repeat(x, 2)[::2]):
        want = np.maximum(x_, np.zeros_like(x_))
        got = fl.Relu().apply({}, x_)[0]
        assert got.dtype == dtype and got.shape == x_.shape and got.flags.c_contiguous
        assert got.tobytes() == np.ascontiguousarray(want).tobytes()


def test_cross_entropy_gradient_is_the_gradient_of_its_value():
    # NumPy-Learn summed the loss over the batch but did not scale its gradient consistently.
    logits = RNG.normal(size=(5, 4))
    labels = np.array([0, 3, 1, 1, 2])
    _, grad = fl.losses.softmax_cross_entropy(logits, labels)
    numeric = fd_grad(lambda z: fl.losses.softmax_cross_entropy(z, labels)[0], logits)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


# --- closed forms ----------------------------------------------------------------------------------

ACTIVATIONS = {
    "Relu": (fl.Relu, lambda x: np.maximum(x, 0), lambda x: (x > 0).astype(float)),
    "Sigmoid": (fl.Sigmoid, special.expit, lambda x: special.expit(x) * (1 - special.expit(x))),
    "Tanh": (fl.Tanh, np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    "LeakyRelu": (lambda: fl.LeakyRelu(0.1), lambda x: np.where(x > 0, x, 0.1 * x),
                  lambda x: np.where(x > 0, 1.0, 0.1)),
    "Elu": (lambda: fl.Elu(0.5), lambda x: np.where(x > 0, x, 0.5 * (np.exp(x) - 1)),
            lambda x: np.where(x > 0, 1.0, 0.5 * np.exp(x))),
    "Softplus": (fl.Softplus, lambda x: np.log1p(np.exp(x)), special.expit),
    "Gelu": (fl.Gelu, lambda x: x * special.ndtr(x),
             lambda x: special.ndtr(x) + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)),
    "GeluTanh": (lambda: fl.Gelu(approximate=True),
                 lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))),
                 None),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_matches_its_closed_form(name):
    make, f, df = ACTIVATIONS[name]
    x = np.linspace(-3, 3, 13)[None] + 0.01  # stay off the kink at 0
    y, vjp = make().apply({}, x)
    np.testing.assert_allclose(y, f(x), rtol=1e-12, atol=1e-12)
    dx = vjp(np.ones_like(y))[1]
    expected = df(x) if df is not None else fd_grad(lambda z: f(z).sum(), x)
    np.testing.assert_allclose(dx, expected, rtol=1e-7, atol=1e-9)


def test_softmax_and_log_softmax_are_stable_and_match_scipy():
    x = np.array([[1e4, 0.0, -1e4], [1.0, 2.0, 3.0]])
    np.testing.assert_allclose(fl.Softmax().apply({}, x)[0], special.softmax(x, axis=-1))
    np.testing.assert_allclose(fl.LogSoftmax().apply({}, x)[0], special.log_softmax(x, axis=-1))
    z = RNG.normal(size=(2, 3, 4))
    np.testing.assert_allclose(fl.Softmax(axis=1).apply({}, z)[0], special.softmax(z, axis=1))


def test_dense_computes_x_w_plus_b_and_its_gradients():
    layer = fl.Dense(3)
    params = layer.init(RNG, (-1, 4), dtype=np.float64)
    x, dy = RNG.normal(size=(5, 4)), RNG.normal(size=(5, 3))
    y, vjp = layer.apply(params, x)
    np.testing.assert_allclose(y, x @ params["w"] + params["b"])
    dparams, dx = vjp(dy)
    np.testing.assert_allclose(dparams["w"], x.T @ dy)
    np.testing.assert_allclose(dparams["b"], dy.sum(0))
    np.testing.assert_allclose(dx, dy @ params["w"].T)
    y3, vjp3 = layer.apply(params, x.reshape(5, 1, 4))  # extra axes are carried through
    np.testing.assert_allclose(y3.reshape(5, 3), y)
    np.testing.assert_allclose(vjp3(dy.reshape(5, 1, 3))[0]["w"], dparams["w"])


def test_dense_default_init_is_fan_in_scaled_and_float32():
    params = fl.Dense(256).init(np.random.default_rng(1), (-1, 1000))
    assert params["w"].dtype == np.float32 and params["b"].dtype == np.float32
    assert abs(params["w"].std() - 1 / math.sqrt(1000)) < 0.05 / math.sqrt(1000)
    np.testing.assert_array_equal(params["b"], 0)


@pytest.mark.parametrize("init,bound,std", [
    (fl.initializers.glorot_uniform(), math.sqrt(6 / 300), math.sqrt(2 / 300)),
    (fl.initializers.he_uniform(), math.sqrt(6 / 100), math.sqrt(2 / 100)),
    (fl.initializers.lecun_uniform(), math.sqrt(3 / 100), math.sqrt(1 / 100)),
    (fl.initializers.glorot_normal(), None, math.sqrt(2 / 300)),
    (fl.initializers.he_normal(), None, math.sqrt(2 / 100)),
])
def test_initializers_have_their_documented_scale(init, bound, std):
    w = init(np.random.default_rng(0), (100, 200), np.float64)
    if bound is not None:
        assert np.abs(w).max() <= bound
    assert abs(w.std() - std) < 0.03 * std


# --- losses ----------------------------------------------------------------------------------------

def test_mse_is_the_mean_over_all_elements_like_torch():
    pred, target = np.array([[1.0, 2.0], [3.0, 5.0]]), np.array([[0.0, 2.0], [3.0, 3.0]])
    value, grad = fl.losses.mse(pred, target)
    assert value == pytest.approx((1 + 0 + 0 + 4) / 4)
    np.testing.assert_allclose(grad, 2 * (pred - target) / 4)
    assert fl.losses.mse(pred, target, reduction="sum")[0] == pytest.approx(5.0)


def test_cross_entropy_int_labels_equal_one_hot_labels_and_is_stable_at_1e4():
    logits = np.array([[1e4, -1e4, 0.0], [-2.0, 3.0, 1e4]], dtype=np.float32)
    labels = np.array([1, 2])
    v_int, g_int = fl.losses.softmax_cross_entropy(logits, labels)
    v_hot, g_hot = fl.losses.softmax_cross_entropy(logits, np.eye(3, dtype=np.float32)[labels])
    assert math.isfinite(v_int) and v_int == pytest.approx((2e4 + 0.0) / 2, rel=1e-6)
    assert v_hot == pytest.approx(v_int, rel=1e-6)
    np.testing.assert_allclose(g_int, g_hot, atol=1e-7)
    assert g_int.dtype == np.float32


def test_cross_entropy_with_soft_labels_matches_finite_differences():
    logits = RNG.normal(size=(3, 4))
    soft = RNG.random((3, 4))  # rows need not sum to one
    _, grad = fl.losses.softmax_cross_entropy(logits, soft)
    numeric = fd_grad(lambda z: fl.losses.softmax_cross_entropy(z, soft)[0], logits)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


def test_sigmoid_binary_cross_entropy_is_stable_and_correct():
    logits = np.array([-1e4, -3.0, 0.0, 2.0, 1e4])
    targets = np.array([0.0, 1.0, 0.5, 0.0, 1.0])
    value, grad = fl.losses.sigmoid_binary_cross_entropy(logits, targets)
    p = special.expit(logits[1:4])
    t = targets[1:4]
    expected = -(t * np.log(p) + (1 - t) * np.log(1 - p)).sum() / 5
    assert value == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(grad, (special.expit(logits) - targets) / 5)


@pytest.mark.parametrize("loss", [fl.losses.mse, fl.losses.sigmoid_binary_cross_entropy])
def test_losses_refuse_to_broadcast(loss):
    with pytest.raises(ValueError, match=r"shape of the predictions \(4, 1\).*got \(4,\)"):
        loss(np.zeros((4, 1)), np.zeros(4))


def test_cross_entropy_rejects_out_of_range_labels_and_bad_shapes():
    with pytest.raises(ValueError, match=r"lie in \[0, 3\)"):
        fl.losses.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match=r"shape \(batch,\) = \(2,\)"):
        fl.losses.softmax_cross_entropy(np.zeros((2, 3)), np.array([[0], [1]]))
    with pytest.raises(TypeError, match="float32 or float64"):
        fl.losses.softmax_cross_entropy(np.zeros((2, 3), np.int64), np.array([0, 1]))


# --- dropout ---------------------------------------------------------------------------------------

def test_dropout_rate_is_the_probability_of_dropping():
    x = np.ones((200, 500), np.float32)
    y, vjp = fl.Dropout(0.3).apply({}, x, rng=np.random.default_rng(0), train=True)
    dropped = float((y == 0).mean())
    assert abs(dropped - 0.3) < 0.01
    np.testing.assert_allclose(y[y != 0], 1 / 0.7, rtol=1e-6)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(vjp(x)[1], y)  # the same mask scales the cotangent


def test_dropout_is_the_identity_in_evaluation_and_needs_an_rng_in_training():
    x = RNG.normal(size=(3, 4))
    y, _ = fl.Dropout(0.5).apply({}, x)
    np.testing.assert_array_equal(y, x)
    assert not np.shares_memory(y, x)
    with pytest.raises(ValueError, match="train=True needs rng"):
        fl.Dropout(0.5).apply({}, x, train=True)
    with pytest.raises(ValueError, match="probability of dropping"):
        fl.Dropout(1.5)


def test_dropout_with_the_same_seed_gives_the_same_mask():
    x = np.ones((4, 8))
    a = fl.Dropout(0.5).apply({}, x, rng=np.random.default_rng(3), train=True)[0]
    b = fl.Dropout(0.5).apply({}, x, rng=np.random.default_rng(3), train=True)[0]
    np.testing.assert_array_equal(a, b)


# --- serial and friends ----------------------------------------------------------------------------

def spy(log):
    """A parameterless identity layer that records the compute_dx it was asked for."""
    def init(rng, input_shape, *, dtype=None):
        return {}

    def apply(params, x, *, rng=None, train=False):
        def vjp(dy, *, compute_dx=True):
            log.append(compute_dx)
            return {}, (dy if compute_dx else None)
        return x, vjp
    return fl.Layer(init, apply)


def test_serial_skips_only_the_first_layers_input_cotangent():
    log = []
    model = fl.serial(spy(log), fl.Dense(3), spy(log))
    params = model.init(RNG, (-1, 2))
    y, vjp = model.apply(params, np.ones((4, 2), np.float32))
    _, dx = vjp(np.ones_like(y), compute_dx=False)
    assert dx is None and log == [True, False]
    log.clear()
    _, dx = vjp(np.ones_like(y))
    assert dx.shape == (4, 2) and log == [True, True]


def test_value_and_grad_asks_for_no_input_cotangent_and_matches_manual_backprop():
    log = []
    model = fl.serial(spy(log), fl.Dense(4), fl.Tanh(), fl.Dense(3))
    params = model.init(RNG, (-1, 5), dtype=np.float64)
    x, labels = RNG.normal(size=(6, 5)), np.array([0, 1, 2, 0, 1, 2])
    value, grads = fl.value_and_grad(model.apply, fl.losses.softmax_cross_entropy)(params, x, labels)
    assert log == [False]
    logits, vjp = model.apply(params, x)
    v2, dlogits = fl.losses.softmax_cross_entropy(logits, labels)
    assert value == v2
    manual, _ = vjp(dlogits)
    for a, b in zip(fl.tree.tree_leaves(grads), fl.tree.tree_leaves(manual)):
        np.testing.assert_array_equal(a, b)


def test_vjp_without_compute_dx_keyword_still_works_in_serial():
    def init(rng, input_shape):
        return {}

    def apply(params, x, *, rng=None, train=False):
        return 2 * x, lambda dy: ({}, 2 * dy)   # a user layer with the plain contract
    model = fl.serial(fl.Layer(init, apply), fl.Dense(2))
    params = model.init(RNG, (-1, 3))
    y, vjp = model.apply(params, np.ones((1, 3), np.float32))
    assert vjp(np.ones_like(y), compute_dx=False)[1] is None
    assert vjp(np.ones_like(y))[1].shape == (1, 3)


def test_serial_names_children_and_threads_shapes():
    model = fl.serial(fl.Flatten(), fl.Dense(5), fl.Relu(), fl.Dense(2), names=["flat", "hidden", "act", "out"])
    params = model.init(RNG, (-1, 4, 3))
    assert list(params) == ["flat", "hidden", "act", "out"]
    assert params["hidden"]["w"].shape == (12, 5) and params["out"]["w"].shape == (5, 2)
    assert fl.eval_shape(model.apply, params, (-1, 4, 3)) == ((-1, 2), np.dtype(np.float32))


def test_float64_models_stay_float64_and_float32_models_stay_float32():
    for dtype in (np.float32, np.float64):
        model = fl.serial(fl.Dense(4), fl.Gelu(), fl.Dense(3), fl.LogSoftmax())
        params = model.init(RNG, (-1, 2), dtype=dtype)
        y, vjp = model.apply(params, np.ones((3, 2), dtype))
        dparams, dx = vjp(np.ones_like(y))
        assert {a.dtype for a in fl.tree.tree_leaves(params)} == {np.dtype(dtype)}
        assert y.dtype == dtype and dx.dtype == dtype
        assert {a.dtype for a in fl.tree.tree_leaves(dparams)} == {np.dtype(dtype)}


def test_fan_out_parallel_and_fan_in_compose_with_correct_gradients():
    model = fl.serial(fl.FanOut(2), fl.parallel(fl.Dense(3), fl.Dense(3)), fl.FanInSum())
    params = model.init(RNG, (-1, 2), dtype=np.float64)
    x = RNG.normal(size=(4, 2))
    y, vjp = model.apply(params, x)
    p0, p1 = params["1"]["0"], params["1"]["1"]
    np.testing.assert_allclose(y, x @ p0["w"] + p0["b"] + x @ p1["w"] + p1["b"])
    _, dx = vjp(np.ones_like(y))
    np.testing.assert_allclose(dx, np.ones_like(y) @ (p0["w"] + p1["w"]).T)
    concat = fl.serial(fl.FanOut(2), fl.parallel(fl.Identity(), fl.Tanh()), fl.FanInConcat())
    y2, vjp2 = concat.apply(concat.init(RNG, (-1, 2)), x)
    np.testing.assert_allclose(y2, np.concatenate([x, np.tanh(x)], axis=1))
    np.testing.assert_allclose(vjp2(np.ones_like(y2))[1], 1 + (1 - np.tanh(x) ** 2))


def test_apply_does_not_mutate_params_or_inputs():
    model = fl.serial(fl.Dense(4), fl.Relu(), fl.Dense(3), fl.Softmax())
    params = model.init(RNG, (-1, 2))
    x = RNG.normal(size=(5, 2)).astype(np.float32)
    for leaf in fl.tree.tree_leaves(params) + [x]:
        leaf.flags.writeable = False  # any in-place write would raise
    y, vjp = model.apply(params, x)
    dy = np.ones_like(y)
    dy.flags.writeable = False
    first = vjp(dy)
    second = vjp(dy)
    for a, b in zip(fl.tree.tree_leaves(first), fl.tree.tree_leaves(second)):
        np.testing.assert_array_equal(a, b)


# --- errors ----------------------------------------------------------------------------------------

@pytest.fixture
def mlp():
    model = fl.serial(fl.Dense(8), fl.Relu(), fl.Dense(3))
    return model, model.init(np.random.default_rng(0), (-1, 4))


def test_wrong_feature_size_names_layer_position_and_shapes(mlp):
    model, params = mlp
    with pytest.raises(ValueError, match=r"serial layer 0 \('0', Dense\(8\)\).*\(batch, \.\.\., 4\).*got \(2, 5\)"):
        model.apply(params, np.ones((2, 5), np.float32))


def test_wrong_rank_is_a_clear_error(mlp):
    model, params = mlp
    with pytest.raises(ValueError, match=r"Dense\(8\).*got \(4,\)"):
        model.apply(params, np.ones(4, np.float32))


def test_params_from_another_model_are_rejected(mlp):
    model, _ = mlp
    other = fl.serial(fl.Dense(8), fl.Relu(), fl.Dense(5)).init(np.random.default_rng(0), (-1, 4))
    with pytest.raises(ValueError, match=r"serial layer 2 \('2', Dense\(3\)\).*params\['w'\]"):
        model.apply(other, np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"keys \['0', '1', '2'\]"):
        model.apply({"0": other["0"]}, np.ones((2, 4), np.float32))


def test_wrong_cotangent_shape_names_the_layer(mlp):
    model, params = mlp
    y, vjp = model.apply(params, np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"serial layer 2 \('2', Dense\(3\)\).*output's shape \(2, 3\), got \(2, 4\)"):
        vjp(np.ones((2, 4), np.float32))


@pytest.mark.parametrize("bad", [np.ones((2, 4), np.int64), np.ones((2, 4), bool),
                                 np.ones((2, 4), complex), [[1.0] * 4] * 2])
def test_integer_bool_complex_and_list_inputs_are_type_errors(mlp, bad):
    model, params = mlp
    with pytest.raises(TypeError, match=r"serial layer 0 .*float32 or float64"):
        model.apply(params, bad)


def test_mixing_float64_input_with_float32_params_is_refused(mlp):
    model, params = mlp
    with pytest.raises(TypeError, match=r"dtype float64 but the parameters are float32.*astype"):
        model.apply(params, np.ones((2, 4)))


def test_forgetting_to_call_a_constructor_is_explained():
    with pytest.raises(TypeError, match=r"fl\.Relu\(\) instead of fl\.Relu"):
        fl.serial(fl.Dense(3), fl.Relu)

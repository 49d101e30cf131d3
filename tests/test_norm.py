"""LayerNorm and BatchNorm, and how BatchNorm's state travels through serial and value_and_grad."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fnlearn as fl
from fnlearn.testing import check_layer
from fnlearn.testing import strategies as fst


def _normalized(x, axes, eps):
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps)


@given(case=fst.layer_cases(fl.LayerNorm, eps=st.sampled_from([1e-5, 1e-3]),
                            feature_shape=st.one_of(st.tuples(st.integers(3, 6)),
                                                    st.tuples(fst.small_dims(1, 3), st.integers(3, 5)))))
def test_layer_norm_passes_the_layer_battery(case):
    # At least 3 features: with 2, the normalised output is +-1 whatever x is, the true gradient is of
    # order eps / var, and float32 cannot resolve it against terms of order one (ill-conditioned).
    case.check_layer()


@given(case=fst.layer_cases(fl.BatchNorm, momentum=st.sampled_from([0.1, 0.5]),
                            feature_shape=st.one_of(st.tuples(fst.small_dims(1, 4)),
                                                    st.tuples(fst.small_dims(1, 3), fst.small_dims(1, 3),
                                                              fst.small_dims(1, 3))),
                            batch=st.integers(3, 4)))
def test_batch_norm_in_training_passes_the_layer_battery(case):
    # Batch statistics mix the examples, so only batch permutation of the batch properties holds.
    # At least 3 values per channel, for the reason given for LayerNorm above.
    case.check_layer(train=True, exclude=("batch_independence",))


@given(case=fst.layer_cases(fl.BatchNorm, feature_shape=st.tuples(fst.small_dims(1, 4))))
def test_batch_norm_in_evaluation_passes_the_layer_battery(case):
    case.check_layer()


def test_layer_norm_values_and_params():
    layer = fl.LayerNorm(eps=1e-3)
    params = layer.init(np.random.default_rng(0), (-1, 2, 4))
    assert params["scale"].tolist() == [1.0] * 4 and params["offset"].tolist() == [0.0] * 4
    params = {"scale": np.array([1.0, 2.0, 3.0, 4.0]), "offset": np.array([0.5, 0.0, 0.0, -1.0])}
    x = np.random.default_rng(1).standard_normal((3, 2, 4))
    y, _ = layer.apply(params, x)
    np.testing.assert_allclose(y, _normalized(x, -1, 1e-3) * params["scale"] + params["offset"],
                               rtol=1e-12)


@given(case=fst.layer_cases(fl.LayerNorm, bias=st.just(False),
                            feature_shape=st.tuples(fst.small_dims(1, 3), st.integers(3, 5))))
def test_layer_norm_without_bias_passes_the_layer_battery(case):
    case.check_layer()


def test_layer_norm_without_bias_has_only_a_scale():
    layer = fl.LayerNorm(eps=1e-3, bias=False)
    params = layer.init(np.random.default_rng(0), (-1, 4), dtype=np.float64)
    assert list(params) == ["scale"] and params["scale"].tolist() == [1.0] * 4
    params = {"scale": np.array([1.0, 2.0, 3.0, 4.0])}
    x = np.random.default_rng(1).standard_normal((3, 2, 4))
    y, vjp = layer.apply(params, x)
    np.testing.assert_allclose(y, _normalized(x, -1, 1e-3) * params["scale"], rtol=1e-12)
    dparams, dx = vjp(np.ones_like(y))
    assert list(dparams) == ["scale"] and dx.shape == x.shape and dx.dtype == np.float64
    with pytest.raises(ValueError, match=r"bias=False\): expected params with keys \['scale'\]"):
        layer.apply({"scale": params["scale"], "offset": np.zeros(4)}, x)
    with pytest.raises(ValueError, match=r"expected params with keys \['offset', 'scale'\]"):
        fl.LayerNorm().apply(params, x)
    with pytest.raises(TypeError, match=r"bias must be True or False"):
        fl.LayerNorm(bias="no")
    with pytest.raises(ValueError, match=r"no features to normalise"):
        layer.init(np.random.default_rng(0), (-1, 0))
    with pytest.raises(ValueError, match=r"no features to normalise"):
        layer.apply({"scale": np.ones(0)}, np.ones((2, 0)))


def test_layer_norm_keeps_float32_and_does_not_touch_its_inputs():
    layer = fl.LayerNorm()
    params = layer.init(np.random.default_rng(0), (-1, 5, 6))
    x = np.random.default_rng(1).standard_normal((2, 5, 6)).astype(np.float32)
    dy = np.random.default_rng(2).standard_normal(x.shape).astype(np.float32)
    for a in (x, dy, params["scale"], params["offset"]):
        a.flags.writeable = False
    y, vjp = layer.apply(params, x)
    dparams, dx = vjp(dy)
    assert y.dtype == dx.dtype == dparams["scale"].dtype == dparams["offset"].dtype == np.float32
    assert y.shape == dx.shape == x.shape and vjp(dy, compute_dx=False)[1] is None


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(4, 7), (3, 5, 16), (2, 3, 4, 9)])
def test_layer_norm_matches_torch_in_float64(bias, shape):
    torch = pytest.importorskip("torch", reason="torch is the peer reference for LayerNorm")
    rng = np.random.default_rng(sum(shape))
    x = rng.normal(1.5, 3.0, size=shape)
    dy = rng.standard_normal(shape)
    params = {"scale": rng.normal(1.0, 0.5, size=shape[-1])}
    if bias:
        params["offset"] = rng.standard_normal(shape[-1])
    y, vjp = fl.LayerNorm(eps=1e-5, bias=bias).apply(params, x)
    dparams, dx = vjp(dy)
    ln = torch.nn.LayerNorm(shape[-1], eps=1e-5, bias=bias, dtype=torch.float64)
    with torch.no_grad():
        ln.weight.copy_(torch.from_numpy(params["scale"]))
        if bias:
            ln.bias.copy_(torch.from_numpy(params["offset"]))
    xt = torch.tensor(x, requires_grad=True)
    yt = ln(xt)
    yt.backward(torch.from_numpy(dy))
    tol = {"rtol": 1e-12, "atol": 1e-12}
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tol)
    np.testing.assert_allclose(dparams["scale"], ln.weight.grad.numpy(), **tol)
    assert sorted(dparams) == (["offset", "scale"] if bias else ["scale"])
    if bias:
        np.testing.assert_allclose(dparams["offset"], ln.bias.grad.numpy(), **tol)


def test_batch_norm_training_step_matches_the_formulas():
    layer = fl.BatchNorm(momentum=0.25, eps=1e-3)
    params, state = layer.init(np.random.default_rng(0), (-1, 3, 3, 2), dtype=np.float64)
    assert state["mean"].tolist() == [0.0, 0.0] and state["var"].tolist() == [1.0, 1.0]
    x = np.random.default_rng(1).normal(2.0, 3.0, size=(4, 3, 3, 2))
    y, new_state, _ = layer.apply(params, state, x, train=True)
    np.testing.assert_allclose(y, _normalized(x, (0, 1, 2), 1e-3), rtol=1e-12)
    flat = x.reshape(-1, 2)
    np.testing.assert_allclose(new_state["mean"], 0.25 * flat.mean(0), rtol=1e-12)
    np.testing.assert_allclose(new_state["var"], 0.75 + 0.25 * flat.var(0, ddof=1), rtol=1e-12)
    assert state["mean"].tolist() == [0.0, 0.0]  # the old state is untouched
    y_eval, same, vjp = layer.apply(params, new_state, x)
    assert same is new_state
    np.testing.assert_allclose(y_eval, (x - new_state["mean"]) / np.sqrt(new_state["var"] + 1e-3),
                               rtol=1e-12)
    dx = vjp(np.ones_like(y_eval))[1]
    np.testing.assert_allclose(dx, np.broadcast_to(1 / np.sqrt(new_state["var"] + 1e-3), x.shape))


def test_batch_norm_running_statistics_match_torch():
    torch = pytest.importorskip("torch")
    layer = fl.BatchNorm(momentum=0.1)
    params, state = layer.init(np.random.default_rng(0), (-1, 5, 5, 3), dtype=np.float64)
    params = {"scale": np.array([0.5, 1.0, 2.0]), "offset": np.array([0.0, 1.0, -1.0])}
    bn = torch.nn.BatchNorm2d(3, momentum=0.1).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(params["scale"]))
        bn.bias.copy_(torch.tensor(params["offset"]))
    rng = np.random.default_rng(1)
    for _ in range(3):
        x = rng.normal(1.0, 2.0, size=(4, 5, 5, 3))
        dy = rng.standard_normal(x.shape)
        y, state, vjp = layer.apply(params, state, x, train=True)
        dparams, dx = vjp(dy)
        xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
        yt = bn.train()(xt)
        yt.backward(torch.tensor(dy.transpose(0, 3, 1, 2)))
        np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(dparams["scale"], bn.weight.grad.numpy(), rtol=1e-10)
        bn.weight.grad = bn.bias.grad = None
    np.testing.assert_allclose(state["mean"], bn.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(state["var"], bn.running_var.numpy(), rtol=1e-12)
    x = rng.standard_normal((2, 5, 5, 3))
    want = bn.eval()(torch.tensor(x.transpose(0, 3, 1, 2))).detach().numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(layer.apply(params, state, x)[0], want, rtol=1e-10, atol=1e-12)


def _model():
    return fl.serial(fl.Conv2D(3, 3, padding="same"), fl.BatchNorm(), fl.Relu(), fl.Flatten(),
                     fl.Dense(4), fl.BatchNorm(momentum=0.5), fl.Dense(2))


def test_serial_with_batch_norm_threads_state_keyed_like_params():
    model = _model()
    assert isinstance(model, fl.StatefulLayer)
    params, state = model.init(np.random.default_rng(0), (-1, 4, 4, 1))
    assert list(state) == list(params) == [str(i) for i in range(7)]
    assert state["0"] == {} and sorted(state["1"]) == ["mean", "var"] and state["5"]["mean"].shape == (4,)
    x = np.random.default_rng(1).standard_normal((5, 4, 4, 1)).astype(np.float32)
    for array in fl.tree.tree_leaves((params, state)):
        array.flags.writeable = False  # nothing may be changed in place
    y, new_state, vjp = model.apply(params, state, x, train=True)
    assert y.shape == (5, 2) and y.dtype == np.float32
    assert new_state is not state and new_state["0"] is state["0"]
    assert not np.allclose(new_state["1"]["mean"], 0.0) and np.all(state["1"]["mean"] == 0.0)
    assert new_state["1"]["mean"].dtype == np.float32
    dparams, dx = vjp(np.ones_like(y))
    assert fl.tree.tree_structure(dparams) == fl.tree.tree_structure(params) and dx.shape == x.shape
    _, same, _ = model.apply(params, new_state, x)
    assert same is new_state


def test_value_and_grad_with_state_returns_the_updated_state():
    model = _model()
    params, state = model.init(np.random.default_rng(0), (-1, 4, 4, 1))
    x = np.random.default_rng(1).standard_normal((6, 4, 4, 1)).astype(np.float32)
    labels = np.array([0, 1, 1, 0, 1, 0])
    f = fl.value_and_grad(model.apply, fl.losses.softmax_cross_entropy, has_state=True)
    (loss, new_state), grads = f(params, state, x, labels)
    pred, want_state, vjp = model.apply(params, state, x, train=True)
    want_loss, dpred = fl.losses.softmax_cross_entropy(pred, labels)
    assert loss == want_loss
    for got, want in zip(fl.tree.tree_leaves((new_state, grads)),
                         fl.tree.tree_leaves((want_state, vjp(dpred)[0]))):
        np.testing.assert_array_equal(got, want)
    (_, eval_state), _ = f(params, state, x, labels, train=False)
    assert eval_state is state


def test_value_and_grad_says_when_has_state_is_needed():
    model = _model()
    with pytest.raises(TypeError, match=r"has_state=True"):
        fl.value_and_grad(model.apply, fl.losses.mse)
    with pytest.raises(TypeError, match=r"Drop has_state=True"):
        fl.value_and_grad(fl.Dense(2).apply, fl.losses.mse, has_state=True)


def test_bind_state_gives_a_plain_layer_for_evaluation():
    model = _model()
    params, state = model.init(np.random.default_rng(0), (-1, 4, 4, 1))
    x = np.random.default_rng(1).standard_normal((3, 4, 4, 1)).astype(np.float32)
    _, state, _ = model.apply(params, state, x, train=True)
    predict = fl.bind_state(model, state)
    assert isinstance(predict, fl.Layer)
    np.testing.assert_array_equal(predict.apply(params, x)[0], model.apply(params, state, x)[0])
    assert fl.eval_shape(predict.apply, params, (-1, 4, 4, 1)) == ((-1, 2), np.dtype(np.float32))
    assert check_layer(model, (-1, 4, 4, 1), params=params, state=state).passed
    with pytest.raises(TypeError, match=r"expected a StatefulLayer"):
        fl.bind_state(fl.Dense(2), {})


def test_nested_serial_and_float64_state():
    block = fl.serial(fl.Dense(3), fl.BatchNorm())
    model = fl.serial(block, fl.Tanh(), block)
    params, state = model.init(np.random.default_rng(0), (-1, 2), dtype=np.float64)
    assert state["0"]["1"]["var"].dtype == np.float64 and state["1"] == {}
    x = np.random.default_rng(1).standard_normal((4, 2))
    y, new_state, _ = model.apply(params, state, x, train=True)
    assert y.dtype == np.float64 and not np.allclose(new_state["2"]["1"]["mean"], 0.0)


def test_stateless_models_are_unchanged():
    model = fl.serial(fl.Dense(3), fl.LayerNorm(), fl.Dense(2))
    assert isinstance(model, fl.Layer) and not isinstance(model, fl.StatefulLayer)
    params = model.init(np.random.default_rng(0), (-1, 4))
    assert model.apply(params, np.ones((2, 4), np.float32))[0].shape == (2, 2)


def test_norm_errors():
    layer = fl.BatchNorm()
    params, state = layer.init(np.random.default_rng(0), (-1, 3))
    with pytest.raises(ValueError, match=r"more than one value per channel"):
        layer.apply(params, state, np.ones((1, 3), np.float32), train=True)
    with pytest.raises(ValueError, match=r"expected state\['var'\] to be a float32 array of shape \(3,\)"):
        layer.apply(params, {"mean": state["mean"]}, np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\]"):
        fl.BatchNorm(momentum=0.9 + 1)
    with pytest.raises(ValueError, match=r"LayerNorm\(eps=1e-05\): expected x of shape \(batch, ..., 3\)"):
        fl.LayerNorm().apply(fl.LayerNorm().init(np.random.default_rng(0), (-1, 3)), np.ones((2, 4)))
    model = fl.serial(fl.Dense(3), fl.BatchNorm())
    params, state = model.init(np.random.default_rng(0), (-1, 2))
    with pytest.raises(ValueError, match=r"serial: expected a state with keys \['0', '1'\]"):
        model.apply(params, {"1": state["1"]}, np.ones((2, 2), np.float32))
    with pytest.raises(TypeError, match=r"parallel: stateful children"):
        fl.parallel(fl.BatchNorm(), fl.Identity())

"""fl.train_step: the same step as value_and_grad + update + apply_updates, pure, and its two savings
(the scalar rule folded into the backward pass; the new parameters written into private updates)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fnlearn as fl
from fnlearn import _train, optim
from fnlearn.tree import tree_leaves, tree_map, tree_structure

OPTIMIZERS = {
    "sgd": lambda: optim.sgd(0.1),
    "sgd_schedule": lambda: optim.sgd(optim.linear_schedule(0.2, 0.05, 3)),
    "sgd_momentum_wd": lambda: optim.sgd(0.1, momentum=0.9, weight_decay=0.01),
    "adam": lambda: optim.adam(0.01),
    "chain_clip_sgd": lambda: optim.chain(optim.clip_by_global_norm(0.5), optim.sgd(0.1)),
    "chain_of_scales": lambda: optim.chain(optim.scale(0.5), optim.scale_by_learning_rate(0.3)),
    "trace": lambda: optim.chain(optim.trace(0.9), optim.scale(-0.1)),  # updates alias the state
}


def _mlp():
    return fl.serial(fl.Dense(5), fl.Tanh(), fl.Dense(4), fl.Relu(), fl.Dense(3))


def _unfused(model, loss, opt, params, state, x, y, **kw):
    value, grads = fl.value_and_grad(model.apply, loss)(params, x, y, **kw)
    updates, state = opt.update(grads, state, params)
    return optim.apply_updates(params, updates), state, value


def _copy(tree):
    return tree_map(lambda a: np.array(a, copy=True) if isinstance(a, np.ndarray) else a, tree)


def _assert_same_tree(a, b, dtype):
    """Same structure and key order; float leaves of ``dtype`` equal to rounding, the rest exactly."""
    assert tree_structure(a) == tree_structure(b)
    assert [list(d) for d in _dicts(a)] == [list(d) for d in _dicts(b)]  # same key order
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for x, y in zip(tree_leaves(a), tree_leaves(b)):
        if isinstance(x, np.ndarray) and x.dtype.kind == "f":
            assert x.dtype == y.dtype == dtype
            np.testing.assert_allclose(x, y, rtol=tol, atol=tol)
        else:
            np.testing.assert_array_equal(x, y)


def _assert_identical(a, b):
    assert tree_structure(a) == tree_structure(b)
    for x, y in zip(tree_leaves(a), tree_leaves(b)):
        np.testing.assert_array_equal(x, y, strict=True)


def _dicts(tree):
    if isinstance(tree, dict):
        yield tree
        for v in tree.values():
            yield from _dicts(v)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@given(seed=st.integers(0, 2 ** 32 - 1), dtype=st.sampled_from([np.float32, np.float64]),
       batch=st.integers(1, 6))
def test_equals_the_unfused_step_and_modifies_nothing(name, seed, dtype, batch):
    rng = np.random.default_rng(seed)
    model, loss, opt = _mlp(), fl.losses.softmax_cross_entropy, OPTIMIZERS[name]()
    params = model.init(rng, (-1, 4), dtype=dtype)
    state = opt.init(params)
    step = fl.train_step(model.apply, loss, opt)
    for _ in range(3):
        x = rng.normal(size=(batch, 4)).astype(dtype)
        y = rng.integers(0, 3, batch)
        before = _copy((params, state, x, y))
        got = step(params, state, x, y)
        _assert_identical((params, state, x, y), before)  # nothing passed in changed
        want = _unfused(model, loss, opt, params, state, x, y)
        _assert_same_tree(got[:2], want[:2], dtype)
        assert got[2] == pytest.approx(want[2], rel=1e-6)
        params, state = got[:2]


@pytest.fixture
def in_place_calls(monkeypatch):
    """A list that grows each time train_step adds into the updates in place (once per nested dict)."""
    calls = []
    real = _train._add_into
    monkeypatch.setattr(_train, "_add_into", lambda p, u: calls.append(1) or real(p, u))
    return calls


def test_plain_sgd_writes_the_new_params_into_the_private_updates(in_place_calls):
    """With fnlearn's layers the backward pass returns fresh arrays, so the addition goes in place."""
    model = _mlp()
    params = model.init(np.random.default_rng(0), (-1, 4))
    opt = optim.sgd(0.1)
    step = fl.train_step(model.apply, fl.losses.softmax_cross_entropy, opt)
    new, _, _ = step(params, opt.init(params), np.ones((2, 4), np.float32), np.array([0, 2]))
    assert in_place_calls
    assert all(a is not b for a, b in zip(tree_leaves(new), tree_leaves(params)))


@pytest.mark.parametrize("make_opt", [lambda: optim.sgd(0.1, momentum=0.9), lambda: optim.adam(0.01)],
                         ids=["sgd-momentum", "adam"])
def test_other_rules_write_the_new_params_into_their_private_updates(in_place_calls, make_opt):
    """An optimizer's fresh updates are written in place too, with the unfused step's result."""
    model, opt = _mlp(), make_opt()
    params = model.init(np.random.default_rng(0), (-1, 4))
    x, t = np.ones((2, 4), np.float32), np.array([0, 2])
    state = opt.update(tree_map(np.ones_like, params), opt.init(params), params)[1]  # momentum != 0
    new, new_state, _ = fl.train_step(model.apply, fl.losses.softmax_cross_entropy, opt)(params, state, x, t)
    assert in_place_calls
    want = _unfused(model, fl.losses.softmax_cross_entropy, opt, params, state, x, t)
    _assert_same_tree(new, want[0], np.float32)
    _assert_same_tree(new_state, want[1], np.float32)


@pytest.mark.parametrize("make_opt", [lambda: optim.sgd(0.1), lambda: optim.adam(0.01)], ids=["sgd", "adam"])
def test_params_that_are_one_array(make_opt):
    """Params need not be a dict: one array is a tree of one leaf, updated in place as well."""
    def apply(p, x, *, rng=None, train=False):
        return x @ p, lambda dy, compute_dx=True: (x.T @ dy, dy @ p.T if compute_dx else None)
    opt, p = make_opt(), np.ones((3, 2))
    x, t = np.arange(12.0).reshape(4, 3), np.zeros((4, 2))
    new, _, _ = fl.train_step(apply, fl.losses.mse, opt)(p, opt.init(p), x, t)
    updates, _ = opt.update(fl.value_and_grad(apply, fl.losses.mse)(p, x, t)[1], opt.init(p), p)
    np.testing.assert_allclose(new, p + updates, rtol=1e-12)
    assert (p == 1).all()


def test_updates_the_optimizer_state_holds_are_never_written(in_place_calls):
    """An update that is also kept in the optimizer's state (here: the update is the state) is seen
    twice, so the new parameters go into new arrays and the state keeps its values."""
    def init(params):
        return {"last": tree_map(np.zeros_like, params)}

    def update(grads, state, params=None):
        u = tree_map(lambda g: g * -0.1, grads)
        return u, {"last": u}
    opt = optim.Optimizer(init, update)
    model = _mlp()
    params = model.init(np.random.default_rng(0), (-1, 4))
    x, t = np.ones((2, 4), np.float32), np.array([0, 2])
    new, state, _ = fl.train_step(model.apply, fl.losses.softmax_cross_entropy, opt)(params, opt.init(params), x, t)
    assert not in_place_calls
    for p, n, u in zip(tree_leaves(params), tree_leaves(new), tree_leaves(state["last"])):
        np.testing.assert_allclose(n, p + u)
        assert not np.shares_memory(n, u)


def _cached_grads_layer():
    """``y = x * w``, whose (correct) VJP writes ``dw`` into one cached array and returns that array."""
    cache = {"w": np.zeros(4)}

    def init(rng, input_shape, *, dtype=None):
        return {"w": np.ones(4)}

    def apply(params, x, *, rng=None, train=False):
        def vjp(dy):
            np.sum(dy * x, axis=0, out=cache["w"])
            return cache, dy * params["w"]
        return x * params["w"], vjp

    return fl.Layer(init, apply), cache


@pytest.mark.parametrize("where", ["top", "inside serial"])
def test_updates_someone_else_holds_are_never_written(where):
    layer, cache = _cached_grads_layer()
    model = layer if where == "top" else fl.serial(fl.Identity(), layer)
    params = model.init(np.random.default_rng(0), (-1, 4))
    opt = optim.sgd(0.5)
    step = fl.train_step(model.apply, fl.losses.mse, opt)
    x = np.arange(12.0).reshape(3, 4)
    new, _, _ = step(params, opt.init(params), x, np.zeros((3, 4)))
    # mse's gradient is 2 (x*w - 0) / 12; scaled by -lr it is what the VJP wrote into the cache
    update = -0.5 * (2 * x * x / 12).sum(axis=0)
    np.testing.assert_allclose(cache["w"], update)  # written by the VJP, then left alone
    w = new["w"] if where == "top" else new["1"]["w"]
    np.testing.assert_allclose(w, 1.0 + update)
    assert not np.shares_memory(w, cache["w"])


def _dense_whose_grads_are_seen(keep):
    """``Dense(2)``'s apply, with a VJP that hands its gradients to ``keep`` before returning them."""
    model = fl.Dense(2)

    def apply(params, x, *, rng=None, train=False):
        y, vjp = model.apply(params, x)

        def spy_vjp(dy, *, compute_dx=True):
            grads, dx = vjp(dy, compute_dx=compute_dx)
            keep(grads)
            return grads, dx
        return y, spy_vjp

    return model, apply


def test_a_view_of_the_updates_keeps_them_from_being_written():
    held = []  # a view keeps a reference to its base
    model, apply = _dense_whose_grads_are_seen(lambda grads: held.append(grads["b"][:1]))

    params = model.init(np.random.default_rng(0), (-1, 3))
    opt = optim.sgd(0.1)
    step = fl.train_step(apply, fl.losses.mse, opt)
    x, t = np.ones((2, 3), np.float32), np.zeros((2, 2), np.float32)
    new, _, _ = step(params, opt.init(params), x, t)
    want, _, _ = _unfused(fl.Layer(model.init, apply), fl.losses.mse, opt, params, opt.init(params), x, t)
    np.testing.assert_allclose(new["b"], want["b"], rtol=1e-6)
    assert not np.shares_memory(held[0], new["b"])


def test_stateful_model_with_dropout_matches_the_unfused_step():
    model = fl.serial(fl.Dense(6), fl.BatchNorm(), fl.Relu(), fl.Dropout(0.3), fl.Dense(3))
    params, mstate = model.init(np.random.default_rng(0), (-1, 4))
    opt = optim.adam(0.01)
    ostate = opt.init(params)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(8, 4)).astype(np.float32), rng.integers(0, 3, 8)
    step = fl.train_step(model.apply, fl.losses.softmax_cross_entropy, opt, has_state=True)
    p1, m1, o1, v1 = step(params, mstate, ostate, x, y, rng=np.random.default_rng(7))
    (v2, m2), grads = fl.value_and_grad(model.apply, fl.losses.softmax_cross_entropy, has_state=True)(
        params, mstate, x, y, rng=np.random.default_rng(7))
    u, o2 = opt.update(grads, ostate, params)
    p2 = optim.apply_updates(params, u)
    _assert_same_tree((p1, m1, o1), (p2, m2, o2), np.float32)
    assert v1 == v2


def test_bad_arguments_are_explained():
    model = _mlp()
    loss = fl.losses.softmax_cross_entropy
    with pytest.raises(TypeError, match="train_step: optimizer must be an Optimizer"):
        fl.train_step(model.apply, loss, "sgd")
    with pytest.raises(TypeError, match="train_step: loss must be a function"):
        fl.train_step(model.apply, None, optim.sgd(0.1))
    bn = fl.serial(fl.Dense(3), fl.BatchNorm())
    with pytest.raises(TypeError, match=r"train_step: this model has state.*fl.train_step\(model.apply, \.\.\., "
                                        "has_state=True"):
        fl.train_step(bn.apply, loss, optim.sgd(0.1))
    params = model.init(np.random.default_rng(0), (-1, 4))
    step = fl.train_step(model.apply, lambda y, t: 1.0, optim.sgd(0.1))
    with pytest.raises(TypeError, match="train_step: the loss must return"):
        step(params, optim.sgd(0.1).init(params), np.ones((2, 4), np.float32), np.array([0, 1]))
    step = fl.train_step(model.apply, loss, optim.sgd(0.1))
    with pytest.raises(ValueError, match="sgd.update: the state was not made by this optimizer's init"):
        step(params, optim.adam(0.1).init(params), np.ones((2, 4), np.float32), np.array([0, 1]))
    with pytest.raises(TypeError, match=r"Dense\(5\).*float64"):
        step(params, optim.sgd(0.1).init(params), np.ones((2, 4)), np.array([0, 1]))


# Every fnlearn layer with parameters returns gradients that nobody else holds, so plain SGD adds in
# place for all of them (a layer that returned a view or a cached array would fall back, slower).
IN_PLACE_MODELS = {
    "conv": (lambda: fl.serial(fl.Conv2D(3, 3, padding="same"), fl.Relu(), fl.MaxPool2D(2), fl.Flatten(),
                               fl.Dense(2)), (-1, 6, 6, 2), False),
    "conv_winograd": (lambda: fl.serial(fl.Conv2D(3, 3, padding="same", algorithm="winograd"), fl.Flatten(),
                                        fl.Dense(2)), (-1, 6, 6, 2), False),
    "conv_transpose": (lambda: fl.serial(fl.ConvTranspose2D(2, 3, stride=2), fl.GlobalAvgPool(), fl.Dense(2)),
                       (-1, 3, 3, 2), False),
    "layer_norm": (lambda: fl.serial(fl.Dense(4), fl.LayerNorm(), fl.Gelu(), fl.Dense(2)), (-1, 3), False),
    "fan_out_parallel": (lambda: fl.serial(fl.FanOut(2), fl.parallel(fl.Dense(3), fl.Dense(3)), fl.FanInSum(),
                                           fl.Dense(2)), (-1, 3), False),
    "batch_norm": (lambda: fl.serial(fl.Dense(4), fl.BatchNorm(), fl.Dense(2)), (-1, 3), True),
}


@pytest.mark.parametrize("name", sorted(IN_PLACE_MODELS))
def test_every_layer_with_params_gets_the_in_place_addition(name, in_place_calls):
    make, shape, stateful = IN_PLACE_MODELS[name]
    model, opt, loss = make(), optim.sgd(0.1), fl.losses.softmax_cross_entropy
    x = np.random.default_rng(1).normal(size=(4,) + shape[1:]).astype(np.float32)
    y = np.array([0, 1, 1, 0])
    if stateful:
        params, mstate = model.init(np.random.default_rng(0), shape)
        got = fl.train_step(model.apply, loss, opt, has_state=True)(params, mstate, opt.init(params), x, y)[0]
        (_, _), grads = fl.value_and_grad(model.apply, loss, has_state=True)(params, mstate, x, y)
    else:
        params = model.init(np.random.default_rng(0), shape)
        got = fl.train_step(model.apply, loss, opt)(params, opt.init(params), x, y)[0]
        _, grads = fl.value_and_grad(model.apply, loss)(params, x, y)
    assert in_place_calls
    _assert_same_tree(got, optim.apply_updates(params, optim.sgd(0.1).update(grads, {"count": 0})[0]),
                      np.float32)


def test_embedding_model_gets_the_in_place_addition(in_place_calls):
    model = fl.serial(fl.Embedding(7, 3), fl.Flatten(), fl.Dense(2))
    params = model.init(np.random.default_rng(0), (-1, 4), input_dtype=np.int64)
    x, y = np.array([[0, 1, 2, 6], [6, 5, 4, 3]]), np.array([0, 1])
    got = fl.train_step(model.apply, fl.losses.softmax_cross_entropy, optim.sgd(0.5))(params, {"count": 0}, x, y)[0]
    _, grads = fl.value_and_grad(model.apply, fl.losses.softmax_cross_entropy)(params, x, y)
    assert in_place_calls
    _assert_same_tree(got, fl.tree.tree_map(lambda p, g: p - 0.5 * g, params, grads), np.float32)


def _two_headed():
    """A model with two outputs and a loss that returns a tuple of cotangents."""
    model = fl.serial(fl.Dense(3), fl.FanOut(2), fl.parallel(fl.Dense(2), fl.Dense(2)))

    def loss(pred, t):
        a, b = pred
        return float(((a - t) ** 2).sum() + ((b - t) ** 2).sum()), (2 * (a - t), 2 * (b - t))

    return model, loss


class _Sub(np.ndarray):
    pass


@pytest.mark.parametrize("kind", ["tuple of cotangents", "ndarray subclass"])
def test_cotangents_that_are_not_plain_arrays_take_the_general_path(kind):
    if kind == "tuple of cotangents":
        model, loss = _two_headed()
    else:
        model = _mlp()

        def loss(pred, t):
            value, d = fl.losses.mse(pred, t)
            return value, d.view(_Sub)
    params = model.init(np.random.default_rng(0), (-1, 4), dtype=np.float64)
    rng = np.random.default_rng(1)
    x, t = rng.normal(size=(5, 4)), rng.normal(size=(5, 2 if kind == "tuple of cotangents" else 3))
    opt = optim.sgd(0.1)
    got = fl.train_step(model.apply, loss, opt)(params, opt.init(params), x, t)
    want = _unfused(model, loss, opt, params, opt.init(params), x, t)
    _assert_same_tree(got[:2], want[:2], np.float64)


def test_a_wrapper_made_with_functools_wraps_does_not_inherit_the_scalar_rule():
    import functools

    base = optim.sgd(0.1)

    @functools.wraps(base.update)
    def clipped(g, s, p=None):
        return base.update(tree_map(lambda a: np.clip(a, -1e-3, 1e-3), g), s, p)

    opt = optim.Optimizer(base.init, clipped)
    assert optim.scalar_rule(base) is not None and optim.scalar_rule(opt) is None
    model = _mlp()
    params = model.init(np.random.default_rng(0), (-1, 4), dtype=np.float64)
    x, y = np.random.default_rng(1).normal(size=(5, 4)), np.array([0, 1, 2, 0, 1])
    got = fl.train_step(model.apply, fl.losses.softmax_cross_entropy, opt)(params, opt.init(params), x, y)
    want = _unfused(model, fl.losses.softmax_cross_entropy, opt, params, opt.init(params), x, y)
    _assert_same_tree(got[:2], want[:2], np.float64)


def test_a_weakly_referenced_gradient_is_not_overwritten():
    import weakref

    refs = []
    dense, apply = _dense_whose_grads_are_seen(lambda grads: refs.append(weakref.ref(grads["w"])))

    params = dense.init(np.random.default_rng(0), (-1, 3))
    opt = optim.sgd(0.1)
    new, _, _ = fl.train_step(apply, fl.losses.mse, opt)(params, opt.init(params), np.ones((2, 3), np.float32),
                                                         np.zeros((2, 2), np.float32))
    seen = refs[0]()
    assert seen is None or not np.shares_memory(seen, new["w"])


def test_a_user_scalar_rule_with_a_numpy_factor_keeps_float32_and_a_bad_factor_is_explained():
    def make(factor):
        def init(params):
            return {}

        def update(grads, state, params=None):
            return tree_map(lambda g: g * factor, grads), state
        optim.declare_scalar(update, lambda state: (factor, state))
        return optim.Optimizer(init, update)

    model = _mlp()
    params = model.init(np.random.default_rng(0), (-1, 4))
    x, y = np.ones((2, 4), np.float32), np.array([0, 1])
    new, _, _ = fl.train_step(model.apply, fl.losses.softmax_cross_entropy, make(np.float64(-0.1)))(params, {}, x, y)
    assert all(a.dtype == np.float32 for a in tree_leaves(new))
    with pytest.raises(TypeError, match="scalar rule returned factor 'fast'"):
        fl.train_step(model.apply, fl.losses.softmax_cross_entropy, make("fast"))(params, {}, x, y)

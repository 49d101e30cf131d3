"""serial runs a Conv2D directly followed by a Relu (and a 2x2 MaxPool2D) fused (combinators._plan):
the output, the kernel gradient and the input cotangent are bit for bit those of the layers called one
by one (in serial's order: the ReLU after the pooling), the bias gradient the same sum up to rounding;
im2col with pooling runs its products over smaller chunks, which OpenBLAS may round differently, so
there everything agrees to rounding. Where the step cannot fuse, the layers run one by one."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fnlearn as fl
from fnlearn.combinators import _plan
from fnlearn.layers import _windows, _winograd, activations, conv, pooling
from fnlearn.testing import check_vjp
from fnlearn.testing import strategies as fst


def _one_by_one(layers, params, x, order):
    """The layers called by hand in ``order`` (indices into ``layers``), and the chained VJP."""
    vjps = []
    for i in order:
        x, vjp = layers[i].apply(params[str(i)], x)
        vjps.append((i, vjp))

    def vjp(dy):
        grads = {}
        for i, f in reversed(vjps):
            grads[str(i)], dy = f(dy)
        return grads, dy
    return x, vjp


def _compare(layers, x, seed, *, exact=True):
    """serial(*layers) against the layers one by one in serial's order: y, dx and dw bit for bit (with
    ``exact``; else to rounding), db to rounding, with and without the input cotangent."""
    model = fl.serial(*layers)
    rng = np.random.default_rng(seed)
    params = model.init(rng, (-1, *x.shape[1:]), dtype=x.dtype)
    params["0"]["b"] = rng.standard_normal(params["0"]["b"].shape).astype(x.dtype)
    y, vjp = model.apply(params, x)
    order = [i for _, step in _plan([(str(i), la) for i, la in enumerate(layers)]) for i in step]
    y_ref, vjp_ref = _one_by_one(layers, params, x, order)
    tol = 1e-5 if x.dtype == np.float32 else 1e-12
    same = (functools.partial(np.testing.assert_array_equal, strict=True) if exact
            else functools.partial(np.testing.assert_allclose, rtol=tol, atol=tol))
    assert y.dtype == x.dtype
    same(y, y_ref)
    dy = rng.standard_normal(y.shape).astype(x.dtype)
    grads, dx = vjp(dy)
    grads_ref, dx_ref = vjp_ref(dy)
    same(dx, dx_ref)
    if exact:
        np.testing.assert_array_equal(grads["0"]["w"], grads_ref["0"]["w"], strict=True)
    else:
        np.testing.assert_allclose(grads["0"]["w"], grads_ref["0"]["w"], rtol=tol, atol=tol * np.abs(dy).sum())
    np.testing.assert_allclose(grads["0"]["b"], grads_ref["0"]["b"], rtol=tol, atol=tol * np.abs(dy).sum())
    assert grads["0"]["b"].dtype == x.dtype
    assert all(grads[str(i)] == {} for i in range(1, len(layers)))
    no_dx_grads, no_dx = vjp(dy, compute_dx=False)
    assert no_dx is None
    np.testing.assert_array_equal(no_dx_grads["0"]["w"], grads["0"]["w"])
    return y


# sides whose 3x3 'same' output the 4x4 blocks cover exactly (pooling fuses) or not (it does not)
SIDES = st.sampled_from([4, 8, 12, 5, 6, 10])


@given(sides=st.tuples(SIDES, SIDES), channels=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       batch=st.integers(0, 3), pool=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]),
       seed=fst.seeds())
def test_winograd_with_relu_and_pooling_is_the_layers_one_by_one(sides, channels, batch, pool, dtype,
                                                                 seed):
    c_in, c_out = channels
    layers = [fl.Conv2D(c_out, 3, padding="same", algorithm="winograd"), fl.Relu()]
    layers += [fl.MaxPool2D(2)] if pool else []
    x = np.random.default_rng(seed).standard_normal((batch, *sides, c_in)).astype(dtype)
    _compare(layers, x, seed)


@given(kernel=st.integers(1, 3), stride=st.integers(1, 2), padding=st.sampled_from(["valid", "same", 1]),
       pool=st.booleans(), batch=st.integers(0, 3), dtype=st.sampled_from([np.float32, np.float64]),
       seed=fst.seeds())
def test_im2col_with_relu_is_the_layers_one_by_one(kernel, stride, padding, pool, batch, dtype, seed):
    """ReLU and pooling fuse into im2col's chunks, with any stride and padding (odd sides: the last
    row or column is in no window); with pooling, to rounding (smaller chunks)."""
    layers = [fl.Conv2D(3, kernel, stride=stride, padding=padding, algorithm="im2col"), fl.Relu()]
    layers += [fl.MaxPool2D(2)] if pool else []
    x = np.random.default_rng(seed).standard_normal((batch, 6, 7, 2)).astype(dtype)
    conv_params = layers[0].init(np.random.default_rng(0), (-1, *x.shape[1:]), dtype=dtype)
    if pool and min(layers[0].apply(conv_params, x)[0].shape[1:3]) < 2:
        return  # no 2x2 window (MaxPool2D refuses it)
    _compare(layers, x, seed, exact=not pool)


@pytest.mark.parametrize("algorithm", ["winograd", "im2col"])
@pytest.mark.parametrize("pool", [False, True])
@pytest.mark.parametrize("budgets", [(30000, 40000), (10 ** 6, 40000)], ids=["chunks", "products"])
def test_many_chunks(monkeypatch, algorithm, pool, budgets):
    """Chunks of a few examples, the last one shorter (and with im2col and pooling, one chunk of all
    7 multiplied 2 examples at a time): each chunk's pooled outputs, winners and ReLU masks land in
    their own rows. (im2col with pooling: to rounding.)"""
    monkeypatch.setattr(_windows, "CHUNK_BYTES", budgets[0])  # 2 or 3 examples (and 1 last), or all
    monkeypatch.setattr(conv, "POOLED_CHUNK_BYTES", budgets[1])  # 2 examples per product
    sizes = []
    real = _windows.chunks
    monkeypatch.setattr(_windows, "chunks", lambda *a: sizes.append(len(real(*a))) or real(*a))
    layers = [fl.Conv2D(4, 3, padding="same", algorithm=algorithm), fl.Relu()] + ([fl.MaxPool2D(2)] if pool else [])
    x = np.random.default_rng(0).standard_normal((7, 8, 8, 3))
    _compare(layers, x, 1, exact=algorithm == "winograd" or not pool)
    if budgets[0] < 10 ** 6:
        assert sum(count >= 3 for count in sizes) >= 2  # the fused convolution and the reference


def test_ties_infinities_nans_and_zeros_follow_the_layers():
    """Integer-valued inputs and kernels make many exact ties in the 2x2 windows and outputs of exactly
    zero; infinities and a NaN in the cotangent: the fused step sends each to the same entries."""
    layers = [fl.Conv2D(2, 3, padding="same", algorithm="winograd"), fl.Relu(), fl.MaxPool2D(2)]
    model = fl.serial(*layers)
    rng = np.random.default_rng(3)
    x = rng.integers(-1, 2, (3, 8, 8, 2)).astype(np.float64)
    params = {"0": {"w": rng.integers(-1, 2, (3, 3, 2, 2)).astype(np.float64), "b": np.zeros(2)},
              "1": {}, "2": {}}
    y, vjp = model.apply(params, x)
    y_ref, vjp_ref = _one_by_one(layers, params, x, [0, 2, 1])
    np.testing.assert_array_equal(y, y_ref, strict=True)
    assert (y == 0).any() and (y > 0).any()
    dy = rng.standard_normal(y.shape)
    dy[0, 0, 0, 0], dy[1, 1, 1, 1], dy[2, 2, 2, 0] = np.inf, -np.inf, np.nan
    with np.errstate(invalid="ignore"):  # inf * 0 at the windows' other taps: NaN, as intended
        (grads, dx), (grads_ref, dx_ref) = vjp(dy), vjp_ref(dy)
    np.testing.assert_array_equal(dx, dx_ref, strict=True)
    np.testing.assert_array_equal(grads["0"]["w"], grads_ref["0"]["w"], strict=True)
    np.testing.assert_array_equal(np.isnan(grads["0"]["b"]), np.isnan(grads_ref["0"]["b"]))


def test_the_fused_step_lays_out_neither_the_convolution_output_nor_the_relu(monkeypatch):
    """Winograd's blocks are pooled where they are (no _from_blocks, no MaxPool2D pass) and the ReLU
    runs inside the convolution (no Relu pass); without the pool the blocks are laid out once."""
    calls = []
    for module, fn in ((_winograd, "_from_blocks"), (_winograd, "_into_blocks"),
                       (pooling, "_max_and_first_winner"), (activations, "_relu"), (activations, "_relu_vjp")):
        real = getattr(module, fn)
        monkeypatch.setattr(module, fn, functools.partial(lambda real, fn, *a: calls.append(fn) or real(*a),
                                                          real, fn))
    x = np.ones((2, 8, 8, 3))  # (the layers are made after the patches: Relu keeps its functions)
    pooled = fl.serial(fl.Conv2D(4, 3, padding="same", algorithm="winograd"), fl.Relu(), fl.MaxPool2D(2))
    unpooled = fl.serial(fl.Conv2D(4, 3, padding="same", algorithm="winograd"), fl.Relu())
    params = pooled.init(np.random.default_rng(0), x.shape, dtype=np.float64)
    assert "_relu" in calls  # init runs the children one by one (eval_shape): the patches see it
    calls.clear()
    y, vjp = pooled.apply(params, x)
    vjp(np.ones_like(y))
    odd = np.ones((2, 7, 6, 3))  # blocks overhang the 7x6 output; pooled 3x3
    y, vjp = pooled.apply(params, odd)
    vjp(np.ones_like(y))
    assert y.shape == (2, 3, 3, 4) and calls == []
    by_im2col = fl.serial(fl.Conv2D(4, 3, padding="same", algorithm="im2col"), fl.Relu(), fl.MaxPool2D(2))
    assert by_im2col.init(np.random.default_rng(0), x.shape, dtype=np.float64)["0"]["w"].shape == (3, 3, 3, 4)
    calls.clear()
    y, vjp = by_im2col.apply(params, odd)
    vjp(np.ones_like(y))
    assert y.shape == (2, 3, 3, 4) and calls == []
    y, vjp = unpooled.apply({"0": params["0"], "1": {}}, x)
    vjp(np.ones_like(y))
    assert calls == ["_from_blocks", "_into_blocks"]


def test_which_children_form_a_step():
    conv, relu, pool = fl.Conv2D(2, 3), fl.Relu(), fl.MaxPool2D(2)
    pairs = lambda *ls: [(str(i), layer) for i, layer in enumerate(ls)]  # noqa: E731
    assert _plan(pairs(conv, relu, pool, fl.Flatten())) == [((0, 1, 2), (0, 2, 1)), ((3,), (3,))]
    assert _plan(pairs(conv, relu, conv, relu)) == [((0, 1), (0, 1)), ((2, 3), (2, 3))]
    assert _plan(pairs(conv, fl.Tanh(), pool)) == [((0,), (0,)), ((1,), (1,)), ((2,), (2,))]
    assert _plan(pairs(relu, pool, conv)) == [((0, 1), (1, 0)), ((2,), (2,))]
    assert _plan(pairs(conv, pool, relu)) == [((0,), (0,)), ((1,), (1,)), ((2,), (2,))]
    assert _plan(pairs(fl.ConvTranspose2D(2, 3), relu)) == [((0,), (0,)), ((1,), (1,))]
    assert _plan(pairs(conv)) == [((0,), (0,))]


def test_a_wrapped_relu_is_not_fused():
    """A functools.wraps wrapper is another function: the step runs one by one (the wrapper here
    negates, so it shows)."""
    relu = fl.Relu()

    @functools.wraps(relu.apply)
    def negated(params, x, **kw):
        y, vjp = relu.apply(params, x, **kw)
        return -y, lambda dy, **k: vjp(-dy, **k)
    layers = [fl.Conv2D(2, 3, padding="same", algorithm="winograd"), fl.Layer(relu.init, negated)]
    assert _plan([(str(i), la) for i, la in enumerate(layers)]) == [((0,), (0,)), ((1,), (1,))]
    x = np.ones((1, 4, 4, 1))
    model = fl.serial(*layers)
    y, _ = model.apply(model.init(np.random.default_rng(0), x.shape, dtype=np.float64), x)
    assert (y <= 0).all()


@pytest.mark.parametrize("pool", [fl.MaxPool2D(3), fl.MaxPool2D(2, stride=1), fl.MaxPool2D(2, padding=1)])
def test_other_pooling_runs_after_a_fused_relu_or_by_itself(pool):
    """Only 2x2 windows with stride 2 and no padding fuse; any other MaxPool2D runs by itself (after
    the convolution, with the ReLU after it, as serial runs the pair)."""
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 2))
    _compare([fl.Conv2D(3, 3, padding="same", algorithm="winograd"), fl.Relu(), pool], x, 0)


def test_a_cnn_with_fused_steps_passes_the_gradient_check():
    model = fl.serial(fl.Conv2D(3, 3, algorithm="im2col"), fl.Relu(), fl.Conv2D(4, 3, padding="same",
                      algorithm="winograd"), fl.Relu(), fl.MaxPool2D(2), fl.Flatten(), fl.Dense(2))
    rng = np.random.default_rng(0)
    params = model.init(rng, (-1, 10, 10, 2), dtype=np.float64)
    x = rng.standard_normal((2, 10, 10, 2))
    assert [m for m, _ in _plan(list(zip("0123456", [fl.Conv2D(3, 3), fl.Relu(), fl.Conv2D(4, 3),
                                                     fl.Relu(), fl.MaxPool2D(2)])))][:2] == [(0, 1), (2, 3, 4)]
    assert check_vjp(model.apply, params, x).passed


def test_train_step_on_two_threads_runs_the_fused_steps(monkeypatch):
    """The parts of train_step(threads=2) run the fused steps: the same step as one thread, to
    rounding (the parts' gradients are added)."""
    pooled = []
    real = _winograd._pool_blocks
    monkeypatch.setattr(_winograd, "_pool_blocks", lambda *a: pooled.append(1) or real(*a))
    model = fl.serial(fl.Conv2D(4, 3, padding="same"), fl.Relu(), fl.Conv2D(16, 3, algorithm="winograd"),
                      fl.Relu(), fl.MaxPool2D(2), fl.Flatten(), fl.Dense(3))
    rng = np.random.default_rng(0)
    params = model.init(rng, (-1, 10, 10, 1), dtype=np.float64)
    x, labels = rng.standard_normal((6, 10, 10, 1)), rng.integers(0, 3, 6)
    opt = fl.optim.sgd(0.1, momentum=0.9)
    outs = [fl.train_step(model.apply, fl.losses.softmax_cross_entropy, opt, threads=t)(
        params, opt.init(params), x, labels) for t in (1, 2)]
    assert len(pooled) == 3  # one chunk unsplit, two parts
    np.testing.assert_allclose(outs[0][2], outs[1][2], rtol=1e-12)
    for key in params:
        for leaf in params[key]:
            np.testing.assert_allclose(outs[0][0][key][leaf], outs[1][0][key][leaf], rtol=1e-10, atol=1e-12)


def test_errors_name_the_child_they_concern():
    model = fl.serial(fl.Conv2D(2, 3, padding="same", algorithm="winograd"), fl.Relu(), fl.MaxPool2D(2))
    params = model.init(np.random.default_rng(0), (-1, 8, 8, 1))
    with pytest.raises(ValueError, match=r"serial layer 0 .*Conv2D"):
        model.apply(params, np.ones((2, 8, 8, 3), np.float32))
    y, vjp = model.apply(params, np.ones((2, 8, 8, 1), np.float32))
    with pytest.raises(ValueError, match=r"serial layer 1 \('1', Relu\): Relu: "):  # as one by one: Relu runs last
        vjp(np.ones((2, 8, 8, 2), np.float32))
    with pytest.raises(ValueError, match=r"serial layer 1 .*Relu"):
        model.apply({**params, "1": {"w": np.ones(1)}}, np.ones((2, 8, 8, 1), np.float32))
    with pytest.raises(ValueError, match=r"serial layer 2 .*MaxPool2D"):
        model.apply({**params, "2": {"w": np.ones(1)}}, np.ones((2, 8, 8, 1), np.float32))
    relu_only = fl.serial(fl.Conv2D(2, 3), fl.Relu())
    y, vjp = relu_only.apply(relu_only.init(np.random.default_rng(0), (-1, 5, 5, 1)), np.ones((1, 5, 5, 1), np.float32))
    with pytest.raises(ValueError, match=r"serial layer 1 \('1', Relu\): Relu: "):
        vjp(np.ones((1, 3, 3, 3), np.float32))

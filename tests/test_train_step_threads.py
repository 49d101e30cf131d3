"""fl.train_step(..., threads=N): the batch split over N Python threads (fnlearn._split) with NumPy's
BLAS on one thread meanwhile (fnlearn._blas): the same step as threads=1 up to rounding, on threads
of its own, BLAS restored after, and its refusals explained."""

import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fnlearn as fl
from fnlearn import _blas, _split, optim
from fnlearn.tree import tree_leaves, tree_structure

from test_train_step import OPTIMIZERS, _copy, _assert_identical


def _cnn():
    return fl.serial(fl.Conv2D(3, 3, padding="same"), fl.Relu(), fl.Conv2D(8, 3, algorithm="winograd"),
                     fl.Relu(), fl.MaxPool2D(2), fl.Flatten(), fl.Dense(5), fl.Tanh(), fl.Dense(3))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@given(seed=st.integers(0, 2 ** 32 - 1), batch=st.integers(1, 7), threads=st.integers(2, 4))
def test_equals_the_step_on_one_thread_and_modifies_nothing(name, seed, batch, threads):
    rng = np.random.default_rng(seed)
    model, loss, opt = _cnn(), fl.losses.softmax_cross_entropy, OPTIMIZERS[name]()
    params = model.init(rng, (-1, 6, 6, 2), dtype=np.float64)
    state = opt.init(params)
    one = fl.train_step(model.apply, loss, opt)
    split = fl.train_step(model.apply, loss, opt, threads=threads)
    for _ in range(2):
        x = rng.normal(size=(batch, 6, 6, 2))
        y = rng.integers(0, 3, batch)
        before = _copy((params, state, x, y))
        got = split(params, state, x, y)
        _assert_identical((params, state, x, y), before)
        want = one(params, state, x, y)
        assert tree_structure(got[:2]) == tree_structure(want[:2])
        for a, b in zip(tree_leaves(got[:2]), tree_leaves(want[:2])):
            # the parts' gradients are summed in another order; Adam divides by their size, which
            # turns a rounding of 1e-16 in a gradient near zero into about 1e-10 in the step
            np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-8)
            assert np.asarray(a).dtype == np.asarray(b).dtype
        assert got[2] == pytest.approx(want[2], rel=1e-12)
        params, state = got[:2]


def test_float32_stays_float32():
    model, opt = _cnn(), optim.adam(1e-3)
    params = model.init(np.random.default_rng(0), (-1, 6, 6, 2))
    step = fl.train_step(model.apply, fl.losses.softmax_cross_entropy, opt, threads=2)
    new, _, value = step(params, opt.init(params), np.ones((4, 6, 6, 2), np.float32), np.arange(4) % 3)
    assert {a.dtype for a in tree_leaves(new)} == {np.dtype(np.float32)}
    assert isinstance(value, float)


def test_the_parts_run_on_their_own_threads_with_blas_on_one(monkeypatch):
    seen = []
    model = fl.serial(fl.Dense(4), fl.Relu(), fl.Dense(2))

    def apply(params, x, *, rng=None, train=False):
        seen.append((threading.get_ident(), len(x), _blas.num_threads()))
        return model.apply(params, x, rng=rng, train=train)

    params = model.init(np.random.default_rng(0), (-1, 3))
    step = fl.train_step(apply, fl.losses.softmax_cross_entropy, optim.sgd(0.1), threads=3)
    before = _blas.num_threads()
    step(params, optim.sgd(0.1).init(params), np.ones((7, 3), np.float32), np.zeros(7, int))
    assert sorted(n for _, n, _ in seen) == [2, 2, 3]  # 7 examples in parts of 2 to 3
    on_main = [t == threading.get_ident() for t, _, _ in seen]
    assert sum(on_main) == 1  # one part here, the others on the pool's threads
    assert _blas.num_threads() == before  # restored
    if before is None:
        pytest.skip("NumPy's BLAS is not OpenBLAS here: the one-thread setting cannot be checked")
    assert {b for _, _, b in seen} == {1}


def test_dropout_parts_draw_from_the_spawned_children_of_rng():
    """Part i of a batch uses ``rng.spawn(threads)[i]``: the result equals the parts applied by hand."""
    model = fl.serial(fl.Dense(6), fl.Dropout(0.5), fl.Dense(2))
    params = model.init(np.random.default_rng(0), (-1, 3), dtype=np.float64)
    x, y = np.random.default_rng(1).normal(size=(6, 3)), np.array([0, 1, 1, 0, 1, 0])
    pred, _ = _split.batch_parallel(model.apply, 2)(params, x, rng=np.random.default_rng(5), train=True)
    children = np.random.default_rng(5).spawn(2)
    want = np.concatenate([model.apply(params, x[s], rng=r, train=True)[0]
                           for s, r in zip((slice(0, 3), slice(3, 6)), children)])
    np.testing.assert_array_equal(pred, want)
    step = fl.train_step(model.apply, fl.losses.softmax_cross_entropy, optim.sgd(0.1), threads=2)
    runs = [step(params, optim.sgd(0.1).init(params), x, y, rng=np.random.default_rng(5)) for _ in range(2)]
    _assert_identical(runs[0], runs[1])


def test_the_input_cotangent_is_joined_in_batch_order():
    model = fl.serial(fl.Dense(4), fl.Tanh(), fl.Dense(2))
    params = model.init(np.random.default_rng(0), (-1, 3), dtype=np.float64)
    x = np.random.default_rng(1).normal(size=(5, 3))
    dy = np.random.default_rng(2).normal(size=(5, 2))
    pred, vjp = _split.batch_parallel(model.apply, 2)(params, x)
    want_pred, want_vjp = model.apply(params, x)
    np.testing.assert_allclose(pred, want_pred, rtol=1e-14)
    (grads, dx), (want_grads, want_dx) = vjp(dy), want_vjp(dy)
    np.testing.assert_allclose(dx, want_dx, rtol=1e-14)
    for a, b in zip(tree_leaves(grads), tree_leaves(want_grads)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    assert vjp(dy, compute_dx=False)[1] is None


def test_bad_arguments_are_explained():
    model = fl.serial(fl.Dense(2))
    opt, loss = optim.sgd(0.1), fl.losses.mse
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match=r"train_step: threads must be a positive int"):
            fl.train_step(model.apply, loss, opt, threads=bad)
    bn = fl.serial(fl.Dense(2), fl.BatchNorm())
    with pytest.raises(ValueError, match=r"threads > 1 splits the batch.*BatchNorm.*threads=1"):
        fl.train_step(bn.apply, loss, opt, has_state=True, threads=2)
    params = model.init(np.random.default_rng(0), (-1, 3))
    step = fl.train_step(model.apply, loss, opt, threads=2)
    with pytest.raises(TypeError, match=r"train_step: threads > 1 splits the batch along axis 0 of x.*list"):
        step(params, opt.init(params), [[1.0, 2.0, 3.0]] * 2, np.zeros((2, 2)))

    def two_outputs(params, x, *, rng=None, train=False):
        y, vjp = model.apply(params, x)
        return (y, y), vjp
    step = fl.train_step(two_outputs, loss, opt, threads=2)
    with pytest.raises(TypeError, match=r"output is one array with the batch on axis 0 .*; got tuple"):
        step(params, opt.init(params), np.ones((2, 3), np.float32), np.zeros((2, 2), np.float32))

    def flattens_the_batch(params, x, *, rng=None, train=False):
        y, vjp = model.apply(params, x)
        return y.reshape(-1), vjp
    step = fl.train_step(flattens_the_batch, loss, opt, threads=2)
    with pytest.raises(TypeError, match=r"for a part of 2 examples, shape \(2, \.\.\.\)\); got an array of "
                                        r"shape \(4,\)"):
        step(params, opt.init(params), np.ones((4, 3), np.float32), np.zeros(8, np.float32))


def test_a_layer_error_on_a_worker_thread_names_the_layer():
    model = fl.serial(fl.Dense(2), fl.Dense(3))
    params = model.init(np.random.default_rng(0), (-1, 3))
    step = fl.train_step(model.apply, fl.losses.mse, optim.sgd(0.1), threads=2)
    with pytest.raises(ValueError, match=r"serial layer 0 .*Dense\(2\).*got \(2, 5\)"):
        step(params, optim.sgd(0.1).init(params), np.ones((4, 5), np.float32), np.zeros((4, 3), np.float32))


def test_one_thread_restores_the_count_once_when_blocks_nest(monkeypatch):
    calls = []
    count = [4]
    monkeypatch.setattr(_blas, "_API", [(lambda: count[0], lambda n: calls.append(n) or count.__setitem__(0, n))])
    with _blas.one_thread() as found:
        assert found and count == [1]
        with _blas.one_thread():
            assert count == [1]
        assert count == [1]
    assert count == [4] and calls == [1, 4]
    monkeypatch.setattr(_blas, "_API", [None])
    with _blas.one_thread() as found:
        assert not found and _blas.num_threads() is None


def test_the_parts_gradients_are_added_in_place_only_when_nobody_else_holds_them(monkeypatch):
    from fnlearn import _train
    calls = []
    real = _train._add_into
    monkeypatch.setattr(_train, "_add_into", lambda p, u: calls.append(1) or real(p, u))
    model = fl.serial(fl.Dense(3), fl.Relu(), fl.Dense(2))
    params = model.init(np.random.default_rng(0), (-1, 4), dtype=np.float64)
    x, dy = np.random.default_rng(1).normal(size=(6, 4)), np.random.default_rng(2).normal(size=(6, 2))
    grads, _ = _split.batch_parallel(model.apply, 2)(params, x)[1](dy, compute_dx=False)
    assert calls  # fnlearn's VJPs return fresh arrays: summed in place
    want = model.apply(params, x)[1](dy)[0]
    for a, b in zip(tree_leaves(grads), tree_leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    calls.clear()
    conv = fl.serial(fl.Conv2D(2, 3, algorithm="winograd"), fl.Flatten())
    conv_params = conv.init(np.random.default_rng(0), (-1, 5, 5, 1), dtype=np.float64)
    images = np.random.default_rng(3).normal(size=(4, 5, 5, 1))
    grads, _ = _split.batch_parallel(conv.apply, 2)(conv_params, images)[1](np.ones((4, 18)), compute_dx=False)
    assert calls  # the Winograd kernel gradient owns its memory too
    want = conv.apply(conv_params, images)[1](np.ones((4, 18)))[0]
    for a, b in zip(tree_leaves(grads), tree_leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)

    cached = {"w": np.ones((4, 2))}  # a VJP that returns an array it keeps

    def apply(params, x, *, rng=None, train=False):
        return x @ params["w"], lambda dy, compute_dx=True: (cached, None)
    calls.clear()
    grads, _ = _split.batch_parallel(apply, 2)({"w": np.zeros((4, 2))}, x)[1](dy, compute_dx=False)
    assert not calls
    np.testing.assert_array_equal(cached["w"], 1.0)
    np.testing.assert_array_equal(grads["w"], 2.0)


def test_when_a_worker_part_fails_the_step_raises_after_every_part_has_finished():
    """Only the second part fails (on the pool's thread); the first, on this thread, is slow: the error
    comes out, and only after the slow part is done (no part runs on after the step returned)."""
    import time
    model = fl.serial(fl.Dense(2))
    params = model.init(np.random.default_rng(0), (-1, 3))
    finished = []

    def apply(params, x, *, rng=None, train=False):
        if x[0, 0] > 0:
            raise ValueError("part two is broken")
        time.sleep(0.2)
        finished.append(_blas.num_threads())
        return model.apply(params, x)

    step = fl.train_step(apply, fl.losses.mse, optim.sgd(0.1), threads=2)
    x = np.concatenate([np.zeros((2, 3)), np.ones((2, 3))]).astype(np.float32)
    before = _blas.num_threads()
    with pytest.raises(ValueError, match="part two is broken"):
        step(params, optim.sgd(0.1).init(params), x, np.zeros((4, 2), np.float32))
    assert len(finished) == 1  # the slow part ran to its end before the error came out
    assert _blas.num_threads() == before
    if before is not None:
        assert finished == [1]  # and BLAS was still on one thread while it ran


def test_one_thread_restores_the_count_when_the_block_raises(monkeypatch):
    count = [3]
    monkeypatch.setattr(_blas, "_API", [(lambda: count[0], lambda n: count.__setitem__(0, n))])
    monkeypatch.setattr(_blas, "_DEPTH", [0, 0])
    with pytest.raises(KeyError):
        with _blas.one_thread():
            assert count == [1]
            raise KeyError("boom")
    assert count == [3] and _blas._DEPTH[0] == 0


def test_a_threaded_step_works_in_a_forked_child():
    """The pool's threads do not survive a fork: the child makes its own (it used to hang)."""
    import os
    import subprocess
    import sys
    if not hasattr(os, "fork"):
        pytest.skip("no os.fork on this platform")
    code = """
import os, sys, numpy as np, fnlearn as fl
model = fl.serial(fl.Dense(4), fl.Relu(), fl.Dense(2))
params = model.init(np.random.default_rng(0), (-1, 3))
opt = fl.optim.sgd(0.1)
step = fl.train_step(model.apply, fl.losses.softmax_cross_entropy, opt, threads=2)
x, y = np.ones((6, 3), np.float32), np.zeros(6, int)
step(params, opt.init(params), x, y)
pid = os.fork()
if pid == 0:
    step(params, opt.init(params), x, y)
    os._exit(7)
print(os.waitpid(pid, 0)[1] >> 8)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "7", out.stderr


def test_a_batch_large_enough_for_the_chunked_paths_gives_the_step_on_one_thread():
    """64 examples of 14x14x16: Relu past its 131072-entry chunks, Winograd and MaxPool2D in several
    chunks, on two threads at once; the same new parameters as threads=1 (to rounding), twice."""
    model = fl.serial(fl.Conv2D(16, 3, padding="same"), fl.Relu(), fl.Conv2D(16, 3, padding="same"),
                      fl.Relu(), fl.MaxPool2D(2), fl.Flatten(), fl.Dense(10))
    rng = np.random.default_rng(0)
    params = model.init(rng, (-1, 14, 14, 3), dtype=np.float64)
    opt = optim.sgd(0.01, momentum=0.9)
    x, y = rng.standard_normal((64, 14, 14, 3)), rng.integers(0, 10, 64)
    want = fl.train_step(model.apply, fl.losses.softmax_cross_entropy, opt)(params, opt.init(params), x, y)
    step = fl.train_step(model.apply, fl.losses.softmax_cross_entropy, opt, threads=2)
    for _ in range(2):
        got = step(params, opt.init(params), x, y)
        for a, b in zip(tree_leaves(got[:2]), tree_leaves(want[:2])):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_ndarray_subclasses_are_split_too():
    model = fl.serial(fl.Dense(2))
    params = model.init(np.random.default_rng(0), (-1, 3), dtype=np.float64)
    x = np.arange(12.0).reshape(4, 3).view(_Sub)
    pred, _ = _split.batch_parallel(model.apply, 2)(params, x)
    np.testing.assert_allclose(pred, model.apply(params, np.asarray(x))[0], rtol=1e-14)


class _Sub(np.ndarray):
    pass


def test_threads_warn_when_numpys_openblas_is_not_found(monkeypatch):
    monkeypatch.setattr(_blas, "_API", [None])
    model = fl.serial(fl.Dense(2))
    with pytest.warns(RuntimeWarning, match=r"OpenBLAS was not found.*threadpoolctl"):
        fl.train_step(model.apply, fl.losses.mse, optim.sgd(0.1), threads=2)


def test_without_exact_reference_counts_the_gradients_are_summed_into_new_arrays(monkeypatch):
    from fnlearn import _train
    monkeypatch.setattr(_train, "_EXACT_REFCOUNTS", False)
    monkeypatch.setattr(_train, "_add_into", lambda p, u: pytest.fail("added in place"))
    model = fl.serial(fl.Dense(3), fl.Dense(2))
    params = model.init(np.random.default_rng(0), (-1, 4), dtype=np.float64)
    x, dy = np.ones((4, 4)), np.ones((4, 2))
    grads, _ = _split.batch_parallel(model.apply, 2)(params, x)[1](dy, compute_dx=False)
    want = model.apply(params, x)[1](dy)[0]
    for a, b in zip(tree_leaves(grads), tree_leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-14)

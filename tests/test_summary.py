"""Issue 18 items 8 and 9: ``repr`` names a layer's constructor, ``fl.summary`` tables a model, and names
given at construction are the paths of params, summaries and checkpoints."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fnlearn as fl
from fnlearn.testing import strategies as fst
from fnlearn.tree import tree_flatten_with_path, tree_leaves
from registry import LAYERS


def test_repr_names_the_constructor_and_its_hyperparameters():
    assert repr(fl.Dense(32)) == "Dense(32)"
    assert repr(fl.Relu()) == "Relu()"
    assert repr(fl.serial(fl.Dense(32), fl.Relu(), fl.Dense(10))) == "serial(Dense(32), Relu(), Dense(10))"
    assert repr(fl.Conv2D(8, 3)) == "Conv2D(8, 3)"
    assert repr(fl.parallel(fl.Dense(3), fl.Identity())) == "parallel(Dense(3), Identity())"
    assert repr(fl.serial(("fc", fl.Dense(2)), fl.Relu())) == "serial(Dense(2), Relu(), names=['fc', '1'])"
    assert repr(fl.serial(fl.Dense(3), fl.BatchNorm())).startswith("serial(Dense(3), BatchNorm(")
    assert repr(fl.bind_state(fl.serial(fl.Dense(3), fl.BatchNorm()), {})).startswith("serial(Dense(3), ")


def test_repr_of_user_written_layers():
    def Swish():
        def init(rng, input_shape, *, dtype=None):
            return {}

        def apply(params, x, *, rng=None, train=False):
            return x, None
        return fl.Layer(init, apply)

    assert repr(Swish()) == "Swish()"
    plain = fl.Layer(lambda rng, shape: {}, lambda params, x: (x, None))
    assert repr(plain).startswith("Layer(init=<function")


def test_error_messages_shorten_long_nested_names():
    block = fl.serial(*[fl.Dense(4) for _ in range(8)])
    model = fl.serial(block, fl.Dense(2))
    params = model.init(np.random.default_rng(0), (-1, 3))
    with pytest.raises(ValueError) as info:
        model.apply(params, np.ones((2, 5), np.float32))
    assert "('0', serial(...))" in str(info.value)


def test_summary_of_the_issue_example():
    s = fl.summary(fl.serial(fl.Dense(32), fl.Relu(), fl.Dense(10)), (-1, 784))
    assert [(r.path, r.layer, r.output_shape, r.params) for r in s.rows] == [
        ("0", "Dense(32)", (-1, 32), 784 * 32 + 32), ("1", "Relu()", (-1, 32), 0),
        ("2", "Dense(10)", (-1, 10), 32 * 10 + 10)]
    assert s.params == 25_450 and s.output_shape == (-1, 10) and s.nbytes == 4 * 25_450
    text = str(s)
    assert "total params: 25,450" in text and "Dense(32)" in text and "(-1, 32)" in text


def _residual(width):
    body = fl.serial(("fc", fl.Dense(width)), ("act", fl.Tanh()))
    return fl.serial(fl.FanOut(2), fl.parallel(("body", body), ("skip", fl.Identity())), fl.FanInSum())


def test_names_given_at_construction_are_the_paths_everywhere(tmp_path):
    model = fl.serial(("stem", fl.Dense(4)), ("res1", _residual(4)), ("bn", fl.BatchNorm()),
                      ("head", fl.Dense(2)))
    params, state = model.init(np.random.default_rng(0), (-1, 3))
    paths = [p for p, _ in tree_flatten_with_path(params)[0]]
    assert "res1/1/body/fc/w" in paths and "stem/w" in paths and "head/b" in paths
    rows = {r.path: r for r in fl.summary(model, (-1, 3)).rows}
    assert rows["res1/1/body/fc"].layer == "Dense(4)" and rows["res1/1/body/fc"].params == 20
    assert rows["res1/1/skip"].layer == "Identity()" and rows["res1"].layer == "serial"
    assert rows["bn"].params == 8 and fl.summary(model, (-1, 3)).state == 8
    from fnlearn import checkpoint
    checkpoint.save(tmp_path / "ckpt.npz", params)
    with np.load(tmp_path / "ckpt.npz") as npz:
        assert "res1/1/body/fc/w.npy" in npz.zip.namelist()


def test_pairs_and_names_give_the_same_model():
    a = fl.serial(("fc", fl.Dense(3)), ("act", fl.Relu()))
    b = fl.serial(fl.Dense(3), fl.Relu(), names=["fc", "act"])
    pa, pb = (m.init(np.random.default_rng(0), (-1, 2)) for m in (a, b))
    assert sorted(pa) == sorted(pb) == ["act", "fc"]
    np.testing.assert_array_equal(pa["fc"]["w"], pb["fc"]["w"])
    assert repr(a) == repr(b)


@pytest.mark.parametrize("call, message", [
    (lambda: fl.serial(("a", fl.Dense(2)), fl.Relu(), names=["x", "y"]), "either with \\(name, layer\\) pairs or"),
    (lambda: fl.serial(("a", fl.Dense(2)), ("a", fl.Relu())), "unique name"),
    (lambda: fl.parallel(("a/b", fl.Dense(2)), fl.Relu()), "without '/'"),
])
def test_bad_names_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_summary_takes_given_params_and_integer_inputs():
    model = fl.serial(fl.Embedding(10, 4), fl.Dense(3))
    params = model.init(np.random.default_rng(1), (-1, 5), input_dtype=np.int64)
    s = fl.summary(model, (-1, 5), params=params, input_dtype=np.int64)
    assert [r.output_shape for r in s.rows] == [(-1, 5, 4), (-1, 5, 3)] and s.params == 40 + 15
    with pytest.raises(ValueError, match="stateful model needs its state"):
        fl.summary(fl.serial(fl.Dense(2), fl.BatchNorm()), (-1, 3),
                   params=fl.serial(fl.Dense(2), fl.BatchNorm()).init(np.random.default_rng(0), (-1, 3))[0])


def _shapes(y, batch):
    if isinstance(y, (tuple, list)):
        return tuple(_shapes(v, batch) for v in y)
    return (batch,) + y.shape[1:]


@pytest.mark.parametrize("spec", LAYERS, ids=str)
def test_every_registered_layer_has_a_repr_and_a_summary_that_agrees_with_apply(spec):
    @settings(max_examples=5)
    @given(case=fst.layer_cases(spec.factory, feature_shape=spec.feature_shape, x_elements=spec.x_elements,
                                batch=spec.batch, **spec.hyperparams))
    def check(case):
        assert not repr(case.layer).startswith(("Layer(init=", "StatefulLayer(init=")), repr(case.layer)
        xs = case.x if isinstance(case.x, tuple) else (case.x,)
        dtypes = tuple(x.dtype for x in xs)
        shapes = tuple((-1,) + x.shape[1:] for x in xs)
        s = fl.summary(case.layer, shapes if len(xs) > 1 else shapes[0], params=case.params, state=case.state,
                       input_dtype=dtypes if len(xs) > 1 else dtypes[0])
        rng = np.random.default_rng(0) if spec.random else None
        y = case.apply(case.params, case.x, rng=rng, train=False)[0]   # eval mode: what summary runs
        assert s.output_shape == _shapes(y, -1)
        assert s.params == sum(np.size(a) for a in tree_leaves(case.params))
        top = [r for r in s.rows if r.depth == 0]
        assert sum(r.params for r in top) == s.params
    check()


def test_names_given_at_construction_name_the_torch_state_dict_entries():
    from fnlearn import interop
    model = fl.serial(("fc1", fl.Dense(4)), ("act", fl.Relu()), ("head", fl.serial(("out", fl.Dense(2)))))
    params = model.init(np.random.default_rng(0), (-1, 3))
    sd = interop.to_torch_linear_state_dict(params)
    assert sorted(sd) == ["fc1.bias", "fc1.weight", "head.out.bias", "head.out.weight"]
    back = interop.from_torch_linear_state_dict(sd, like=params)
    np.testing.assert_array_equal(back["head"]["out"]["w"], params["head"]["out"]["w"])

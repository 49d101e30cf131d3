"""Embedding: lookup, the table gradient with repeated ids (against a loop), integer inputs, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fnlearn as fl
from fnlearn.testing import check_layer
from fnlearn.testing import strategies as fst


def _ids(num):
    return lambda dt, shape: hnp.arrays(np.int64, shape, elements=st.integers(0, num - 1))


@given(case=fst.layer_cases(fl.Embedding, num_embeddings=st.just(4), features=fst.small_dims(1, 3),
                            feature_shape=st.one_of(st.tuples(), st.tuples(fst.small_dims(1, 5))),
                            x_elements=_ids(4)))
def test_embedding_passes_the_layer_battery(case):
    case.check_layer()


@given(ids=hnp.arrays(np.int64, st.tuples(st.integers(1, 4), st.integers(1, 6)),
                      elements=st.integers(0, 4)), seed=fst.seeds())
def test_embedding_gradient_adds_repeated_ids_like_a_loop(ids, seed):
    layer = fl.Embedding(5, 3)
    rng = np.random.default_rng(seed)
    params = layer.init(rng, (-1, ids.shape[1]), dtype=np.float64)
    y, vjp = layer.apply(params, ids)
    np.testing.assert_array_equal(y, params["embeddings"][ids])
    dy = rng.standard_normal(y.shape)
    dparams, dx = vjp(dy)
    want = np.zeros((5, 3))
    for index in np.ndindex(ids.shape):
        want[ids[index]] += dy[index]
    np.testing.assert_allclose(dparams["embeddings"], want, rtol=1e-12, atol=1e-12)
    assert dx is None and vjp(dy, compute_dx=False)[1] is None


def test_embedding_in_a_model_with_integer_inputs():
    model = fl.serial(fl.Embedding(10, 4), fl.Flatten(), fl.Dense(2))
    params = model.init(np.random.default_rng(0), (-1, 3), input_dtype=np.int64)
    assert params["0"]["embeddings"].shape == (10, 4) and params["2"]["w"].shape == (12, 2)
    ids = np.array([[1, 2, 3], [9, 9, 0]])
    f = fl.value_and_grad(model.apply, fl.losses.softmax_cross_entropy)
    _, grads = f(params, ids, np.array([0, 1]))
    assert grads["0"]["embeddings"].dtype == np.float32
    assert np.all(grads["0"]["embeddings"][[4, 5, 6, 7, 8]] == 0.0)
    # "init" is excluded: check_layer re-runs serial's init without input_dtype=np.int64.
    assert check_layer(model, (-1, 3), params=params, x=ids, exclude=("init",)).passed


def test_embedding_errors():
    layer = fl.Embedding(3, 2)
    params = layer.init(np.random.default_rng(0), (-1, 2))
    with pytest.raises(TypeError, match=r"x must be a NumPy array of integer ids, got dtype float32"):
        layer.apply(params, np.zeros((1, 2), np.float32))
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 2\], got values from -1 to 1"):
        layer.apply(params, np.array([[0, -1], [1, 1]]))
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 2\], got values from 0 to 3"):
        layer.apply(params, np.array([[0, 3]]))
    with pytest.raises(ValueError, match=r"features must be a positive int"):
        fl.Embedding(3, 0)
    with pytest.raises(ValueError, match=r"params\['embeddings'\]"):
        layer.apply({"embeddings": np.zeros((4, 2), np.float32)}, np.array([[0]]))

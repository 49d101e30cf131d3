"""Issue 18's bad inputs and faults: each case raises a sentence that names the fix, or stays quiet."""

import warnings

import numpy as np
import pytest

import fnlearn as fl


def _init(layer, shape, dtype=None):
    return layer.init(np.random.default_rng(0), shape, **({} if dtype is None else {"dtype": dtype}))


# item 12: Conv2D says that it expects NHWC, and recognises channels-first input
@pytest.mark.parametrize("make", [lambda: fl.Conv2D(8, 3), lambda: fl.ConvTranspose2D(8, 3, padding=2)])
def test_conv_init_with_an_nchw_shape_names_the_layout(make):
    with pytest.raises(ValueError, match=r"NHWC[\s\S]*looks like NCHW[\s\S]*transpose\(0, 2, 3, 1\)"):
        _init(make(), (-1, 1, 2, 2))


@pytest.mark.parametrize("channels", [1, 3])
def test_conv_apply_on_nchw_input_names_the_layout(channels):
    layer = fl.Conv2D(8, 3)
    params = _init(layer, (-1, 28, 28, channels))
    with pytest.raises(ValueError, match=r"\(NHWC\)[\s\S]*looks like NCHW[\s\S]*transpose\(0, 2, 3, 1\)"):
        layer.apply(params, np.ones((2, channels, 28, 28), np.float32))


def test_conv_apply_with_a_wrong_channel_count_is_not_called_nchw():
    layer = fl.Conv2D(8, 3)
    params = _init(layer, (-1, 28, 28, 3))
    with pytest.raises(ValueError, match="NHWC") as info:
        layer.apply(params, np.ones((2, 28, 28, 5), np.float32))
    assert "NCHW" not in str(info.value)


# item 18: one float64 leaf in float32 params is refused by name instead of getting a float32 gradient
@pytest.mark.parametrize("make, shape", [(lambda: fl.Dense(3), (-1, 2)),
                                         (lambda: fl.Conv2D(2, 1), (-1, 3, 3, 1)),
                                         (lambda: fl.ConvTranspose2D(2, 1), (-1, 3, 3, 1))])
def test_a_float64_leaf_among_float32_params_is_named(make, shape):
    layer = make()
    params = _init(layer, shape)
    params["b"] = params["b"].astype(np.float64)
    x = np.ones((2,) + shape[1:], np.float32)
    with pytest.raises(TypeError, match=r"params\['b'\] is float64 but params\['w'\] is float32"):
        layer.apply(params, x)


def test_a_float64_leaf_in_a_serial_model_is_named_with_its_position():
    model = fl.serial(fl.Dense(4), fl.Relu(), fl.Dense(2))
    params = _init(model, (-1, 3))
    params["2"]["w"] = params["2"]["w"].astype(np.float64)
    with pytest.raises(TypeError, match=r"serial layer 2 [\s\S]*float64"):
        model.apply(params, np.ones((5, 3), np.float32))


# item 20: Dense documents that inf in gives inf or NaN out; NumPy must not warn about it
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_propagates_inf_without_warnings(dtype):
    layer = fl.Dense(3)
    params = _init(layer, (-1, 2), dtype)
    params["w"][0, 0] = 0.0                                   # inf * 0 is NaN: "invalid" in matmul
    params["w"][:, 1:] = 10.0                                 # huge * 10 overflows
    huge = np.finfo(dtype).max
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y, vjp = layer.apply(params, np.array([[np.inf, 1.0], [huge, huge]], dtype))
        dparams, dx = vjp(np.full_like(y, huge))               # overflows in every product
        dparams_only, _ = vjp(np.full_like(y, huge), compute_dx=False)
    assert np.isnan(y[0, 0]) and np.isinf(y[0, 1:]).all()
    assert not np.isfinite(dparams["w"]).all() and not np.isfinite(dx).all()
    assert y.dtype == dx.dtype == dparams["w"].dtype == dtype
    np.testing.assert_array_equal(dparams_only["w"], dparams["w"])


def test_dense_leaves_the_callers_error_state_alone():
    layer = fl.Dense(2)
    params = _init(layer, (-1, 2))
    with np.errstate(over="raise"):
        layer.apply(params, np.array([[np.inf, 1.0]], np.float32))
        with pytest.raises(FloatingPointError):
            np.float32(3e38) * np.float32(10)


# item 22: a masked array is refused instead of computing with its masked entries
@pytest.mark.parametrize("make, shape", [(lambda: fl.Dense(3), (-1, 4)), (lambda: fl.Relu(), (-1, 4)),
                                         (lambda: fl.serial(fl.Dense(3), fl.Relu()), (-1, 4)),
                                         (lambda: fl.Conv2D(2, 1), (-1, 2, 2, 4))])
def test_a_masked_array_is_refused(make, shape):
    layer = make()
    params = _init(layer, shape)
    x = np.ma.masked_array(np.ones((2,) + shape[1:], np.float32))
    x[0, ..., 0] = np.ma.masked
    with pytest.raises(TypeError, match=r"MaskedArray[\s\S]*\.filled\("):
        layer.apply(params, x)


# item 14: a sha256 table without an entry for a file names that file
@pytest.mark.parametrize("table, needle", [({}, "no entry for train-images-idx3-ubyte.gz"),
                                           ({"train-images-idx3-ubyte.gz": "ab"}, "'ab', not 64 hex digits"),
                                           ({"train-images-idx3-ubyte.gz": "0" * 64},
                                            "no entry for train-labels-idx1-ubyte.gz")])
def test_mnist_with_an_incomplete_sha256_table_names_the_file(tmp_path, table, needle):
    with pytest.raises(ValueError, match=needle) as info:
        fl.datasets.mnist("train", tmp_path, sha256=table, download=False)
    assert "MNIST_SHA256" in str(info.value)


def test_mnist_with_a_sha256_that_is_not_a_mapping_says_so(tmp_path):
    with pytest.raises(TypeError, match="sha256 must be a mapping"):
        fl.datasets.mnist("test", tmp_path, sha256=["0" * 64], download=False)

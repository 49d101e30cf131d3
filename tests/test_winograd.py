"""Conv2D's Winograd F(4x4, 3x3) path (fnlearn.layers._winograd): the transform matrices against the
1-D correlation they stand for, the forward pass against test_conv.py's loop reference, the VJP
against finite differences and against im2col, chunking, the "auto" rule, float32 accuracy, and
errors (PyTorch as a second oracle: test_conv.py's TORCH_CASES)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fnlearn as fl
from fnlearn.layers import _windows, _winograd, conv
from fnlearn.testing import check_vjp
from fnlearn.testing import strategies as fst

from test_conv import _pads, reference_conv, unchunked

PADDINGS = st.one_of(st.sampled_from(["valid", "same"]), st.integers(0, 2),
                     st.tuples(st.integers(0, 3), st.integers(0, 3)))


@given(d=fst.arrays(np.float64, (6,)), g=fst.arrays(np.float64, (3,)))
def test_the_transforms_compute_a_1d_correlation(d, g):
    """F(4, 3): A^T [(G g) * (B^T d)] is the correlation sum_k d[i + k] g[k] for i = 0..3."""
    y = _winograd._AT @ ((_winograd._G @ g) * (_winograd._BT @ d))
    want = [d[i:i + 3] @ g for i in range(4)]
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12 * (1 + np.abs(d).max() * np.abs(g).max()))


@given(size=st.tuples(st.integers(1, 11), st.integers(1, 11)), padding=PADDINGS,
       channels=st.tuples(st.integers(1, 3), st.integers(1, 3)), batch=st.integers(0, 3),
       seed=fst.seeds())
def test_winograd_matches_the_loop_reference_and_im2col(size, padding, channels, batch, seed):
    """Every size (output blocks that overhang, 1x1 outputs), padding and batch (0 too): the forward
    pass equals the loop reference, and the VJP equals im2col's, with and without the input
    cotangent."""
    c_in, c_out = channels
    pads = _pads(padding, size, (3, 3), (1, 1), (1, 1))
    if any(n + lo + hi < 3 for n, (lo, hi) in zip(size, pads)):
        return  # no output: Conv2D refuses it at init (test_conv.py)
    layer = fl.Conv2D(c_out, 3, padding=padding, algorithm="winograd")
    im2col = fl.Conv2D(c_out, 3, padding=padding, algorithm="im2col")
    rng = np.random.default_rng(seed)
    params = layer.init(rng, (-1, *size, c_in), dtype=np.float64)
    params["b"] = rng.standard_normal(c_out)
    x = rng.standard_normal((batch, *size, c_in))
    y, vjp = layer.apply(params, x)
    np.testing.assert_allclose(y, reference_conv(x, params["w"], params["b"], (1, 1), pads, (1, 1)),
                               rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    d, dx = vjp(dy)
    d_ref, dx_ref = im2col.apply(params, x)[1](dy)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-11, atol=1e-11)
    for key in ("w", "b"):
        np.testing.assert_allclose(d[key], d_ref[key], rtol=1e-11, atol=1e-11)
    d_no_dx, no_dx = vjp(dy, compute_dx=False)
    assert no_dx is None
    np.testing.assert_array_equal(d_no_dx["w"], d["w"])


@given(case=fst.layer_cases(fl.Conv2D, out_channels=fst.small_dims(1, 3), kernel_size=st.just(3),
                            algorithm=st.just("winograd"), padding=PADDINGS,
                            feature_shape=st.tuples(st.integers(3, 9), st.integers(3, 9),
                                                    fst.small_dims(1, 3))))
def test_winograd_passes_the_layer_battery(case):
    case.check_layer()


@given(size=st.tuples(st.integers(3, 10), st.integers(3, 10)), batch=st.integers(2, 5),
       chunk=st.integers(1, 3), padding=PADDINGS, channels=st.tuples(st.integers(1, 9), st.integers(1, 9)),
       seed=fst.seeds())
def test_winograd_in_batch_chunks_equals_one_chunk(size, batch, chunk, padding, channels, seed):
    """Force chunks of ``chunk`` examples: the output, the VJP (kernel gradient summed over chunks) and
    the finite-difference check are those of one chunk."""
    c_in, c_out = channels
    layer = fl.Conv2D(c_out, 3, padding=padding, algorithm="winograd")
    params, x, dy, y_one, d_one, dx_one = unchunked(layer, size, c_in, batch, seed)
    blocks = np.prod(_winograd.tile_counts(y_one.shape[1:3]))
    per_example = 36 * blocks * (c_in + c_out) * 8
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_windows, "CHUNK_BYTES", per_example * chunk)
        assert _windows.batch_chunk(batch, per_example) == min(chunk, batch)
        y, vjp = layer.apply(params, x)
        d, dx = vjp(dy)
        check_vjp(layer.apply, params, x)
        d_no_dx, _ = vjp(dy, compute_dx=False)
    np.testing.assert_allclose(y, y_one, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(dx, dx_one, rtol=1e-12, atol=1e-12)
    for key in ("w", "b"):
        np.testing.assert_allclose(d[key], d_one[key], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(d_no_dx[key], d_one[key], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_winograd_reads_non_contiguous_inputs_by_their_strides(padding):
    """x as an NCHW array transposed to NHWC and as a stepped slice, with H = W = 10 (tiles fit the
    "valid" input exactly, so the tiles are views of x itself): the results of the contiguous copy."""
    layer = fl.Conv2D(5, 3, padding=padding, algorithm="winograd")
    rng = np.random.default_rng(0)
    params = layer.init(rng, (-1, 10, 10, 4), dtype=np.float64)
    nchw = rng.standard_normal((3, 4, 10, 10))
    wide = rng.standard_normal((3, 10, 20, 4))
    for x in (nchw.transpose(0, 2, 3, 1), wide[:, :, ::2], wide[:, :, 10:][::-1]):
        assert not x.flags.c_contiguous
        y, vjp = layer.apply(params, x)
        y_ref, vjp_ref = layer.apply(params, np.ascontiguousarray(x))
        np.testing.assert_allclose(y, y_ref, rtol=1e-14, atol=1e-14)
        dy = rng.standard_normal(y.shape)
        reversed_dy = dy[..., ::-1].copy()[..., ::-1]  # dy again, not contiguous
        (d, dx), (d_ref, dx_ref) = vjp(reversed_dy), vjp_ref(dy)
        for a, b in ((dx, dx_ref), (d["w"], d_ref["w"]), (d["b"], d_ref["b"])):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)


def test_winograd_in_float32_stays_float32_and_is_accurate_to_about_1e_5():
    """The second convolution of PyTorch's MNIST example on 4 examples: float32 in and out, and within
    3e-5 (relative to the largest entry) of the float64 result; im2col is about ten times closer."""
    layer = fl.Conv2D(64, 3, algorithm="winograd")
    rng = np.random.default_rng(0)
    params = layer.init(rng, (-1, 26, 26, 32))
    x = rng.standard_normal((4, 26, 26, 32)).astype(np.float32)
    y, vjp = layer.apply(params, x)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    d, dx = vjp(dy)
    assert y.dtype == dx.dtype == d["w"].dtype == d["b"].dtype == np.float32
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    y64, vjp64 = fl.Conv2D(64, 3, algorithm="im2col").apply(p64, x.astype(np.float64))
    d64, dx64 = vjp64(dy.astype(np.float64))
    for got, want in ((y, y64), (dx, dx64), (d["w"], d64["w"]), (d["b"], d64["b"])):
        assert np.abs(got - want).max() <= 3e-5 * np.abs(want).max()


def test_auto_takes_winograd_only_where_it_was_measured_faster(monkeypatch):
    calls = []
    original = _winograd.conv3x3
    monkeypatch.setattr(_winograd, "conv3x3", lambda *a, **k: calls.append(a[0].shape) or original(*a, **k))
    rng = np.random.default_rng(0)

    def runs_winograd(layer, shape):
        calls.clear()
        params = layer.init(rng, (-1, *shape[1:]))
        layer.apply(params, np.zeros(shape, np.float32))
        return bool(calls)

    assert conv.WINOGRAD_MIN_CHANNELS == 16 and conv.WINOGRAD_MAX_WASTE == 1.5
    assert runs_winograd(fl.Conv2D(16, 3), (2, 10, 10, 16))
    assert runs_winograd(fl.Conv2D(64, 3, padding="same"), (2, 14, 14, 32))
    assert runs_winograd(fl.Conv2D(16, 3, padding="same"), (2, 7, 7, 16))  # 8x8 blocks for 7x7: 1.31
    assert not runs_winograd(fl.Conv2D(32, 3), (2, 10, 10, 1))            # one input channel
    assert not runs_winograd(fl.Conv2D(16, 3), (2, 10, 10, 15))            # too few channels
    assert not runs_winograd(fl.Conv2D(15, 3), (2, 10, 10, 16))
    assert not runs_winograd(fl.Conv2D(16, 3), (2, 5, 5, 16))              # a 3x3 output: 1.78x waste
    assert not runs_winograd(fl.Conv2D(16, 3, stride=2), (2, 10, 10, 16))
    assert not runs_winograd(fl.Conv2D(16, 3, dilation=2), (2, 10, 10, 16))
    assert not runs_winograd(fl.Conv2D(16, 2), (2, 10, 10, 16))
    assert not runs_winograd(fl.Conv2D(16, 3, algorithm="im2col"), (2, 10, 10, 16))
    assert runs_winograd(fl.Conv2D(1, 3, algorithm="winograd"), (2, 3, 3, 1))


def test_winograd_errors_name_the_layer_and_the_fix():
    with pytest.raises(ValueError, match=r"Conv2D\(4, 3\): algorithm must be one of .*'fft'"):
        fl.Conv2D(4, 3, algorithm="fft")
    with pytest.raises(ValueError, match=r"Conv2D\(4, 3\): algorithm='winograd' needs a 3x3 kernel with "
                                         r"stride 1 .* got kernel \(3, 3\), stride \(2, 2\).*'im2col'"):
        fl.Conv2D(4, 3, stride=2, algorithm="winograd")
    with pytest.raises(ValueError, match=r"kernel \(5, 5\)"):
        fl.Conv2D(4, 5, algorithm="winograd")


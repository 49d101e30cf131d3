"""Conv2D and ConvTranspose2D: the forward pass against loop oracles written here, the VJPs against
finite differences (fnlearn.testing), PyTorch as a second oracle when it is installed, and errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fnlearn as fl
from fnlearn.testing import GradCheckError, check_layer, check_vjp
from fnlearn.testing import strategies as fst

PADDINGS = st.one_of(st.sampled_from(["valid", "same"]), st.integers(0, 2),
                     st.tuples(st.integers(0, 2), st.integers(0, 2)))


def _pads(padding, size, kernel, stride, dilation):
    """((top, bottom), (left, right)) from the documented rule, written out independently."""
    out = []
    for n, k, s, d, i in zip(size, kernel, stride, dilation, (0, 1)):
        span = d * (k - 1) + 1
        if padding == "valid":
            out.append((0, 0))
        elif padding == "same":
            total = max((-(-n // s) - 1) * s + span - n, 0)
            out.append((total // 2, total - total // 2))
        else:
            p = padding if isinstance(padding, int) else padding[i]
            out.append((p, p))
    return out


def reference_conv(x, w, b, stride, pads, dilation):
    """Cross-correlation by explicit loops over examples, output positions and kernel taps."""
    (sh, sw), (dh, dw) = stride, dilation
    xp = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    kh, kw, _, c_out = w.shape
    oh = (xp.shape[1] - dh * (kh - 1) - 1) // sh + 1
    ow = (xp.shape[2] - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((x.shape[0], oh, ow, c_out))
    for n in range(x.shape[0]):
        for i in range(oh):
            for j in range(ow):
                for a in range(kh):
                    for c in range(kw):
                        y[n, i, j] += xp[n, i * sh + a * dh, j * sw + c * dw] @ w[a, c]
    return y + b


def reference_conv_transpose(x, w, b, stride, crop, dilation):
    """Transposed convolution by explicit scatter loops: each input entry adds a kernel-sized patch."""
    (sh, sw), (dh, dw) = stride, dilation
    kh, kw, _, c_out = w.shape
    full = np.zeros((x.shape[0], (x.shape[1] - 1) * sh + dh * (kh - 1) + 1,
                     (x.shape[2] - 1) * sw + dw * (kw - 1) + 1, c_out))
    for n in range(x.shape[0]):
        for i in range(x.shape[1]):
            for j in range(x.shape[2]):
                for a in range(kh):
                    for c in range(kw):
                        full[n, i * sh + a * dh, j * sw + c * dw] += x[n, i, j] @ w[a, c]
    (t, bt), (l, r) = crop
    return full[:, t:full.shape[1] - bt, l:full.shape[2] - r] + b


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


conv_configs = st.fixed_dictionaries({
    "kernel_size": st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))),
    "stride": st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 2), st.integers(1, 3))),
    "dilation": st.one_of(st.integers(1, 2), st.tuples(st.integers(1, 2), st.integers(1, 2))),
    "padding": PADDINGS})


@given(config=conv_configs, size=st.tuples(st.integers(5, 8), st.integers(5, 8)),
       channels=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)), seed=fst.seeds())
def test_conv2d_forward_matches_loop_reference(config, size, channels, seed):
    batch, c_in, c_out = channels
    layer = fl.Conv2D(c_out, **config)
    rng = np.random.default_rng(seed)
    params = layer.init(rng, (-1, *size, c_in), dtype=np.float64)
    params["b"] = rng.standard_normal(c_out)
    x = rng.standard_normal((batch, *size, c_in))
    y, _ = layer.apply(params, x)
    kernel, stride, dilation = (_pair(config[k]) for k in ("kernel_size", "stride", "dilation"))
    pads = _pads(config["padding"], size, kernel, stride, dilation)
    np.testing.assert_allclose(y, reference_conv(x, params["w"], params["b"], stride, pads, dilation),
                               rtol=1e-12, atol=1e-12)
    if config["padding"] == "same":
        assert y.shape[1:3] == tuple(-(-n // s) for n, s in zip(size, stride))


@given(config=conv_configs, size=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       channels=st.tuples(st.integers(1, 3), st.integers(1, 3)), seed=fst.seeds())
def test_conv_transpose_forward_matches_scatter_reference(config, size, channels, seed):
    c_in, c_out = channels
    padding = config["padding"]
    layer = fl.ConvTranspose2D(c_out, **config)
    kernel, stride, dilation = (_pair(config[k]) for k in ("kernel_size", "stride", "dilation"))
    full = [(n - 1) * s + d * (k - 1) + 1 for n, k, s, d in zip(size, kernel, stride, dilation)]
    if padding == "same":
        crop = [max(f - n * s, 0) for f, n, s in zip(full, size, stride)]
        crop = [(c // 2, c - c // 2) for c in crop]
    else:
        crop = [(0, 0)] * 2 if padding == "valid" else [(p, p) for p in _pair(padding)]
    if any(f - lo - hi < 1 for f, (lo, hi) in zip(full, crop)):
        with pytest.raises(ValueError, match="crops the whole output"):
            layer.init(np.random.default_rng(seed), (-1, *size, c_in))
        return
    rng = np.random.default_rng(seed)
    params = layer.init(rng, (-1, *size, c_in), dtype=np.float64)
    params["b"] = rng.standard_normal(c_out)
    x = rng.standard_normal((2, *size, c_in))
    y, _ = layer.apply(params, x)
    want = reference_conv_transpose(x, params["w"], params["b"], stride, crop, dilation)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    if padding == "same" and all(d * (k - 1) + 1 >= s for k, s, d in zip(kernel, stride, dilation)):
        assert y.shape[1:3] == tuple(n * s for n, s in zip(size, stride))


@given(case=fst.layer_cases(fl.Conv2D, out_channels=fst.small_dims(1, 3),
                            kernel_size=conv_configs.map(lambda c: c["kernel_size"]),
                            stride=st.integers(1, 2), dilation=st.integers(1, 2), padding=PADDINGS,
                            feature_shape=st.tuples(st.integers(5, 7), st.integers(5, 7),
                                                    fst.small_dims(1, 3))))
def test_conv2d_passes_the_layer_battery(case):
    case.check_layer()


@given(case=fst.layer_cases(fl.ConvTranspose2D, out_channels=fst.small_dims(1, 3),
                            kernel_size=st.integers(1, 3), stride=st.integers(1, 3),
                            dilation=st.integers(1, 2), padding=st.sampled_from(["valid", "same", 0]),
                            feature_shape=st.tuples(st.integers(1, 4), st.integers(1, 4),
                                                    fst.small_dims(1, 3))))
def test_conv_transpose_passes_the_layer_battery(case):
    case.check_layer()


def unchunked(layer, size, c_in, batch, seed):
    """float64 ``params``, a batch ``x``, a cotangent ``dy``, and ``layer``'s output and VJP
    ``(dparams, dx)`` on them as they run by default (the reference for forced chunks)."""
    rng = np.random.default_rng(seed)
    params = layer.init(rng, (-1, *size, c_in), dtype=np.float64)
    x = rng.standard_normal((batch, *size, c_in))
    y, vjp = layer.apply(params, x)
    dy = rng.standard_normal(y.shape)
    return params, x, dy, y, *vjp(dy)


@given(config=conv_configs, size=st.tuples(st.integers(5, 8), st.integers(5, 8)),
       batch=st.integers(2, 5), chunk=st.integers(1, 3), c_in=st.integers(1, 2), seed=fst.seeds())
def test_conv2d_in_batch_chunks_equals_one_chunk_and_the_references(config, size, batch, chunk, c_in,
                                                                     seed):
    """Large batches run chunk by chunk (``_windows.batch_chunk``); force chunks of ``chunk``
    examples on a small case: the output equals the loop reference, the VJP equals the one-chunk VJP
    and passes the finite-difference check."""
    from fnlearn.layers import _windows
    layer = fl.Conv2D(3, **config)
    params, x, dy, y_one, d_one, dx_one = unchunked(layer, size, c_in, batch, seed)
    k = _pair(config["kernel_size"])
    row_bytes = y_one.shape[1] * y_one.shape[2] * k[0] * k[1] * c_in * 8  # per example
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_windows, "CHUNK_BYTES", row_bytes * chunk)
        assert _windows.batch_chunk(batch, row_bytes) == min(chunk, batch)
        y, vjp = layer.apply(params, x)
        check_vjp(layer.apply, params, x)  # finite differences, chunked
    pads = _pads(config["padding"], size, k, _pair(config["stride"]), _pair(config["dilation"]))
    want = reference_conv(x, params["w"], params["b"], _pair(config["stride"]), pads,
                          _pair(config["dilation"]))
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    d, dx = vjp(dy)
    np.testing.assert_allclose(dx, dx_one, rtol=1e-12, atol=1e-12)
    for key in ("w", "b"):
        np.testing.assert_allclose(d[key], d_one[key], rtol=1e-12, atol=1e-12)
    d_no_dx, no_dx = vjp(dy, compute_dx=False)
    assert no_dx is None
    for key in ("w", "b"):
        np.testing.assert_allclose(d_no_dx[key], d_one[key], rtol=1e-12, atol=1e-12)


@given(kernel=st.tuples(st.integers(1, 3), st.integers(2, 4)), stride_h=st.integers(1, 2),
       dilation_h=st.integers(1, 2), padding=PADDINGS, size=st.tuples(st.integers(5, 9), st.integers(4, 9)),
       seed=fst.seeds())
def test_conv2d_input_cotangent_by_column_phase_equals_the_per_tap_one(kernel, stride_h, dilation_h,
                                                                       padding, size, seed):
    """With unit stride and dilation along the width, Conv2D builds the input cotangent by column
    phase (``conv._input_cotangent_by_phase``, spied on here to show it ran); it equals the per-tap
    construction (one product per tap, then ``_windows.col2im_taps``) written out in the test."""
    from fnlearn.layers import _windows, conv
    layer = fl.Conv2D(3, kernel, stride=(stride_h, 1), dilation=(dilation_h, 1), padding=padding)
    rng = np.random.default_rng(seed)
    params = layer.init(rng, (-1, *size, 2), dtype=np.float64)
    x = rng.standard_normal((2, *size, 2))
    y, vjp = layer.apply(params, x)
    dy = rng.standard_normal(y.shape)
    calls, original = [], conv._input_cotangent_by_phase
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(conv, "_input_cotangent_by_phase", lambda *a: calls.append(1) or original(*a))
        dx = vjp(dy)[1]
    assert calls, "the by-phase path did not run"
    w = params["w"]
    g = _windows.geometry("test", size, _pair(kernel), (stride_h, 1), (dilation_h, 1),
                          _windows.padding_spec("test", padding))
    w_taps = w.transpose(0, 1, 3, 2).reshape(-1, 3, 2)
    dcols = np.matmul(dy.reshape(-1, 3), w_taps).reshape(len(w_taps), 2, *y.shape[1:3], 2)
    (t, b_), (l, r) = g.pads
    dxp = _windows.col2im_taps(dcols, g, out=np.empty((2, size[0] + t + b_, size[1] + l + r, 2)))
    np.testing.assert_allclose(dx, _windows.crop(dxp, g.pads), rtol=1e-12, atol=1e-12)


def test_conv2d_gradients_of_a_known_case():
    # One 2x2 input, a 1x1 kernel of 2 and bias 1: y = 2 x + 1, dw = sum(x * dy), dx = 2 dy.
    layer = fl.Conv2D(1, 1, w_init=fl.initializers.constant(2.0), b_init=fl.initializers.ones)
    params = layer.init(np.random.default_rng(0), (-1, 2, 2, 1))
    x = np.arange(4.0, dtype=np.float32).reshape(1, 2, 2, 1)
    y, vjp = layer.apply(params, x)
    np.testing.assert_array_equal(y.ravel(), [1.0, 3.0, 5.0, 7.0])
    dparams, dx = vjp(np.ones_like(y))
    assert dparams["w"].shape == (1, 1, 1, 1) and dparams["w"].ravel()[0] == 6.0
    assert dparams["b"].tolist() == [4.0]
    np.testing.assert_array_equal(dx, np.full_like(x, 2.0))


def test_conv2d_stays_float32_and_skips_dx_on_request():
    layer = fl.Conv2D(4, 3, padding="same")
    params = layer.init(np.random.default_rng(0), (-1, 6, 6, 2))
    x = np.random.default_rng(1).standard_normal((3, 6, 6, 2)).astype(np.float32)
    y, vjp = layer.apply(params, x)
    dparams, dx = vjp(np.ones_like(y), compute_dx=False)
    assert y.dtype == np.float32 and dx is None
    assert all(v.dtype == np.float32 for v in dparams.values())
    assert vjp(np.ones_like(y))[1].dtype == np.float32


def _conv_with_wrong_dx(layer):
    """A mutant: the input cotangent uses the kernel flipped in space (a classic convolution bug)."""
    def apply(params, x, *, rng=None, train=False):
        y, vjp = layer.apply(params, x)

        def wrong(dy, *, compute_dx=True):
            flipped = {"w": params["w"][::-1, ::-1].copy(), "b": params["b"]}
            dparams, _ = vjp(dy)
            return dparams, layer.apply(flipped, x)[1](dy)[1]
        return y, wrong
    return apply


def test_the_gradient_check_catches_a_flipped_kernel_in_the_vjp():
    layer = fl.Conv2D(2, 3, padding="same")
    rng = np.random.default_rng(0)
    params = layer.init(rng, (-1, 5, 5, 2), dtype=np.float64)
    x = rng.standard_normal((2, 5, 5, 2))
    assert check_vjp(layer.apply, params, x).passed
    with pytest.raises(GradCheckError):
        check_vjp(_conv_with_wrong_dx(layer), params, x)


TORCH_CASES = [dict(kernel_size=3, stride=1, padding="same", dilation=1),
               dict(kernel_size=(2, 3), stride=(2, 1), padding=1, dilation=(1, 2)),
               dict(kernel_size=5, stride=2, padding=2, dilation=1),
               dict(kernel_size=3, stride=1, padding="same", dilation=1, algorithm="winograd")]


@pytest.mark.parametrize("config", TORCH_CASES)
def test_conv2d_matches_torch(config):
    torch = pytest.importorskip("torch")
    layer = fl.Conv2D(4, **config)
    rng = np.random.default_rng(0)
    params = layer.init(rng, (-1, 9, 8, 3), dtype=np.float64)
    params["b"] = rng.standard_normal(4)
    x = rng.standard_normal((2, 9, 8, 3))
    y, vjp = layer.apply(params, x)
    dy = rng.standard_normal(y.shape)
    dparams, dx = vjp(dy)
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    wt = torch.tensor(params["w"].transpose(3, 2, 0, 1), requires_grad=True)
    bt = torch.tensor(params["b"], requires_grad=True)
    pad = config["padding"]
    yt = torch.nn.functional.conv2d(xt, wt, bt, stride=config["stride"],
                                    padding=pad, dilation=config["dilation"])
    yt.backward(torch.tensor(dy.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dparams["w"], wt.grad.numpy().transpose(2, 3, 1, 0), rtol=1e-10,
                               atol=1e-10)
    np.testing.assert_allclose(dparams["b"], bt.grad.numpy(), rtol=1e-10, atol=1e-10)


def test_conv_transpose_matches_torch():
    torch = pytest.importorskip("torch")
    layer = fl.ConvTranspose2D(3, 4, stride=2, padding=1)
    rng = np.random.default_rng(0)
    params = layer.init(rng, (-1, 4, 5, 2), dtype=np.float64)
    x = rng.standard_normal((2, 4, 5, 2))
    y, _ = layer.apply(params, x)
    yt = torch.nn.functional.conv_transpose2d(
        torch.tensor(x.transpose(0, 3, 1, 2)), torch.tensor(params["w"].transpose(2, 3, 0, 1)),
        torch.tensor(params["b"]), stride=2, padding=1)
    np.testing.assert_allclose(y, yt.numpy().transpose(0, 2, 3, 1), rtol=1e-10, atol=1e-10)


def test_conv2d_errors_name_the_layer_and_the_fix():
    with pytest.raises(ValueError, match=r"Conv2D: out_channels must be a positive int"):
        fl.Conv2D(0, 3)
    with pytest.raises(ValueError, match=r"kernel_size must be an int >= 1 or a pair"):
        fl.Conv2D(2, (3, 0))
    with pytest.raises(ValueError, match=r"padding must be 'valid', 'same', an int or a pair"):
        fl.Conv2D(2, 3, padding="full")
    with pytest.raises(ValueError, match=r"NHWC"):
        fl.Conv2D(2, 3).init(np.random.default_rng(0), (-1, 28, 28))
    with pytest.raises(ValueError, match=r"the window spans 5 entries .* only 4"):
        fl.Conv2D(2, 5).init(np.random.default_rng(0), (-1, 4, 4, 1))
    layer = fl.Conv2D(2, 3)
    params = layer.init(np.random.default_rng(0), (-1, 6, 6, 3))
    with pytest.raises(ValueError, match=r"expected x of shape \(batch, height, width, 3\)"):
        layer.apply(params, np.zeros((1, 6, 6, 1), np.float32))
    with pytest.raises(TypeError, match=r"dtype float64 but the parameters are float32"):
        layer.apply(params, np.zeros((1, 6, 6, 3)))


def test_conv2d_inside_serial_reports_its_position():
    model = fl.serial(fl.Conv2D(2, 3), fl.Flatten(), fl.Dense(3))
    params = model.init(np.random.default_rng(0), (-1, 6, 6, 1))
    assert params["2"]["w"].shape == (32, 3)
    with pytest.raises(ValueError, match=r"serial layer 0 \('0', Conv2D\(2, 3\)\)"):
        model.apply(params, np.zeros((1, 6, 6, 2), np.float32))


def test_check_layer_on_a_small_cnn():
    model = fl.serial(fl.Conv2D(3, 3, padding="same"), fl.Tanh(), fl.AvgPool2D(2),
                      fl.Conv2D(2, 2, stride=2), fl.Flatten(), fl.Dense(2))
    assert check_layer(model, (-1, 6, 6, 2)).passed

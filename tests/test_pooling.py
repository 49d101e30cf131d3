"""MaxPool2D, AvgPool2D and GlobalAvgPool: loop oracles, the tie rule, the layer battery, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fnlearn as fl
from fnlearn.testing import check_layer
from fnlearn.testing import strategies as fst

POOL_PADDINGS = st.sampled_from(["valid", "same", 0, 1])


def _pool_config(draw):
    window = draw(st.tuples(st.integers(1, 3), st.integers(1, 3)))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding = draw(POOL_PADDINGS)
    if isinstance(padding, int) and padding >= min(window):
        padding = 0
    return window, stride, padding


def _pads(padding, size, window, stride):
    out = []
    for n, k, s in zip(size, window, stride):
        if padding == "same":
            total = max((-(-n // s) - 1) * s + k - n, 0)
            out.append((total // 2, total - total // 2))
        else:
            p = 0 if padding == "valid" else padding
            out.append((p, p))
    return out


def reference_pool(x, dy, window, stride, pads, kind):
    """Forward and input cotangent by loops over windows. Max: the cotangent goes to the first maximum
    in row-major window order (``np.argmax`` of the flattened window); padding never wins. Average:
    padding counts as zeros and the divisor is the window size."""
    fill = -np.inf if kind == "max" else 0.0
    xp = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)), constant_values=fill)
    (kh, kw), (sh, sw) = window, stride
    oh, ow = (xp.shape[1] - kh) // sh + 1, (xp.shape[2] - kw) // sw + 1
    y = np.zeros((x.shape[0], oh, ow, x.shape[3]))
    dxp = np.zeros(xp.shape)
    for n in range(x.shape[0]):
        for i in range(oh):
            for j in range(ow):
                for c in range(x.shape[3]):
                    win = xp[n, i * sh:i * sh + kh, j * sw:j * sw + kw, c]
                    if kind == "max":
                        a, b = np.unravel_index(np.argmax(win), win.shape)
                        y[n, i, j, c] = win[a, b]
                        dxp[n, i * sh + a, j * sw + b, c] += dy[n, i, j, c]
                    else:
                        y[n, i, j, c] = win.sum() / (kh * kw)
                        dxp[n, i * sh:i * sh + kh, j * sw:j * sw + kw, c] += dy[n, i, j, c] / (kh * kw)
    (t, b), (l, r) = pads
    return y, dxp[:, t:xp.shape[1] - b, l:xp.shape[2] - r]


@st.composite
def pool_cases(draw, values):
    window, stride, padding = _pool_config(draw)
    size = (draw(st.integers(3, 6)), draw(st.integers(3, 6)))
    x = draw(values((draw(st.integers(1, 2)), *size, draw(st.integers(1, 2)))))
    return window, stride, padding, x


def small_ints(shape):
    return hnp.arrays(np.float64, shape, elements=st.integers(0, 2).map(float))


@pytest.mark.parametrize("kind", ["max", "avg"])
@given(case=pool_cases(small_ints), seed=fst.seeds())
def test_pooling_matches_loop_reference_including_ties(kind, case, seed):
    # Entries in {0, 1, 2} make ties in almost every window: the max-pool VJP must follow the rule.
    window, stride, padding, x = case
    layer = (fl.MaxPool2D if kind == "max" else fl.AvgPool2D)(window, stride=stride, padding=padding)
    y, vjp = layer.apply({}, x)
    dy = np.random.default_rng(seed).standard_normal(y.shape)
    pads = _pads(padding, x.shape[1:3], window, window if stride is None else stride)
    want_y, want_dx = reference_pool(x, dy, window, window if stride is None else stride, pads, kind)
    np.testing.assert_allclose(y, want_y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(vjp(dy)[1], want_dx, rtol=1e-12, atol=1e-12)


def argmax_pool(x, dy, window, stride, padding):
    """MaxPool2D's forward and input cotangent from ``np.argmax`` over each flattened window (the
    first maximum in row-major order). Where windows overlap, the cotangents an entry receives are
    added in row-major order of the window offset it has in each (as the layer does: same rounding)."""
    pads = _pads(padding, x.shape[1:3], window, stride)
    xp = np.pad(x, ((0, 0), *pads, (0, 0)), constant_values=-np.inf)
    win = np.lib.stride_tricks.sliding_window_view(xp, window, axis=(1, 2))[:, ::stride[0], ::stride[1]]
    flat = win.reshape(*win.shape[:4], -1)  # (N, OH, OW, C, kh * kw)
    first = flat.argmax(axis=-1)
    y = np.take_along_axis(flat, first[..., None], axis=-1)[..., 0]
    (sh, sw), oh, ow = stride, first.shape[1], first.shape[2]
    dxp = np.zeros(xp.shape, dy.dtype)
    for k, (i, j) in enumerate(np.ndindex(*window)):
        dxp[:, i:i + sh * oh:sh, j:j + sw * ow:sw] += np.where(first == k, dy, 0.0)
    (t, b), (l, r) = pads
    return y, dxp[:, t:xp.shape[1] - b, l:xp.shape[2] - r]


def tie_heavy(rng, shape, dtype):
    """ReLU outputs rounded to tenths (whole windows of zeros, equal maxima), zeros of either sign."""
    x = np.maximum(rng.standard_normal(shape), 0.0).round(1)
    x[x == 0.0] *= rng.choice([1.0, -1.0], size=int((x == 0.0).sum()))
    return x.astype(dtype)


def _poisoned_empty(empty):
    def poisoned(*args, **kwargs):  # every byte 0xFF: NaN as a float, 255 as a tap index
        out = empty(*args, **kwargs)
        out.reshape(-1).view(np.uint8).fill(0xFF)
        return out
    return poisoned


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("window, stride, padding, size", [
    ((2, 2), None, "valid", (24, 24)),   # windows tile the input: no zeroing
    ((2, 2), None, "same", (25, 25)),    # tile the padded input
    ((2, 2), None, "valid", (25, 25)),   # the last row and column are in no window
    ((2, 2), (3, 3), "valid", (25, 25)),  # gaps between windows
    ((3, 2), None, "valid", (25, 24)),   # six taps: a round with an odd one out
    ((1, 3), None, "same", (14, 25)),    # three taps
    ((3, 3), (2, 2), 1, (25, 25)),       # overlapping windows: shares are added
    ((2, 2), (1, 1), "same", (14, 14)),
])
def test_max_pool_matches_argmax_reference_with_many_ties(monkeypatch, dtype, window, stride,
                                                          padding, size):
    # Five examples in chunks of two (the last chunk short), and buffers from np.empty filled with
    # NaN, so an entry the layer forgets to write shows up.
    from fnlearn.layers import pooling
    rng = np.random.default_rng(0)
    x = tie_heavy(rng, (5, *size, 3), dtype)
    monkeypatch.setattr(pooling, "_CHUNK_BYTES", 2 * x[0].nbytes + 1)
    monkeypatch.setattr(np, "empty", _poisoned_empty(np.empty))
    y, vjp = fl.MaxPool2D(window, stride=stride, padding=padding).apply({}, x)
    dy = rng.standard_normal(y.shape).astype(dtype)
    want_y, want_dx = argmax_pool(x, dy, window, window if stride is None else stride, padding)
    np.testing.assert_array_equal(y, want_y)
    dx = vjp(dy)[1]
    assert dx.dtype == dtype and dx.shape == x.shape
    np.testing.assert_array_equal(dx, want_dx)


def test_max_pool_on_the_mnist_cnn_shape_matches_argmax_reference():
    # PyTorch's MNIST example: (64, 24, 24, 64) float32 ReLU outputs, several chunks of examples.
    rng = np.random.default_rng(1)
    x = tie_heavy(rng, (64, 24, 24, 64), np.float32)
    y, vjp = fl.MaxPool2D(2).apply({}, x)
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    want_y, want_dx = argmax_pool(x, dy, (2, 2), (2, 2), "valid")
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(vjp(dy)[1], want_dx)


@pytest.mark.parametrize("window, stride", [((2, 2), None), ((3, 3), (1, 1)), ((1, 3), (2, 1))])
def test_max_pool_output_has_the_bits_of_a_running_maximum(window, stride):
    # Ties between +0.0 and -0.0 are everywhere after a ReLU: y keeps what a running np.maximum over
    # the taps gives (the sign of the last tied zero), whatever order the layer compares taps in.
    x = tie_heavy(np.random.default_rng(2), (3, 9, 9, 4), np.float64)
    y = fl.MaxPool2D(window, stride=stride).apply({}, x)[0]
    s = window if stride is None else stride
    win = np.lib.stride_tricks.sliding_window_view(x, window, axis=(1, 2))[:, ::s[0], ::s[1]]
    running = win[..., 0, 0]
    for i, j in np.ndindex(*window):
        running = np.maximum(running, win[..., i, j])
    assert y.tobytes() == running.tobytes()


def test_max_pool_window_with_nan_has_nan_maximum_and_passes_its_cotangent_to_one_entry():
    x = tie_heavy(np.random.default_rng(3), (2, 6, 6, 3), np.float64)
    x[0, 1, 2, 0] = x[1, 4, 5, 2] = x[1, 4, 4, 2] = np.nan
    y, vjp = fl.MaxPool2D(2).apply({}, x)
    assert np.isnan(y[0, 0, 1, 0]) and np.isnan(y[1, 2, 2, 2]) and np.isnan(y).sum() == 2
    dx = vjp(np.full(y.shape, 2.0))[1]
    per_window = dx.reshape(2, 3, 2, 3, 2, 3)
    np.testing.assert_array_equal((per_window != 0).sum(axis=(2, 4)), 1)
    np.testing.assert_array_equal(per_window.sum(axis=(2, 4)), 2.0)


def test_max_pool_tie_rule_first_maximum_in_row_major_order():
    # Windows of 2x2 with stride 1 over a 3x3 grid that is full of ties.
    x = np.array([[1.0, 3.0, 3.0],
                  [3.0, 2.0, 3.0],
                  [0.0, 3.0, 1.0]]).reshape(1, 3, 3, 1)
    y, vjp = fl.MaxPool2D(2, stride=1).apply({}, x)
    assert y.ravel().tolist() == [3.0, 3.0, 3.0, 3.0]
    dx = vjp(np.ones_like(y))[1][0, :, :, 0]
    # Windows at (0,0) and (0,1) both pick (0,1); (1,0) picks (1,0); (1,1) picks (1,2), not (2,1).
    np.testing.assert_array_equal(dx, [[0.0, 2.0, 0.0], [1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])


def test_max_pool_tie_rule_agrees_with_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, size=(2, 7, 6, 3)).astype(np.float64)
    y, vjp = fl.MaxPool2D(3, stride=2, padding=1).apply({}, x)
    dy = rng.standard_normal(y.shape)
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    yt = torch.nn.functional.max_pool2d(xt, 3, stride=2, padding=1)
    yt.backward(torch.tensor(dy.transpose(0, 3, 1, 2)))
    np.testing.assert_array_equal(y, yt.detach().numpy().transpose(0, 2, 3, 1))
    np.testing.assert_allclose(vjp(dy)[1], xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-12)


def test_max_pool_padding_never_wins_and_avg_pool_counts_it_as_zero():
    x = -np.ones((1, 2, 2, 1))
    assert fl.MaxPool2D(2, stride=1, padding=1).apply({}, x)[0].max() == -1.0
    y = fl.AvgPool2D(2, stride=1, padding=1).apply({}, x)[0]
    assert y[0, 0, 0, 0] == -0.25 and y[0, 1, 1, 0] == -1.0


@given(case=fst.layer_cases(fl.MaxPool2D, window=st.tuples(st.integers(1, 3), st.integers(1, 3)),
                            stride=st.one_of(st.none(), st.integers(1, 2)),
                            padding=st.sampled_from(["valid", "same"]),
                            feature_shape=st.tuples(st.integers(3, 5), st.integers(3, 5),
                                                    fst.small_dims(1, 2)),
                            x_elements=lambda dt, shape: fst.separated_arrays(dt, shape)))
def test_max_pool_passes_the_layer_battery_on_separated_inputs(case):
    case.check_layer()


@given(case=fst.layer_cases(fl.AvgPool2D, window=st.integers(2, 3),
                            stride=st.one_of(st.none(), st.integers(1, 2)), padding=POOL_PADDINGS,
                            feature_shape=st.tuples(st.integers(3, 5), st.integers(3, 5),
                                                    fst.small_dims(1, 2))))
def test_avg_pool_passes_the_layer_battery(case):
    case.check_layer()


@given(case=fst.layer_cases(fl.GlobalAvgPool,
                            feature_shape=st.one_of(
                                st.tuples(fst.small_dims(1, 4), fst.small_dims(1, 4), fst.small_dims(1, 3)),
                                st.tuples(fst.small_dims(1, 4), fst.small_dims(1, 3)))))
def test_global_avg_pool_passes_the_layer_battery(case):
    case.check_layer()


def test_global_avg_pool_is_the_spatial_mean():
    x = np.random.default_rng(0).standard_normal((3, 4, 5, 2)).astype(np.float32)
    y, vjp = fl.GlobalAvgPool().apply({}, x)
    np.testing.assert_allclose(y, x.mean(axis=(1, 2)), rtol=1e-6)
    dx = vjp(np.ones_like(y))[1]
    assert dx.dtype == np.float32 and np.allclose(dx, 1.0 / 20)


def test_pooling_errors():
    with pytest.raises(ValueError, match=r"padding must be smaller than the window"):
        fl.MaxPool2D(2, padding=2)
    with pytest.raises(ValueError, match=r"window must be an int >= 1"):
        fl.AvgPool2D(0)
    with pytest.raises(ValueError, match=r"MaxPool2D\(2\): expected x of shape \(batch, height, width, "
                                         r"channels\)"):
        fl.MaxPool2D(2).apply({}, np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match=r"no parameters"):
        fl.MaxPool2D(2).apply({"w": np.zeros(1)}, np.zeros((1, 2, 2, 1)))
    with pytest.raises(ValueError, match=r"at least one axis to average"):
        fl.GlobalAvgPool().init(np.random.default_rng(0), (-1, 3))


def test_max_pool_keeps_float32_in_a_cnn():
    model = fl.serial(fl.Conv2D(2, 3, padding="same"), fl.Relu(), fl.MaxPool2D(2), fl.GlobalAvgPool())
    params = model.init(np.random.default_rng(0), (-1, 6, 6, 1))
    x = np.random.default_rng(1).standard_normal((2, 6, 6, 1)).astype(np.float32)
    y, vjp = model.apply(params, x)
    assert y.shape == (2, 2) and y.dtype == np.float32
    assert vjp(np.ones_like(y))[1].dtype == np.float32
    assert check_layer(fl.MaxPool2D(2), (-1, 4, 4, 2), batch_size=2,
                       x_strategy=lambda rng, shape, dt: rng.permutation(np.prod(shape))
                       .reshape(shape).astype(dt) / 8).passed

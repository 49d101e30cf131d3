"""Recurrent layers beyond the registry's property battery: padding changes nothing, the cells under
scan give the layers' numbers, stacking, default outputs, interop round trips, and bad input."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fnlearn as fl
from fnlearn import interop
from fnlearn.tree import tree_leaves, tree_map

B, T, F, H = 3, 6, 2, 4
LAYERS = {
    "SimpleRNN": lambda **kw: fl.SimpleRNN(H, **kw),
    "SimpleRNN-relu": lambda **kw: fl.SimpleRNN(H, nonlinearity="relu", **kw),
    "LSTM": lambda **kw: fl.LSTM(H, **kw),
    "GRU": lambda **kw: fl.GRU(H, **kw),
    "scan-LSTMCell": lambda **kw: fl.scan(fl.LSTMCell(H), **kw),
    "Bidirectional-GRU": lambda **kw: fl.Bidirectional(fl.GRU(H, **kw)),
}


def _init(layer, seed=0):
    return layer.init(np.random.default_rng(seed), (-1, T, F), dtype=np.float64)


@pytest.mark.parametrize("kind", list(LAYERS))
@given(lengths=st.lists(st.integers(1, T), min_size=B, max_size=B), seed=st.integers(0, 2**16))
def test_padding_changes_nothing(kind, lengths, seed):
    """Each sequence run alone, unpadded, gives the padded batch's outputs and gradients; padded steps
    output zeros and get zero gradient, whatever values they hold."""
    rng = np.random.default_rng(seed)
    seq = LAYERS[kind](return_sequences=True, return_state=True)
    params = _init(seq, seed)
    x = rng.normal(size=(B, T, F))
    x_junk = np.where(fl.sequence_mask(np.array(lengths), T)[:, :, None], x, 1e3 * rng.normal(size=x.shape))
    mask = fl.sequence_mask(np.array(lengths), T)
    (y, state), vjp = seq.apply(params, (x_junk, mask))
    dy = rng.normal(size=y.shape)
    dstate = tree_map(lambda s: rng.normal(size=s.shape), state)
    dparams, (dx, dmask) = vjp((dy, dstate))
    assert dmask is None
    total = tree_map(np.zeros_like, params)
    for b, n in enumerate(lengths):
        (y_b, state_b), vjp_b = seq.apply(params, x[b:b + 1, :n])
        np.testing.assert_allclose(y[b, :n], y_b[0], atol=1e-12)
        assert np.all(y[b, n:] == 0) and np.all(dx[b, n:] == 0)
        for ours, alone in zip(tree_leaves(state), tree_leaves(state_b)):
            np.testing.assert_allclose(ours[b], alone[0], atol=1e-12)
        dp_b, dx_b = vjp_b((dy[b:b + 1, :n], tree_map(lambda d: d[b:b + 1], dstate)))
        np.testing.assert_allclose(dx[b, :n], dx_b[0], atol=1e-10)
        total = tree_map(np.add, total, dp_b)
    for ours, alone in zip(tree_leaves(dparams), tree_leaves(total)):
        np.testing.assert_allclose(ours, alone, atol=1e-10)


@pytest.mark.parametrize("cell, layer", [(fl.SimpleRNNCell, fl.SimpleRNN), (fl.LSTMCell, fl.LSTM),
                                         (fl.GRUCell, fl.GRU)])
@pytest.mark.parametrize("masked", [False, True])
def test_scan_of_a_cell_equals_the_layer(cell, layer, masked):
    rng = np.random.default_rng(0)
    kw = dict(return_sequences=True, return_state=True)
    ours, theirs = fl.scan(cell(H), **kw), layer(H, **kw)
    params = _init(theirs)
    x = rng.normal(size=(B, T, F))
    inputs = (x, fl.sequence_mask(np.array([T, 1, 3]), T)) if masked else x
    y1, vjp1 = ours.apply(params, inputs)
    y2, vjp2 = theirs.apply(params, inputs)
    dy = tree_map(lambda a: rng.normal(size=a.shape), y1)
    for a, b in zip(tree_leaves((y1, vjp1(dy))), tree_leaves((y2, vjp2(dy)))):
        np.testing.assert_allclose(a, b, atol=1e-12)


def test_default_output_is_the_last_state_and_state_defaults_to_zeros():
    layer = fl.LSTM(H)
    params = _init(layer)
    x = np.random.default_rng(0).normal(size=(B, T, F))
    y, _ = layer.apply(params, x)
    seq, _ = fl.LSTM(H, return_sequences=True).apply(params, x)
    zeros = (np.zeros((B, H)), np.zeros((B, H)))
    y0, vjp = layer.apply(params, (x, None, zeros))
    assert y.shape == (B, H) and np.array_equal(y, seq[:, -1]) and np.array_equal(y, y0)
    _, (_, _, (dh0, dc0)) = vjp(np.ones_like(y))
    assert dh0.shape == dc0.shape == (B, H) and np.any(dh0 != 0)


def test_an_initial_state_changes_the_output_and_float32_stays_float32():
    layer = fl.GRU(H)
    params = layer.init(np.random.default_rng(0), (-1, T, F))
    x = np.ones((B, T, F), np.float32)
    h0 = np.full((B, H), 0.5, np.float32)
    y, vjp = layer.apply(params, (x, None, h0))
    assert y.dtype == np.float32 and not np.allclose(y, layer.apply(params, x)[0])
    dparams, (dx, _, dh0) = vjp(np.ones_like(y))
    assert dx.dtype == dh0.dtype == dparams["w_hh"].dtype == np.float32


def test_stacked_with_serial_and_dropout_in_training():
    model = fl.serial(fl.LSTM(H, return_sequences=True), fl.Dropout(0.5), fl.LSTM(H), fl.Dense(3))
    params = model.init(np.random.default_rng(0), (-1, T, F))
    x = np.random.default_rng(1).normal(size=(B, T, F)).astype(np.float32)
    y_eval, _ = model.apply(params, x)
    y1, _ = model.apply(params, x, rng=np.random.default_rng(2), train=True)
    y2, _ = model.apply(params, x, rng=np.random.default_rng(3), train=True)
    assert y_eval.shape == (B, 3) and not np.allclose(y1, y2)
    assert sorted(params) == ["0", "1", "2", "3"] and params["1"] == {}


def test_torch_names_round_trip_without_torch():
    model = fl.serial(fl.Bidirectional(fl.GRU(H, return_sequences=True)), fl.GRU(H))
    params = model.init(np.random.default_rng(0), (-1, T, F))
    sd = interop.to_torch_rnn_state_dict(params, prefix="rnn.")
    assert sorted(sd)[:3] == ["rnn.bias_hh_l0", "rnn.bias_hh_l0_reverse", "rnn.bias_hh_l1"]
    assert sd["rnn.weight_ih_l0_reverse"].shape == (3 * H, F) and sd["rnn.weight_ih_l1"].shape == (3 * H, 2 * H)
    back = interop.from_torch_rnn_state_dict(sd, like=params, prefix="rnn.")
    for a, b in zip(tree_leaves(params), tree_leaves(back)):
        assert np.array_equal(a, b) and a.dtype == b.dtype
    listed = interop.from_torch_rnn_state_dict(sd, prefix="rnn.")
    assert len(listed) == 2 and sorted(listed[0]) == ["backward", "forward"]


def test_torch_names_errors_say_what_is_wrong():
    params = fl.LSTM(H).init(np.random.default_rng(0), (-1, T, F))
    sd = interop.to_torch_rnn_state_dict(params)
    with pytest.raises(ValueError, match="'weight_ih' is not a recurrent parameter name"):
        interop.from_torch_rnn_state_dict({"weight_ih": sd["weight_ih_l0"]})
    with pytest.raises(ValueError, match="has 1 layers but `like` has 2 recurrent layers"):
        interop.from_torch_rnn_state_dict(sd, like=[params, params])
    with pytest.raises(ValueError, match=r"'w_ih' has shape \(3, 3\) in `like` but \(2, 16\)"):
        interop.from_torch_rnn_state_dict(sd, like=fl.GRU(1).init(np.random.default_rng(0), (-1, T, 3)))
    with pytest.raises(ValueError, match="found no recurrent layer params"):
        interop.to_torch_rnn_state_dict({"w": np.ones(2)})


def test_torch_bias_false_gives_zero_biases():
    sd = {"weight_ih_l0": np.ones((4, 2)), "weight_hh_l0": np.ones((4, 4))}
    (p,) = interop.from_torch_rnn_state_dict(sd)
    assert p["w_ih"].shape == (2, 4) and np.array_equal(p["b_hh"], np.zeros(4))


@pytest.mark.parametrize("kind", list(LAYERS))
def test_bad_input_names_the_layer_and_the_fix(kind):
    layer = LAYERS[kind]()
    params = layer.init(np.random.default_rng(0), (-1, T, F))
    x = np.ones((B, T, F), np.float32)
    with pytest.raises(ValueError, match=r"expected x of shape \(batch, steps, .*features\), got shape \(3, 6\)"):
        layer.apply(params, x[:, :, 0])
    with pytest.raises(ValueError, match=r"bool mask of shape \(batch, steps\) = \(3, 6\).*got bool array of "
                                         r"shape \(3, 5\)"):
        layer.apply(params, (x, np.ones((B, T - 1), bool)))
    with pytest.raises(ValueError, match=r"got int64 array"):
        layer.apply(params, (x, np.ones((B, T), np.int64)))
    with pytest.raises(TypeError, match="float64"):
        layer.apply(params, x.astype(np.float64))


@pytest.mark.parametrize("layer, state, message", [
    (fl.GRU(H), np.zeros((B, H + 1), np.float32), r"GRU\(4\): expected the initial state to be an array of "
                                                   r"shape \(3, 4\) .*got \[\(3, 5\)\]"),
    (fl.LSTM(H), np.zeros((B, H), np.float32), r"LSTM\(4\): expected the initial state to be a tuple \(h0, c0\)"),
    (fl.LSTM(H), (np.zeros((B, H), np.float32), np.zeros((1, H), np.float32)), r"got \[\(3, 4\), \(1, 4\)\]"),
    (fl.scan(fl.GRUCell(H)), np.zeros((B, 2), np.float32), r"scan: expected the initial carry to match"),
    (fl.Bidirectional(fl.GRU(H)), np.zeros((B, H), np.float32), r"Bidirectional\(GRU\(4\)\): expected the "
                                                                r"initial state as a tuple"),
])
def test_an_initial_state_of_the_wrong_shape_is_refused(layer, state, message):
    params = layer.init(np.random.default_rng(0), (-1, T, F))
    with pytest.raises(ValueError, match=message):
        layer.apply(params, (np.ones((B, T, F), np.float32), None, state))


def test_errors_in_a_stack_name_the_layer_and_hyperparameters_are_checked():
    model = fl.serial(fl.Dense(F), fl.LSTM(H))
    params = model.init(np.random.default_rng(0), (-1, T, F))
    with pytest.raises(ValueError, match=r"serial layer 1 \('1', LSTM\(4\)\).*got shape \(3, 2\)"):
        model.apply(params, np.ones((B, F), np.float32))
    with pytest.raises(ValueError, match="LSTM: hidden must be a positive int, got 0"):
        fl.LSTM(0)
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu', got 'sigmoid'"):
        fl.SimpleRNN(3, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match=r"input_shape must be \(batch, steps, features\), got \(-1, 3\)"):
        fl.GRU(3).init(np.random.default_rng(0), (-1, 3))
    with pytest.raises(ValueError, match=r"lengths must be a 1-D integer array with values in \[0, 3\]"):
        fl.sequence_mask(np.array([4]), 3)


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU", "scan-LSTMCell"])
def test_running_in_two_pieces_with_the_state_carried_equals_one_run(kind):
    layer = LAYERS[kind](return_sequences=True, return_state=True)
    params = _init(layer)
    x = np.random.default_rng(5).normal(size=(B, T, F))
    (whole, last), _ = layer.apply(params, x)
    (first, state), _ = layer.apply(params, x[:, :2])
    (second, last2), _ = layer.apply(params, (x[:, 2:], None, state))
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), whole, atol=1e-14)
    for a, b in zip(tree_leaves(last), tree_leaves(last2)):
        np.testing.assert_allclose(a, b, atol=1e-14)

"""SimpleRNN, LSTM, GRU and Bidirectional stacks equal torch's nn.RNN/LSTM/GRU (batch_first) in float64:
outputs at every step and at the last step, the final states, and every gradient, to 1e-9."""

import numpy as np
import pytest

import fnlearn as fl
from fnlearn import interop

torch = pytest.importorskip("torch", reason="torch is the peer these tests compare with (pip install torch)")

B, T, F, H = 3, 6, 5, 4
TORCH = {"SimpleRNN": torch.nn.RNN, "SimpleRNN-relu": torch.nn.RNN, "LSTM": torch.nn.LSTM,
         "GRU": torch.nn.GRU}


def _ours(kind, **kw):
    if kind == "SimpleRNN-relu":
        return fl.SimpleRNN(H, nonlinearity="relu", **kw)
    return {"SimpleRNN": fl.SimpleRNN, "LSTM": fl.LSTM, "GRU": fl.GRU}[kind](H, **kw)


def _torch_module(kind, **kw):
    extra = {"nonlinearity": "relu"} if kind == "SimpleRNN-relu" else {}
    torch.manual_seed(0)
    return TORCH[kind](F, H, batch_first=True, **extra, **kw).double()


def _grads(module):
    return interop.from_torch_rnn_state_dict({k: p.grad for k, p in module.named_parameters()})


def _close(a, b, what):
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9, err_msg=what)


@pytest.mark.parametrize("kind", list(TORCH))
def test_outputs_states_and_every_gradient_equal_torch(kind):
    rng = np.random.default_rng(1)
    module = _torch_module(kind)
    params = interop.from_torch_rnn_state_dict(module.state_dict())[0]
    x = rng.normal(size=(B, T, F))
    h0, c0 = rng.normal(size=(B, H)), rng.normal(size=(B, H))
    state = (h0, c0) if kind == "LSTM" else h0
    dy, dh, dc = rng.normal(size=(B, T, H)), rng.normal(size=(B, H)), rng.normal(size=(B, H))

    xt = torch.tensor(x, requires_grad=True)
    st = tuple(torch.tensor(s[None], requires_grad=True) for s in (h0, c0))
    out, hn = module(xt, st if kind == "LSTM" else st[0])
    hn = hn if kind == "LSTM" else (hn,)
    loss = (out * torch.tensor(dy)).sum() + (hn[0][0] * torch.tensor(dh)).sum()
    if kind == "LSTM":
        loss = loss + (hn[1][0] * torch.tensor(dc)).sum()
    loss.backward()

    layer = _ours(kind, return_sequences=True, return_state=True)
    (y, last), vjp = layer.apply(params, (x, None, state))
    _close(y, out.detach().numpy(), "outputs at every step")
    last = last if kind == "LSTM" else (last,)
    for ours, theirs in zip(last, hn):
        _close(ours, theirs.detach().numpy()[0], "final state")
    dlast = (dh, dc) if kind == "LSTM" else dh
    dparams, (dx, dmask, dstate) = vjp((dy, dlast))
    assert dmask is None
    for key, g in _grads(module)[0].items():
        _close(dparams[key], g, f"d{key}")
    _close(dx, xt.grad.numpy(), "dx")
    dstate = dstate if kind == "LSTM" else (dstate,)
    for ours, theirs in zip(dstate, st):
        _close(ours, theirs.grad.numpy()[0], "initial state gradient")


@pytest.mark.parametrize("kind", list(TORCH))
def test_last_step_output_equals_torch_h_n(kind):
    rng = np.random.default_rng(2)
    module = _torch_module(kind)
    params = interop.from_torch_rnn_state_dict(module.state_dict())[0]
    x = rng.normal(size=(B, T, F))
    dy = rng.normal(size=(B, H))
    xt = torch.tensor(x, requires_grad=True)
    _, hn = module(xt)
    h_n = hn[0][0] if kind == "LSTM" else hn[0]
    (h_n * torch.tensor(dy)).sum().backward()
    y, vjp = _ours(kind).apply(params, x)
    _close(y, h_n.detach().numpy(), "last step")
    dparams, dx = vjp(dy)
    for key, g in _grads(module)[0].items():
        _close(dparams[key], g, f"d{key}")
    _close(dx, xt.grad.numpy(), "dx")


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "SimpleRNN"])
def test_two_layer_bidirectional_stack_equals_torch(kind):
    rng = np.random.default_rng(3)
    module = _torch_module(kind, num_layers=2, bidirectional=True)
    layer = _ours(kind, return_sequences=True)
    model = fl.serial(fl.Bidirectional(layer), fl.Bidirectional(layer))
    params = interop.from_torch_rnn_state_dict(module.state_dict(), like=model.init(
        np.random.default_rng(0), (-1, T, F), dtype=np.float64))
    x, dy = rng.normal(size=(B, T, F)), rng.normal(size=(B, T, 2 * H))
    xt = torch.tensor(x, requires_grad=True)
    out, _ = module(xt)
    (out * torch.tensor(dy)).sum().backward()
    y, vjp = model.apply(params, x)
    _close(y, out.detach().numpy(), "outputs")
    dparams, dx = vjp(dy)
    grads = interop.from_torch_rnn_state_dict({k: p.grad for k, p in module.named_parameters()},
                                             like=params)
    for (path, ours), (_, theirs) in zip(fl.tree.tree_flatten_with_path(dparams)[0],
                                         fl.tree.tree_flatten_with_path(grads)[0]):
        _close(ours, theirs, path)
    _close(dx, xt.grad.numpy(), "dx")
    assert set(interop.to_torch_rnn_state_dict(params)) == set(module.state_dict())


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_masked_bidirectional_equals_torch_packed_sequences(kind):
    rng = np.random.default_rng(4)
    module = _torch_module(kind, bidirectional=True)
    lengths = np.array([T, 2, 4])
    x, dy = rng.normal(size=(B, T, F)), rng.normal(size=(B, T, 2 * H))
    dy_last = rng.normal(size=(B, 2 * H))
    mask = fl.sequence_mask(lengths, T)
    xt = torch.tensor(x, requires_grad=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths), batch_first=True,
                                                     enforce_sorted=False)
    out, hn = module(packed)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
    h_n = hn[0] if kind == "LSTM" else hn
    last = torch.cat([h_n[0], h_n[1]], dim=-1)
    ((out * torch.tensor(dy)).sum() + (last * torch.tensor(dy_last)).sum()).backward()

    sd = interop.from_torch_rnn_state_dict(module.state_dict())[0]
    seq = fl.Bidirectional(_ours(kind, return_sequences=True))
    y, vjp = seq.apply(sd, (x, mask))
    _close(y, out.detach().numpy(), "padded outputs")
    y_last, vjp_last = fl.Bidirectional(_ours(kind)).apply(sd, (x, mask))
    _close(y_last, last.detach().numpy(), "last valid step")
    dp1, (dx1, _) = vjp(dy)
    dp2, (dx2, _) = vjp_last(dy_last)
    grads = _grads(module)[0]
    for direction in ("forward", "backward"):
        for key in dp1[direction]:
            _close(dp1[direction][key] + dp2[direction][key], grads[direction][key], f"{direction} {key}")
    _close(dx1 + dx2, xt.grad.numpy(), "dx")

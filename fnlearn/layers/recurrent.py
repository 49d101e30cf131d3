"""Recurrent layers with PyTorch's weights and numbers: SimpleRNN, LSTM, GRU.

Batch-first input ``x`` of shape ``(B, T, F)``. Params are exactly ``{"w_ih": (F, G*H), "w_hh": (H, G*H),
"b_ih": (G*H,), "b_hh": (G*H,)}`` with ``G`` = 1, 4, 3 and PyTorch's gate order (LSTM ``i, f, g, o``; GRU
``r, z, n``): torch's ``weight_ih_l0`` is ``w_ih.T``, as :func:`fnlearn.Dense` stores ``nn.Linear``'s
weight transposed. Init as torch: every entry uniform in ``[-1/sqrt(H), 1/sqrt(H)]``.

The input is ``x``, or a tuple ``(x, mask)`` or ``(x, mask, state)``:

- ``mask``: a bool array ``(B, T)``, True at valid steps, or None. A padded step keeps the state, its
  output is zero and it receives no gradient; the last state is the state after each sequence's last
  valid step. :func:`sequence_mask` makes a mask from lengths.
- ``state``: the initial state, ``h0`` of shape ``(B, H)`` (LSTM: a tuple ``(h0, c0)``); default zeros.

The input cotangent has the same form: ``dx``, ``(dx, None)`` or ``(dx, None, dstate)``.

Output: ``(B, T, H)`` with ``return_sequences=True``, else (the default) the last state ``h`` of shape
``(B, H)``; with ``return_state=True`` a tuple ``(output, state)``, ``state`` being ``h`` (LSTM
``(h, c)``) after the last valid step.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
from numpy.typing import DTypeLike

from .. import _checks
from .._kernels import column_sums
from .._types import Array, Layer, Params, Shape, resolve_dtype
from . import _rnn_steps

_KEYS = ("w_ih", "w_hh", "b_ih", "b_hh")


def SimpleRNN(hidden: int, *, nonlinearity: str = "tanh", return_sequences: bool = False,
              return_state: bool = False) -> Layer:
    """An Elman RNN, as ``torch.nn.RNN``: ``h_t = act(x_t @ w_ih + b_ih + h_{t-1} @ w_hh + b_hh)``.

    Args:
        hidden: ``H``, the size of the state.
        nonlinearity: ``"tanh"`` or ``"relu"``.
        return_sequences, return_state: see the module docstring (default: the last ``h``).

    Shapes: ``x`` ``(B, T, F)``; params ``{"w_ih": (F, H), "w_hh": (H, H), "b_ih": (H,), "b_hh": (H,)}``.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> layer = fl.SimpleRNN(4, return_sequences=True)
        >>> params = layer.init(np.random.default_rng(0), (-1, 5, 3))
        >>> y, vjp = layer.apply(params, np.ones((2, 5, 3), np.float32))
        >>> y.shape, vjp(np.ones_like(y))[1].shape
        ((2, 5, 4), (2, 5, 3))
    """
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"SimpleRNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}.")
    relu = nonlinearity == "relu"

    def run(p: dict[str, Array], gx: Array, state: tuple[Array, ...], m: Any, half: Any) -> tuple[Any, ...]:
        tape = _rnn_steps.rnn_forward(gx, p["w_hh"], state[0], m, relu)
        return tape["hs"], (tape["hs"][-1],), lambda dys, dstate: _rnn_steps.rnn_backward(
            tape, p["w_hh"], dys, dstate[0], m, relu)

    extra = "" if nonlinearity == "tanh" else ", nonlinearity='relu'"
    return _recurrent(f"SimpleRNN({hidden}{extra})", hidden, 1, 1, run, return_sequences, return_state,
                      sigmoid_blocks=(), fold_b_hh=True)


def LSTM(hidden: int, *, return_sequences: bool = False, return_state: bool = False) -> Layer:
    """A long short-term memory layer, as ``torch.nn.LSTM``; gates ``i, f, g, o`` in that order.

    ``i, f, o = sigmoid(.)``, ``g = tanh(.)`` of ``x_t @ w_ih + b_ih + h_{t-1} @ w_hh + b_hh``;
    ``c_t = f * c_{t-1} + i * g``; ``h_t = o * tanh(c_t)``. The state is the pair ``(h, c)``.

    Args:
        hidden: ``H``, the size of ``h`` and ``c``.
        return_sequences, return_state: see the module docstring (default: the last ``h``).

    Shapes: ``x`` ``(B, T, F)``; params ``{"w_ih": (F, 4H), "w_hh": (H, 4H), "b_ih": (4H,),
    "b_hh": (4H,)}``.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> layer = fl.LSTM(4, return_state=True)
        >>> params = layer.init(np.random.default_rng(0), (-1, 5, 3))
        >>> (h, (h_last, c_last)), vjp = layer.apply(params, np.ones((2, 5, 3), np.float32))
        >>> h.shape, params["w_hh"].shape, bool((h == h_last).all())
        ((2, 4), (4, 16), True)
    """
    def run(p: dict[str, Array], gx: Array, state: tuple[Array, ...], m: Any, half: Array) -> tuple[Any, ...]:
        tape = _rnn_steps.lstm_forward(gx, p["w_hh"] * half, state[0], state[1], m)

        def backward(dys: Any, dstate: list[Array]) -> tuple[Array, ...]:
            return _rnn_steps.lstm_backward(tape, p["w_hh"], dys, dstate[0], dstate[1], m)

        return tape["hs"], (tape["hs"][-1], tape["cs"][-1]), backward

    H = hidden
    return _recurrent(f"LSTM({hidden})", hidden, 4, 2, run, return_sequences, return_state,
                      sigmoid_blocks=(slice(0, 2 * H), slice(3 * H, 4 * H)), fold_b_hh=True)


def GRU(hidden: int, *, return_sequences: bool = False, return_state: bool = False) -> Layer:
    """A gated recurrent unit, as ``torch.nn.GRU``; gates ``r, z, n`` in that order.

    ``r, z = sigmoid(x_t @ w_ih + b_ih + h_{t-1} @ w_hh + b_hh)`` (their columns),
    ``n = tanh(x_t @ w_in + b_in + r * (h_{t-1} @ w_hn + b_hn))``, ``h_t = (1 - z) * n + z * h_{t-1}``.

    Args:
        hidden: ``H``, the size of the state.
        return_sequences, return_state: see the module docstring (default: the last ``h``).

    Shapes: ``x`` ``(B, T, F)``; params ``{"w_ih": (F, 3H), "w_hh": (H, 3H), "b_ih": (3H,),
    "b_hh": (3H,)}``.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> layer = fl.GRU(4)
        >>> params = layer.init(np.random.default_rng(0), (-1, 5, 3))
        >>> y, vjp = layer.apply(params, np.ones((2, 5, 3), np.float32))
        >>> y.shape, sorted(vjp(np.ones_like(y))[0])
        ((2, 4), ['b_hh', 'b_ih', 'w_hh', 'w_ih'])
    """
    def run(p: dict[str, Array], gx: Array, state: tuple[Array, ...], m: Any, half: Array) -> tuple[Any, ...]:
        tape = _rnn_steps.gru_forward(gx, p["w_hh"] * half, p["b_hh"] * half, state[0], m)
        return tape["hs"], (tape["hs"][-1],), lambda dys, dstate: _rnn_steps.gru_backward(
            tape, p["w_hh"], dys, dstate[0], m)

    return _recurrent(f"GRU({hidden})", hidden, 3, 1, run, return_sequences, return_state,
                      sigmoid_blocks=(slice(0, 2 * hidden),), fold_b_hh=False)


def sequence_mask(lengths: Array, steps: int) -> Array:
    """A bool mask that is True at the first ``lengths[b]`` steps of row ``b``.

    Args:
        lengths: integer array ``(B,)`` with values in ``[0, steps]``.
        steps: ``T``, the length of the padded sequences.

    Returns:
        A bool array ``(B, T)``, the ``mask`` of the input ``(x, mask)`` of the recurrent layers.

    Example:
        >>> from fnlearn.layers.recurrent import sequence_mask
        >>> sequence_mask(np.array([2, 0, 3]), 3).astype(int)
        array([[1, 1, 0],
               [0, 0, 0],
               [1, 1, 1]])
    """
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or lengths.dtype.kind not in "iu" or (lengths.size and (
            lengths.min() < 0 or lengths.max() > steps)):
        raise ValueError(f"sequence_mask: lengths must be a 1-D integer array with values in [0, "
                         f"{steps}], got {lengths!r}.")
    return np.arange(steps) < lengths[:, None]


def x_shape(input_shape: Any) -> Any:
    """The shape of ``x`` in an ``input_shape`` that may be the tuple of shapes of ``(x, mask, ...)``."""
    if isinstance(input_shape, (tuple, list)) and input_shape and isinstance(input_shape[0], (tuple, list)):
        return input_shape[0]
    return input_shape


def _recurrent(name: str, hidden: int, gates: int, n_state: int, run: Callable[..., Any],
               return_sequences: bool, return_state: bool, *, sigmoid_blocks: tuple[slice, ...],
               fold_b_hh: bool) -> Layer:
    """A layer from ``run(params, gx, state, mask, half) -> (hs, last_state, backward)``.

    ``gx`` is the input projection of all steps, time-major, from one matrix product: ``(x @ w_ih +
    b_ih (+ b_hh if fold_b_hh)) * half``, where ``half`` is 0.5 in the columns of the sigmoid gates
    (``sigmoid(a) = 0.5 tanh(a / 2) + 0.5``; halving is exact in binary floats) and 1 elsewhere.
    ``run`` runs the time loop; ``backward(dys, dlast_state) -> (dgx, dgh, *dstate0)`` gives the
    cotangents of the unhalved input and hidden projections for every step, from which the weight,
    bias and input cotangents are one product or column sum each.
    """
    if isinstance(hidden, bool) or not isinstance(hidden, (int, np.integer)) or hidden <= 0:
        raise ValueError(f"{name.split('(')[0]}: hidden must be a positive int, got {hidden!r}.")
    hidden = int(hidden)
    G = gates * hidden

    def init(rng: np.random.Generator, input_shape: Shape, *, dtype: DTypeLike = None) -> Params:
        shape = _checks.input_shape(name, x_shape(input_shape))
        if len(shape) != 3:
            raise ValueError(f"{name}: input_shape must be (batch, steps, features), got {shape}.")
        dt = resolve_dtype(dtype, name)
        bound = 1.0 / math.sqrt(hidden)
        shapes = {"w_ih": (shape[2], G), "w_hh": (hidden, G), "b_ih": (G,), "b_hh": (G,)}
        rngs = _checks.generator(name, rng).spawn(4)
        return {k: r.uniform(-bound, bound, s).astype(dt) for (k, s), r in zip(shapes.items(), rngs)}

    def apply(params: Params, inputs: Any, *, rng: Any = None, train: bool = False):
        x, mask, state, form = split_input(name, inputs, hidden, n_state)
        p = _checked_params(name, params, x, hidden, G)
        B, T, F = x.shape
        state = tuple(np.zeros((B, hidden), x.dtype) for _ in range(n_state)) if state is None else state
        m = None if mask is None else np.ascontiguousarray(mask.T[:, :, None]).astype(x.dtype)
        xt = np.ascontiguousarray(x.transpose(1, 0, 2)).reshape(T * B, F)
        half = np.ones(G, x.dtype)
        for block in sigmoid_blocks:
            half[block] = 0.5
        gx = (xt @ (p["w_ih"] * half)).reshape(T, B, G)
        gx += ((p["b_ih"] + p["b_hh"]) if fold_b_hh else p["b_ih"]) * half
        hs, last, backward = run(p, gx, state, m, half)
        out = _outputs(hs, last, m, return_sequences, return_state)

        def vjp(dy: Any, *, compute_dx: bool = True) -> tuple[Params, Any]:
            dys, dlast = _output_cotangents(name, dy, out, return_sequences, return_state, n_state)
            if dys is not None and m is not None:  # y_t = m_t * h_t: a padded step's dy goes nowhere
                dys = dys * m.transpose(1, 0, 2)
            dgx, dgh, *dstate = backward(dys, dlast)
            dgx2, dgh2 = dgx.reshape(T * B, G), dgh.reshape(T * B, G)
            db_ih = column_sums(dgx2)
            dparams = {"w_ih": xt.T @ dgx2, "w_hh": hs[:-1].reshape(T * B, hidden).T @ dgh2,
                       "b_ih": db_ih, "b_hh": db_ih.copy() if dgh is dgx else column_sums(dgh2)}
            if not compute_dx:
                return dparams, None
            dx = np.ascontiguousarray((dgx2 @ p["w_ih"].T).reshape(T, B, F).transpose(1, 0, 2))
            return dparams, join_input(form, dx, dstate)

        return out, vjp

    return Layer(init, _checks.named(apply, name))


def _outputs(hs: Array, last: tuple[Array, ...], m: Any, return_sequences: bool,
             return_state: bool) -> Any:
    if return_sequences:
        seq = hs[1:] * m if m is not None else hs[1:]
        y = np.ascontiguousarray(seq.transpose(1, 0, 2))
    else:
        y = last[0].copy()
    if not return_state:
        return y
    return y, (tuple(s.copy() for s in last) if len(last) == 2 else last[0].copy())


def _output_cotangents(name: str, dy: Any, out: Any, return_sequences: bool, return_state: bool,
                       n_state: int) -> tuple[Any, list[Array]]:
    """``(dys, dlast)``: the cotangent of the per-step outputs (or None) and of the last state."""
    if return_state:
        if not isinstance(dy, tuple) or len(dy) != 2:
            raise TypeError(f"{name}: with return_state=True the cotangent must be a tuple (dy, dstate) "
                            f"shaped like the output, got {type(dy).__name__}.")
        dy, dstate = dy
        states = dstate if n_state == 2 else (dstate,)
        wants = out[1] if n_state == 2 else (out[1],)
        if not isinstance(states, tuple) or len(states) != n_state:
            raise TypeError(f"{name}: the state's cotangent must be a tuple (dh, dc), got "
                            f"{type(states).__name__}.")
        dlast = [_checks.cotangent(name, d, w.shape, w.dtype) for d, w in zip(states, wants)]
        out = out[0]
    else:
        dlast = [np.zeros_like(out[:, -1] if return_sequences else out) for _ in range(n_state)]
    _checks.cotangent(name, dy, out.shape, out.dtype)
    if return_sequences:
        return dy, dlast
    dlast[0] = dlast[0] + dy
    return None, dlast


def split_input(name: str, inputs: Any, hidden: int, n_state: int) -> tuple[Array, Any, Any, int]:
    """``(x, mask, state, form)`` from ``x``, ``(x, mask)`` or ``(x, mask, state)``; ``form`` is 1-3."""
    if isinstance(inputs, tuple):
        if not 2 <= len(inputs) <= 3:
            raise ValueError(f"{name}: expected x, (x, mask) or (x, mask, state), got a tuple of "
                             f"{len(inputs)} entries.")
        x, mask, state = inputs[0], inputs[1], (inputs[2] if len(inputs) == 3 else None)
    else:
        x, mask, state = inputs, None, None
    form = 1 if not isinstance(inputs, tuple) else len(inputs)
    _checks.float_array(name, x)
    if x.ndim != 3:
        raise ValueError(f"{name}: expected x of shape (batch, steps, features), got shape {x.shape}. "
                         "Add the missing axis, e.g. x[:, :, None] for one feature per step or "
                         "x[None] for a single sequence.")
    if mask is not None:
        if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_ or mask.shape != x.shape[:2]:
            got = (f"{mask.dtype} array of shape {mask.shape}" if isinstance(mask, np.ndarray)
                   else type(mask).__name__)
            raise ValueError(f"{name}: expected a bool mask of shape (batch, steps) = {x.shape[:2]} "
                             f"matching x, got {got}. Build one with "
                             "fnlearn.layers.recurrent.sequence_mask(lengths, steps).")
    if state is not None:
        state = _check_state(name, state, x, hidden, n_state)
    return x, mask, state, form


def _check_state(name: str, state: Any, x: Array, hidden: int, n_state: int) -> tuple[Array, ...]:
    parts = state if n_state == 2 else (state,)
    want = f"a tuple (h0, c0) of arrays of shape {(x.shape[0], hidden)}" if n_state == 2 else \
        f"an array of shape {(x.shape[0], hidden)}"
    ok = isinstance(parts, tuple) and len(parts) == n_state and all(
        isinstance(s, np.ndarray) and s.shape == (x.shape[0], hidden) for s in parts)
    if not ok:
        got = [getattr(s, "shape", type(s).__name__) for s in parts] if isinstance(parts, tuple) else \
            type(parts).__name__
        raise ValueError(f"{name}: expected the initial state to be {want} (batch, hidden), got "
                         f"{got}. Pass (x, mask, state) with mask=None for unmasked input.")
    for s in parts:
        _checks.same_dtype(name, s, x.dtype, "the initial state")
    return tuple(parts)


def join_input(form: int, dx: Array, dstate: list[Array]) -> Any:
    """The input cotangent in the input's form: ``dx``, ``(dx, None)`` or ``(dx, None, dstate)``."""
    if form == 1:
        return dx
    if form == 2:
        return dx, None
    return dx, None, (tuple(dstate) if len(dstate) == 2 else dstate[0])


def _checked_params(name: str, params: Params, x: Array, hidden: int, G: int) -> dict[str, Array]:
    _checks.exact_keys(name, params, _KEYS)
    shapes = {"w_ih": (x.shape[2], G), "w_hh": (hidden, G), "b_ih": (G,), "b_hh": (G,)}
    for key, shape in shapes.items():
        p = params.get(key)
        if not isinstance(p, np.ndarray) or p.shape != shape:
            got = getattr(p, "shape", type(p).__name__)
            raise ValueError(f"{name}: expected params['{key}'] of shape {shape} for x of shape "
                             f"{x.shape}, got {got}. Were these params initialised for another input "
                             "size or model?")
        _checks.same_dtype(name, x, p.dtype)
    return params

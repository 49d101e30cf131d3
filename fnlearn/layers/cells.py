"""One-step recurrent cells for :func:`fnlearn.scan`: SimpleRNNCell, LSTMCell, GRUCell.

Each is a :class:`fnlearn.Cell` with the params of its layer (``{"w_ih", "w_hh", "b_ih", "b_hh"}``,
PyTorch's gate order), so ``scan(LSTMCell(H), return_sequences=True)`` and ``LSTM(H,
return_sequences=True)`` take the same params and give the same numbers. They are written for reading:
one step, forward and backward side by side. Start from one of them to write a new cell; for speed use
the layers, which batch the input and weight products over all steps.

Example:
    >>> import numpy as np, fnlearn as fl
    >>> layer = fl.scan(fl.LSTMCell(4))
    >>> params = layer.init(np.random.default_rng(0), (-1, 5, 3))
    >>> x = np.ones((2, 5, 3), np.float32)
    >>> bool(np.allclose(layer.apply(params, x)[0], fl.LSTM(4).apply(params, x)[0], atol=1e-6))
    True
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from numpy.typing import DTypeLike

from .._types import Array, Params, Shape
from .recurrent import SimpleRNN, LSTM, GRU
from .scan import Cell


def _sigmoid(a: Array) -> Array:
    return 0.5 * np.tanh(0.5 * a) + 0.5


def _cell(layer: Callable[..., Any], hidden: int, n_state: int, step: Callable[..., Any]) -> Cell:
    layer_init = layer(hidden).init  # the same init (and checks) as the layer

    def init(rng: np.random.Generator, step_shape: Shape, *, dtype: DTypeLike = None) -> Params:
        return layer_init(rng, (step_shape[0], 1) + tuple(step_shape[1:]), dtype=dtype)

    def carry(params: Params, batch: int, dtype: np.dtype) -> Any:
        zeros = [np.zeros((batch, hidden), dtype) for _ in range(n_state)]
        return tuple(zeros) if n_state == 2 else zeros[0]

    return Cell(init, carry, step)


def SimpleRNNCell(hidden: int, *, nonlinearity: str = "tanh") -> Cell:
    """``h = act(x @ w_ih + b_ih + h_prev @ w_hh + b_hh)``; carry and output ``h`` of shape ``(B, H)``."""
    relu = nonlinearity == "relu"

    def step(p: Params, h_prev: Array, x: Array) -> tuple[Array, Array, Callable[..., Any]]:
        a = x @ p["w_ih"] + p["b_ih"] + h_prev @ p["w_hh"] + p["b_hh"]
        h = np.maximum(a, 0) if relu else np.tanh(a)

        def vjp(dh: Array, dy: Array) -> tuple[Params, Array, Array]:
            da = (dh + dy) * ((a > 0) if relu else (1 - h * h))
            return _grads(p, x, h_prev, da, da), da @ p["w_hh"].T, da @ p["w_ih"].T

        return h, h, vjp

    return _cell(lambda n: SimpleRNN(n, nonlinearity=nonlinearity), hidden, 1, step)


def LSTMCell(hidden: int) -> Cell:
    """One LSTM step (gates ``i, f, g, o``); carry ``(h, c)``, output ``h``, each ``(B, H)``."""
    H = hidden

    def step(p: Params, carry: tuple[Array, Array], x: Array) -> tuple[Any, Array, Callable[..., Any]]:
        h_prev, c_prev = carry
        a = x @ p["w_ih"] + p["b_ih"] + h_prev @ p["w_hh"] + p["b_hh"]
        i, f, o = _sigmoid(a[:, :H]), _sigmoid(a[:, H:2 * H]), _sigmoid(a[:, 3 * H:])
        g = np.tanh(a[:, 2 * H:3 * H])
        c = f * c_prev + i * g
        tc = np.tanh(c)
        h = o * tc

        def vjp(dcarry: tuple[Array, Array], dy: Array) -> tuple[Params, Any, Array]:
            dh = dcarry[0] + dy
            dc = dcarry[1] + dh * o * (1 - tc * tc)
            da = np.concatenate([dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dc * i * (1 - g * g),
                                 dh * tc * o * (1 - o)], axis=1)
            return _grads(p, x, h_prev, da, da), (da @ p["w_hh"].T, dc * f), da @ p["w_ih"].T

        return (h, c), h, vjp

    return _cell(LSTM, hidden, 2, step)


def GRUCell(hidden: int) -> Cell:
    """One GRU step (gates ``r, z, n``); carry and output ``h`` of shape ``(B, H)``."""
    H = hidden

    def step(p: Params, h_prev: Array, x: Array) -> tuple[Array, Array, Callable[..., Any]]:
        ax, ah = x @ p["w_ih"] + p["b_ih"], h_prev @ p["w_hh"] + p["b_hh"]
        r, z = _sigmoid(ax[:, :H] + ah[:, :H]), _sigmoid(ax[:, H:2 * H] + ah[:, H:2 * H])
        n = np.tanh(ax[:, 2 * H:] + r * ah[:, 2 * H:])
        h = (1 - z) * n + z * h_prev

        def vjp(dh: Array, dy: Array) -> tuple[Params, Array, Array]:
            dh = dh + dy
            dan = dh * (1 - z) * (1 - n * n)
            dar = dan * ah[:, 2 * H:] * r * (1 - r)
            daz = dh * (h_prev - n) * z * (1 - z)
            dax = np.concatenate([dar, daz, dan], axis=1)
            dah = np.concatenate([dar, daz, dan * r], axis=1)
            return _grads(p, x, h_prev, dax, dah), dah @ p["w_hh"].T + dh * z, dax @ p["w_ih"].T

        return h, h, vjp

    return _cell(GRU, hidden, 1, step)


def _grads(p: Params, x: Array, h_prev: Array, dax: Array, dah: Array) -> Params:
    """The parameter cotangents of ``x @ w_ih + b_ih`` and ``h_prev @ w_hh + b_hh``."""
    return {"w_ih": x.T @ dax, "w_hh": h_prev.T @ dah, "b_ih": dax.sum(axis=0), "b_hh": dah.sum(axis=0)}

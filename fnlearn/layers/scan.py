"""``scan(cell)``: run a recurrent cell over the time axis, with backpropagation through time.

A cell is a :class:`Cell` ``(init, carry, apply)``, the step of a recurrence written for one time step:

``init(rng, step_shape, *, dtype=None) -> params``
    ``step_shape`` is ``(batch, *features)``, the shape of one step ``x_t``.
``carry(params, batch, dtype) -> carry``
    The initial carry (a pytree of arrays, each with the batch first), e.g. zeros of ``(batch, H)``.
``apply(params, carry, x_t) -> (new_carry, y_t, vjp_fn)``
    ``vjp_fn(dcarry, dy_t) -> (dparams, dcarry_prev, dx_t)``, each cotangent shaped like its primal.

``scan(cell)`` is then a :class:`fnlearn.Layer` on ``(B, T, *features)`` input with the conventions of
:mod:`fnlearn.layers.recurrent`: the input is ``x``, ``(x, mask)`` or ``(x, mask, carry0)``; a padded
step keeps the carry, outputs zeros and gets no gradient; the output is every ``y_t`` stacked on axis 1
(``return_sequences=True``) or each sequence's ``y`` at its last valid step (the default); with
``return_state=True`` a tuple ``(output, carry)``. The parameter cotangent is the sum over steps.

This loop calls the cell once per step and is meant for new cells; the built-in SimpleRNN, LSTM and GRU
run their own loops, which batch the input and weight products over all steps.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np
from numpy.typing import DTypeLike

from .. import _checks
from .._types import Array, Layer, Params, Shape
from .recurrent import x_shape
from ..tree import tree_add, tree_leaves, tree_map, tree_structure


class Cell(NamedTuple):
    """A recurrent cell ``(init, carry, apply)``; see :mod:`fnlearn.layers.scan` for the contract."""

    init: Callable[..., Params]
    carry: Callable[[Params, int, np.dtype], Any]
    apply: Callable[[Params, Any, Array], tuple[Any, Array, Callable[..., Any]]]


def scan(cell: Cell, *, return_sequences: bool = False, return_state: bool = False,
         name: str = "scan") -> Layer:
    """Lift a :class:`Cell` to a layer over the time axis (axis 1).

    Args:
        cell: the step: ``(init, carry, apply)``.
        return_sequences: output ``(B, T, ...)`` (every step) instead of the last valid step's ``y``.
        return_state: output ``(y, carry)`` with the carry after each sequence's last valid step.
        name: the name used in error messages.

    Example (an Elman cell, ``h_t = tanh(x_t @ w + h_{t-1} @ u)``, output ``y_t = h_t``):
        >>> import numpy as np, fnlearn as fl
        >>> def init(rng, step_shape, *, dtype=None):
        ...     return {"w": rng.normal(size=(step_shape[1], 3)), "u": rng.normal(size=(3, 3))}
        >>> def step(p, h, x):
        ...     h_new = np.tanh(x @ p["w"] + h @ p["u"])
        ...     def vjp(dh, dy):
        ...         da = (dh + dy) * (1 - h_new ** 2)
        ...         return {"w": x.T @ da, "u": h.T @ da}, da @ p["u"].T, da @ p["w"].T
        ...     return h_new, h_new, vjp
        >>> layer = fl.scan(fl.Cell(init, lambda p, b, dt: np.zeros((b, 3), dt), step))
        >>> params = layer.init(np.random.default_rng(0), (-1, 5, 2))
        >>> y, vjp = layer.apply(params, np.ones((4, 5, 2)))
        >>> y.shape, vjp(np.ones_like(y))[0]["u"].shape
        ((4, 3), (3, 3))
    """
    if not isinstance(cell, tuple) or len(cell) != 3 or not all(map(callable, cell)):
        raise TypeError(f"{name}: cell must be a Cell(init, carry, apply), got {type(cell).__name__}.")

    def init(rng: np.random.Generator, input_shape: Shape, *, dtype: DTypeLike = None) -> Params:
        shape = _checks.input_shape(name, x_shape(input_shape))
        if len(shape) < 3:
            raise ValueError(f"{name}: input_shape must be (batch, steps, *features), got {shape}.")
        return cell.init(_checks.generator(name, rng), (shape[0],) + shape[2:], dtype=dtype)

    def apply(params: Params, inputs: Any, *, rng: Any = None, train: bool = False):
        x, mask, carry, form = _split(name, inputs)
        for leaf in tree_leaves(params)[:1]:  # a float32 model never silently computes in float64
            _checks.same_dtype(name, x, leaf.dtype)
        B, T = x.shape[:2]
        fresh = cell.carry(params, B, x.dtype)
        carry = fresh if carry is None else _checked_carry(name, carry, fresh)
        ms = [None] * T if mask is None else [mask[:, t] for t in range(T)]
        ys, vjps = [], []
        for t in range(T):
            new, y_t, vjp_t = cell.apply(params, carry, x[:, t])
            if ms[t] is not None:
                new = tree_map(lambda n, o, m=ms[t]: np.where(_rows(m, n), n, o), new, carry)
                y_t = y_t * _rows(ms[t], y_t)
            ys.append(y_t)
            vjps.append(vjp_t)
            carry = new
        last = T - 1 - np.argmax(mask[:, ::-1], axis=1) if mask is not None else None
        out = np.stack(ys, axis=1) if return_sequences else _last(ys, last, mask)
        y = (out, carry) if return_state else out

        def vjp(dy: Any, *, compute_dx: bool = True) -> tuple[Params, Any]:
            dout, dcarry = dy if return_state else (dy, tree_map(np.zeros_like, carry))
            _checks.cotangent(name, dout, out.shape, out.dtype)
            dparams, dx = None, np.empty_like(x)
            for t in range(T - 1, -1, -1):
                dy_t = dout[:, t] if return_sequences else _at_last(dout, t, T, last, mask)
                m = ms[t]
                used = dcarry if m is None else tree_map(lambda d: d * _rows(m, d), dcarry)
                dp, dcarry_prev, dx_t = vjps[t](used, dy_t if m is None else dy_t * _rows(m, dy_t))
                if m is not None:
                    dcarry_prev = tree_map(lambda a, d: a + d * ~_rows(m, d), dcarry_prev, dcarry)
                dcarry, dparams = dcarry_prev, (dp if dparams is None else tree_add(dparams, dp))
                dx[:, t] = dx_t
            return dparams, (_join(form, dx, dcarry) if compute_dx else None)

        return y, vjp

    return Layer(init, _checks.named(apply, name))


def _rows(m: Array, like: Array) -> Array:
    """The per-example mask ``m`` (shape ``(B,)``) shaped to broadcast against ``like``."""
    return m.reshape((-1,) + (1,) * (like.ndim - 1))


def _last(ys: list[Array], last: Any, mask: Any) -> Array:
    if mask is None:
        return ys[-1].copy()
    out = np.zeros_like(ys[0])
    for t, y_t in enumerate(ys):
        out[last == t] = y_t[last == t]
    return out  # rows without a valid step stay zero (their y_t are zeros anyway)


def _at_last(dout: Array, t: int, T: int, last: Any, mask: Any) -> Array:
    if mask is None:
        return dout if t == T - 1 else np.zeros_like(dout)
    return dout * _rows(last == t, dout)


def _split(name: str, inputs: Any) -> tuple[Array, Any, Any, int]:
    if isinstance(inputs, tuple):
        if not 2 <= len(inputs) <= 3:
            raise ValueError(f"{name}: expected x, (x, mask) or (x, mask, carry), got a tuple of "
                             f"{len(inputs)} entries.")
        x, mask, carry = inputs[0], inputs[1], (inputs[2] if len(inputs) == 3 else None)
    else:
        x, mask, carry = inputs, None, None
    _checks.float_array(name, x)
    if x.ndim < 3:
        raise ValueError(f"{name}: expected x of shape (batch, steps, *features), got shape {x.shape}. "
                         "Add the missing axis, e.g. x[:, :, None] for one feature per step.")
    if mask is not None and (not isinstance(mask, np.ndarray) or mask.dtype != np.bool_
                             or mask.shape != x.shape[:2]):
        got = (f"{mask.dtype} array of shape {mask.shape}" if isinstance(mask, np.ndarray)
               else type(mask).__name__)
        raise ValueError(f"{name}: expected a bool mask of shape (batch, steps) = {x.shape[:2]} "
                         f"matching x, got {got}.")
    return x, mask, carry, (len(inputs) if isinstance(inputs, tuple) else 1)


def _checked_carry(name: str, carry: Any, fresh: Any) -> Any:
    try:
        same = tree_structure(carry) == tree_structure(fresh)
    except Exception:
        same = False
    if not same or any(not isinstance(a, np.ndarray) or a.shape != b.shape or a.dtype != b.dtype
                       for a, b in zip(tree_leaves(carry), tree_leaves(fresh))):
        want = [(b.shape, str(b.dtype)) for b in tree_leaves(fresh)]
        got = [(getattr(a, "shape", type(a).__name__), str(getattr(a, "dtype", ""))) for a in
               tree_leaves(carry)]
        raise ValueError(f"{name}: expected the initial carry to match the cell's carry, arrays "
                         f"(shape, dtype) {want}, got {got}.")
    return carry


def _join(form: int, dx: Array, dcarry: Any) -> Any:
    return dx if form == 1 else (dx, None) if form == 2 else (dx, None, dcarry)

"""Layers with non-trainable state (BatchNorm's running statistics), passed in and returned explicitly.

A stateful layer is a :class:`StatefulLayer` ``(init, apply)``; everything else is a plain
:class:`fnlearn.Layer` and keeps ``apply(params, x) -> (y, vjp_fn)``:

``init(rng, input_shape, *, dtype=None) -> (params, state)``
    ``state`` is a nested dict of arrays that training updates but gradients do not touch.

``apply(params, state, x, *, rng=None, train=False) -> (y, new_state, vjp_fn)``
    Pure: ``state`` is never changed in place; the updated statistics come back as ``new_state`` (with
    ``train=False`` a layer returns ``state`` itself). ``vjp_fn`` is the same as for a :class:`Layer`:
    ``vjp_fn(dy, *, compute_dx=True) -> (dparams, dx)``; the state gets no cotangent.

:func:`fnlearn.serial` returns a :class:`StatefulLayer` as soon as one child is stateful; its ``state``
is keyed like its ``params`` (``{}`` for the stateless children). ``fnlearn.value_and_grad(apply, loss,
has_state=True)`` threads the state through a training step, and :func:`bind_state` turns a stateful
layer and a fixed state back into a plain :class:`Layer` (for evaluation and for the gradient checker).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np
from numpy.typing import DTypeLike

from . import _checks
from ._types import Array, Layer, Params, PyTree, Shape, layer_repr

State = PyTree
"""A layer's non-trainable state: nested dicts of arrays, keyed like its params."""


class StatefulLayer(NamedTuple):
    """A layer with non-trainable state: ``StatefulLayer(init, apply)`` (see this module's docstring).

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> model = fl.serial(fl.Dense(3), fl.BatchNorm(), fl.Relu())
        >>> isinstance(model, fl.StatefulLayer)
        True
        >>> params, state = model.init(np.random.default_rng(0), (-1, 2))
        >>> sorted(state["1"]), state["0"]
        (['mean', 'var'], {})
        >>> x = np.random.default_rng(1).normal(size=(8, 2)).astype(np.float32)
        >>> y, new_state, vjp = model.apply(params, state, x, train=True)
        >>> bool(np.all(new_state["1"]["var"] != state["1"]["var"]))
        True
    """

    init: Callable[..., tuple[Params, State]]
    apply: Callable[..., tuple[Any, State, Any]]

    def __repr__(self) -> str:
        return layer_repr(self)


def is_stateful(layer: Any) -> bool:
    """Whether ``layer`` is a :class:`StatefulLayer`."""
    return isinstance(layer, StatefulLayer)


def bind_state(layer: StatefulLayer, state: State) -> Layer:
    """A plain :class:`Layer` that applies ``layer`` with the fixed ``state`` and drops the new state.

    ``init`` returns the params only. Use it to evaluate a trained model (``train=False`` uses the
    running statistics in ``state``), or to hand a stateful layer to code that expects a
    :class:`Layer`, such as ``fnlearn.eval_shape`` or the gradient checker.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> model = fl.serial(fl.Dense(2), fl.BatchNorm())
        >>> params, state = model.init(np.random.default_rng(0), (-1, 3))
        >>> predict = fl.bind_state(model, state)
        >>> predict.apply(params, np.ones((4, 3), np.float32))[0].shape
        (4, 2)
    """
    if not is_stateful(layer):
        raise TypeError(f"bind_state: expected a StatefulLayer (e.g. fl.BatchNorm() or a serial model "
                        f"containing one), got {type(layer).__name__}. A plain Layer needs no state.")

    def init(rng: np.random.Generator, input_shape: Shape, *, dtype: DTypeLike = None) -> Params:
        return layer.init(rng, input_shape, **({} if dtype is None else {"dtype": dtype}))[0]

    def apply(params: Params, x: Array, *, rng: np.random.Generator | None = None,
              train: bool = False):
        y, _, vjp = layer.apply(params, state, x, rng=rng, train=train)
        return y, vjp

    name = getattr(layer.apply, "__qualname__", "layer").split(".<locals>")[0]
    return Layer(init, _checks.named(apply, name.removesuffix(".apply")))

"""``value_and_grad``: a model's loss and its gradient with respect to the parameters."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from . import _checks
from ._types import ApplyFn, Array, Params

Loss = Callable[[Array, Any], tuple[float, Array]]


def value_and_grad(apply: ApplyFn, loss: Loss, *, has_state: bool = False) -> Callable[..., Any]:
    """Turn ``apply`` and ``loss`` into ``f(params, x, target, *, rng=None, train=True) -> (value, grads)``.

    ``grads`` has the structure, shapes and dtypes of ``params``. The backward pass asks the model for no
    input cotangent (``compute_dx=False``), so the first layer skips that matrix product. ``train``
    defaults to True (gradients are for training): a model with dropout then needs ``rng``.

    With ``has_state=True``, ``apply`` is a :class:`fnlearn.StatefulLayer`'s apply (a model with
    BatchNorm) and the result is ``f(params, state, x, target, *, rng=None, train=True) ->
    ((value, new_state), grads)``, with the state updated by the training step.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> model = fl.serial(fl.Dense(3), fl.Relu(), fl.Dense(2))
        >>> params = model.init(np.random.default_rng(0), (-1, 4))
        >>> f = fl.value_and_grad(model.apply, fl.losses.softmax_cross_entropy)
        >>> loss, grads = f(params, np.ones((5, 4), np.float32), np.array([0, 1, 0, 1, 1]))
        >>> type(loss).__name__, grads["0"]["w"].shape, grads["0"]["w"].dtype
        ('float', (4, 3), dtype('float32'))
    """
    _check_state_flag(apply, has_state)
    if has_state:
        return _value_and_grad_with_state(apply, loss)

    _check_functions("value_and_grad", apply, loss, "value_and_grad(model.apply, fl.losses.softmax_cross_entropy)")

    def value_and_grad_fn(params: Params, x: Any, target: Any, *,
                          rng: np.random.Generator | None = None, train: bool = True):
        pred, vjp = apply(params, x, rng=rng, train=train)
        value, dpred = loss_output("value_and_grad", loss(pred, target))
        grads, _ = _checks.call_vjp(vjp, dpred, False)
        return value, grads

    return value_and_grad_fn


def _value_and_grad_with_state(apply: Callable[..., Any], loss: Loss) -> Callable[..., Any]:
    """``value_and_grad(..., has_state=True)``: also returns the state after the step.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> model = fl.serial(fl.Dense(3), fl.BatchNorm(), fl.Dense(2))
        >>> params, state = model.init(np.random.default_rng(0), (-1, 4))
        >>> f = fl.value_and_grad(model.apply, fl.losses.mse, has_state=True)
        >>> x = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
        >>> (loss, state), grads = f(params, state, x, np.zeros((5, 2), np.float32))
        >>> sorted(state["1"]), grads["1"]["scale"].shape
        (['mean', 'var'], (3,))
    """
    def value_and_grad_fn(params: Params, state: Any, x: Any, target: Any, *,
                          rng: np.random.Generator | None = None, train: bool = True):
        pred, new_state, vjp = apply(params, state, x, rng=rng, train=train)
        value, dpred = loss(pred, target)
        grads, _ = _checks.call_vjp(vjp, dpred, False)
        return (value, new_state), grads

    return value_and_grad_fn


def _check_functions(caller: str, apply: Any, loss: Any, example: str) -> None:
    """A TypeError naming ``caller`` unless ``apply`` and ``loss`` are callable."""
    for what, fn in (("apply", apply), ("loss", loss)):
        if not callable(fn):
            raise TypeError(f"{caller}: {what} must be a function, got {fn!r}. Pass e.g. {example}.")


def loss_output(caller: str, out: Any) -> tuple[Any, Any]:
    """``(value, dpred)`` from what a loss returned; a TypeError naming ``caller`` otherwise."""
    if not isinstance(out, tuple) or len(out) != 2:
        raise TypeError(f"{caller}: the loss must return (value, grad), got {type(out).__name__}. "
                        "fnlearn.losses functions do; wrap other losses.")
    return out


def _check_state_flag(apply: Callable[..., Any], has_state: bool, caller: str = "value_and_grad") -> None:
    """A TypeError when ``apply`` visibly takes a ``state`` argument and ``has_state`` disagrees."""
    code = getattr(apply, "__code__", None)
    if code is None:
        return
    positional = code.co_varnames[:code.co_argcount]
    takes_state = len(positional) >= 3 and positional[1] == "state"
    if takes_state and not has_state:
        raise TypeError(f"{caller}: this model has state (it contains a stateful layer such as "
                        "BatchNorm, and its apply takes (params, state, x)). Use "
                        f"fl.{caller}(model.apply, ..., has_state=True).")
    if has_state and not takes_state and len(positional) == 2:
        raise TypeError(f"{caller}: has_state=True needs the apply of a StatefulLayer, which "
                        "takes (params, state, x); this apply takes (params, x). Drop has_state=True.")

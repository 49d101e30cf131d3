"""``train_step``: one fused training step (forward, loss, backward, optimizer update), pure.

The step is what a user would write with :func:`fnlearn.value_and_grad`, ``optimizer.update`` and
:func:`fnlearn.optim.apply_updates`, with two savings that need the gradients to stay private:

- when the optimizer's updates are a number times the gradients (plain ``sgd``, ``scale``,
  ``scale_by_learning_rate``; see :func:`fnlearn.optim.scalar_rule`), the loss gradient is multiplied
  by that number before the backward pass. The VJPs are linear, so the backward pass returns the
  updates themselves: no pass over the parameters to scale the gradients, and no gradient tree beside
  the updates;
- otherwise the gradients are dropped as soon as the optimizer has turned them into updates, and the
  activations as soon as the backward pass ends, so they are never alive next to the new parameters;
- either way, the new parameters are written into the updates' own arrays when nobody else holds
  them (``_add_in_place``: reference counts), instead of into new ones.

Nothing passed in is modified: the step returns new parameters and a new optimizer state.
"""

from __future__ import annotations

import sys
import sysconfig
import warnings
import weakref
from typing import Any, Callable

import numpy as np

from . import _blas, _checks, _split
from ._grad import Loss, _check_functions, _check_state_flag, loss_output
from ._types import ApplyFn
from .optim._base import Optimizer, apply_updates, is_optimizer, scalar_rule


def train_step(apply: ApplyFn, loss: Loss, optimizer: Optimizer, *,
               has_state: bool = False, threads: int = 1) -> Callable[..., Any]:
    """Build ``step(params, opt_state, x, target, *, rng=None) -> (params, opt_state, loss_value)``.

    One call is one training step, the same as::

        value, grads = fl.value_and_grad(apply, loss)(params, x, target, rng=rng)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = fl.optim.apply_updates(params, updates)

    (equal up to float rounding). With plain SGD it is faster, and its update holds one
    parameter-sized array beside the old parameters instead of three (gradients, updates, new
    parameters); see the module docstring of ``fnlearn._train``. The model runs with ``train=True`` (dropout needs ``rng``).
    Use ``value_and_grad`` instead when you want to see the gradients.

    With an optimizer that declares a scalar rule (plain ``sgd``; :func:`fnlearn.optim.scalar_rule`),
    the backward pass runs on ``factor * dloss``: this relies on every VJP being linear in its
    cotangent, as a VJP is by definition (one that clips or normalises ``dy`` is not a VJP).

    Args:
        apply: the model's apply, ``apply(params, x, *, rng, train) -> (y, vjp)``.
        loss: ``loss(y, target) -> (value, dy)``, e.g. ``fl.losses.softmax_cross_entropy``.
        optimizer: an ``Optimizer(init, update)`` from ``fnlearn.optim`` or your own.
        has_state: True for a model with state (BatchNorm, a :class:`fnlearn.StatefulLayer`); then
            ``step(params, model_state, opt_state, x, target, *, rng=None) -> (params, model_state,
            opt_state, loss_value)``.

    Shapes: ``x`` and ``target`` are whatever ``apply`` and ``loss`` take (e.g. ``(batch, in)`` and
    ``(batch,)`` class indices); the returned params have the structure, shapes and dtypes of ``params``.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> model = fl.serial(fl.Dense(3), fl.Relu(), fl.Dense(2))
        >>> params = model.init(np.random.default_rng(0), (-1, 4))
        >>> opt = fl.optim.sgd(0.1)
        >>> step = fl.train_step(model.apply, fl.losses.softmax_cross_entropy, opt)
        >>> x, y = np.ones((5, 4), np.float32), np.array([0, 1, 0, 1, 1])
        >>> new_params, opt_state, loss = step(params, opt.init(params), x, y)
        >>> new_params["0"]["w"].dtype, opt_state["count"], type(loss).__name__
        (dtype('float32'), 1, 'float')
        >>> on_two = fl.train_step(model.apply, fl.losses.softmax_cross_entropy, opt, threads=2)
        >>> two_params, _, two_loss = on_two(params, opt.init(params), x, y)  # 3 + 2 examples at once
        >>> bool(np.allclose(two_params["0"]["w"], new_params["0"]["w"], atol=1e-6)), abs(two_loss - loss) < 1e-6
        (True, True)
    """
    _check_state_flag(apply, has_state, "train_step")
    _check_functions("train_step", apply, loss,
                     "train_step(model.apply, fl.losses.softmax_cross_entropy, fl.optim.sgd(0.1))")
    if not is_optimizer(optimizer):
        raise TypeError(f"train_step: optimizer must be an Optimizer(init, update), got "
                        f"{type(optimizer).__name__}. Call the constructor, e.g. fl.optim.sgd(0.1).")
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"train_step: threads must be a positive int, got {threads!r}.")
    if threads > 1 and has_state:
        raise ValueError("train_step: threads > 1 splits the batch, and a model with state (BatchNorm) "
                         "would then compute its batch statistics per part. Use threads=1.")
    if threads > 1 and _blas.num_threads() is None:
        warnings.warn("train_step: threads > 1, but NumPy's OpenBLAS was not found, so BLAS keeps its own "
                      "threads during the step and they compete with the step's threads. Limit BLAS to "
                      "one thread yourself (threadpoolctl) or use threads=1.", RuntimeWarning, stacklevel=2)
    scalar = scalar_rule(optimizer)
    update = optimizer.update

    def descend(params: Any, opt_state: Any, box: list[Any]) -> tuple[Any, Any]:
        """The backward pass and the update. ``box`` is ``[vjp, dpred]``, the caller's only reference
        to the VJP (and so to the activations): emptying it lets them go before the update."""
        vjp, dpred = box
        box.clear()
        if scalar is not None and type(dpred) is np.ndarray:  # (a tuple of cotangents: the general path)
            factor, opt_state = _factor(scalar, opt_state)
            held = {"probe": object(), "": _checks.call_vjp(vjp, dpred * factor, False)[0]}
            del vjp, dpred
            new_params = _add_in_place(params, held)
            if new_params is not None:
                return new_params, opt_state
            updates = held.pop("")
        else:
            grads, _ = _checks.call_vjp(vjp, dpred, False)
            del vjp, dpred
            held = {"probe": object(), "": update(grads, opt_state, params)}
            del grads
            held[""], opt_state = held[""]  # (the update's own tuple holds them no more)
            new_params = _add_in_place(params, held)  # into the updates' arrays if nobody else holds them
            if new_params is not None:
                return new_params, opt_state
            updates = held.pop("")
        return apply_updates(params, updates), opt_state

    if has_state:
        def step_with_state(params: Any, model_state: Any, opt_state: Any, x: Any, target: Any, *,
                            rng: np.random.Generator | None = None) -> tuple[Any, Any, Any, Any]:
            pred, model_state, vjp = apply(params, model_state, x, rng=rng, train=True)
            value, dpred = loss_output("train_step", loss(pred, target))
            box = [vjp, dpred]
            del pred, vjp, dpred
            params, opt_state = descend(params, opt_state, box)
            return params, model_state, opt_state, value

        return step_with_state

    def step(params: Any, opt_state: Any, x: Any, target: Any, *,
             rng: np.random.Generator | None = None) -> tuple[Any, Any, Any]:
        pred, vjp = apply(params, x, rng=rng, train=True)
        value, dpred = loss_output("train_step", loss(pred, target))
        box = [vjp, dpred]
        del pred, vjp, dpred
        params, opt_state = descend(params, opt_state, box)
        return params, opt_state, value

    if threads == 1:
        return step
    inner, apply = step, _split.batch_parallel(apply, int(threads))

    def step_on_threads(params: Any, opt_state: Any, x: Any, target: Any, *,
                        rng: np.random.Generator | None = None) -> tuple[Any, Any, Any]:
        with _blas.one_thread():
            return inner(params, opt_state, x, target, rng=rng)

    return step_on_threads


def _factor(rule: Callable[[Any], tuple[Any, Any]], opt_state: Any) -> tuple[float, Any]:
    factor, opt_state = rule(opt_state)
    try:
        return float(factor), opt_state  # a Python float never upcasts a float32 cotangent
    except (TypeError, ValueError):
        raise TypeError(f"train_step: the optimizer's scalar rule returned factor {factor!r}; it must be "
                        "a real number (see fnlearn.optim.declare_scalar).") from None


# Reference counts say who else holds an array only on CPython with the GIL (free-threaded builds defer
# some counts); elsewhere the new parameters always go into new arrays.
_EXACT_REFCOUNTS = (sys.implementation.name == "cpython" and hasattr(sys, "getrefcount")
                    and not sysconfig.get_config_var("Py_GIL_DISABLED"))


def _add_in_place(params: Any, held: dict[str, Any]) -> Any:
    """``params + updates`` written into the updates' own arrays when nobody else can see them, else None.

    ``held`` is ``{"probe": object(), "": updates}``, the only reference to the updates. They come
    straight from the backward pass; if every dict in the tree and every array (owning its memory, with
    no weak references) is referenced only by its parent, no one else holds them and writing into them
    is invisible: the new parameters take no new memory and the addition no allocation. "Referenced
    only by its parent" is the reference count of the probe, measured in the same loop (NumPy's own
    temporary elision relies on reference counts the same way). Anything else (a VJP that returns a
    cached array or a view, a different structure, another dtype): None, and the caller adds into new
    arrays (and reports any mismatch).
    """
    if not _EXACT_REFCOUNTS or not _private_tree({"": params}, held, -1):
        return None
    return _add_into(params, held[""])


def _private_tree(p: dict[Any, Any], u: dict[Any, Any], private: int) -> bool:
    """Whether every value under ``u`` is referenced only by its parent (a count of ``private``; -1:
    the first item is the probe that tells it), with ``p``'s structure (keys in the same order),
    shapes and dtypes (dicts of arrays)."""
    for k, v in u.items():
        count = sys.getrefcount(v)
        if private < 0:
            private = count
            continue
        if count != private:
            return False
        q = p.get(k)
        if type(v) is dict:
            if type(q) is not dict or list(q) != list(v) or not _private_tree(q, v, private):  # same keys, order
                return False
        elif not (type(v) is np.ndarray and type(q) is np.ndarray and v.flags.owndata and v.flags.writeable
                  and v.shape == q.shape and v.dtype == q.dtype and not weakref.getweakrefcount(v)):
            return False
    return True


def _add_into(p: Any, u: Any) -> Any:
    """``u += p`` leaf by leaf (nested dicts of arrays, or one array), in place; returns ``u``."""
    if type(u) is not dict:
        return np.add(u, p, out=u)
    for k, v in u.items():
        if type(v) is dict:
            _add_into(p[k], v)
        else:
            np.add(v, p[k], out=v)
    return u

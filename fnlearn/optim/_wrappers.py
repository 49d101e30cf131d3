"""Wrappers that change *where* or *when* an optimizer acts: masks, parameter groups, gradient
accumulation, hyperparameters in the state, and skipping non-finite steps.

Masks and labels are trees with the structure of the params, or a *prefix* of it (``{"0": True,
"1": False}`` covers every leaf under ``"0"`` and ``"1"``), or a function ``params -> such a tree``.
Inside a wrapper, the leaves an inner optimizer does not own are replaced by ``None`` (an empty node),
so its state holds no arrays for them.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import numpy as np

from .. import tree as _tree
from .._types import Params, PyTree
from ._base import Optimizer, OptState, Updates, check_hyper, check_state, map_leaves, resolve

__all__ = ["masked", "freeze", "partition", "MultiSteps", "inject_hyperparams", "apply_if_finite"]


def _expand(fn: str, prefix: Any, tree: PyTree, path: str = "") -> PyTree:
    """Broadcast the leaves of ``prefix`` (a prefix of ``tree``'s structure) down to ``tree``'s leaves."""
    if isinstance(prefix, dict):
        if not isinstance(tree, dict) or prefix.keys() != tree.keys():
            raise _tree.TreeMismatchError(
                f"{fn}: the mask/labels tree differs from the params at path '{path or '<root>'}': it has "
                f"keys {sorted(map(str, prefix))}, the params have "
                f"{sorted(map(str, tree)) if isinstance(tree, dict) else type(tree).__name__}. Give one "
                "entry per key (a bool or label covers everything under it).")
        return {k: _expand(fn, prefix[k], tree[k], f"{path}/{k}" if path else str(k)) for k in tree}
    if isinstance(prefix, (list, tuple)):
        if not isinstance(tree, (list, tuple)) or len(prefix) != len(tree):
            raise _tree.TreeMismatchError(f"{fn}: the mask/labels tree differs from the params at path "
                                          f"'{path or '<root>'}': expected {len(prefix)} children.")
        return type(tree)(_expand(fn, a, b, f"{path}/{i}" if path else str(i))
                          for i, (a, b) in enumerate(zip(prefix, tree)))
    return _tree.tree_map(lambda _: prefix, tree)


def _full(fn: str, spec: Any, tree: PyTree) -> PyTree:
    return _expand(fn, spec(tree) if callable(spec) else spec, tree)


def _select(tree: PyTree, flags: PyTree, keep: Callable[[Any], bool]) -> PyTree:
    """``tree`` with the leaves whose flag fails ``keep`` replaced by ``None``."""
    if tree is None:
        return None
    return _tree.tree_map(lambda x, f: x if keep(f) else None, tree, flags)


def _merge(like: PyTree, flags: PyTree, parts: dict[Any, PyTree]) -> PyTree:
    """Rebuild a tree shaped like ``like``: each leaf comes from ``parts[flag]`` (in leaf order)."""
    streams = {key: iter(_tree.tree_leaves(part)) for key, part in parts.items()}
    leaves = [next(streams[f]) for f in _tree.tree_leaves(flags)]
    return _tree.tree_unflatten(_tree.tree_structure(like), leaves)


def masked(inner: Optimizer, mask: Any) -> Optimizer:
    """Apply ``inner`` only to the leaves where ``mask`` is True; other updates pass through unchanged.

    **Unmasked leaves get the incoming updates as they are** (optax's semantics): with
    ``masked(sgd(0.1), mask)`` the leaves where the mask is False are moved by the *raw gradient*
    (learning rate 1, ascent), not frozen. To freeze leaves use :func:`freeze`; to give each group its
    own rule use :func:`partition`.

    Args:
        inner: the optimizer for the selected leaves.
        mask: booleans as a tree (or prefix) of the params, or a function ``params -> tree``.

    Returns:
        An :class:`Optimizer`; state ``{"inner": inner_state}``.

    Example:
        >>> import numpy as np
        >>> from fnlearn import optim
        >>> opt = masked(optim.scale(-1.0), {"w": True, "b": False})
        >>> u, _ = opt.update({"w": np.ones(1), "b": np.ones(1)}, opt.init({"w": 0, "b": 0}))
        >>> u["w"], u["b"]
        (array([-1.]), array([1.]))
    """
    def init(params: Params) -> OptState:
        return {"inner": inner.init(_select(params, _full("masked", mask, params), bool))}

    state_keys = frozenset({"inner"})

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state("masked.update", state, state_keys)
        flags = _full("masked", mask, grads)
        u, s = inner.update(_select(grads, flags, bool), state["inner"], _select(params, flags, bool))
        flags = _tree.tree_map(bool, flags)
        return _merge(grads, flags, {True: u, False: _select(grads, flags, lambda f: not f)}), {"inner": s}

    return Optimizer(init, update)


def freeze(mask: Any) -> Optimizer:
    """Zero updates where ``mask`` is True (the parameters do not move); others pass through.

    Put it after the rule in a chain: ``chain(adam(1e-3), freeze(mask))``.

    Args:
        mask: booleans as a tree (or prefix) of the params, or a function ``params -> tree``.

    Returns:
        An :class:`Optimizer`; state ``{"inner": {}}`` (it is ``masked(set_to_zero(), mask)``).

    Example:
        >>> import numpy as np
        >>> from fnlearn import optim
        >>> opt = optim.chain(optim.sgd(0.1), freeze({"w": True, "b": False}))
        >>> u, _ = opt.update({"w": np.ones(1), "b": np.ones(1)}, opt.init({"w": 0, "b": 0}))
        >>> u["w"], u["b"]
        (array([0.]), array([-0.1]))
    """
    from ._transforms import set_to_zero
    return masked(set_to_zero(), mask)


def partition(transforms: dict[str, Optimizer], param_labels: Any) -> Optimizer:
    """Different optimizers for different parameter groups (optax's ``partition``).

    Args:
        transforms: ``{label: Optimizer}``.
        param_labels: a tree (or prefix) of the params with a label at each leaf, or a function
            ``params -> such a tree``. Every label must be a key of ``transforms``.

    Returns:
        An :class:`Optimizer`; state ``{label: inner_state}``.

    Example:
        >>> import numpy as np
        >>> from fnlearn import optim
        >>> opt = partition({"fast": optim.sgd(1.0), "frozen": optim.set_to_zero()},
        ...                 {"0": "fast", "1": "frozen"})
        >>> params = {"0": {"w": np.ones(2)}, "1": {"w": np.ones(2)}}
        >>> u, _ = opt.update(params, opt.init(params), params)
        >>> u["0"]["w"], u["1"]["w"]
        (array([-1., -1.]), array([0., 0.]))
    """
    if not isinstance(transforms, dict) or not transforms:
        raise TypeError("partition: transforms must be a non-empty dict {label: Optimizer}, got "
                        f"{type(transforms).__name__}.")

    def labels_of(tree: PyTree) -> PyTree:
        labels = _full("partition", param_labels, tree)
        unknown = set(_tree.tree_leaves(labels)) - set(transforms)
        if unknown:
            raise ValueError(f"partition: the labels {sorted(map(str, unknown))} have no transform; "
                             f"transforms has {sorted(transforms)}. Add them or fix param_labels.")
        return labels

    def init(params: Params) -> OptState:
        labels = labels_of(params)
        return {k: t.init(_select(params, labels, lambda f, k=k: f == k)) for k, t in transforms.items()}

    state_keys = frozenset(transforms)

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state("partition.update", state, state_keys)
        labels = labels_of(grads)
        parts, new_state = {}, {}
        for k, t in transforms.items():
            keep = lambda f, k=k: f == k  # noqa: E731
            parts[k], new_state[k] = t.update(_select(grads, labels, keep), state[k],
                                              _select(params, labels, keep))
        return _merge(grads, labels, parts), new_state

    return Optimizer(init, update)


def MultiSteps(optimizer: Optimizer, every_k_schedule: Any) -> Optimizer:  # noqa: N802 (optax's name)
    """Gradient accumulation: average ``k`` gradients, then take one step of ``optimizer`` with it.

    On the first ``k - 1`` calls the updates are zeros (the params do not move); on the ``k``-th the
    inner optimizer sees the mean gradient. ``k`` may be a function of the number of inner steps taken.

    Returns:
        An :class:`Optimizer`; state ``{"mini_step", "gradient_step", "inner", "acc_grads"}``.

    Example:
        >>> import numpy as np
        >>> from fnlearn import optim
        >>> opt = MultiSteps(optim.sgd(1.0), every_k_schedule=2)
        >>> s = opt.init({"w": np.zeros(1)})
        >>> u1, s = opt.update({"w": np.array([1.0])}, s)
        >>> u2, s = opt.update({"w": np.array([3.0])}, s)
        >>> u1["w"], u2["w"], s["gradient_step"]
        (array([0.]), array([-2.]), 1)
    """
    every = every_k_schedule if callable(every_k_schedule) else int(
        check_hyper("MultiSteps", "every_k_schedule", every_k_schedule, low=1))

    def init(params: Params) -> OptState:
        return {"mini_step": 0, "gradient_step": 0, "inner": optimizer.init(params),
                "acc_grads": _tree.tree_zeros_like(params)}

    def mean_step(g: Any, acc: Any, n: int) -> Any:
        out = g - acc
        out *= 1.0 / n
        out += acc
        return out

    state_keys = frozenset({"mini_step", "gradient_step", "inner", "acc_grads"})

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state("MultiSteps.update", state, state_keys)
        mini, step = int(state["mini_step"]) + 1, int(state["gradient_step"])
        acc = map_leaves("MultiSteps.update", lambda g, a: mean_step(g, a, mini), grads, state["acc_grads"],
                         labels=("state['acc_grads']",))
        if mini < int(resolve(every, step)):
            return _tree.tree_zeros_like(grads), {**state, "mini_step": mini, "acc_grads": acc}
        updates, inner = optimizer.update(acc, state["inner"], params)
        return updates, {"mini_step": 0, "gradient_step": step + 1, "inner": inner,
                         "acc_grads": _tree.tree_zeros_like(acc)}

    return Optimizer(init, update)


def inject_hyperparams(rule: Callable[..., Optimizer], static_args: tuple[str, ...] = ("mask",)
                       ) -> Callable[..., Optimizer]:
    """Make the numeric hyperparameters of ``rule`` visible and changeable in the state.

    ``inject_hyperparams(adam)(learning_rate=schedule, b1=0.9)`` builds an optimizer whose state is
    ``{"count", "hyperparams": {"learning_rate": float, "b1": float}, "inner"}``. Each update evaluates
    schedules at the step count, reads numbers from ``state["hyperparams"]`` (so you can change them
    between steps) and records the values it used. Arguments named in ``static_args`` and
    non-numeric arguments (booleans, masks) are fixed. A change that alters the state's structure
    (e.g. sgd's momentum between 0 and non-zero) is an error. Extra keywords of ``update``
    (``value=loss``) go to the rule's ``update``.

    Example:
        >>> import numpy as np
        >>> from fnlearn import optim
        >>> opt = inject_hyperparams(optim.sgd)(learning_rate=0.1)
        >>> s = opt.init({"w": np.zeros(1)})
        >>> s["hyperparams"]["learning_rate"] = 0.5
        >>> u, s = opt.update({"w": np.ones(1)}, s)
        >>> u["w"], s["hyperparams"]
        (array([-0.5]), {'learning_rate': 0.5})
    """
    signature = inspect.signature(rule)

    def factory(*args: Any, **kwargs: Any) -> Optimizer:
        bound = signature.bind(*args, **kwargs).arguments
        dynamic = {k: v for k, v in bound.items() if k not in static_args and _is_hyper(v)}
        static = {k: v for k, v in bound.items() if k not in dynamic}

        def values(count: int, stored: dict[str, Any]) -> dict[str, float]:
            return {k: resolve(v, count) if callable(v) else _same_kind(v, stored[k]) for k, v in dynamic.items()}

        def init(params: Params) -> OptState:
            hyper = values(0, {k: v for k, v in dynamic.items() if not callable(v)})
            return {"count": 0, "hyperparams": hyper, "inner": rule(**static, **hyper).init(params)}

        state_keys = frozenset({"count", "hyperparams", "inner"})

        def update(grads: Updates, state: OptState, params: Params = None, **extra: Any
                   ) -> tuple[Updates, OptState]:
            check_state("inject_hyperparams.update", state, state_keys)
            count = int(state["count"])
            hyper = values(count, state["hyperparams"])
            updates, inner = rule(**static, **hyper).update(grads, state["inner"], params, **extra)
            return updates, {"count": count + 1, "hyperparams": hyper, "inner": inner}

        return Optimizer(init, update)

    return factory


def _same_kind(original: Any, stored: Any) -> float | int:
    """``stored`` as a Python int if the hyperparameter was given as an integer (a seed, a step count)
    and still holds a whole number, else as a Python float (so a rate set to 0.5 stays 0.5)."""
    number = float(stored)
    if isinstance(original, (int, np.integer)) and number.is_integer():
        return int(number)
    return number


def _is_hyper(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    return callable(value) or isinstance(value, (int, float, np.integer, np.floating))


def apply_if_finite(inner: Optimizer, max_consecutive_errors: int) -> Optimizer:
    """Skip a step whose gradients contain NaN or inf: zero updates, inner state unchanged, counted.

    After more than ``max_consecutive_errors`` non-finite steps in a row the step is applied anyway
    (optax's rule), so a run that has really diverged does not stall silently.

    Returns:
        An :class:`Optimizer`; state ``{"inner", "notfinite_count", "last_finite", "total_notfinite"}``.

    Example:
        >>> import numpy as np
        >>> from fnlearn import optim
        >>> opt = apply_if_finite(optim.sgd(0.1), max_consecutive_errors=3)
        >>> u, s = opt.update({"w": np.array([np.nan])}, opt.init({"w": np.zeros(1)}))
        >>> u["w"], s["total_notfinite"], s["last_finite"]
        (array([0.]), 1, False)
    """
    limit = int(check_hyper("apply_if_finite", "max_consecutive_errors", max_consecutive_errors))

    def init(params: Params) -> OptState:
        return {"inner": inner.init(params), "notfinite_count": 0, "last_finite": True, "total_notfinite": 0}

    state_keys = frozenset({"inner", "notfinite_count", "last_finite", "total_notfinite"})

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state("apply_if_finite.update", state, state_keys)
        finite = all(bool(np.isfinite(g).all()) for g in _tree.tree_leaves(grads))
        bad_run = 0 if finite else int(state["notfinite_count"]) + 1
        total = int(state["total_notfinite"]) + (not finite)
        if finite or bad_run > limit:
            updates, new_inner = inner.update(grads, state["inner"], params)
        else:
            updates, new_inner = _tree.tree_zeros_like(grads), state["inner"]
        return updates, {"inner": new_inner, "notfinite_count": bad_run, "last_finite": finite,
                         "total_notfinite": total}

    return Optimizer(init, update)

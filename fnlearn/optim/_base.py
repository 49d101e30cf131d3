"""The optimizer contract, written down once, and the helpers every rule uses.

An optimizer (a *gradient transformation*, in optax's words) is a pair of pure functions bundled as
:class:`Optimizer`:

``init(params) -> state``
    ``state`` is a plain tree: dicts with string keys, tuples, arrays and integers. The step count
    lives in it (``state["count"]``), so a state saves and loads by path without pickle (an integer
    that comes back as a 0-d array works the same).

``update(grads, state, params=None) -> (updates, state)``
    ``grads`` must have the structure and leaf shapes of ``params`` (and of the trees in ``state``);
    otherwise a :class:`fnlearn.tree.TreeMismatchError` names the first path that differs. ``updates``
    has the structure, shapes and dtypes of ``grads``: add it to the parameters with
    :func:`apply_updates`. Nothing is mutated: the old state stays valid.

Conventions: updates are what to *add* (so a descent rule returns ``-learning_rate * direction``);
float32 parameters give float32 state and updates, float64 stays float64 (Python-float
hyperparameters never upcast an array).
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, NamedTuple, Union

import numpy as np

from .. import tree as _tree
from .._types import Params, PyTree

__all__ = ["Optimizer", "GradientTransformation", "OptState", "Updates", "Schedule", "ScalarOrSchedule",
           "apply_updates", "chain", "named_chain", "map_leaves", "scalar_rule",
           "declare_scalar"]

OptState = PyTree
"""An optimizer state: a plain tree of dicts/tuples of arrays and integers."""
Updates = PyTree
"""A tree with the structure of the parameters, to be added to them by :func:`apply_updates`."""
Schedule = Callable[[int], float]
"""A function of the step count (0 on the first update) returning a hyperparameter value."""
ScalarOrSchedule = Union[float, Schedule]


class Optimizer(NamedTuple):
    """An optimizer: ``Optimizer(init, update)``; see the module docstring of ``fnlearn.optim._base``.

    Example:
        >>> import numpy as np
        >>> from fnlearn import optim
        >>> params = {"w": np.array([1.0, 2.0])}
        >>> opt = optim.sgd(learning_rate=0.5)
        >>> state = opt.init(params)
        >>> updates, state = opt.update({"w": np.array([2.0, 2.0])}, state, params)
        >>> optim.apply_updates(params, updates)["w"], state["count"]
        (array([0., 1.]), 1)
    """

    init: Callable[[Params], OptState]
    update: Callable[..., tuple[Updates, OptState]]


GradientTransformation = Optimizer
"""optax's name for the same pair."""


class _Mismatch(Exception):
    pass


def _shape(x: Any) -> tuple[int, ...]:
    return x.shape if type(x) is np.ndarray else np.shape(x)


_ndarray = np.ndarray


def _walk(f: Callable[..., Any], n_out: int, g: Any, rest: tuple[Any, ...]) -> Any:
    """Map ``f`` over the leaves of ``g`` and the matching leaves of ``rest``; raise _Mismatch if a
    tree in ``rest`` differs in structure, or a leaf in shape or dtype (the caller explains it).

    This runs on every optimizer step, so nested dicts of arrays (the usual params) take a fast path:
    no path strings, and the leaf checks inlined in the comprehension. A 0-d leaf takes the slow path,
    which hands ``f`` one-element views (see :func:`_call_leaf`).
    """
    if type(g) is not dict:
        return _walk_other(f, n_out, g, rest)
    keys = g.keys()
    for o in rest:
        if (type(o) is not dict and not isinstance(o, dict)) or o.keys() != keys:
            raise _Mismatch
    if not rest:
        out = {k: f(v) if type(v) is _ndarray and v.ndim else _walk(f, n_out, v, rest) for k, v in g.items()}
    elif len(rest) == 1:  # the leaf checks are inlined: this runs once per leaf per step
        a, = rest
        out = {k: f(v, x) if (type(v) is _ndarray and v.ndim and type(x := a[k]) is _ndarray
                              and x.shape == v.shape and x.dtype == v.dtype) else _walk(f, n_out, v, (a[k],))
               for k, v in g.items()}
    elif len(rest) == 2:
        a, b = rest
        out = {k: f(v, x, y) if (type(v) is _ndarray and v.ndim and type(x := a[k]) is _ndarray
                                 and type(y := b[k]) is _ndarray and x.shape == v.shape == y.shape
                                 and x.dtype == v.dtype == y.dtype) else _walk(f, n_out, v, (a[k], b[k]))
               for k, v in g.items()}
    else:
        out = {k: _walk(f, n_out, v, tuple([o[k] for o in rest])) for k, v in g.items()}
    if n_out == 0:
        return out
    return tuple([{k: t[i] for k, t in out.items()} for i in range(n_out)])


def _dtype(x: Any) -> np.dtype:
    return x.dtype if type(x) is np.ndarray else np.result_type(x)


def _check_leaf(g: Any, *rest: Any) -> None:
    """Raise _Mismatch unless every leaf in ``rest`` is a leaf with the shape and dtype of ``g``."""
    if _is_node(g) or any(_is_node(o) for o in rest):
        raise _Mismatch
    shape, dtype = _shape(g), _dtype(g)
    if any(_shape(o) != shape or _dtype(o) != dtype for o in rest):
        raise _Mismatch


def _is_node(x: Any) -> bool:
    return x is None or isinstance(x, (dict, list, tuple))


def _walk_other(f: Callable[..., Any], n_out: int, g: Any, rest: tuple[Any, ...]) -> Any:
    if isinstance(g, dict):  # a dict subclass: same as a dict, slower
        return _walk(f, n_out, dict(g), tuple(dict(o) if isinstance(o, dict) else o for o in rest))
    if isinstance(g, (list, tuple)):
        for o in rest:
            if not isinstance(o, (list, tuple)) or len(o) != len(g):
                raise _Mismatch
        outs = [_walk(f, n_out, v, tuple([o[i] for o in rest])) for i, v in enumerate(g)]
        make = list if isinstance(g, list) else tuple
        if n_out == 0:
            return make(outs)
        return tuple(make(col) for col in (zip(*outs) if outs else [()] * n_out))
    if g is None:
        if any(o is not None for o in rest):
            raise _Mismatch
        return None if n_out == 0 else (None,) * n_out
    _check_leaf(g, *rest)
    return _call_leaf(f, n_out, g, rest)


def _call_leaf(f: Callable[..., Any], n_out: int, g: Any, rest: tuple[Any, ...]) -> Any:
    """``f(g, *rest)``; a 0-d array leaf is passed as a one-element 1-d array and its results come back
    0-d, so rule bodies may use in-place ufuncs (for a 0-d array, ``v / c`` is a NumPy scalar, which
    ``out=`` refuses) and every result leaf is an array."""
    if not isinstance(g, (_ndarray, np.generic)) or g.ndim:
        return f(g, *rest)
    out = f(g.reshape(1), *[np.reshape(o, 1) for o in rest])
    if n_out == 0:
        return np.reshape(out, ())
    return tuple([np.reshape(o, ()) for o in out])


_FIX_GRADS = ("Pass gradients of these params (fl.value_and_grad returns them) and a state made by this "
              "optimizer's init.")


def _explain(name: str, got: PyTree, trees: tuple[PyTree, ...], labels: tuple[str, ...],
             what: str = "grads", fix: str = _FIX_GRADS) -> Exception:
    """The error for a ``got`` tree that differs from one of ``trees``, naming the first path."""
    for expected, label in zip(trees, labels):
        try:
            _tree.tree_assert_same_structure(expected, got)
        except _tree.TreeMismatchError as err:
            return _tree.TreeMismatchError(f"{name}: {what} do not have the structure of {label}: {err} {fix}")
        for (path, a), b in zip(_tree.tree_flatten_with_path(expected)[0], _tree.tree_leaves(got)):
            if np.shape(a) != np.shape(b):
                return ValueError(f"{name}: the {what} leaf at path '{path}' has shape {np.shape(b)}, but "
                                  f"{label} has shape {np.shape(a)} there. {what.capitalize()} must have "
                                  "exactly the shapes of the params; nothing is broadcast.")
            if _dtype(a) != _dtype(b):
                return TypeError(f"{name}: the {what} leaf at path '{path}' has dtype {_dtype(b)}, but "
                                 f"{label} has dtype {_dtype(a)} there. {what.capitalize()} must have the "
                                 f"params' dtype: cast them (e.g. g.astype(np.{_dtype(a)})), or create the "
                                 "params in the dtype you want.")
    return _tree.TreeMismatchError(f"{name}: {what} do not match {', '.join(labels)}.")  # pragma: no cover


def map_leaves(name: str, f: Callable[..., Any], grads: PyTree, *trees: PyTree, params: PyTree = None,
               labels: tuple[str, ...] = (), n_out: int = 0) -> Any:
    """Lift a per-array rule to trees: ``f(g, *tree_leaves[, p])`` on every leaf of ``grads``.

    This is how every rule in ``fnlearn.optim`` is written: the body works on one array, and this
    function walks the trees once, checking on the way that every tree has the structure and leaf
    shapes of ``grads``.

    Args:
        name: the caller, e.g. ``"adam.update"``, used in error messages.
        f: the per-array rule. Called as ``f(g, *leaves)``, plus the params leaf as the last argument
            when ``params`` is not None.
        grads: the gradient tree; its structure is the structure of the results.
        *trees: trees with the structure and leaf shapes of ``grads`` (e.g. Adam's moments).
        params: the parameter tree, or None.
        labels: a name for each tree in ``trees``, used in error messages.
        n_out: 0 when ``f`` returns one array; otherwise ``f`` returns a tuple of ``n_out`` arrays and
            the result is a tuple of ``n_out`` trees.

    Returns:
        A tree shaped like ``grads`` (``n_out=0``), or a tuple of ``n_out`` such trees.

    Raises:
        TreeMismatchError: naming the first path at which a tree differs from ``grads``.
        ValueError: naming the path of a leaf whose shape differs.

    Example:
        >>> import numpy as np
        >>> g, m = {"w": np.ones(2)}, {"w": np.zeros(2)}
        >>> u, m = map_leaves("demo", lambda g, m: (-g, 0.9 * m + g), g, m, n_out=2)
        >>> u["w"], m["w"]
        (array([-1., -1.]), array([1., 1.]))
    """
    rest = trees if params is None else (*trees, params)
    try:
        return _walk(f, n_out, grads, rest)
    except _Mismatch:
        names = labels if len(labels) == len(trees) else tuple(f"state tree {i}" for i in range(len(trees)))
        ordered = ((params,) if params is not None else ()) + trees
        raise _explain(name, grads, ordered, (("params",) if params is not None else ()) + names) from None


def moment_transform(name: str, keys: tuple[str, ...], leaf: Callable[..., Any],
                     init: Callable[[Params], OptState]) -> Optimizer:
    """A transform whose state is only per-leaf moment trees ``{key: tree}``, one per entry of ``keys``.

    ``leaf(g, *moments, p=None) -> (u, *new_moments)`` is the per-array rule (moments in ``keys``
    order); ``update`` checks the state's keys, walks all trees once with :func:`map_leaves` and
    returns ``(updates, {key: new tree})``.
    """
    state_keys = frozenset(keys)
    labels = tuple(f"state['{k}']" for k in keys)

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state(f"{name}.update", state, state_keys)
        u, *moments = map_leaves(f"{name}.update", leaf, grads, *[state[k] for k in keys], params=params,
                                 labels=labels, n_out=len(keys) + 1)
        return u, dict(zip(keys, moments))

    return Optimizer(init, update)


def _add_leaf(p: Any, u: Any) -> Any:
    return p + u


def apply_updates(params: Params, updates: Updates) -> Params:
    """Return ``params + updates``, leaf by leaf: one addition per leaf.

    Args:
        params: a tree of arrays.
        updates: a tree with the structure, leaf shapes and dtypes of ``params`` (from ``update``).

    Returns:
        A new tree; ``params`` is not modified.

    Raises:
        TreeMismatchError / ValueError / TypeError: naming the first path at which ``updates`` differs
            in structure, shape or dtype (nothing is broadcast or cast silently).

    Example:
        >>> import numpy as np
        >>> apply_updates({"b": np.zeros(2, np.float32)}, {"b": np.array([1.0, -1.0], np.float32)})["b"]
        array([ 1., -1.], dtype=float32)
    """
    try:
        return _walk(_add_leaf, 0, params, (updates,))
    except _Mismatch:
        raise _explain("apply_updates", updates, (params,), ("params",), what="updates",
                       fix="Pass the updates that an optimizer's update returned for these params.") from None


def is_optimizer(obj: Any) -> bool:
    """Whether ``obj`` is an ``(init, update)`` pair of functions, as every rule returns."""
    return isinstance(obj, tuple) and len(obj) == 2 and callable(obj[0]) and callable(obj[1])


def chain(*transforms: Optimizer) -> Optimizer:
    """Compose transformations: each one's updates are the next one's input.

    Extra keyword arguments of ``update`` (``value=loss`` for :func:`polyak_sgd` or
    :func:`reduce_on_plateau`) go to the transforms whose ``update`` takes them; one that none takes is
    a TypeError.

    Args:
        *transforms: :class:`Optimizer` pairs, applied left to right.

    Returns:
        An :class:`Optimizer` whose state is ``{"0": state_0, "1": state_1, ...}``.

    Example:
        >>> import numpy as np
        >>> from fnlearn import optim
        >>> opt = optim.chain(optim.sgd(0.5), optim.sgd(0.2))
        >>> state = opt.init({"w": np.zeros(2)})
        >>> opt.update({"w": np.array([3.0, 4.0])}, state)[0]["w"]
        array([0.3, 0.4])
    """
    for i, t in enumerate(transforms):
        if not is_optimizer(t):
            raise TypeError(f"chain: argument {i} must be an Optimizer(init, update), got "
                            f"{type(t).__name__}. Call the constructor, e.g. optim.scale(-0.1).")

    state_keys = {str(i) for i in range(len(transforms))}

    def init(params: Params) -> OptState:
        return {str(i): t.init(params) for i, t in enumerate(transforms)}

    takes = [_extra_keywords(t.update) for t in transforms]

    def update(grads: Updates, state: OptState, params: Params = None, **extra: Any) -> tuple[Updates, OptState]:
        if not isinstance(state, dict) or state.keys() != state_keys:
            got = f"keys {sorted(map(str, state))}" if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"chain.update: expected the state made by this chain's init (a dict with "
                             f"keys {sorted(state_keys)}), got {got}.")
        new_state = {}
        if not extra:  # the usual case
            for i, t in enumerate(transforms):
                grads, new_state[str(i)] = t.update(grads, state[str(i)], params)
            return grads, new_state
        unknown = [k for k in extra if not any(names is None or k in names for names in takes)]
        if unknown:
            raise TypeError(f"chain.update: no transform in this chain takes the keyword argument(s) {unknown}; "
                            "extra keywords such as value=loss go to the transforms that take them "
                            "(polyak_sgd, reduce_on_plateau).")
        for i, (t, names) in enumerate(zip(transforms, takes)):
            kwargs = {k: v for k, v in extra.items() if names is None or k in names}
            grads, new_state[str(i)] = t.update(grads, state[str(i)], params, **kwargs)
        return grads, new_state

    scalars = [scalar_rule(t) for t in transforms]
    if scalars and all(s is not None for s in scalars):
        def scalar(state: OptState) -> tuple[float, OptState]:
            if not isinstance(state, dict) or state.keys() != state_keys:
                update({}, state)  # raises the error update raises
            factor, new_state = 1.0, {}
            for i, rule in enumerate(scalars):
                f, new_state[str(i)] = rule(state[str(i)])  # type: ignore[misc]
                factor *= f
            return factor, new_state

        declare_scalar(update, scalar)
    return Optimizer(init, update)


def _extra_keywords(update: Callable[..., Any]) -> frozenset[str] | None:
    """The keyword arguments ``update`` takes beyond ``(grads, state, params)`` (e.g. ``value``); None when
    it takes any (``**kwargs``)."""
    try:
        parameters = list(inspect.signature(update).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature: no extras
        return frozenset()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(p.name for p in parameters[3:] if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))


_SCALAR_ATTR = "fnlearn_scalar_rule"


def declare_scalar(update: Callable[..., Any], rule: Callable[[OptState], tuple[float, OptState]]) -> None:
    """Declare that ``update``'s updates are a number times the gradients (see :func:`scalar_rule`).

    ``rule(state) -> (factor, new_state)`` must promise ``update(grads, state, params) == (factor *
    grads, new_state)`` for every ``grads``. The declaration is tied to this very function, so a
    wrapper that copies its attributes (``functools.wraps``) does not inherit it.
    """
    setattr(update, _SCALAR_ATTR, (update, rule))


def scalar_rule(optimizer: Optimizer) -> Callable[[OptState], tuple[float, OptState]] | None:
    """The optimizer's *scalar rule*, or None: set when its updates are a number times the gradients.

    A rule is declared with :func:`declare_scalar`: ``rule(state) -> (factor, new_state)`` promises
    that ``update(grads, state, params)`` equals ``(factor * grads, new_state)`` for every ``grads``
    (``sgd`` without momentum or weight decay, ``scale``, ``scale_by_learning_rate``,
    ``scale_by_schedule``, ``identity``, and chains of them declare it). :func:`fnlearn.train_step`
    then multiplies the loss gradient by ``factor`` before the backward pass, which is the same because
    VJPs are linear in their cotangent, and saves a pass over every parameter.

    Example:
        >>> from fnlearn import optim
        >>> rule = scalar_rule(optim.sgd(0.1))
        >>> rule({"count": 0})
        (-0.1, {'count': 1})
        >>> scalar_rule(optim.adam(0.1)) is None
        True
    """
    update = optimizer.update
    declared = getattr(update, _SCALAR_ATTR, None)
    if type(declared) is tuple and len(declared) == 2 and declared[0] is update and callable(declared[1]):
        return declared[1]
    return None


def check_hyper(fn: str, name: str, value: Any, *, low: float = 0.0, high: float = float("inf"),
                schedule_ok: bool = False) -> Any:
    """Validate a hyperparameter: a real number in ``[low, high]`` (or a schedule when allowed).

    Returns the value as a Python float (so it never upcasts a float32 array), or the schedule.
    """
    if schedule_ok and callable(value):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        kind = "a number or a schedule (a function of the step count)" if schedule_ok else "a number"
        raise TypeError(f"{fn}: {name} must be {kind}, got {value!r}.") from None
    if not low <= number <= high:
        raise ValueError(f"{fn}: {name} must be in [{low}, {high}], got {number}.")
    return number


def check_learning_rate(fn: str, value: Any, name: str = "learning_rate") -> Any:
    """A learning rate: any finite real number (a negative one ascends) or a schedule."""
    return check_hyper(fn, name, value, low=-float("inf"), schedule_ok=True)


def resolve(value: Any, count: int) -> float:
    """The value of a hyperparameter at step ``count``: the schedule's output for a schedule, checked.

    Raises:
        TypeError: the schedule returned something that is not a real number (e.g. a string).
        ValueError: the schedule returned NaN or an infinity.
    """
    if not callable(value):
        return value
    out = value(count)
    if type(out) is float and out - out == 0.0:  # the usual case: a finite Python float
        return out
    try:
        if isinstance(out, (str, bytes, bool, np.bool_)) or np.size(out) != 1:
            raise TypeError
        number = float(out)
    except (TypeError, ValueError):
        raise TypeError(f"the schedule {getattr(value, '__name__', repr(value))} returned {out!r} at step "
                        f"count {count}; a schedule must return a real number.") from None
    if not math.isfinite(number):
        raise ValueError(f"the schedule {getattr(value, '__name__', repr(value))} returned {number} at step "
                         f"count {count}; a hyperparameter must be finite. Check the schedule's arguments.")
    return number


def named_chain(*transforms: tuple[str, Optimizer]) -> Optimizer:
    """Like :func:`chain`, with the state keyed by the given names instead of ``"0"``, ``"1"``, ...

    Args:
        *transforms: ``(name, Optimizer)`` pairs, applied left to right; names must be distinct.

    Returns:
        An :class:`Optimizer` whose state is ``{name: state, ...}``.

    Example:
        >>> import numpy as np
        >>> from fnlearn import optim
        >>> opt = named_chain(("trace", optim.trace(0.9)), ("lr", optim.scale_by_learning_rate(0.1)))
        >>> sorted(opt.init({"w": np.zeros(2)}))
        ['lr', 'trace']
    """
    names = [name for name, _ in transforms]
    if len(set(names)) != len(names) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"named_chain: the names must be distinct strings, got {names}.")
    inner = chain(*(t for _, t in transforms))

    def init(params: Params) -> OptState:
        return dict(zip(names, inner.init(params).values()))

    def update(grads: Updates, state: OptState, params: Params = None, **extra: Any) -> tuple[Updates, OptState]:
        if not isinstance(state, dict) or state.keys() != set(names):
            raise ValueError(f"named_chain.update: expected the state made by this chain's init (a dict "
                             f"with keys {names}), got {type(state).__name__}"
                             f"{' with keys ' + str(list(state)) if isinstance(state, dict) else ''}.")
        updates, new = inner.update(grads, {str(i): state[n] for i, n in enumerate(names)}, params, **extra)
        return updates, dict(zip(names, new.values()))

    inner_rule = scalar_rule(inner)
    if inner_rule is not None:
        def scalar(state: OptState) -> tuple[float, OptState]:
            if not isinstance(state, dict) or state.keys() != set(names):
                update({}, state)  # raises the error update raises
            factor, new = inner_rule({str(i): state[n] for i, n in enumerate(names)})
            return factor, dict(zip(names, new.values()))

        declare_scalar(update, scalar)
    return Optimizer(init, update)


def check_state(name: str, state: Any, keys: frozenset[str]) -> None:
    """Raise a ValueError unless ``state`` is a dict with exactly ``keys`` (a state made by this init)."""
    if type(state) is not dict or state.keys() != keys:
        got = f"a dict with keys {sorted(map(str, state))}" if isinstance(state, dict) else repr(type(state).__name__)
        raise ValueError(f"{name}: the state was not made by this optimizer's init: expected a dict with "
                         f"keys {sorted(keys)}, got {got}. Pass the state that init (or the previous "
                         "update) returned for this optimizer.")

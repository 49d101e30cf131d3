"""Combinators: build layers out of layers (``serial``, ``parallel``, fan-out and fan-in).

Output shapes are found by evaluation (see :func:`eval_shape`): ``serial.init`` initialises child ``i``,
applies it to a one-example batch of zeros, and passes the resulting shape and dtype on to child
``i + 1``. Multi-input and multi-output layers use tuples of arrays; their shapes are tuples of shapes.

An error raised inside a child is re-raised with the child's position and name in front, e.g.
``serial layer 2 ('2', Dense(10)): Dense(10): expected x of shape (batch, ..., 128) ...``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
from numpy.typing import DTypeLike

from . import _checks
from ._stateful import State, StatefulLayer, bind_state, is_stateful
from ._types import FUSIONS, LAYER_KINDS, POOL_WINDOWS, Array, Layer, Params, Shape, resolve_dtype

__all__ = ["serial", "parallel", "FanOut", "FanInSum", "FanInConcat", "eval_shape"]


def _is_multi(shape: Any) -> bool:
    return isinstance(shape, (tuple, list)) and len(shape) > 0 and isinstance(shape[0], (tuple, list))


def _example(shape: Any, dtype: Any) -> Any:
    if _is_multi(shape):
        dtypes = dtype if isinstance(dtype, (tuple, list)) else [dtype] * len(shape)
        return tuple(_example(s, d) for s, d in zip(shape, dtypes))
    shape = _checks.input_shape("eval_shape", shape)
    return np.zeros((1,) + shape[1:], dtype=dtype)


def _spec(y: Any, batch: Any) -> tuple[Any, Any]:
    if isinstance(y, (tuple, list)):
        specs = [_spec(v, b) for v, b in zip(y, batch if isinstance(batch, list) else [batch] * len(y))]
        return tuple(s for s, _ in specs), tuple(d for _, d in specs)
    return (batch,) + tuple(y.shape[1:]), y.dtype


def _batch_of(shape: Any) -> Any:
    return _batch_of(shape[0]) if _is_multi(shape) else shape[0]


def eval_shape(apply: Any, params: Params, input_shape: Any, *, dtype: DTypeLike = None) -> tuple[Any, Any]:
    """The output shape and dtype of ``apply`` for inputs of ``input_shape``, by evaluation.

    Applies ``apply`` to a one-example batch of zeros (``train=False``) and puts the batch entry of
    ``input_shape`` (which may be -1) back in front. For multi-input layers ``input_shape`` is a tuple
    of shapes (and ``dtype`` may be a tuple of dtypes); multi-output layers give tuples back.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> layer = fl.Dense(10)
        >>> params = layer.init(np.random.default_rng(0), (-1, 784))
        >>> fl.eval_shape(layer.apply, params, (-1, 784))
        ((-1, 10), dtype('float32'))
    """
    dt = resolve_dtype(None) if dtype is None else dtype
    y, _ = apply(params, _example(input_shape, dt), rng=None, train=False)
    return _spec(y, _batch_of(input_shape))


def _init_kwargs(dtype: DTypeLike) -> dict[str, Any]:
    return {} if dtype is None else {"dtype": dtype}


def _child_error(kind: str, i: int, key: str, layer: Layer, err: Exception) -> Exception:
    where = f"{kind} layer {i} ('{key}', {_layer_name(layer)})"
    try:
        return type(err)(f"{where}: {err}")
    except Exception:  # an exception type whose constructor takes other arguments
        return err


def _layer_name(layer: Layer) -> str:
    """The layer's name for an error message; a long combinator name shortened to ``serial(...)``."""
    name = getattr(layer.apply, "__qualname__", "layer").split(".<locals>")[0]
    name = name[:-len(".apply")] if name.endswith(".apply") else name
    return name[:name.index("(")] + "(...)" if len(name) > 60 and "(" in name else name


def _describe(kind: str, apply: Any, pairs: list[tuple[str, Any]], named: bool) -> Any:
    """Name a combinator's ``apply`` after its children (``serial(Dense(32), Relu())``, see
    ``Layer.__repr__``) and record them as ``apply.children`` for :func:`fnlearn.summary`."""
    inner = [repr(layer) for _, layer in pairs] + ([f"names={[k for k, _ in pairs]}"] if named else [])
    apply.children = tuple(pairs)
    apply.combinator = kind
    return _checks.named(apply, f"{kind}({', '.join(inner)})")


def _check_children(kind: str, params: Params, keys: Sequence[str]) -> None:
    if type(params) is not dict or len(params) != len(keys) or any(k not in params for k in keys):
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f"{kind}: expected params with keys {list(keys)} (one per child layer), got "
                         f"{got}. Were these params initialised for another model?")


def _is_named_pair(item: Any) -> bool:
    return type(item) is tuple and len(item) == 2 and isinstance(item[0], str) and isinstance(item[1], tuple)


def _pairs(kind: str, items: Sequence[Any], names: Sequence[str] | None) -> tuple[list[tuple[str, Any]], bool]:
    """``(key, layer)`` per child and whether any name was given: children are layers or
    ``(name, layer)`` pairs; ``names=`` names them all."""
    given = [_is_named_pair(item) for item in items]
    if any(given):
        if names is not None:
            raise ValueError(f"{kind}: name the children either with (name, layer) pairs or with "
                             "names=, not both.")
        names = [item[0] if g else str(i) for i, (item, g) in enumerate(zip(items, given))]
        items = [item[1] if g else item for item, g in zip(items, given)]
    return list(zip(_keys(kind, items, names), items)), names is not None


def _keys(kind: str, layers: Sequence[Layer], names: Sequence[str] | None) -> list[str]:
    for i, layer in enumerate(layers):
        if not isinstance(layer, tuple) or len(layer) != 2 or not all(map(callable, layer)):
            raise TypeError(f"{kind}: argument {i} must be a Layer (init, apply), got "
                            f"{type(layer).__name__}. Did you forget to call a constructor, e.g. "
                            "fl.Relu() instead of fl.Relu?")
    if names is None:
        return [str(i) for i in range(len(layers))]
    keys = [str(n) for n in names]
    if len(keys) != len(layers) or len(set(keys)) != len(keys) or any("/" in k for k in keys):
        raise ValueError(f"{kind}: names must give one unique name without '/' per layer "
                         f"({len(layers)} layers), got {list(names)}.")
    return keys


def serial(*layers: Layer | tuple[str, Layer], names: Sequence[str] | None = None) -> Layer:
    """Compose layers in sequence: ``y = layers[-1](...layers[1](layers[0](x)))``.

    Args:
        *layers: the child layers, in order; a ``(name, layer)`` pair names its child.
        names: optional names for all children instead. Names key ``params`` (default ``"0"``,
            ``"1"``, ...), so they are the paths in errors, checkpoints and :func:`fnlearn.summary`
            (``"res1/conv/w"`` rather than ``"1/0/w"``).

    ``repr(serial(Dense(32), Relu()))`` is ``serial(Dense(32), Relu())``.

    ``init(rng, input_shape, *, dtype=None, input_dtype=None)``: ``input_dtype`` is the dtype of the
    model's input when it differs from the parameter dtype (integer token ids, say). ``apply`` passes
    ``rng`` (split with ``rng.spawn``) and ``train`` to every child. The VJP of the whole model skips the
    first child's input cotangent when called with ``compute_dx=False``. A ``Relu()`` directly followed
    by ``MaxPool2D`` runs after the pooling, on the pooled entries: the same output and gradients
    (``_execution_order``). A ``Conv2D`` directly followed by a ``Relu()`` (and a ``MaxPool2D(2)``)
    runs them fused into its own passes: the same output and gradients, up to rounding (bit for bit
    but for the bias gradient's sum, except im2col with pooling; ``_plan``).

    If any child is a :class:`fnlearn.StatefulLayer` (e.g. :func:`fnlearn.BatchNorm`), the result is a
    ``StatefulLayer`` too: ``init`` returns ``(params, state)`` with ``state`` keyed like ``params``
    (``{}`` for stateless children) and ``apply(params, state, x, *, rng=None, train=False)`` returns
    ``(y, new_state, vjp_fn)``. Without stateful children nothing changes.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> model = fl.serial(fl.Dense(4), fl.Relu(), fl.Dense(2))
        >>> params = model.init(np.random.default_rng(0), (-1, 3))
        >>> sorted(params), params["2"]["w"].shape
        (['0', '1', '2'], (4, 2))
        >>> y, vjp = model.apply(params, np.ones((5, 3), np.float32))
        >>> dparams, dx = vjp(np.ones_like(y), compute_dx=False)
        >>> y.shape, dparams["0"]["w"].shape, dx
        ((5, 2), (3, 4), None)
    """
    pairs, named = _pairs("serial", layers, names)
    keys = [key for key, _ in pairs]
    if any(is_stateful(layer) for _, layer in pairs):
        return _serial_with_state(pairs, named)

    def init(rng: np.random.Generator, input_shape: Shape, *, dtype: DTypeLike = None,
             input_dtype: DTypeLike = None) -> Params:
        params: dict[str, Params] = {}
        shape, in_dtype = input_shape, (resolve_dtype(dtype, "serial") if input_dtype is None else input_dtype)
        for i, ((key, layer), child_rng) in enumerate(zip(pairs, _checks.generator("serial", rng).spawn(len(pairs)))):
            try:
                params[key] = layer.init(child_rng, shape, **_init_kwargs(dtype))
                shape, in_dtype = eval_shape(layer.apply, params[key], shape, dtype=in_dtype)
            except (ValueError, TypeError) as err:
                raise _child_error("serial", i, key, layer, err) from err
        return params

    key_set = frozenset(keys)
    plan = _plan(pairs)

    def apply(params: Params, x: Array, *, rng: np.random.Generator | None = None, train: bool = False):
        if type(params) is not dict or params.keys() != key_set:
            _check_children("serial", params, keys)
        rngs = rng.spawn(len(pairs)) if rng is not None else [None] * len(pairs)
        steps: list[tuple[tuple[int, ...], int, Callable[..., Any]]] = []  # (children, the last to run, VJP)
        for members, order in plan:
            fused = _run_fused(pairs, members, order[-1], params, x) if len(members) > 1 else None
            if fused is not None:
                x, vjp_i = fused
                steps.append((members, order[-1], vjp_i))
                continue
            for i in order:
                key, layer = pairs[i]
                try:
                    x, vjp_i = layer.apply(params[key], x, rng=rngs[i], train=train)
                except (ValueError, TypeError) as err:
                    raise _child_error("serial", i, key, layer, err) from err
                steps.append(((i,), i, vjp_i))

        def vjp(dy: Array, *, compute_dx: bool = True) -> tuple[Params, Any]:
            grads: dict[str, Params] = {}
            for j in range(len(steps) - 1, -1, -1):
                members, last, vjp_j = steps[j]  # dy: the output cotangent of ``last`` (as run one by one)
                try:  # only the step that ran first may skip its input cotangent
                    step_grads, dy = (vjp_j(dy) if compute_dx or j
                                      else _checks.call_vjp(vjp_j, dy, False))
                except (ValueError, TypeError) as err:
                    raise _child_error("serial", last, pairs[last][0], pairs[last][1], err) from err
                grads[pairs[members[0]][0]] = step_grads
                for i in members[1:]:  # fused Relu and MaxPool2D: no parameters
                    grads[pairs[i][0]] = {}
            return {k: grads[k] for k in keys}, (dy if compute_dx else None)

        return x, vjp

    return Layer(init, _describe("serial", apply, pairs, named))


def _execution_order(pairs: list[tuple[str, Any]]) -> list[int]:
    """The order in which ``serial`` runs its children: their own, except that a Relu directly followed
    by MaxPool2D runs after it. Max pooling commutes with ReLU (``max(relu(a), relu(b)) =
    relu(max(a, b))``, ReLU being non-decreasing), so pooling first gives the same output with ReLU
    (and its VJP) on the pooled entries only (a quarter of them for 2x2 windows; on PyTorch's MNIST
    example network 5% of the step at one thread, 4% at two). The gradients agree too: where a
    window's maximum is positive both orders send the cotangent to the same entry (ReLU keeps positive
    values and their ties), and where it is not both give zeros (ReLU's derivative at 0 is 0); with
    overlapping windows a zero may change its sign. Only a window that holds a NaN (whose output is
    NaN either way) may send its cotangent elsewhere. The layers are recognised by their ``apply``
    functions themselves (``fnlearn._types.LAYER_KINDS``): a wrapped layer is never reordered. (The
    orders of :func:`_plan`'s steps, one after the other.)"""
    return [i for _, order in _plan(pairs) for i in order]


def _plan(pairs: list[tuple[str, Any]]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """How ``serial`` runs its children: a list of steps ``(members, order)``, ``members`` being
    consecutive children in their own order and ``order`` the order they run in one by one.

    A Conv2D directly followed by a Relu, and the MaxPool2D after them if one follows, are a step that
    runs fused when it can (:func:`_run_fused`): 2x2 pooling with stride 2 and the ReLU run on each
    chunk of the convolution's output while it is in cache (with Winograd, on its 4x4 output blocks),
    so the full-size output is never laid out, nor its cotangent (on PyTorch's MNIST example network,
    the passes of ReLU's forward pass and VJP over the first convolution's output and of laying out
    and pooling the second's; docs/perf.md). The output, the input cotangent and the kernel gradient
    are bit for bit those of the layers one by one in ``order``, and the bias gradient the same sum in
    another order; except with im2col and pooling, which runs its products over smaller chunks (the
    output stays in cache until pooled) that OpenBLAS may round differently: there all agree to
    rounding. Errors in the VJP name the child that runs last one by one (the Relu). When a step
    cannot fuse (other pooling windows, an output with no window, parameters where none belong), its
    children run one by one, in ``order`` (:func:`_execution_order`)."""
    kinds = [LAYER_KINDS.get(layer.apply) for _, layer in pairs]
    plan, i = [], 0
    while i < len(pairs):
        if FUSIONS.get(pairs[i][1].apply) is not None and kinds[i + 1:i + 3] == ["relu", "max_pool"]:
            plan.append(((i, i + 1, i + 2), (i, i + 2, i + 1)))  # one by one: the ReLU after the pooling
        elif FUSIONS.get(pairs[i][1].apply) is not None and kinds[i + 1:i + 2] == ["relu"]:
            plan.append(((i, i + 1), (i, i + 1)))
        elif kinds[i:i + 2] == ["relu", "max_pool"]:
            plan.append(((i, i + 1), (i + 1, i)))
        else:
            plan.append(((i,), (i,)))
        i += len(plan[-1][0])
    return plan


def _run_fused(pairs: list[tuple[str, Any]], members: tuple[int, ...], last: int, params: Params,
               x: Any) -> tuple[Any, Callable[..., Any]] | None:
    """The output and VJP of a fused step of :func:`_plan`, or None when it cannot run fused. The VJP's
    cotangent errors speak as child ``last`` would, the one that runs last one by one (its own name)."""
    fused = FUSIONS.get(pairs[members[0]][1].apply)
    if fused is None or any(type(p := params[pairs[i][0]]) is not dict or p for i in members[1:]):
        return None  # (the children one by one then say what is wrong with their parameters)
    pool = len(members) == 3 and _is_2x2_pool(pairs[members[2]][1])
    if len(members) == 3 and not pool:
        return None
    key, layer = pairs[members[0]]
    try:
        return fused(params[key], x, pool, pairs[last][1].apply.__qualname__.removesuffix(".apply"))
    except (ValueError, TypeError) as err:
        raise _child_error("serial", members[0], key, layer, err) from err


def _is_2x2_pool(layer: Any) -> bool:
    """Whether ``layer`` is fnlearn's MaxPool2D with 2x2 windows, stride 2 and no padding."""
    window, stride, padding = POOL_WINDOWS.get(layer.apply, (None, None, None))
    return window == stride == (2, 2) and padding in ("valid", (0, 0))


def _serial_with_state(pairs: list[tuple[str, Any]], named: bool) -> StatefulLayer:
    """``serial`` when some children are stateful: ``state`` is threaded through, keyed like params."""
    keys = [key for key, _ in pairs]
    stateful = [is_stateful(layer) for _, layer in pairs]

    def init(rng: np.random.Generator, input_shape: Shape, *, dtype: DTypeLike = None,
             input_dtype: DTypeLike = None) -> tuple[Params, State]:
        params: dict[str, Params] = {}
        state: dict[str, State] = {}
        shape, in_dtype = input_shape, (resolve_dtype(dtype, "serial") if input_dtype is None else input_dtype)
        for i, ((key, layer), child_rng) in enumerate(zip(pairs, _checks.generator("serial", rng).spawn(len(pairs)))):
            try:
                if stateful[i]:
                    params[key], state[key] = layer.init(child_rng, shape, **_init_kwargs(dtype))
                    child_apply = bind_state(layer, state[key]).apply
                else:
                    params[key], state[key] = layer.init(child_rng, shape, **_init_kwargs(dtype)), {}
                    child_apply = layer.apply
                shape, in_dtype = eval_shape(child_apply, params[key], shape, dtype=in_dtype)
            except (ValueError, TypeError) as err:
                raise _child_error("serial", i, key, layer, err) from err
        return params, state

    def apply(params: Params, state: State, x: Array, *, rng: np.random.Generator | None = None,
              train: bool = False):
        _check_children("serial", params, keys)
        if type(state) is not dict or len(state) != len(keys) or any(k not in state for k in keys):
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"serial: expected a state with keys {keys} (one per child layer, from "
                             f"init), got {got}. Pass the state that init or the last step returned.")
        rngs = rng.spawn(len(pairs)) if rng is not None else [None] * len(pairs)
        vjps, new_state = [], {}
        for i, (key, layer) in enumerate(pairs):
            try:
                if stateful[i]:
                    x, new_state[key], vjp_i = layer.apply(params[key], state[key], x, rng=rngs[i],
                                                           train=train)
                else:
                    x, vjp_i = layer.apply(params[key], x, rng=rngs[i], train=train)
                    new_state[key] = state[key]
            except (ValueError, TypeError) as err:
                raise _child_error("serial", i, key, layer, err) from err
            vjps.append(vjp_i)
        if all(new_state[k] is state[k] for k in keys):
            new_state = state

        def vjp(dy: Array, *, compute_dx: bool = True) -> tuple[Params, Any]:
            grads: dict[str, Params] = {}
            for i in range(len(pairs) - 1, -1, -1):
                try:
                    grads[keys[i]], dy = _checks.call_vjp(vjps[i], dy, compute_dx or i > 0)
                except (ValueError, TypeError) as err:
                    raise _child_error("serial", i, keys[i], pairs[i][1], err) from err
            return {k: grads[k] for k in keys}, (dy if compute_dx else None)

        return x, new_state, vjp

    return StatefulLayer(init, _describe("serial", apply, pairs, named))


def parallel(*layers: Layer | tuple[str, Layer], names: Sequence[str] | None = None) -> Layer:
    """Apply layer ``i`` to input ``i``: a tuple of ``n`` arrays in, a tuple of ``n`` arrays out.

    ``input_shape`` is a tuple of ``n`` shapes. Use it between :func:`FanOut` and a fan-in layer.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> model = fl.serial(fl.FanOut(2), fl.parallel(fl.Dense(3), fl.Identity()), fl.FanInConcat())
        >>> params = model.init(np.random.default_rng(0), (-1, 2))
        >>> model.apply(params, np.ones((4, 2), np.float32))[0].shape
        (4, 5)
    """
    pairs, named = _pairs("parallel", layers, names)
    keys = [key for key, _ in pairs]
    if any(is_stateful(layer) for _, layer in pairs):
        raise TypeError("parallel: stateful children (e.g. BatchNorm) are not supported; put them in "
                        "a serial before FanOut or after the fan-in layer.")

    def init(rng: np.random.Generator, input_shape: Any, *, dtype: DTypeLike = None) -> Params:
        if not _is_multi(input_shape) or len(input_shape) != len(pairs):
            raise ValueError(f"parallel: expected input_shape to be a tuple of {len(pairs)} shapes, "
                             f"got {input_shape!r}.")
        params = {}
        for i, ((key, layer), r, s) in enumerate(zip(pairs, _checks.generator("parallel", rng).spawn(len(pairs)), input_shape)):
            try:
                params[key] = layer.init(r, s, **_init_kwargs(dtype))
            except (ValueError, TypeError) as err:
                raise _child_error("parallel", i, key, layer, err) from err
        return params

    def apply(params: Params, xs: Any, *, rng: np.random.Generator | None = None, train: bool = False):
        _check_children("parallel", params, keys)
        if not isinstance(xs, (tuple, list)) or len(xs) != len(pairs):
            raise ValueError(f"parallel: expected a tuple of {len(pairs)} input arrays, got "
                             f"{type(xs).__name__}{f' of length {len(xs)}' if isinstance(xs, (tuple, list)) else ''}.")
        rngs = rng.spawn(len(pairs)) if rng is not None else [None] * len(pairs)
        outs, vjps = [], []
        for i, (key, layer) in enumerate(pairs):
            try:
                y, v = layer.apply(params[key], xs[i], rng=rngs[i], train=train)
            except (ValueError, TypeError) as err:
                raise _child_error("parallel", i, key, layer, err) from err
            outs.append(y)
            vjps.append(v)

        def vjp(dys: Any, *, compute_dx: bool = True) -> tuple[Params, Any]:
            if not isinstance(dys, (tuple, list)) or len(dys) != len(pairs):
                raise ValueError(f"parallel: the cotangent must be a tuple of {len(pairs)} arrays.")
            res = [_checks.call_vjp(v, dy, compute_dx) for v, dy in zip(vjps, dys)]
            return {k: r[0] for k, r in zip(keys, res)}, (tuple(r[1] for r in res) if compute_dx else None)

        return tuple(outs), vjp

    return Layer(init, _describe("parallel", apply, pairs, named))


def _no_param_init(name: str):
    def init(rng: np.random.Generator, input_shape: Any, *, dtype: DTypeLike = None) -> Params:
        return {}
    return init


def FanOut(num: int) -> Layer:
    """Copy the input into a tuple of ``num`` arrays; the VJP sums the cotangents.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> len(fl.FanOut(3).apply({}, np.ones((1, 2)))[0])
        3
    """
    if not isinstance(num, (int, np.integer)) or num < 1:
        raise ValueError(f"FanOut: num must be a positive int, got {num!r}.")
    name = f"FanOut({num})"

    def apply(params: Params, x: Array, *, rng: Any = None, train: bool = False):
        _checks.no_params(name, params)
        _checks.float_array(name, x)

        def vjp(dys: Any, *, compute_dx: bool = True):
            if not isinstance(dys, (tuple, list)) or len(dys) != num:
                raise ValueError(f"{name}: the cotangent must be a tuple of {num} arrays.")
            for dy in dys:
                _checks.cotangent(name, dy, x.shape, x.dtype)
            if not compute_dx:
                return {}, None
            total = dys[0].copy()
            for dy in dys[1:]:
                total += dy
            return {}, total

        return tuple(x.copy() for _ in range(num)), vjp

    return Layer(_no_param_init(name), _checks.named(apply, name))


def _fan_in_inputs(name: str, xs: Any) -> tuple[Array, ...]:
    if not isinstance(xs, (tuple, list)) or len(xs) == 0:
        raise ValueError(f"{name}: expected a non-empty tuple of arrays (e.g. from FanOut and parallel), "
                         f"got {type(xs).__name__}.")
    for i, x in enumerate(xs):
        _checks.float_array(name, x, what=f"x[{i}]")
        if x.dtype != xs[0].dtype:
            raise TypeError(f"{name}: all inputs must share one dtype, got {xs[0].dtype} and "
                            f"{x.dtype} (input {i}).")
    return tuple(xs)


def FanInSum() -> Layer:
    """Sum a tuple of arrays of one shape; the VJP hands the cotangent to every input.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> fl.FanInSum().apply({}, (np.ones((1, 2)), np.ones((1, 2))))[0]
        array([[2., 2.]])
    """
    def apply(params: Params, xs: Any, *, rng: Any = None, train: bool = False):
        _checks.no_params("FanInSum", params)
        xs = _fan_in_inputs("FanInSum", xs)
        for i, x in enumerate(xs):
            if x.shape != xs[0].shape:
                raise ValueError(f"FanInSum: all inputs must have one shape, got {xs[0].shape} and "
                                 f"{x.shape} (input {i}); nothing is broadcast.")
        y = xs[0].copy()
        for x in xs[1:]:
            y += x

        def vjp(dy: Array, *, compute_dx: bool = True):
            _checks.cotangent("FanInSum", dy, y.shape, y.dtype)
            return {}, (tuple(dy.copy() for _ in xs) if compute_dx else None)

        return y, vjp

    return Layer(_no_param_init("FanInSum"), _checks.named(apply, "FanInSum"))


def FanInConcat(axis: int = -1) -> Layer:
    """Concatenate a tuple of arrays along ``axis`` (not the batch axis); the VJP splits the cotangent.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> fl.FanInConcat().apply({}, (np.ones((1, 2)), np.zeros((1, 1))))[0]
        array([[1., 1., 0.]])
    """
    name = f"FanInConcat(axis={axis})"

    def apply(params: Params, xs: Any, *, rng: Any = None, train: bool = False):
        _checks.no_params(name, params)
        xs = _fan_in_inputs(name, xs)
        ax = axis % xs[0].ndim if xs[0].ndim else 0
        if ax == 0:
            raise ValueError(f"{name}: cannot concatenate along the batch axis 0.")
        try:
            y = np.concatenate(xs, axis=ax)
        except ValueError as err:
            raise ValueError(f"{name}: inputs of shapes {[x.shape for x in xs]} do not fit together "
                             f"along axis {axis}: {err}") from None
        cuts = np.cumsum([x.shape[ax] for x in xs])[:-1]

        def vjp(dy: Array, *, compute_dx: bool = True):
            _checks.cotangent(name, dy, y.shape, y.dtype)
            if not compute_dx:
                return {}, None
            return {}, tuple(part.copy() for part in np.split(dy, cuts, axis=ax))

        return y, vjp

    return Layer(_no_param_init(name), _checks.named(apply, name))

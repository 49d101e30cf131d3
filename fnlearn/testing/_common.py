"""Machinery shared by the checkers: calling a layer, naming the leaves of ``(params, x)``, casting.

The leaves of ``params`` are named by their tree paths (``"w"``, ``"0/w"``); the input is ``"x"`` (or
``"x/0"``, ``"x/1"`` for a tuple of inputs).
"""

from __future__ import annotations

import copy
import inspect
from typing import Any, Callable

import numpy as np

from .. import tree
from ._report import GradCheckError, GradCheckReport

FLOAT64 = np.dtype(np.float64)


def is_float(a: Any) -> bool:
    return np.asarray(a).dtype.kind == "f"


def fresh_rng(rng: Any) -> np.random.Generator | None:
    """A new Generator in the same state every call: from a seed, a SeedSequence or a Generator."""
    if rng is None:
        return None
    if isinstance(rng, np.random.Generator):
        return copy.deepcopy(rng)
    return np.random.default_rng(rng)


def func_name(fn: Any) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
    return name.replace(".<locals>", "")


def call_apply(apply: Callable[..., Any], params: Any, x: Any, rng: Any, train: bool) -> tuple[Any, Any]:
    """``apply(params, x)``, passing ``rng`` (fresh each call) and ``train`` only when they are set."""
    kwargs: dict[str, Any] = {}
    if rng is not None:
        kwargs["rng"] = fresh_rng(rng)
    if train:
        kwargs["train"] = True
    out = apply(params, x, **kwargs)
    if not (isinstance(out, tuple) and len(out) == 2 and callable(out[1])):
        raise TypeError(f"{func_name(apply)} must return a pair (y, vjp_fn) as fnlearn layers do "
                        f"(see fnlearn._types), got {type(out).__name__}.")
    return out


def accepts_compute_dx(vjp_fn: Any) -> bool:
    try:
        sig = inspect.signature(vjp_fn)
    except (TypeError, ValueError):
        return False
    return any(p.name == "compute_dx" or p.kind is p.VAR_KEYWORD for p in sig.parameters.values())


def call_vjp(vjp_fn: Any, dy: Any, name: str, compute_dx: bool = True) -> tuple[Any, Any]:
    out = vjp_fn(dy) if compute_dx else vjp_fn(dy, compute_dx=False)
    if not (isinstance(out, tuple) and len(out) == 2):
        fail("cotangent structure", name, f"vjp_fn must return a pair (dparams, dx), got "
             f"{type(out).__name__}")
    return out


def fail(check: str, name: str, summary: str, lines: tuple[tuple[str, str], ...] = (),
         **fields: Any) -> None:
    """Raise :class:`GradCheckError` with a report made of a sentence and some evidence lines."""
    raise GradCheckError(GradCheckReport(check=check, name=name, passed=False, summary=summary,
                                         lines=lines, **fields))


def cast_tree(t: Any, dtype: Any) -> Any:
    """``t`` with every float leaf cast to ``dtype`` (new arrays; other leaves as they are)."""
    return tree.tree_map(lambda a: np.asarray(a, dtype=dtype) if is_float(a) else np.asarray(a), t)


def copy_tree(t: Any) -> Any:
    return tree.tree_map(lambda a: np.array(a, copy=True), t)


def readonly_tree(t: Any) -> Any:
    """A copy of ``t`` whose arrays refuse writes (an in-place update raises where it happens)."""
    def freeze(a: Any) -> Any:
        a = np.array(a, copy=True)
        a.flags.writeable = False
        return a
    return tree.tree_map(freeze, t)


def gaussian_like(rng: np.random.Generator, t: Any) -> Any:
    """A tree shaped like ``t`` with standard normal entries in each leaf's dtype."""
    return tree.tree_map(lambda a: rng.standard_normal(np.shape(a)).astype(np.asarray(a).dtype), t)


def flat_output(y: Any) -> np.ndarray:
    """All leaves of ``y`` raveled and joined into one float64 vector."""
    parts = [np.asarray(a, dtype=FLOAT64).ravel() for a in tree.tree_leaves(y)]
    return np.concatenate(parts) if parts else np.zeros(0)


def is_tree_node(x: Any) -> bool:
    return x is None or isinstance(x, (dict, list, tuple))


class Primal:
    """``(params, x)`` as a list of named leaves that can be rebuilt with some leaves replaced."""

    def __init__(self, params: Any, x: Any, input_name: str = "x"):
        named, self.pdef = tree.tree_flatten_with_path(params)
        if is_tree_node(x):
            xnamed, self.xdef = tree.tree_flatten_with_path(x)
            xnamed = [(f"{input_name}/{p}", v) for p, v in xnamed]
        else:
            xnamed, self.xdef = [(input_name, x)], None
        self.n_params = len(named)
        self.paths = [p for p, _ in named + xnamed]
        self.values = [np.asarray(v) for _, v in named + xnamed]

    def build(self, values: list[np.ndarray] | None = None) -> tuple[Any, Any]:
        values = self.values if values is None else values
        params = tree.tree_unflatten(self.pdef, values[:self.n_params])
        xs = values[self.n_params:]
        return params, (xs[0] if self.xdef is None else tree.tree_unflatten(self.xdef, xs))

    def replaced(self, i: int, value: np.ndarray) -> tuple[Any, Any]:
        values = list(self.values)
        values[i] = value
        return self.build(values)

    def cast(self, dtype: Any) -> "Primal":
        new = copy.copy(self)
        new.values = [v.astype(dtype) if v.dtype.kind == "f" else v for v in self.values]
        return new

    def float_indices(self) -> list[int]:
        return [i for i, v in enumerate(self.values) if v.dtype.kind == "f"]

    def described(self) -> list[tuple[str, np.ndarray]]:
        return list(zip(self.paths, self.values))


Problem = tuple[str, str]
"""``(leaf path, sentence)``: one thing wrong with a cotangent."""


def _walk(primal: Any, ct: Any, path: str, out: list[tuple[str, Any, Any]], problems: list[Problem]) -> None:
    if isinstance(primal, dict):
        if not isinstance(ct, dict) or set(ct) != set(primal):
            odd = sorted(map(str, set(primal) ^ set(ct))) if isinstance(ct, dict) else []
            where = f"{path}/{odd[0]}" if path and odd else (odd[0] if odd else path)
            problems.append((where, f"at '{path or '<root>'}' expected a dict with keys "
                                    f"{sorted(map(str, primal))}, got {_kind(ct)}"))
            return
        for k, v in primal.items():
            _walk(v, ct[k], f"{path}/{k}" if path else str(k), out, problems)
    elif isinstance(primal, (list, tuple)):
        if not isinstance(ct, (list, tuple)) or len(ct) != len(primal):
            problems.append((path, f"at '{path or '<root>'}' expected a {type(primal).__name__} of "
                                   f"length {len(primal)}, got {_kind(ct)}"))
            return
        for i, (v, c) in enumerate(zip(primal, ct)):
            _walk(v, c, f"{path}/{i}" if path else str(i), out, problems)
    elif primal is not None:
        out.append((path, primal, ct))


def _kind(node: Any) -> str:
    if isinstance(node, dict):
        return f"a dict with keys {sorted(map(str, node))}"
    if isinstance(node, (list, tuple)):
        return f"a {type(node).__name__} of length {len(node)}"
    return "None" if node is None else f"a {type(node).__name__}"


def match_cotangents(primal: Primal, dparams: Any, dx: Any, *, compute_dx: bool = True,
                     dtypes: bool = True) -> tuple[list[Any], list[Problem]]:
    """The cotangent leaf for each primal leaf (in ``primal.paths`` order), and a list of problems.

    A float leaf needs an array of its shape (and, with ``dtypes``, its dtype); an integer input leaf
    needs ``None``; with ``compute_dx=False`` the whole ``dx`` must be ``None``.
    """
    problems: list[Problem] = []
    params, x = primal.build()
    pairs: list[tuple[str, Any, Any]] = []
    _walk(params, dparams, "", pairs, problems)
    if compute_dx and any(is_float(v) for v in primal.values[primal.n_params:]):
        if primal.xdef is not None:
            _walk(x, dx, "x", pairs, problems)
        else:
            pairs.append(("x", x, dx))
    else:
        if dx is not None:
            why = "compute_dx=False was passed" if not compute_dx else "x is not a float array"
            problems.append(("x", f"dx must be None because {why}, got {_kind(dx)}"))
    if problems:
        return [], problems
    cts = []
    for path, p, c in pairs:
        cts.append(c)
        problems += _leaf_problems(path, np.asarray(p), c, len(cts) > primal.n_params, dtypes)
    return cts + [None] * (len(primal.paths) - len(cts)), problems


def _leaf_problems(path: str, p: np.ndarray, c: Any, is_input: bool, dtypes: bool) -> list[Problem]:
    if p.dtype.kind != "f":
        if is_input and c is not None:
            return [(path, f"{path} is {p.dtype} (not differentiated), so its cotangent must be None, "
                           f"got {_kind(c)}")]
        return []
    if not isinstance(c, np.ndarray):
        return [(path, f"{path}: expected an array of shape {p.shape} and dtype {p.dtype}, got {_kind(c)}")]
    if c.shape != p.shape:
        return [(path, f"{path}: expected shape {p.shape}, got {c.shape}")]
    if dtypes and c.dtype != p.dtype:
        return [(path, f"{path}: expected dtype {p.dtype} (the dtype of the primal), got {c.dtype}")]
    return []


def _perturbed(t: Any, rng: np.random.Generator, rel: float) -> Any:
    """``t`` with each float entry moved by a relative ``rel * U(-1, 1)`` (kept in its dtype)."""
    def move(a: Any) -> Any:
        a = np.asarray(a)
        return (a * (1.0 + rel * rng.uniform(-1.0, 1.0, a.shape))).astype(a.dtype) if a.dtype.kind == "f" else a
    return tree.tree_map(move, t)


def rounding_noise(evaluate: Callable[[Any, Any, Any], dict[str, np.ndarray]], params: Any, x: Any,
                   dy: Any, seed: Any, *, safety: float = 4.0) -> dict[str, np.ndarray]:
    """An entry-wise estimate of the rounding error of ``evaluate`` at ``(params, x, dy)``.

    The rounding error at a float32 point is ``E = evaluate(point) - evaluate(float64 copy)``. It
    changes erratically from a point to its neighbours, while the exact result, and any systematic
    mistake, changes smoothly (and cancels in ``E``). So the estimate is ``safety * max |E(nb) - E(point)|``
    over neighbours moved by relative amounts of a few units of roundoff, 1e-3, 1e-2 and 1e-1 (the
    larger moves change roundings that the smaller ones leave alone: for LayerNorm over two features,
    1 - xhat**2 is about 1e-5 and its float32 rounding stays put under moves of 1e-2; without the
    1e-1 move, 4 of 200 seeds drew too small a floor at one such point). A systematic float32 error
    of 2e-4 of the result is still caught (tests/test_testing_mutants.py). This covers the cancellation that a
    tolerance relative to the result misses: LayerNorm over two features or BatchNorm over two
    examples have a tiny exact cotangent made of terms that are not tiny. For a float64 point there is
    no more precise reference: ``E`` is the result itself, moved by 4, 16 and 64 units of roundoff
    (with two moves of 4 units, one LayerNorm point over two features drew a floor of zero at an entry
    whose rounding error was 5e-16 for 2% of seeds; with these three, for none of 200).

    Args:
        evaluate: ``(params, x, dy) -> {path: array}``, computing in the dtype of its arguments.
        seed: seeds the neighbours.
    """
    dtypes = [np.asarray(a).dtype for a in tree.tree_leaves((params, x, dy)) if is_float(a)]
    native64 = all(d == FLOAT64 for d in dtypes)

    def error(p: Any, xx: Any, d: Any) -> dict[str, np.ndarray]:
        out = {key: np.asarray(v, dtype=FLOAT64) for key, v in evaluate(p, xx, d).items()}
        if native64:
            return out
        ref = evaluate(cast_tree(p, FLOAT64), cast_tree(xx, FLOAT64), cast_tree(d, FLOAT64))
        return {key: v - np.asarray(ref[key], dtype=FLOAT64) for key, v in out.items()}

    eps = max((float(np.finfo(d).eps) for d in dtypes), default=0.0)
    moves = (4 * eps, 16 * eps, 64 * eps) if native64 else (4 * eps, 1e-3, 1e-2, 1e-1)
    base = error(params, x, dy)
    worst = {key: np.zeros(np.shape(v)) for key, v in base.items()}
    rng = np.random.default_rng(seed)
    for rel in moves:
        moved = error(*(_perturbed(t, rng, rel) for t in (params, x, dy)))
        for key, v in base.items():
            spread = np.abs(moved[key] - v)
            worst[key] = np.maximum(worst[key], np.where(np.isfinite(spread), spread, 0.0))
    return {key: safety * w for key, w in worst.items()}

"""The properties :func:`check_layer` tests beyond the adjoint identity (GRADCHECK.md 9.7).

Each property is a function of a :class:`Case` that returns a passed :class:`GradCheckReport`, raises
:class:`GradCheckError` with the evidence, or raises :class:`Skip` with the reason it does not apply.
Comparisons that should hold up to rounding use a tolerance relative to the largest entry of the leaf
(robust to entries near zero); the batch properties run in float64 so that their tolerance is tight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from .. import tree
from ._common import (FLOAT64, Primal, accepts_compute_dx, call_apply, call_vjp, cast_tree, copy_tree,
                      fail, gaussian_like, match_cotangents, readonly_tree, rounding_noise)
from ._report import GradCheckReport

FLOAT32 = np.dtype(np.float32)


class Skip(Exception):
    """The property does not apply to this layer; the message says why."""


@dataclass
class Case:
    """A layer at one point: what every property needs."""

    apply: Callable[..., Any]
    name: str
    params: Any
    x: Any
    rng: Any = None
    train: bool = False
    seed: int = 0

    def call(self, params: Any = None, x: Any = None) -> tuple[Any, Any]:
        return call_apply(self.apply, self.params if params is None else params,
                          self.x if x is None else x, self.rng, self.train)

    def cotangent(self, y: Any, k: int = 0) -> Any:
        return gaussian_like(np.random.default_rng([self.seed, 7919, k]), y)

    def vjp(self, vjp_fn: Any, dy: Any, compute_dx: bool = True) -> tuple[Any, Any]:
        return call_vjp(vjp_fn, dy, self.name, compute_dx)

    def named_cts(self, params: Any, x: Any, cts: tuple[Any, Any],
                  compute_dx: bool = True) -> dict[str, np.ndarray]:
        """The float cotangent leaves, keyed by the path of their primal leaf ("w", "x", ...)."""
        leaves, problems = match_cotangents(Primal(params, x), *cts, compute_dx=compute_dx, dtypes=False)
        if problems:
            fail("cotangent structure", self.name, "the cotangents returned by vjp_fn do not match "
                 "(params, x)", tuple(("problem", t) for _, t in problems), path=problems[0][0])
        paths = Primal(params, x).paths
        return {p: np.asarray(c) for p, c in zip(paths, leaves) if c is not None}

    def noise(self, params: Any, x: Any, dy: Any, salt: int = 0) -> dict[str, np.ndarray]:
        """Rounding-error estimates (see ``rounding_noise``) of y and of each cotangent at a point."""
        def evaluate(p: Any, xx: Any, d: Any) -> dict[str, np.ndarray]:
            y, vjp_fn = self.call(p, xx)
            return {**named_outputs(y), **self.named_cts(p, xx, self.vjp(vjp_fn, d))}
        return rounding_noise(evaluate, params, x, dy, [self.seed, 31, salt])

    def passed(self, check: str, summary: str = "") -> GradCheckReport:
        return GradCheckReport(check=check, name=self.name, passed=True, summary=summary)


def named_outputs(y: Any, prefix: str = "y") -> dict[str, np.ndarray]:
    return {prefix if not p else f"{prefix}/{p}": np.asarray(a) for p, a in tree.tree_flatten_with_path(y)[0]}


def compare(check: str, case: Case, got: dict[str, np.ndarray], want: dict[str, np.ndarray],
            rtol: float, summary: str, *, exact: bool = False,
            noise: dict[str, np.ndarray] | None = None) -> None:
    """Fail ``check`` at the first leaf where ``got`` and ``want`` differ beyond ``rtol * max|leaf|``
    (plus the entry-wise rounding floor ``noise[path]`` when given)."""
    for path, w in want.items():
        g = got[path]
        if g.shape != w.shape:
            fail(check, case.name, summary, (("leaf", f"{path}: shape {g.shape} vs {w.shape}"),), path=path)
        if g.size == 0:
            continue
        err = np.abs(g.astype(FLOAT64) - w.astype(FLOAT64))
        tol = 0.0 if exact else rtol * max(float(np.max(np.abs(w))), float(np.max(np.abs(g))), 1e-300)
        if noise is not None and path in noise:
            tol = tol + noise[path]
        if exact and np.array_equal(g, w, equal_nan=True):
            continue
        if not np.all(err <= tol):
            excess = np.where(np.isnan(err), np.inf, err - tol)
            j = np.unravel_index(int(np.argmax(excess)), w.shape)
            tol = np.broadcast_to(tol, w.shape)[j]
            bad = int(np.sum(~(err <= tol)))
            fail(check, case.name, summary, (
                ("leaf", f"{path} {w.shape} {w.dtype}; {bad} of {w.size} entries differ"),
                ("worst", f"at {tuple(int(i) for i in j)}: got {float(g[j]):+.8g}, expected "
                          f"{float(w[j]):+.8g} (|diff| {err[j]:.2e} > tol {tol:.2e}"
                          f"{'' if exact else f' = {rtol:.0e} x max|leaf|'})")), path=path)


def floats_in(t: Any) -> Iterator[np.ndarray]:
    return (np.asarray(a) for a in tree.tree_leaves(t) if np.asarray(a).dtype.kind == "f")


# ---------------------------------------------------------------------------------- properties


def structure(case: Case) -> GradCheckReport:
    """``vjp`` returns ``(dparams, dx)`` shaped and typed like ``(params, x)``; same with compute_dx=False."""
    y, vjp_fn = case.call()
    dy = case.cotangent(y)
    primal = Primal(case.params, case.x)
    for compute_dx in (True, False) if accepts_compute_dx(vjp_fn) else (True,):
        cts = case.vjp(vjp_fn, dy, compute_dx)
        _, problems = match_cotangents(primal, *cts, compute_dx=compute_dx)
        if problems:
            fail("cotangent structure", case.name, "the cotangents returned by vjp_fn do not match "
                 f"(params, x){'' if compute_dx else ' with compute_dx=False'}",
                 tuple(("problem", text) for _, text in problems), path=problems[0][0])
        if compute_dx:
            full = case.named_cts(case.params, case.x, cts)
        else:
            partial = case.named_cts(case.params, case.x, cts, compute_dx=False)
            full = {p: v for p, v in full.items() if p in partial}
            compare("cotangent structure", case, partial, full, 10 * np.finfo(FLOAT64).eps,
                    "compute_dx=False changes dparams")
    return case.passed("cotangent structure")


def dtypes(case: Case) -> GradCheckReport:
    """float32 in gives float32 out (y, dparams, dx); float64 stays float64."""
    if not any(True for _ in floats_in((case.params, case.x))):
        raise Skip("no float parameters or inputs")
    for dt in (FLOAT32, FLOAT64):
        params, x = cast_tree(case.params, dt), cast_tree(case.x, dt)
        y, vjp_fn = case.call(params, x)
        for path, leaf in named_outputs(y).items():
            if leaf.dtype.kind == "f" and leaf.dtype != dt:
                fail("dtypes", case.name, f"a {dt} point gives a {leaf.dtype} output {path}: the layer "
                     f"changes the precision", (("fix", "keep computations in the input's dtype (a "
                     "float64 constant array or np.float64 scalar upcasts float32)"),), path=path)
        cts = case.vjp(vjp_fn, gaussian_like(np.random.default_rng(case.seed), y))
        _, problems = match_cotangents(Primal(params, x), *cts)
        if problems:
            fail("dtypes", case.name, f"at a {dt} point the cotangents have the wrong dtype or shape",
                 tuple(("problem", text) for _, text in problems), path=problems[0][0])
    return case.passed("dtypes")


def linearity(case: Case) -> GradCheckReport:
    """``vjp(a u + b w) == a vjp(u) + b vjp(w)`` up to rounding."""
    y, vjp_fn = case.call()
    u, w = case.cotangent(y, 1), case.cotangent(y, 2)
    a, b = np.random.default_rng([case.seed, 3]).standard_normal(2)
    mix = tree.tree_map(lambda p, q: (a * p.astype(FLOAT64) + b * q.astype(FLOAT64)).astype(p.dtype), u, w)
    gu, gw, gm = (case.named_cts(case.params, case.x, case.vjp(vjp_fn, c)) for c in (u, w, mix))
    want = {p: a * gu[p].astype(FLOAT64) + b * gw[p].astype(FLOAT64) for p in gm}
    eps = max((float(np.finfo(v.dtype).eps) for v in gm.values()), default=0.0)
    floors = [case.noise(case.params, case.x, c, k) for k, c in enumerate((u, w, mix))]
    noise = {p: abs(a) * floors[0][p] + abs(b) * floors[1][p] + floors[2][p] for p in gm}
    compare("linearity", case, gm, want, 1000 * eps, noise=noise, summary=(
            f"the VJP is not linear in the cotangent: vjp(a*u + b*w) != a*vjp(u) + b*vjp(w) "
            f"(a = {a:.3f}, b = {b:.3f})"))
    return case.passed("linearity")


def zero_cotangent(case: Case) -> GradCheckReport:
    """``vjp(0)`` is exactly zero."""
    y, vjp_fn = case.call()
    cts = case.named_cts(case.params, case.x, case.vjp(vjp_fn, tree.tree_map(np.zeros_like, y)))
    compare("zero cotangent", case, cts, {p: np.zeros_like(v) for p, v in cts.items()}, 0.0,
            "vjp(0) is not exactly zero: the VJP adds a term that does not scale with the cotangent",
            exact=True)
    return case.passed("zero cotangent")


def determinism(case: Case) -> GradCheckReport:
    """Same arguments, same results (bitwise); an old vjp_fn is unaffected by later calls of apply."""
    y1, vjp1 = case.call()
    y2, _ = case.call()
    compare("determinism", case, named_outputs(y2), named_outputs(y1), 0.0,
            "apply gave different outputs on two calls with the same arguments", exact=True)
    dy = case.cotangent(y1)
    first = case.named_cts(case.params, case.x, case.vjp(vjp1, dy))
    again = case.named_cts(case.params, case.x, case.vjp(vjp1, dy))
    compare("determinism", case, again, first, 0.0, "vjp_fn gave different results on two calls with "
            "the same cotangent", exact=True)
    other_params = tree.tree_map(lambda a: a * 0.5 + 0.25 if a.dtype.kind == "f" else a, copy_tree(case.params))
    other_x = tree.tree_map(lambda a: a * 0.5 - 0.25 if a.dtype.kind == "f" else a, copy_tree(case.x))
    y3, vjp3 = case.call(other_params, other_x)
    case.vjp(vjp3, case.cotangent(y3, 5))
    later = case.named_cts(case.params, case.x, case.vjp(vjp1, dy))
    compare("determinism", case, later, first, 0.0, "the vjp_fn of an earlier call changed after "
            "another call of apply: it reads shared mutable state (a cache) instead of closing over "
            "its own residuals", exact=True)
    return case.passed("determinism")


def _inputs(case: Case, params: Any, x: Any, dy: Any) -> dict[str, np.ndarray]:
    named = dict(zip(Primal(params, x).paths, Primal(params, x).values))
    named.update(named_outputs(dy, "dy"))
    return named


def _run(case: Case, params: Any, x: Any, dy: Any) -> tuple[Any, tuple[Any, Any]]:
    y, vjp_fn = case.call(params, x)
    return y, case.vjp(vjp_fn, dy)


def mutation(case: Case) -> GradCheckReport:
    """Neither apply nor vjp_fn writes into params, x or the cotangent (read-only inputs, then copies)."""
    dy = case.cotangent(case.call()[0])
    params, x, dy_w = copy_tree(case.params), copy_tree(case.x), copy_tree(dy)
    before = {k: v.copy() for k, v in _inputs(case, params, x, dy_w).items()}
    leaf_ids = [id(v) for v in tree.tree_leaves(params)]
    _run(case, params, x, dy_w)
    after = _inputs(case, params, x, dy_w)
    if [id(v) for v in tree.tree_leaves(params)] != leaf_ids or after.keys() != before.keys():
        fail("mutation", case.name, "the layer changed the params tree itself (replaced or added "
             "entries); build a new dict instead", path="params")
    for path, old in before.items():
        if not np.array_equal(after[path], old, equal_nan=True):
            fail("mutation", case.name, f"the layer writes into {path} in place",
                 (("fix", "compute into new arrays (y = x * m, not x *= m; dy = dy / 2, not dy /= 2)"),),
                 path=path)
    try:
        _run(case, readonly_tree(params), readonly_tree(x), readonly_tree(dy_w))
    except ValueError as err:
        if "read-only" not in str(err):
            raise
        path = _culprit(case, params, x, dy_w)
        fail("mutation", case.name, f"the layer writes into {path} in place (it raised on a read-only "
             "array, even though the values it wrote were the same)", (("error", str(err)),), path=path)
    return case.passed("mutation")


def _culprit(case: Case, params: Any, x: Any, dy: Any) -> str:
    """The first input (params leaf, x or dy) whose being read-only makes the layer raise."""
    groups = [(p, readonly_tree(params) if p == "params" else params,
               readonly_tree(x) if p == "x" else x, readonly_tree(dy) if p == "dy" else dy)
              for p in ("params", "x", "dy")]
    for path, p, xx, d in groups:
        try:
            _run(case, p, xx, d)
        except ValueError as err:
            if "read-only" in str(err):
                return path
    return "an input"


def aliasing(case: Case) -> GradCheckReport:
    """No output (y, dparams, dx) shares memory with an input or another output, or with a second call."""
    params, x = copy_tree(case.params), copy_tree(case.x)
    y, vjp_fn = case.call(params, x)
    dy = case.cotangent(y)
    inputs = _inputs(case, params, x, dy)
    first = case.named_cts(params, x, case.vjp(vjp_fn, dy))
    outputs = {**named_outputs(y), **{f"vjp[{p}]": v for p, v in first.items()}}
    second = case.named_cts(params, x, case.vjp(vjp_fn, dy))
    pairs = [(o, i, inputs[i]) for o in outputs for i in inputs]
    names = list(outputs)
    pairs += [(a, b, outputs[b]) for k, a in enumerate(names) for b in names[k + 1:]]
    pairs += [(f"vjp[{p}] (second call)", f"vjp[{q}] (first call)", first[q]) for p in second for q in first]
    everything = {**outputs, **{f"vjp[{p}] (second call)": v for p, v in second.items()}}
    for out, other, arr in pairs:
        if np.shares_memory(everything[out], arr):
            path = other if other in inputs else out
            fail("aliasing", case.name, f"{out} shares memory with {other}; a caller that updates one "
                 "in place would corrupt the other", (("fix", "return a new array (e.g. x.copy() or "
                 "x.reshape(...).copy())"),), path=path)
    return case.passed("aliasing")

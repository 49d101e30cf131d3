"""Batch properties (independence, additivity over splits, permutation) and float32/float64 agreement.

The batch properties run at the float64 copy of the point, so that a tolerance of ``1e-9`` relative to
the largest entry of each leaf separates rounding (different summation orders for different batch
sizes) from a real coupling of examples. Layers that mix examples on purpose (BatchNorm in training)
opt out with ``check_layer(..., batch_properties=False)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import tree
from ._common import FLOAT64, Primal, cast_tree
from ._properties import FLOAT32, Case, Skip, compare, named_outputs
from ._report import GradCheckReport

BATCH_RTOL = 1e-9
PRECISION_RTOL = 1e-4


def batch_size(x: Any) -> int:
    sizes = {np.shape(a)[0] for a in tree.tree_leaves(x) if np.ndim(a) > 0}
    if len(sizes) != 1:
        raise Skip(f"the inputs have no common batch axis (leading sizes {sorted(sizes)})")
    return sizes.pop()


def take(t: Any, index: Any) -> Any:
    return tree.tree_map(lambda a: np.asarray(a)[index], t)


def _float64_point(case: Case) -> tuple[Any, Any, int, set[str]]:
    params, x = cast_tree(case.params, FLOAT64), cast_tree(case.x, FLOAT64)
    primal = Primal(params, x)
    return params, x, batch_size(x), set(primal.paths[primal.n_params:])


def batch_independence(case: Case) -> GradCheckReport:
    """Each example's output depends on that example only; gradients add up over batch splits."""
    params, x, batch, xpaths = _float64_point(case)
    if batch < 2:
        raise Skip("the batch has a single example")
    y, vjp_fn = case.call(params, x)
    ys = named_outputs(y)
    for i in range(batch):
        alone = named_outputs(case.call(params, take(x, slice(i, i + 1)))[0])
        compare("batch independence", case, alone, {k: v[i:i + 1] for k, v in ys.items()}, BATCH_RTOL,
                f"example {i} gives a different output when applied alone: the layer mixes examples "
                "(pass batch_properties=False if it should)")
    dy = case.cotangent(y)
    row = case.seed % batch
    only_row = tree.tree_map(lambda a: np.where(np.arange(batch).reshape((-1,) + (1,) * (a.ndim - 1)) == row,
                                                a, 0.0), dy)
    dx = {p: v for p, v in case.named_cts(params, x, case.vjp(vjp_fn, only_row)).items() if p in xpaths}
    compare("batch independence", case, dx, {p: _rows_only(v, row) for p, v in dx.items()}, BATCH_RTOL,
            f"a cotangent that is zero outside example {row} gives an input cotangent that is not: the "
            "VJP mixes examples")
    _split_sums(case, params, x, dy, batch, xpaths)
    return case.passed("batch independence")


def _rows_only(v: np.ndarray, row: int) -> np.ndarray:
    out = np.zeros_like(v)
    out[row] = v[row]
    return out


def _split_sums(case: Case, params: Any, x: Any, dy: Any, batch: int, xpaths: set[str]) -> None:
    _, vjp_fn = case.call(params, x)
    whole = case.named_cts(params, x, case.vjp(vjp_fn, dy))
    k = batch // 2
    halves = []
    for part in (slice(0, k), slice(k, batch)):
        xs = take(x, part)
        _, vjp_part = case.call(params, xs)
        halves.append(case.named_cts(params, xs, case.vjp(vjp_part, take(dy, part))))
    want = {p: (np.concatenate([halves[0][p], halves[1][p]]) if p in xpaths else halves[0][p] + halves[1][p])
            for p in whole}
    compare("batch independence", case, whole, want, BATCH_RTOL,
            f"the gradients do not add up over a split of the batch: vjp on all {batch} examples != "
            f"vjp on the first {k} plus vjp on the other {batch - k}")


def batch_permutation(case: Case) -> GradCheckReport:
    """Permuting the examples permutes y and dx and leaves dparams unchanged."""
    params, x, batch, xpaths = _float64_point(case)
    if batch < 2:
        raise Skip("the batch has a single example")
    perm = np.random.default_rng([case.seed, 11]).permutation(batch)
    if np.array_equal(perm, np.arange(batch)):
        perm = np.roll(perm, 1)
    y, vjp_fn = case.call(params, x)
    xp = take(x, perm)
    yp, vjp_p = case.call(params, xp)
    summary = f"permuting the examples by {perm.tolist()} does not permute the results the same way"
    compare("batch permutation", case, named_outputs(yp), {k: v[perm] for k, v in named_outputs(y).items()},
            BATCH_RTOL, summary)
    dy = case.cotangent(y)
    g = case.named_cts(params, x, case.vjp(vjp_fn, dy))
    gp = case.named_cts(params, xp, case.vjp(vjp_p, take(dy, perm)))
    compare("batch permutation", case, gp, {p: (v[perm] if p in xpaths else v) for p, v in g.items()},
            BATCH_RTOL, summary)
    return case.passed("batch permutation")


def precision(case: Case) -> GradCheckReport:
    """At a float32 point, the float32 and float64 computations agree to float32 accuracy."""
    p32, x32 = cast_tree(case.params, FLOAT32), cast_tree(case.x, FLOAT32)
    if not any(np.asarray(a).dtype.kind == "f" for a in tree.tree_leaves((p32, x32))):
        raise Skip("no float parameters or inputs")
    p64, x64 = cast_tree(p32, FLOAT64), cast_tree(x32, FLOAT64)
    y32, vjp32 = case.call(p32, x32)
    y64, vjp64 = case.call(p64, x64)
    summary = ("the float32 and float64 computations disagree by more than float32 rounding (rtol "
               f"{PRECISION_RTOL:.0e} of the largest entry): an unstable float32 formula, a lost "
               "precision, or randomness that depends on the dtype")
    dy32 = case.cotangent(y32)
    noise = case.noise(p32, x32, dy32)
    compare("precision", case, named_outputs(y32), named_outputs(y64), PRECISION_RTOL, summary, noise=noise)
    got = case.named_cts(p32, x32, case.vjp(vjp32, dy32))
    want = case.named_cts(p64, x64, case.vjp(vjp64, cast_tree(dy32, FLOAT64)))
    compare("precision", case, got, want, PRECISION_RTOL, summary, noise=noise)
    return case.passed("precision")

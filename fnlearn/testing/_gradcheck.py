"""``check_vjp``: the adjoint identity, leaf by leaf, against finite differences in float64.

For each probe a Gaussian cotangent ``c`` (shaped like ``y``) gives ``g = vjp(c)``; for each leaf ``L``
(every float parameter and ``x``) a Gaussian tangent ``t`` gives the analytic ``a = <t, g[L]>`` and the
numeric ``n = <c, J t>``, where ``J t`` is a 5-point central difference of ``apply`` along ``t`` with
step ``h = cbrt(eps) * max(1, rms(L))``, computed in float64 from upcast copies of ``params`` and ``x``.
The check passes when ``|a - n| <= atol + rtol * scale + fd_noise`` with
``scale = max(sum|t * g[L]|, sum|c * J t|)`` (the size of the terms of the two dot products) and
``fd_noise`` the rounding floor of the finite difference. The five samples are also fitted by a
quadratic: a poor fit means a kink or tie within the step (``NonDifferentiablePoint``, or
``hypothesis.reject()`` inside a hypothesis test), never a gradient failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Collection, Literal

import numpy as np

from ._common import (FLOAT64, Primal, call_apply, call_vjp, fail, flat_output, func_name,
                      gaussian_like, match_cotangents, rounding_noise)
from ._kinks import handle_kink, kink_test
from ._report import (SETTINGS_VERSION, Drilldown, GradCheckError, GradCheckReport, LeafResult,
                      NonDifferentiablePoint, describe_point)

_DRILLDOWN_ROWS = 8


def default_rtol(dtype: np.dtype, native_fd: bool = False) -> float:
    """The default ``rtol`` of the adjoint check for a layer computing in ``dtype`` (GRADCHECK.md 9.3)."""
    if np.dtype(dtype) == FLOAT64:
        return 1e-5
    return 2e-3 if native_fd else 1e-4


def working_dtype(arrays: list[np.ndarray]) -> np.dtype:
    """The lowest-precision float dtype among ``arrays`` (float64 when there is none)."""
    floats = [a.dtype for a in arrays if a.dtype.kind == "f"]
    return min(floats, key=lambda d: d.itemsize) if floats else FLOAT64


@dataclass
class _Setup:
    apply: Callable[..., Any]
    name: str
    primal: Primal           # the point as given (analytic side)
    fd: Primal               # the point cast to fd_dtype (numeric side)
    rng: Any
    train: bool
    eps_rel: float
    fd_eps: float
    rtol: float
    atol: float
    kinks: str

    def output(self, i: int, value: np.ndarray) -> np.ndarray:
        # a perturbed leaf keeps its dtype (a float64 tangent must not turn a native float32 leaf into
        # float64 beside float32 ones)
        params, x = self.fd.replaced(i, np.asarray(value, dtype=self.fd.values[i].dtype))
        return flat_output(call_apply(self.apply, params, x, self.rng, self.train)[0])

    def step(self, i: int) -> float:
        v = self.fd.values[i]
        return self.eps_rel * max(1.0, float(np.sqrt(np.mean(np.square(v, dtype=FLOAT64)))))


def check_vjp(apply: Callable[..., Any], params: Any, x: Any, *, wrt: str | Collection[str] | None = None,
              probes: int = 2, rtol: float | None = None, atol: float = 0.0, seed: int = 0,
              fd_dtype: Literal["float64", "native"] = "float64",
              kinks: Literal["auto", "raise", "ignore"] = "auto", rng: Any = None, train: bool = False,
              eps: float | None = None, drilldown: Literal["auto", "never"] = "auto",
              drilldown_max: int = 512, name: str | None = None) -> GradCheckReport:
    """Check ``apply``'s VJP against finite differences, one leaf of ``(params, x)`` at a time.

    Args:
        apply: ``apply(params, x, *, rng=None, train=False) -> (y, vjp_fn)`` (the layer contract).
        params: a pytree of arrays (``{}`` for a parameterless layer).
        x: the input: an array (or a tuple of arrays); integer inputs are not differentiated and their
            cotangent must be ``None``.
        wrt: leaf paths to check ("w", "0/w", "x"; a path also selects the leaves below it); default
            every float leaf of ``params`` and ``x``.
        probes: how many random (cotangent, tangent) pairs to try.
        rtol, atol: tolerance ``atol + rtol * scale``; ``rtol`` defaults to 1e-5 for float64 layers
            and 1e-4 for float32 ones (2e-3 with ``fd_dtype="native"``).
        seed: seeds the cotangents and tangents.
        fd_dtype: "float64" (the layer must then compute in float64 for float64 inputs) or "native".
            When a "native" check of a float32 point fails but float64 differences pass, the error
            says that float32 finite differences are too coarse there (cancellation).
        kinks: "auto" rejects the example inside a hypothesis test and raises
            :class:`NonDifferentiablePoint` elsewhere; "raise" always raises; "ignore" skips the test.
        rng: for random layers, a seed: every call of ``apply`` gets a fresh
            ``np.random.default_rng(rng)``, so the noise is the same each time.
        train: passed to ``apply``.
        eps: the relative step; default ``cbrt(finfo(fd_dtype).eps)``.
        drilldown: "auto" compares a failing leaf entry by entry when it has at most
            ``drilldown_max`` entries; "never" skips that.
        name: the name used in messages (default: ``apply``'s qualified name).

    Returns:
        A passed :class:`GradCheckReport` listing every comparison.

    Raises:
        GradCheckError: a comparison failed, or the cotangents have the wrong structure, shape or dtype.
        NonDifferentiablePoint: a kink or tie lies within the step (see ``kinks``).

    Example:
        >>> import numpy as np
        >>> from fnlearn.testing import check_vjp
        >>> def apply(params, x, *, rng=None, train=False):
        ...     y = x * params["s"]
        ...     return y, lambda dy: ({"s": (dy * x).sum(axis=0)}, dy * params["s"])
        >>> params = {"s": np.array([1.5, -2.0])}
        >>> check_vjp(apply, params, np.ones((3, 2))).passed
        True
    """
    options = dict(wrt=wrt, probes=probes, rtol=rtol, atol=atol, seed=seed, rng=rng, train=train,
                   eps=eps, drilldown=drilldown, drilldown_max=drilldown_max, name=name)
    if fd_dtype == "native" and working_dtype(Primal(params, x).values) != FLOAT64:
        return _check_native(apply, params, x, kinks, options)
    return _check(apply, params, x, fd_dtype=fd_dtype, kinks=kinks, **options)


def _check_native(apply: Callable[..., Any], params: Any, x: Any, kinks: str,
                  options: dict[str, Any]) -> GradCheckReport:
    """``fd_dtype="native"`` on a float32 point; when it fails, see whether float64 differences agree.

    Float32 finite differences lose most digits to cancellation (``f(p + h t) - f(p - h t)`` of
    nearly equal float32 numbers), which shows as a poor quadratic fit (a "kink") or a disagreement.
    If the same check in float64 passes, say so instead of blaming the VJP or the point.
    """
    try:
        return _check(apply, params, x, fd_dtype="native", kinks="raise" if kinks == "auto" else kinks,
                      **options)
    except (GradCheckError, NonDifferentiablePoint) as err:
        try:
            _check(apply, params, x, fd_dtype="float64", kinks="raise", **options)
        except Exception:
            if isinstance(err, NonDifferentiablePoint) and kinks == "auto":
                return _check(apply, params, x, fd_dtype="native", kinks=kinks, **options)
            raise err from None
        what = "were not smooth along the step" if isinstance(err, NonDifferentiablePoint) else "disagreed with the VJP"
        fail("adjoint identity", options["name"] or func_name(apply),
             f"float32 finite differences are too coarse at this point: with fd_dtype='native' they "
             f"{what}, but the same check with float64 finite differences passes",
             (("cause", "the differences f(p + h t) - f(p - h t) of nearly equal float32 outputs lose "
                        "most of their digits (cancellation), so the numeric derivative is noise, not "
                        "evidence against the VJP"),
              ("fix", "use fd_dtype='float64' (the default): the finite differences then run on "
                      "float64 copies of params and x, and the float32 VJP is still what is checked"),
              ("native", str(err).splitlines()[0])))
        raise AssertionError("unreachable")  # pragma: no cover  (fail raises)


def _check(apply: Callable[..., Any], params: Any, x: Any, *, wrt: Any, probes: int, rtol: float | None,
           atol: float, seed: int, fd_dtype: str, kinks: str, rng: Any, train: bool, eps: float | None,
           drilldown: str, drilldown_max: int, name: str | None) -> GradCheckReport:
    setup, selected = _prepare(apply, params, x, wrt=wrt, rtol=rtol, atol=atol, fd_dtype=fd_dtype,
                               kinks=kinks, rng=rng, train=train, eps=eps, name=name)
    results, probe_data = _run_probes(setup, selected, seed, probes)
    kwargs = dict(name=setup.name, leaves=tuple(results), settings=_settings(setup, probes, seed, fd_dtype),
                  point=describe_point(setup.primal.described()))
    failed = [r for r in results if not r.passed]
    if not failed:
        return GradCheckReport(check="adjoint identity", passed=True, **kwargs)
    worst = max(failed, key=lambda r: r.factor)
    i = setup.primal.paths.index(worst.path)
    c, cts, tangents, noise = probe_data[worst.probe]
    _confirm_not_kink(setup, worst, i, tangents[i], c, cts[i], noise.get(i))
    table = (_drilldown(setup, i, c, cts[i])
             if drilldown == "auto" and int(np.prod(worst.shape)) <= drilldown_max else None)
    raise GradCheckError(GradCheckReport(
        check="adjoint identity", passed=False, failure=worst, drilldown=table, path=worst.path,
        summary=f"VJP disagrees with finite differences w.r.t. {worst.path} "
                f"(shape {worst.shape}, {worst.dtype})",
        reproduce=_reproduce(worst.path, seed, probes, rtol, atol, fd_dtype, rng, train), **kwargs))


def _run_probes(setup: _Setup, selected: list[int], seed: int, probes: int) -> tuple[list[LeafResult], list[Any]]:
    """Every (probe, leaf) comparison, and per probe what a drill-down needs (c, cotangents, t, noise)."""
    y, vjp_fn = call_apply(setup.apply, *setup.primal.build(), setup.rng, setup.train)
    _require_finite(setup.name, y, "the output y")
    results, probe_data = [], []
    for k, child in enumerate(np.random.SeedSequence(seed).spawn(probes)):
        prng = np.random.default_rng(child)
        c = gaussian_like(prng, y)
        cts = _cotangents(setup, vjp_fn, c)
        tangents = {i: prng.standard_normal(setup.primal.values[i].shape) for i in selected}
        noise = _vjp_noise(setup, c, [seed, k])
        probe_data.append((flat_output(c), cts, tangents, noise))
        results += [_probe_leaf(setup, i, k, tangents[i], flat_output(c), cts[i], noise=noise.get(i))
                    for i in selected]
    return results, probe_data


def _prepare(apply: Callable[..., Any], params: Any, x: Any, *, wrt: Any, rtol: float | None,
             atol: float, fd_dtype: str, kinks: str, rng: Any, train: bool, eps: float | None,
             name: str | None) -> tuple[_Setup, list[int]]:
    if kinks not in ("auto", "raise", "ignore"):
        raise ValueError(f"check_vjp: kinks must be 'auto', 'raise' or 'ignore', got {kinks!r}.")
    if fd_dtype not in ("float64", "native"):
        raise ValueError(f"check_vjp: fd_dtype must be 'float64' or 'native', got {fd_dtype!r}.")
    primal = Primal(params, x)
    fd = primal.cast(FLOAT64) if fd_dtype == "float64" else primal
    dtype = working_dtype(primal.values)
    fd_eps = float(np.finfo(FLOAT64 if fd_dtype == "float64" else dtype).eps)
    setup = _Setup(apply=apply, name=name or func_name(apply), primal=primal, fd=fd, rng=rng,
                   train=train, eps_rel=eps if eps is not None else float(np.cbrt(fd_eps)),
                   fd_eps=fd_eps, atol=float(atol), kinks=kinks,
                   rtol=rtol if rtol is not None else default_rtol(dtype, fd_dtype == "native"))
    return setup, select_leaves(primal, wrt, "check_vjp")


def select_leaves(primal: Primal, wrt: Any, who: str) -> list[int]:
    """Indices of the float leaves named by ``wrt`` (paths; a path also selects the leaves below it)."""
    floats = primal.float_indices()
    if wrt is None:
        return floats
    wanted = [wrt] if isinstance(wrt, str) else list(wrt)
    chosen: list[int] = []
    for w in wanted:
        hits = [i for i, p in enumerate(primal.paths) if p == w or p.startswith(f"{w}/")]
        if not hits:
            raise ValueError(f"{who}: wrt names '{w}', which is not a leaf path; the leaves are "
                             f"{primal.paths}.")
        bad = [primal.paths[i] for i in hits if i not in floats]
        if bad:
            raise ValueError(f"{who}: wrt names {bad}, which are not float arrays and cannot be "
                             "differentiated.")
        chosen += [i for i in hits if i not in chosen]
    return chosen


def _require_finite(name: str, y: Any, what: str) -> None:
    v = flat_output(y)
    if not np.all(np.isfinite(v)):
        fail("finite output", name, f"{what} is not finite at the given point "
             f"({int(np.sum(~np.isfinite(v)))} of {v.size} entries are NaN or inf); finite "
             "differences need a point where the function is finite")


def _cotangents(setup: _Setup, vjp_fn: Any, c: Any) -> list[Any]:
    dparams, dx = call_vjp(vjp_fn, c, setup.name)
    cts, problems = match_cotangents(setup.primal, dparams, dx)
    if problems:
        fail("cotangent structure", setup.name, "the cotangents returned by vjp_fn do not match "
             "(params, x)", tuple(("problem", text) for _, text in problems), path=problems[0][0])
    for path, ct in zip(setup.primal.paths, cts):
        if ct is not None:
            _require_finite(setup.name, ct, f"the cotangent of {path}")
    return cts


def _vjp_noise(setup: _Setup, c: Any, seed: Any) -> dict[int, np.ndarray]:
    """The rounding floor of each float leaf's analytic cotangent, by leaf index (see rounding_noise)."""
    floats = set(setup.primal.float_indices())

    def evaluate(params: Any, x: Any, dy: Any) -> dict[str, np.ndarray]:
        y, vjp_fn = call_apply(setup.apply, params, x, setup.rng, setup.train)
        leaves, _ = match_cotangents(Primal(params, x), *call_vjp(vjp_fn, dy, setup.name), dtypes=False)
        return {str(i): leaf for i, leaf in enumerate(leaves) if i in floats and leaf is not None}

    params, x = setup.primal.build()
    return {int(k): v for k, v in rounding_noise(evaluate, params, x, c, seed).items()}


def _probe_leaf(setup: _Setup, i: int, probe: int, t: np.ndarray, c: np.ndarray,
                g: np.ndarray, step: float | None = None, noise: np.ndarray | None = None) -> LeafResult:
    value = setup.fd.values[i]
    h = setup.step(i) if step is None else step
    if setup.kinks == "ignore":
        samples = np.stack([setup.output(i, value + s * h * t) for s in (-1, 1)])
        jt = (samples[1] - samples[0]) / (2 * h)
    else:
        samples = np.stack([setup.output(i, value + s * h * t) for s in (-1, -0.5, 0.0, 0.5, 1)])
        kink = kink_test(samples, setup.rtol, setup.fd_eps)
        if kink is not None:
            handle_kink(setup.kinks, setup.name, setup.primal.paths[i], h, kink, samples)
        jt = (samples[0] - 8 * samples[1] + 8 * samples[3] - samples[4]) / (6 * h)
    g64 = np.asarray(g, dtype=FLOAT64).ravel()
    t = t.ravel()
    peak = float(np.max(np.abs(samples), initial=0.0))
    return LeafResult(
        path=setup.primal.paths[i], shape=tuple(value.shape), dtype=str(setup.primal.values[i].dtype),
        probe=probe, analytic=float(t @ g64), numeric=float(c @ jt), rtol=setup.rtol, atol=setup.atol,
        scale=max(float(np.abs(t) @ np.abs(g64)), float(np.abs(c) @ np.abs(jt))),
        fd_noise=10 * setup.fd_eps * float(np.sum(np.abs(c))) * peak / h, step=h,
        vjp_noise=0.0 if noise is None else float(np.abs(t) @ np.ravel(noise)))


def _confirm_not_kink(setup: _Setup, worst: LeafResult, i: int, t: np.ndarray, c: np.ndarray,
                      g: np.ndarray, noise: np.ndarray | None = None) -> None:
    """Before blaming the VJP, check that the numeric side is stable when the step shrinks 8-fold.

    A smooth function gives the same ``n`` at both steps (to far below the tolerance); a kink or tie
    just inside the step does not.
    """
    if setup.kinks == "ignore":
        return
    fine = _probe_leaf(setup, i, worst.probe, t, c, g, step=worst.step / 8, noise=noise)
    if abs(fine.numeric - worst.numeric) > fine.tolerance:
        handle_kink(setup.kinks, setup.name, worst.path, worst.step, None, None,
                    note=f"the numeric derivative changes from {worst.numeric:+.6g} to "
                         f"{fine.numeric:+.6g} when the step shrinks from {worst.step:.2g} to "
                         f"{fine.step:.2g}")


def _drilldown(setup: _Setup, i: int, c: np.ndarray, g: np.ndarray, what: str | None = None) -> Drilldown:
    """Entry-by-entry central differences of ``<c, y>`` w.r.t. leaf ``i``, against ``g``."""
    value = setup.fd.values[i]
    h = setup.step(i)
    numeric = np.empty(value.size)
    peak = 0.0
    for j in range(value.size):
        e = np.zeros(value.size)
        e[j] = h
        up, down = setup.output(i, value + e.reshape(value.shape)), setup.output(i, value - e.reshape(value.shape))
        numeric[j] = c @ (up - down) / (2 * h)
        peak = max(peak, float(np.max(np.abs(up), initial=0.0)))
    analytic = np.asarray(g, dtype=FLOAT64).ravel()
    err = np.abs(analytic - numeric)
    tol = (setup.atol + setup.rtol * (np.maximum(np.abs(analytic), np.abs(numeric)) + np.mean(np.abs(numeric)))
           + 10 * setup.fd_eps * float(np.sum(np.abs(c))) * peak / h)
    bad = np.flatnonzero(err > tol)
    order = bad[np.argsort(-err[bad])][:_DRILLDOWN_ROWS]
    rows = tuple((tuple(int(k) for k in np.unravel_index(j, value.shape)), float(analytic[j]),
                  float(numeric[j]), float(err[j]),
                  float(err[j] / max(abs(analytic[j]), abs(numeric[j]), 1e-300))) for j in order)
    return Drilldown(path=setup.primal.paths[i], size=value.size, evaluations=2 * value.size, rows=rows,
                     bad=int(bad.size),
                     what=what or f"element-wise grad of <c, y> w.r.t. {setup.primal.paths[i]} by "
                                  "central differences")


def _settings(setup: _Setup, probes: int, seed: int, fd_dtype: str) -> dict[str, Any]:
    return {"version": SETTINGS_VERSION, "probes": probes, "seed": seed, "rtol": setup.rtol,
            "atol": setup.atol, "fd_dtype": "float64" if fd_dtype == "float64" else "native dtype",
            "eps_rel": setup.eps_rel, "kinks": setup.kinks,
            "fd_method": "central difference" if setup.kinks == "ignore" else "5-point central difference"}


def _reproduce(path: str, seed: int, probes: int, rtol: float | None, atol: float, fd_dtype: str,
               rng: Any, train: bool) -> str:
    extra = "".join(f", {k}={v!r}" for k, v in (("rtol", rtol), ("atol", atol or None),
                                                 ("fd_dtype", None if fd_dtype == "float64" else fd_dtype),
                                                 ("rng", rng), ("train", train or None)) if v is not None)
    return f"fnlearn.testing.check_vjp(apply, params, x, wrt=[{path!r}], seed={seed!r}, probes={probes}{extra})"

"""What a check found: reports, and the two exceptions the checkers raise.

A :class:`GradCheckReport` describes one check (which check, on which function, which leaf, the two
numbers that were compared and the tolerance). Its ``str`` is the failure message; ``to_dict()`` gives
the same content to tools. :class:`LayerReport` gathers the reports of :func:`check_layer`'s battery.

Example:
    >>> from fnlearn.testing import GradCheckReport
    >>> r = GradCheckReport(check="zero cotangent", name="my_layer", passed=False,
    ...                     summary="vjp(0) is not exactly zero", lines=(("dparams", "b is 1.0"),))
    >>> print(r)
    zero cotangent failed for my_layer: vjp(0) is not exactly zero
      dparams     b is 1.0
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SETTINGS_VERSION = "fnlearn.testing v1"
"""Defaults change only with this version; every report prints it."""


@dataclass(frozen=True)
class LeafResult:
    """One adjoint-identity comparison: leaf ``path``, analytic ``a`` against numeric ``n``.

    ``tolerance = atol + rtol * scale + fd_noise + vjp_noise`` (the parts are kept for the report):
    ``fd_noise`` is the rounding floor of the finite difference, ``vjp_noise`` that of the analytic
    side (see ``rounding_noise`` in ``fnlearn.testing._common``).
    """

    path: str
    shape: tuple[int, ...]
    dtype: str
    probe: int
    analytic: float
    numeric: float
    rtol: float
    atol: float
    scale: float
    fd_noise: float
    step: float
    vjp_noise: float = 0.0

    @property
    def error(self) -> float:
        return abs(self.analytic - self.numeric)

    @property
    def tolerance(self) -> float:
        return self.atol + self.rtol * self.scale + self.fd_noise + self.vjp_noise

    @property
    def passed(self) -> bool:
        return self.error <= self.tolerance

    @property
    def normalized_error(self) -> float:
        return self.error / self.scale if self.scale > 0 else (0.0 if self.error == 0 else np.inf)

    @property
    def factor(self) -> float:
        """How many times over the tolerance the error is (below 1 means it passed)."""
        return self.error / self.tolerance if self.tolerance > 0 else (0.0 if self.error == 0 else np.inf)


@dataclass(frozen=True)
class Drilldown:
    """Element-wise comparison of one leaf's gradient, run after a projected check failed."""

    path: str
    what: str
    size: int
    evaluations: int
    rows: tuple[tuple[tuple[int, ...], float, float, float, float], ...]
    bad: int

    def lines(self) -> list[str]:
        out = [f"{self.what} ({self.size} entries, {self.evaluations} evaluations):"]
        if not self.rows:
            return out + ["    no entry is out of tolerance: the projected check failed only in sum "
                          "(many small errors, or an error in the point rather than in one entry)"]
        out.append(f"    {'index':<14} {'analytic':>13} {'numeric':>13} {'abs err':>10} {'rel err':>9}")
        for index, a, n, abs_err, rel_err in self.rows:
            out.append(f"    {str(index):<14} {a:>+13.7g} {n:>+13.7g} {abs_err:>10.2e} {rel_err:>9.1e}")
        worst = self.rows[0]
        out.append(f"    {self.bad}/{self.size} entries out of tolerance; max abs err {worst[3]:.2e} "
                   f"at {worst[0]}" + ("" if self.bad <= len(self.rows) else
                                       f" (the worst {len(self.rows)} shown)"))
        return out


@dataclass(frozen=True)
class GradCheckReport:
    """The outcome of one check. ``str(report)`` is the human-readable message.

    Attributes:
        check: the name of the check ("adjoint identity", "linearity", ...).
        name: the function or layer that was checked.
        passed: whether the check passed.
        summary: one sentence saying what was found.
        path: the leaf the failure is about ("w", "0/w", "x", "y", "dy"), or "".
        leaves: every comparison made (adjoint and loss checks).
        failure: the comparison that failed worst, if any.
        drilldown: the element-wise table of the failing leaf, if computed.
        lines: extra ``(label, text)`` lines (the evidence of property checks).
        point: a description of the point (shapes, dtypes and ranges of the inputs).
        reproduce: a line of Python that repeats the check.
        settings: the settings in force (tolerances, step rule, probes, version).
    """

    check: str
    name: str
    passed: bool
    summary: str = ""
    path: str = ""
    leaves: tuple[LeafResult, ...] = ()
    failure: LeafResult | None = None
    drilldown: Drilldown | None = None
    lines: tuple[tuple[str, str], ...] = ()
    point: str = ""
    reproduce: str = ""
    settings: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        head = f"{self.check} {'passed' if self.passed else 'failed'} for {self.name}"
        rows = [head + (f": {self.summary}" if self.summary else "")]
        if self.failure is not None:
            rows += _failure_lines(self.failure, self.leaves, self.settings)
        for label, text in self.lines:
            rows.append(f"  {label:<11} {text}")
        if self.drilldown is not None:
            dd = self.drilldown.lines()
            rows.append(f"  {'drill-down':<11} {dd[0]}")
            rows += ["  " + line for line in dd[1:]]
        if self.point:
            rows.append(f"  {'point':<11} {self.point}")
        if self.reproduce:
            rows.append(f"  {'reproduce':<11} {self.reproduce}")
        return "\n".join(rows)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain Python data (for tools); leaf results include their tolerances."""
        out = dataclasses.asdict(self)
        out["leaves"] = [_leaf_dict(r) for r in self.leaves]
        out["failure"] = None if self.failure is None else _leaf_dict(self.failure)
        return out


def _leaf_dict(r: LeafResult) -> dict[str, Any]:
    d = dataclasses.asdict(r)
    d.update(error=r.error, tolerance=r.tolerance, passed=r.passed,
             normalized_error=r.normalized_error, factor=r.factor)
    return d


def _failure_lines(f: LeafResult, leaves: tuple[LeafResult, ...], settings: dict[str, Any]) -> list[str]:
    probes = settings.get("probes", "?")
    fd = settings.get("fd_method", "5-point central difference")
    rows = [
        f"  {'check':<11} " + settings.get("formula", "a = <t, vjp(c)[{path}]>  vs  n = <c, J.t>").format(
            path=f.path) + f"   (probe {f.probe + 1}/{probes})",
        f"  {'analytic':<11} a = {f.analytic:+.8g}   (from your {settings.get('source', 'vjp_fn')}, "
        f"{f.dtype}, accumulated in float64)",
        f"  {'numeric':<11} n = {f.numeric:+.8g}   ({fd} in {settings.get('fd_dtype', 'float64')}, "
        f"h = {f.step:.2g})",
        f"  {'|a - n|':<11} {f.error:.2e}  >  tol = {f.tolerance:.2e}   [rtol {f.rtol:.1e} x scale "
        f"{f.scale:.2e} + atol {f.atol:.2g} + fd-noise {f.fd_noise:.1e} + vjp-rounding {f.vjp_noise:.1e}]",
        f"  {'normalized':<11} |a - n| / scale = {f.normalized_error:.1e}   ({f.factor:.3g}x over "
        "tolerance)",
    ]
    others = _others(f, leaves)
    if others:
        rows.append(f"  {'other leaves':<11} {others}")
    return rows


def _others(f: LeafResult, leaves: tuple[LeafResult, ...]) -> str:
    worst: dict[str, LeafResult] = {}
    for r in leaves:
        if r.path != f.path and (r.path not in worst or r.factor > worst[r.path].factor):
            worst[r.path] = r
    return "   ".join(f"{p} {'ok' if r.passed else 'FAILED'} ({r.normalized_error:.1e})"
                      for p, r in worst.items())


@dataclass(frozen=True)
class LayerReport:
    """The outcome of :func:`check_layer`: one entry per property, in the order they ran.

    Attributes:
        name: the layer that was checked.
        results: ``(property, status, detail)`` with status "passed", "failed" or "skipped"; the detail
            is a :class:`GradCheckReport` for checks that ran, or the reason a property was skipped.
    """

    name: str
    results: tuple[tuple[str, str, Any], ...]

    @property
    def passed(self) -> bool:
        return all(status != "failed" for _, status, _ in self.results)

    @property
    def failures(self) -> list[GradCheckReport]:
        return [detail for _, status, detail in self.results if status == "failed"]

    def __str__(self) -> str:
        failed = self.failures
        head = (f"check_layer: {len(failed)} of {len(self.results)} properties failed for {self.name}"
                if failed else f"check_layer passed for {self.name}")
        rows = [head]
        for prop, status, detail in self.results:
            note = detail if status == "skipped" else ""
            rows.append(f"  {prop:<22} {status}" + (f" ({note})" if note else ""))
        for report in failed:
            rows += ["", str(report)]
        return "\n".join(rows)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed,
                "results": [{"property": p, "status": s,
                             "detail": d.to_dict() if isinstance(d, GradCheckReport) else d}
                            for p, s, d in self.results]}


class GradCheckError(AssertionError):
    """A check failed: the gradient (or another property of a layer) is wrong.

    ``str(err)`` is the full report; ``err.report`` is the :class:`GradCheckReport` (or, from
    :func:`check_layer`, the :class:`LayerReport`).
    """

    def __init__(self, report: GradCheckReport | LayerReport):
        super().__init__(str(report))
        self.report = report


class NonDifferentiablePoint(Exception):
    """The checked function has a kink or tie within the finite-difference step of the point.

    Deliberately not an ``AssertionError``: this is not a gradient bug, the point is unsuitable for
    finite differences. Under hypothesis, ``kinks="auto"`` calls ``hypothesis.reject()`` instead.

    Attributes:
        leaf: the path of the leaf being perturbed ("x", "w", "0/w", ...).
        output_index: the index (into the flattened output) where the kink showed.
        samples: the output values at the five steps ``-h, -h/2, 0, h/2, h`` there.
    """

    def __init__(self, message: str, *, leaf: str = "", output_index: Any = None,
                 samples: tuple[float, ...] = ()):
        super().__init__(message)
        self.leaf = leaf
        self.output_index = output_index
        self.samples = samples


def describe_point(named: list[tuple[str, Any]]) -> str:
    """``x: (2, 5) float32 in [-1.98, 1.97]; w: ...`` for the leaves given as ``(path, array)``."""
    parts = []
    for path, value in named:
        a = np.asarray(value)
        desc = f"{path}: {a.shape} {a.dtype}"
        if a.size and a.dtype.kind in "fiu":
            desc += f" in [{a.min():.3g}, {a.max():.3g}]"
        parts.append(desc)
    return "; ".join(parts)

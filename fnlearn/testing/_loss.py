"""``check_loss_grad`` and ``taylor_test``: a loss's value and its gradient agree.

Three independent pieces of evidence, all computed in float64 from upcast copies of ``pred`` (and a
float ``target``): directional 5-point finite differences along Gaussian directions; an element-wise
central-difference gradient (for ``pred`` with at most ``elementwise_max`` entries); and the Taylor
remainder ``r(h) = |L(p + h v) - L(p) - h <grad, v>|``, which shrinks like ``h^2`` when the gradient is
right and like ``h`` when it is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal

import numpy as np

from ._common import FLOAT64, Primal, fail, func_name, readonly_tree
from ._gradcheck import _confirm_not_kink, _drilldown, _probe_leaf, _Setup, default_rtol
from ._report import SETTINGS_VERSION, GradCheckError, GradCheckReport, describe_point

_ONE = np.ones(1)
_WHAT = "element-wise gradient of the loss by central differences"


@dataclass(frozen=True)
class TaylorResult:
    """The Taylor remainders ``r(h)`` at halving steps and the convergence rates between them.

    ``linear_error`` is the coefficient of ``h`` fitted to the signed remainders (the error of the
    gradient along the direction); ``allowed`` is its tolerance. The test passes when every rate is at
    least ``min_rate`` (about 2 means correct), or when the fitted linear error is within ``allowed``
    (the remainder is at rounding level, as for a loss that is linear along the direction).
    """

    steps: tuple[float, ...]
    residuals: tuple[float, ...]
    rates: tuple[float, ...]
    linear_error: float
    allowed: float
    min_rate: float

    @property
    def passed(self) -> bool:
        rates_ok = all(r >= self.min_rate for r in self.rates) and len(self.rates) > 0
        return bool(rates_ok or abs(self.linear_error) <= self.allowed)

    def lines(self) -> list[str]:
        rows = [f"{'h':>10} {'r(h)':>11} {'rate':>6}"]
        for k, (h, r) in enumerate(zip(self.steps, self.residuals)):
            rate = f"{self.rates[k - 1]:6.2f}" if k > 0 else ""
            rows.append(f"{h:>10.3e} {r:>11.3e} {rate:>6}")
        return rows


def taylor_test(f: Callable[[np.ndarray], float], x: np.ndarray, grad: np.ndarray, *,
                direction: np.ndarray | None = None, seed: int = 0, rtol: float = 1e-5,
                min_rate: float = 1.8, num_steps: int = 6) -> TaylorResult:
    """The Taylor-remainder convergence test of ``grad`` as the gradient of ``f`` at ``x``.

    Args:
        f: a scalar function of one array.
        x: the point; it is used in float64.
        grad: the gradient to test, shaped like ``x``.
        direction: the direction ``v`` (default Gaussian, seeded by ``seed``).
        rtol: the tolerance on the fitted linear error, relative to ``sum|grad * v|``.
        min_rate: the smallest convergence rate accepted as "about 2".
        num_steps: how many halving steps ``h = 1e-3 * max(1, rms(x)) * 2**-k`` to take.

    Returns:
        A :class:`TaylorResult`; ``.passed`` says whether the gradient is consistent with ``f``.

    Example:
        >>> import numpy as np
        >>> from fnlearn.testing import taylor_test
        >>> x = np.array([0.5, -1.0])
        >>> taylor_test(lambda p: float(np.sum(p ** 3)), x, 3 * x ** 2).passed
        True
        >>> result = taylor_test(lambda p: float(np.sum(p ** 3)), x, 2 * x ** 2)
        >>> result.passed, round(min(result.rates), 1)
        (False, 1.0)
    """
    x = np.asarray(x, dtype=FLOAT64)
    g = np.asarray(grad, dtype=FLOAT64)
    v = np.random.default_rng(seed).standard_normal(x.shape) if direction is None else np.asarray(direction, FLOAT64)
    h0 = 1e-3 * max(1.0, float(np.sqrt(np.mean(x * x)))) if x.size else 1e-3
    steps = h0 * 0.5 ** np.arange(num_steps)
    f0, slope = float(f(x)), float(np.vdot(g, v))
    signed = np.array([float(f(x + h * v)) - f0 - h * slope for h in steps])
    residuals = np.abs(signed)
    rates = tuple(float(np.log2(a / b)) if a > 0 and b > 0 else float("nan")
                  for a, b in zip(residuals[:-1], residuals[1:]))
    u = steps / h0
    coef = np.linalg.lstsq(np.stack([u, u ** 2, u ** 3], axis=1), signed, rcond=None)[0]
    noise = 100 * np.finfo(FLOAT64).eps * (abs(f0) + float(np.max(residuals, initial=0.0))) / steps[-1]
    allowed = rtol * float(np.abs(g).ravel() @ np.abs(v).ravel()) + float(noise)
    return TaylorResult(steps=tuple(float(h) for h in steps), residuals=tuple(float(r) for r in residuals),
                        rates=rates, linear_error=float(coef[0] / h0), allowed=allowed, min_rate=min_rate)


def check_loss_grad(loss: Callable[..., Any], pred: np.ndarray, target: Any, *, seed: int = 0,
                    rtol: float | None = None, atol: float = 0.0, probes: int = 2, taylor: bool = True,
                    kinks: Literal["auto", "raise", "ignore"] = "auto", elementwise_max: int = 512,
                    name: str | None = None) -> GradCheckReport:
    """Check that ``loss(pred, target) -> (value, grad)`` returns the gradient of its value.

    Args:
        loss: ``loss(pred, target) -> (value, grad)`` with ``grad`` shaped and typed like ``pred``.
        pred: the predictions (float32 or float64).
        target: the targets (float arrays are upcast with ``pred``; integer labels are kept).
        seed: seeds the directions.
        rtol, atol: as in :func:`check_vjp` (``rtol`` defaults to 1e-5 for float64, 1e-4 for float32).
        probes: how many random directions to compare along.
        taylor: also run :func:`taylor_test` along a random direction.
        kinks: as in :func:`check_vjp`.
        elementwise_max: compare entry by entry when ``pred`` has at most this many entries.
        name: the name used in messages.

    Returns:
        A passed :class:`GradCheckReport`.

    Raises:
        GradCheckError: the gradient disagrees, has the wrong shape or dtype, or the loss mutated its
            arguments in place.
        NonDifferentiablePoint: the loss has a kink within the step (see ``kinks``).

    Example:
        >>> import numpy as np
        >>> from fnlearn.testing import check_loss_grad
        >>> def half_sse(pred, target):
        ...     return 0.5 * float(np.sum((pred - target) ** 2)), pred - target
        >>> check_loss_grad(half_sse, np.array([[1.0, 2.0]]), np.array([[0.0, 0.5]])).passed
        True
    """
    name = name or func_name(loss)
    grad = _checked_call(loss, pred, target, name)
    setup = _loss_setup(loss, pred, target, rtol, atol, kinks, name)
    i = setup.primal.n_params
    tangents = [np.random.default_rng(child).standard_normal(np.shape(pred))
                for child in np.random.SeedSequence(seed).spawn(probes)]
    results = [_probe_leaf(setup, i, k, t, _ONE, grad) for k, t in enumerate(tangents)]
    base = dict(name=name, leaves=tuple(results), point=describe_point(setup.primal.described()),
                settings=_settings(setup, probes, seed),
                reproduce=f"fnlearn.testing.check_loss_grad(loss, pred, target, seed={seed!r}"
                          + (f", rtol={rtol!r}" if rtol is not None else "") + ")")
    failed = [r for r in results if not r.passed]
    if failed:
        worst = max(failed, key=lambda r: r.factor)
        _confirm_not_kink(setup, worst, i, tangents[worst.probe], _ONE, grad)
        raise GradCheckError(GradCheckReport(
            check="loss gradient", passed=False, failure=worst, path="pred", **base,
            summary="the gradient disagrees with finite differences of the value",
            drilldown=_drilldown(setup, i, _ONE, grad, what=_WHAT) if np.size(pred) <= elementwise_max else None))
    if np.size(pred) <= elementwise_max:
        table = _drilldown(setup, i, _ONE, grad, what=_WHAT)
        if table.bad:
            _raise("loss gradient (element-wise)", f"{table.bad} of {table.size} gradient entries "
                   "disagree with central differences of the value", base, drilldown=table)
    if taylor:
        _taylor(setup, i, grad, seed, base)
    return GradCheckReport(check="loss gradient", passed=True, **base)


def _checked_call(loss: Callable[..., Any], pred: Any, target: Any, name: str) -> np.ndarray:
    """Call the loss on read-only copies; check purity, aliasing, the value and the gradient's type."""
    pred_ro, target_ro = readonly_tree(pred), readonly_tree(target)
    try:
        out = loss(pred_ro, target_ro)
    except ValueError as err:
        if "read-only" not in str(err):
            raise
        fail("mutation", name, "the loss writes into its pred or target argument in place",
             (("error", str(err)), ("fix", "compute into new arrays (d = pred - target; not pred -= target)")))
    if not (isinstance(out, tuple) and len(out) == 2):
        fail("loss structure", name, f"a loss must return a pair (value, grad), got {type(out).__name__}")
    value, grad = out
    if np.ndim(value) != 0 or not np.isrealobj(value) or not np.isfinite(float(value)):
        fail("loss structure", name, f"the value must be a finite real scalar, got {value!r}")
    pred = np.asarray(pred)
    if not isinstance(grad, np.ndarray) or grad.shape != pred.shape or grad.dtype != pred.dtype:
        got = (f"{grad.shape} {grad.dtype}" if isinstance(grad, np.ndarray) else type(grad).__name__)
        fail("loss structure", name, f"the gradient must be an array of shape {pred.shape} and dtype "
             f"{pred.dtype} (like pred), got {got}")
    if any(np.shares_memory(grad, a) for a in (pred_ro, target_ro) if isinstance(a, np.ndarray)):
        fail("aliasing", name, "the gradient shares memory with pred or target; return a new array")
    return grad


def _loss_setup(loss: Callable[..., Any], pred: Any, target: Any, rtol: float | None, atol: float,
                kinks: str, name: str) -> _Setup:
    if kinks not in ("auto", "raise", "ignore"):
        raise ValueError(f"check_loss_grad: kinks must be 'auto', 'raise' or 'ignore', got {kinks!r}.")

    def as_apply(params: Any, p: np.ndarray, **_: Any) -> tuple[np.ndarray, Any]:
        return np.array([float(loss(p, params.get("target"))[0])]), _no_vjp

    primal = Primal({"target": target} if target is not None else {}, pred, input_name="pred")
    fd_eps = float(np.finfo(FLOAT64).eps)
    return _Setup(apply=as_apply, name=name, primal=primal, fd=primal.cast(FLOAT64), rng=None,
                  train=False, eps_rel=float(np.cbrt(fd_eps)), fd_eps=fd_eps, atol=float(atol), kinks=kinks,
                  rtol=rtol if rtol is not None else default_rtol(np.asarray(pred).dtype))


def _no_vjp(dy: Any) -> None:
    return None


def _taylor(setup: _Setup, i: int, grad: np.ndarray, seed: int, base: dict[str, Any]) -> None:
    point = setup.fd.values[i]
    result = taylor_test(lambda p: float(setup.output(i, p)[0]), point, grad, seed=seed,
                         rtol=setup.rtol)
    if not result.passed:
        rate = min(result.rates)
        _raise("taylor remainder",
               f"the remainder |L(p + h v) - L(p) - h <grad, v>| shrinks like h^{rate:.2f}, not h^2: "
               f"the gradient is off along v by {result.linear_error:.3e} (allowed {result.allowed:.1e})",
               base, lines=tuple(("" if k else "remainders", line) for k, line in enumerate(result.lines())))


def _raise(check: str, summary: str, base: dict[str, Any], **extra: Any) -> None:
    raise GradCheckError(GradCheckReport(check=check, passed=False, summary=summary, path="pred",
                                         **base, **extra))


def _settings(setup: _Setup, probes: int, seed: int) -> dict[str, Any]:
    return {"version": SETTINGS_VERSION, "probes": probes, "seed": seed, "rtol": setup.rtol,
            "atol": setup.atol, "fd_dtype": "float64", "eps_rel": setup.eps_rel, "kinks": setup.kinks,
            "fd_method": "5-point central difference", "source": "loss's grad",
            "formula": "a = <t, grad>  vs  n = dL(pred + s t)/ds"}

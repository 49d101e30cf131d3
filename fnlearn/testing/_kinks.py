"""Kink and tie detection for finite differences (a quadratic fit through five samples).

Along a direction ``t`` the checker samples the output at ``s = -h, -h/2, 0, h/2, h``. A smooth function
is a quadratic there up to ``O(h^3)``; a kink (ReLU at 0, a max with ties) inside the interval is not.
When the root-mean-square residual of the least-squares quadratic exceeds ``rtol`` times the spread of
the samples (plus a rounding floor), the point is declared non-differentiable. The idea is Chainer's
``numerical_grad(detect_nondifferentiable=True)``; this is our own formulation of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

import numpy as np

from ._report import NonDifferentiablePoint

_S = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
_V = np.stack([np.ones(5), _S, _S ** 2], axis=1)
_RESIDUAL = np.eye(5) - _V @ np.linalg.pinv(_V)   # projects the samples onto what no quadratic fits


@dataclass(frozen=True)
class Kink:
    """Where the quadratic fit failed: flat output ``index``, its ``residual`` and the ``threshold``."""

    index: int
    residual: float
    threshold: float
    nonfinite: bool = False


def kink_test(samples: np.ndarray, rtol: float, fd_eps: float) -> Kink | None:
    """The worst output entry whose five samples (rows of ``samples``) no quadratic fits, or None."""
    if samples.size == 0:
        return None
    finite = np.isfinite(samples).all(axis=0)
    if not finite.all():
        return Kink(index=int(np.flatnonzero(~finite)[0]), residual=np.nan, threshold=np.nan,
                    nonfinite=True)
    residual = np.sqrt(np.mean(np.square(_RESIDUAL @ samples), axis=0))
    spread = samples.max(axis=0) - samples.min(axis=0)
    threshold = rtol * spread + 100 * fd_eps * float(np.max(np.abs(samples)))
    j = int(np.argmax(residual - threshold))
    if residual[j] <= threshold[j]:
        return None
    return Kink(index=j, residual=float(residual[j]), threshold=float(threshold[j]))


def in_hypothesis_test() -> bool:
    """Whether we run inside a hypothesis test (hypothesis is imported only if installed)."""
    try:
        import hypothesis
    except ImportError:
        return False
    return bool(hypothesis.currently_in_test_context())


def handle_kink(mode: str, name: str, path: str, h: float, kink: Kink | None,
                samples: np.ndarray | None, *, note: str = "") -> NoReturn:
    """Reject the hypothesis example (``mode="auto"`` under hypothesis) or raise NonDifferentiablePoint."""
    if kink is None:
        what = note
    elif kink.nonfinite:
        what = (f"output entry {kink.index} (flattened) becomes NaN or inf within the step "
                f"[-h, h] (h = {h:.2g})")
    else:
        what = (f"the 5 samples of output entry {kink.index} (flattened) along the tangent in "
                f"[-h, h] (h = {h:.2g}) are not fit by a quadratic (residual {kink.residual:.1e} > "
                f"rtol*spread + noise = {kink.threshold:.1e})")
    message = (f"{name} w.r.t. {path}: {what}. Likely a kink or tie within the step (ReLU at 0, a max "
               "with ties); this is not a gradient bug. Keep the inputs away from such points "
               "(fnlearn.testing.strategies.away_from or separated_arrays). Under a hypothesis test, "
               "kinks='auto' rejects the example instead of raising.")
    if mode == "auto" and in_hypothesis_test():
        import hypothesis
        hypothesis.event("fnlearn.testing: rejected a non-differentiable point")
        hypothesis.reject()
    j = None if kink is None else kink.index
    raise NonDifferentiablePoint(message, leaf=path, output_index=j,
                                 samples=() if samples is None or j is None else tuple(samples[:, j]))

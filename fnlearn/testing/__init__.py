"""Test your own layers: a gradient checker, a battery of layer properties, hypothesis strategies.

``check_vjp`` compares a layer's hand-written VJP with finite differences computed in float64, one
leaf of ``(params, x)`` at a time; ``check_loss_grad`` does the same for a loss; ``check_layer`` runs
the whole battery (adjoint identity, linearity, purity, dtypes, batch properties, ...). A failure
raises :class:`GradCheckError` (an ``AssertionError``) whose message names the leaf, the two numbers,
the tolerance, the worst entries and a line that reproduces it. A kink or tie at the point raises
:class:`NonDifferentiablePoint` instead (or rejects the example inside a hypothesis test).

This package imports without hypothesis; :mod:`fnlearn.testing.strategies` needs it.

Example:
    >>> import numpy as np, fnlearn as fl
    >>> from fnlearn import testing
    >>> report = testing.check_vjp(fl.Tanh().apply, {}, np.linspace(-1, 1, 6).reshape(2, 3))
    >>> report.passed, [r.path for r in report.leaves]
    (True, ['x', 'x'])
"""

from ._gradcheck import check_vjp
from ._layer import PROPERTIES, check_layer
from ._loss import TaylorResult, check_loss_grad, taylor_test
from ._report import (Drilldown, GradCheckError, GradCheckReport, LayerReport, LeafResult,
                      NonDifferentiablePoint)

__all__ = [
    "check_vjp", "check_loss_grad", "check_layer", "taylor_test", "PROPERTIES",
    "GradCheckError", "NonDifferentiablePoint",
    "GradCheckReport", "LayerReport", "LeafResult", "Drilldown", "TaylorResult",
]

"""fnlearn.optim: optimizers as small composable pure transforms, in optax's shape.

``opt = sgd(0.1, momentum=0.9)``; ``state = opt.init(params)``;
``updates, state = opt.update(grads, state, params)``; ``params = apply_updates(params, updates)``.
See ``docs/optim.md`` for the formula and conventions of every rule.
"""

from ._alias import sgd
from ._base import (GradientTransformation, Optimizer, OptState, ScalarOrSchedule, Schedule, Updates,
                    apply_updates, chain, map_leaves)

__all__ = [
    "Optimizer", "GradientTransformation", "OptState", "Updates", "Schedule", "ScalarOrSchedule",
    "apply_updates", "chain", "map_leaves",
    "sgd",
]

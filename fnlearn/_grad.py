"""``value_and_grad``: a model's loss and its gradient with respect to the parameters."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from . import _checks
from ._types import ApplyFn, Array, Params

Loss = Callable[[Array, Any], tuple[float, Array]]


def value_and_grad(apply: ApplyFn, loss: Loss) -> Callable[..., tuple[float, Params]]:
    """Turn ``apply`` and ``loss`` into ``f(params, x, target, *, rng=None, train=True) -> (value, grads)``.

    ``grads`` has the structure, shapes and dtypes of ``params``. The backward pass asks the model for no
    input cotangent (``compute_dx=False``), so the first layer skips that matrix product. ``train``
    defaults to True (gradients are for training): a model with dropout then needs ``rng``.

    Example:
        >>> import numpy as np, fnlearn as fl
        >>> model = fl.serial(fl.Dense(3), fl.Relu(), fl.Dense(2))
        >>> params = model.init(np.random.default_rng(0), (-1, 4))
        >>> f = fl.value_and_grad(model.apply, fl.losses.softmax_cross_entropy)
        >>> loss, grads = f(params, np.ones((5, 4), np.float32), np.array([0, 1, 0, 1, 1]))
        >>> type(loss).__name__, grads["0"]["w"].shape, grads["0"]["w"].dtype
        ('float', (4, 3), dtype('float32'))
    """
    def value_and_grad_fn(params: Params, x: Any, target: Any, *,
                          rng: np.random.Generator | None = None, train: bool = True):
        pred, vjp = apply(params, x, rng=rng, train=train)
        value, dpred = loss(pred, target)
        grads, _ = _checks.call_vjp(vjp, dpred, False)
        return value, grads

    return value_and_grad_fn

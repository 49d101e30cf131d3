"""Named rules that fnlearn takes from optax, with optax's names, hyperparameter names, defaults and
formulas (``tests/test_optim_optax.py`` compares each with optax 0.2.8 update by update).

Notation as in ``_alias``: ``g`` gradient, ``p`` parameter, ``lr`` the learning rate (a number or a
schedule of the step count), ``u`` the update that :func:`apply_updates` adds.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import tree as _tree
from .._types import Params
from ._accumulating import add_noise, ema
from ._base import (Optimizer, OptState, ScalarOrSchedule, Updates, check_hyper, check_learning_rate,
                    check_state, map_leaves, named_chain, resolve)
from ._scale_by import scale_by_adamax
from ._scale_by_optax import (scale_by_adan, scale_by_belief, scale_by_novograd, scale_by_optimistic_gradient,
                              scale_by_sm3, scale_by_yogi)
from ._shaping import scale_by_sign
from ._transforms import add_decayed_weights, scale, scale_by_learning_rate, scale_by_trust_ratio, trace
from ._wrappers import masked

__all__ = ["adabelief", "yogi", "novograd", "adan", "adamaxw", "lars", "sign_sgd", "signum",
           "optimistic_gradient_descent", "sm3", "fromage", "noisy_sgd", "polyak_sgd"]


def _lr(name: str, learning_rate: ScalarOrSchedule) -> Optimizer:
    return scale_by_learning_rate(check_learning_rate(name, learning_rate))


def adabelief(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-16,
              eps_root: float = 1e-16, *, nesterov: bool = False) -> Optimizer:
    """AdaBelief (Zhuang et al. 2020), as optax: ``u = -lr * (m/c1) / (sqrt(s/c2) + eps)`` with ``s`` the
    EMA of ``(g - m)**2`` (see :func:`scale_by_belief`).

    Example:
        >>> import numpy as np
        >>> opt = adabelief(0.1)
        >>> sorted(opt.init({"w": np.zeros(1)})["adabelief"])
        ['count', 'mu', 'nu']
    """
    return named_chain(("adabelief", scale_by_belief(b1, b2, eps, eps_root, nesterov=nesterov)),
                       ("learning_rate", _lr("adabelief", learning_rate)))


def yogi(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-3) -> Optimizer:
    """Yogi (Zaheer et al. 2018), as optax: Adam with the additive second moment
    ``v = v - (1-b2) sign(v - g**2) g**2`` (see :func:`scale_by_yogi`); ``u = -lr * direction``.

    Example:
        >>> import numpy as np
        >>> opt = yogi(0.1)
        >>> sorted(opt.init({"w": np.zeros(1)})["yogi"])
        ['count', 'mu', 'nu']
    """
    return named_chain(("yogi", scale_by_yogi(b1, b2, eps)), ("learning_rate", _lr("yogi", learning_rate)))


def novograd(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.25, eps: float = 1e-6,
             eps_root: float = 0.0, weight_decay: float = 0.0) -> Optimizer:
    """NovoGrad (Ginsburg et al. 2019), as optax: layer-wise second moments (one number per leaf), see
    :func:`scale_by_novograd`; ``u = -lr * m``.

    Example:
        >>> import numpy as np
        >>> opt = novograd(0.1, eps=0.0)
        >>> opt.update({"w": np.array([3.0, -4.0])}, opt.init({"w": np.zeros(2)}))[0]["w"]
        array([-0.06,  0.08])
    """
    return named_chain(("novograd", scale_by_novograd(b1, b2, eps, eps_root, weight_decay)),
                       ("learning_rate", _lr("novograd", learning_rate)))


def adan(learning_rate: ScalarOrSchedule, b1: float = 0.98, b2: float = 0.92, b3: float = 0.99,
         eps: float = 1e-8, eps_root: float = 1e-8, weight_decay: float = 0.0, mask: Any = None) -> Optimizer:
    """Adan (Xie et al. 2022), as optax: ``u = -lr * (adan_direction + weight_decay*p)`` (see
    :func:`scale_by_adan`; decay decoupled, maskable). Note optax's ``adan`` default ``eps_root=1e-8``.

    Example:
        >>> import numpy as np
        >>> opt = adan(0.1)
        >>> sorted(opt.init({"w": np.zeros(1)})["adan"])
        ['count', 'g', 'm', 'n', 'v']
    """
    wd = check_hyper("adan", "weight_decay", weight_decay)
    return named_chain(("adan", scale_by_adan(b1, b2, b3, eps, eps_root)),
                       ("weight_decay", add_decayed_weights(wd, mask)), ("learning_rate", _lr("adan", learning_rate)))


def adamaxw(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
            weight_decay: float = 1e-4, mask: Any = None) -> Optimizer:
    """AdamaxW (Adamax of Kingma & Ba 2015 with the decoupled decay of Loshchilov & Hutter 2019), as
    optax: ``u = -lr * ((m/c1)/n + weight_decay*p)`` with Adamax's ``n = max(b2*n, |g| + eps)``
    (maskable; optax's default ``weight_decay=1e-4``).

    Example:
        >>> import numpy as np
        >>> opt = adamaxw(0.1, eps=0.0, weight_decay=0.5)
        >>> p = {"w": np.ones(1)}
        >>> opt.update({"w": np.array([3.0])}, opt.init(p), p)[0]["w"]
        array([-0.15])
    """
    wd = check_hyper("adamaxw", "weight_decay", weight_decay)
    return named_chain(("adamax", scale_by_adamax(b1, b2, eps)), ("weight_decay", add_decayed_weights(wd, mask)),
                       ("learning_rate", _lr("adamaxw", learning_rate)))


def lars(learning_rate: ScalarOrSchedule, weight_decay: float = 0.0, weight_decay_mask: Any = True,
         trust_coefficient: float = 0.001, eps: float = 0.0, trust_ratio_mask: Any = True,
         momentum: float = 0.9, nesterov: bool = False) -> Optimizer:
    """LARS (You et al. 2017), as optax: ``d = g + weight_decay*p`` (on ``weight_decay_mask``); per leaf
    ``d *= trust_coefficient * ||p|| / (||d|| + eps)`` (on ``trust_ratio_mask``; 1 if a norm is 0);
    ``u = trace(-lr * d, momentum, nesterov)`` (the momentum is taken after the learning rate).

    Example:
        >>> import numpy as np
        >>> opt = lars(1.0, trust_coefficient=0.1, momentum=0.0)
        >>> p = {"w": np.array([3.0, 4.0])}
        >>> opt.update({"w": np.array([0.0, 2.0])}, opt.init(p), p)[0]["w"]
        array([ 0. , -0.5])
    """
    wd = check_hyper("lars", "weight_decay", weight_decay)
    return named_chain(
        ("weight_decay", masked(add_decayed_weights(wd), weight_decay_mask)),
        ("trust_ratio", masked(scale_by_trust_ratio(trust_coefficient=trust_coefficient, eps=eps), trust_ratio_mask)),
        ("learning_rate", _lr("lars", learning_rate)), ("momentum", trace(momentum, nesterov)))


def sign_sgd(learning_rate: ScalarOrSchedule) -> Optimizer:
    """signSGD (Bernstein et al. 2018), as optax: ``u = -lr * sign(g)``.

    Example:
        >>> import numpy as np
        >>> opt = sign_sgd(0.1)
        >>> opt.update({"w": np.array([3.0, -0.01])}, opt.init({"w": np.zeros(2)}))[0]["w"]
        array([-0.1,  0.1])
    """
    return named_chain(("sign", scale_by_sign()), ("learning_rate", _lr("sign_sgd", learning_rate)))


def signum(learning_rate: ScalarOrSchedule, beta: float = 0.9) -> Optimizer:
    """Signum (Bernstein et al. 2018), as optax: ``m = beta*m + (1-beta)*g``; ``u = -lr * sign(m)``.

    Example:
        >>> import numpy as np
        >>> opt = signum(0.1)
        >>> opt.update({"w": np.array([3.0, -0.01])}, opt.init({"w": np.zeros(2)}))[0]["w"]
        array([-0.1,  0.1])
    """
    return named_chain(("ema", ema(beta, debias=False)), ("sign", scale_by_sign()),
                       ("learning_rate", _lr("signum", learning_rate)))


def optimistic_gradient_descent(learning_rate: ScalarOrSchedule, alpha: float = 1.0,
                                beta: float = 1.0) -> Optimizer:
    """Optimistic gradient descent (Mokhtari et al. 2019), as optax:
    ``u = -lr * ((alpha + beta)*g - beta*g_prev)`` (``g_prev = g`` on the first step).

    Example:
        >>> import numpy as np
        >>> opt = optimistic_gradient_descent(0.1)
        >>> opt.update({"w": np.array([2.0])}, opt.init({"w": np.zeros(1)}))[0]["w"]
        array([-0.2])
    """
    return named_chain(("optimistic", scale_by_optimistic_gradient(alpha, beta)),
                       ("learning_rate", _lr("optimistic_gradient_descent", learning_rate)))


def sm3(learning_rate: float, momentum: float = 0.9) -> Optimizer:
    """SM3 (Anil et al. 2019), as optax: ``u = -learning_rate * nu`` with ``nu`` from
    :func:`scale_by_sm3` (``b1=momentum``); the rate is a number (optax's ``scale``).

    Example:
        >>> import numpy as np
        >>> opt = sm3(1.0, momentum=0.0)
        >>> opt.update({"w": np.array([[3.0, -4.0]])}, opt.init({"w": np.zeros((1, 2))}))[0]["w"]
        array([[-1.,  1.]])
    """
    lr = check_hyper("sm3", "learning_rate", learning_rate, low=-np.inf)
    return named_chain(("sm3", scale_by_sm3(momentum)), ("learning_rate", scale(-lr)))


def fromage(learning_rate: ScalarOrSchedule, min_norm: float = 1e-6) -> Optimizer:
    """Fromage (Bernstein et al. 2020), as optax: per leaf ``d = g * ||p|| / ||g||`` (norms floored at
    ``min_norm``; 1 if zero); with ``k = 1 / sqrt(1 + lr**2)``, ``u = -lr*k * d + (k - 1) * p``, so
    ``p_new = k * (p - lr*d)``.

    Example:
        >>> import numpy as np
        >>> opt = fromage(0.75)
        >>> p = {"w": np.array([3.0, 4.0])}
        >>> opt.update({"w": np.array([0.0, 1.0])}, opt.init(p), p)[0]["w"]
        array([-0.6, -3.8])
    """
    lr = check_learning_rate("fromage", learning_rate)
    floor = check_hyper("fromage", "min_norm", min_norm)
    state_keys = frozenset({"count"})

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state("fromage.update", state, state_keys)
        if params is None:
            raise ValueError("fromage.update needs the params: call update(grads, state, params).")
        count = int(state["count"])
        rate = resolve(lr, count)
        k = 1.0 / (1.0 + rate ** 2) ** 0.5

        def leaf(d: Any, p: Any) -> Any:
            u = d * (-rate * k)
            u += p * (k - 1.0)
            return u

        return map_leaves("fromage.update", leaf, grads, params=params), {"count": count + 1}

    return named_chain(("trust_ratio", scale_by_trust_ratio(floor)), ("fromage", Optimizer(lambda p: {"count": 0},
                                                                                        update)))


def noisy_sgd(learning_rate: ScalarOrSchedule, eta: float = 0.01, gamma: float = 0.55, key: int = 0) -> Optimizer:
    """Noisy SGD (Neelakantan et al. 2015), as optax: ``u = -lr * (g + sqrt(eta / t**gamma) * z)`` with
    ``z ~ N(0, 1)`` drawn as in :func:`add_noise` (NumPy's generator, seeded by ``key`` and the step).

    Example:
        >>> import numpy as np
        >>> opt = noisy_sgd(0.1, eta=0.0)
        >>> opt.update({"w": np.array([2.0])}, opt.init({"w": np.zeros(1)}))[0]["w"]
        array([-0.2])
    """
    return named_chain(("noise", add_noise(eta, gamma, key)), ("learning_rate", _lr("noisy_sgd", learning_rate)))


def polyak_sgd(max_learning_rate: float = 1.0, scaling: ScalarOrSchedule = 1.0, f_min: float = 0.0,
               eps: float = 0.0, variant: str = "sps") -> Optimizer:
    """Polyak step-size SGD (Loizou et al. 2021), as optax: with ``d = -scaling * g``, ``u = s * d``,
    ``s = min((f(p) - f_min) / (||d||**2 + eps), max_learning_rate)`` over the whole tree, 0 when
    ``||d||**2 + eps`` is at most machine epsilon; ``variant="sps+"`` clips ``f(p) - f_min`` at 0.

    ``update`` needs the loss: ``opt.update(grads, state, params, value=loss)``.

    Example:
        >>> import numpy as np
        >>> opt = polyak_sgd()
        >>> opt.update({"w": np.array([2.0])}, opt.init(None), value=2.0)[0]["w"]
        array([-1.])
    """
    cap = check_hyper("polyak_sgd", "max_learning_rate", max_learning_rate)
    lr = check_learning_rate("polyak_sgd", scaling, "scaling")
    bottom = check_hyper("polyak_sgd", "f_min", f_min, low=-np.inf)
    tiny = check_hyper("polyak_sgd", "eps", eps)
    if variant not in ("sps", "sps+"):
        raise ValueError(f"polyak_sgd: variant must be 'sps' or 'sps+', got {variant!r}.")
    state_keys = frozenset({"count"})

    def update(grads: Updates, state: OptState, params: Params = None, *, value: float | None = None
               ) -> tuple[Updates, OptState]:
        check_state("polyak_sgd.update", state, state_keys)
        if value is None:
            raise TypeError("polyak_sgd.update needs the loss: call update(grads, state, params, value=loss).")
        count = int(state["count"])
        rate = resolve(lr, count)
        sq = rate * rate * float(sum(np.vdot(g, g) for g in _tree.tree_leaves(grads)))  # of -scaling*g
        gap = float(value) - bottom
        if variant == "sps+":
            gap = max(gap, 0.0)
        step = 0.0 if sq + tiny <= np.finfo(float).eps else min(gap / (sq + tiny), cap)
        factor = -rate * step
        return map_leaves("polyak_sgd.update", lambda g, p=None: g * factor, grads, params=params), \
            {"count": count + 1}

    return Optimizer(lambda params: {"count": 0}, update)

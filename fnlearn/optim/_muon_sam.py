"""Muon and SAM from ``optax.contrib``, with optax's names, defaults and formulas.

Muon orthogonalises the momentum of each matrix with a Newton-Schulz iteration; SAM alternates
adversarial ascent steps with a step of the outer rule from the pre-ascent parameters.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .. import tree as _tree
from .._types import Params
from ._base import (Optimizer, OptState, ScalarOrSchedule, Updates, check_hyper, check_learning_rate,
                    check_state, is_optimizer, map_leaves, named_chain)
from ._scale_by import _ema, _zeros, scale_by_adam
from ._transforms import add_decayed_weights, scale_by_learning_rate
from ._wrappers import partition

__all__ = ["orthogonalize_via_newton_schulz", "scale_by_muon", "muon", "normalize", "sam"]

_NS_PRESETS = {"standard": (3.4445, -4.7750, 2.0315),
               "dion": ((4.0848, -6.8946, 2.9270), (3.9505, -6.3029, 2.6377), (3.7418, -5.5913, 2.3037),
                        (2.8769, -3.1427, 1.2046), (2.8366, -3.0525, 1.2012))}


def _coefficient_rows(ns_coeffs: Any, ns_steps: int) -> list[tuple[float, float, float]]:
    """The ``(a, b, c)`` of each Newton-Schulz step: one triple ``ns_steps`` times, or each row of a table
    of at most ``ns_steps`` rows (its last ``ns_steps``, as optax)."""
    table = np.asarray(_NS_PRESETS[ns_coeffs] if isinstance(ns_coeffs, str) else ns_coeffs, dtype=np.float64)
    if table.shape == (3,):
        return [tuple(table)] * ns_steps
    if table.ndim == 2 and table.shape[1] == 3 and table.shape[0] <= ns_steps:
        return [tuple(row) for row in table[-ns_steps:]]
    raise ValueError(f"muon: ns_coeffs must be (a, b, c), a table of at most ns_steps={ns_steps} such rows, "
                     f"'standard' or 'dion'; got {ns_coeffs!r}.")


def orthogonalize_via_newton_schulz(x: Any, rows: Sequence[tuple[float, float, float]], eps: float = 1e-8,
                                    preconditioning: str = "frobenius") -> Any:
    """An approximately orthogonal matrix with ``x``'s singular vectors: ``x / (||x|| + eps)`` (Frobenius
    or spectral norm), then per step ``A = x x^T``, ``x = a*x + (b*A + c*A A) x`` (on ``x^T`` when ``x``
    has more rows than columns). ``"aol"`` and ``"schatten"`` instead rescale ``x`` and ``A`` in the first
    step (by the rows' absolute sums of ``A``, or by ``||A||_F``), as optax.

    Example:
        >>> import numpy as np
        >>> q = orthogonalize_via_newton_schulz(np.diag([3.0, 1.0]), [(1.5, -0.5, 0.0)] * 30)
        >>> np.round(q, 3)
        array([[1., 0.],
               [0., 1.]])
    """
    flip = x.shape[0] > x.shape[1]
    if flip:
        x = x.T
    if preconditioning in ("frobenius", "spectral"):
        x = x / (np.linalg.norm(x, ord="fro" if preconditioning == "frobenius" else 2) + eps)
    for step, (a, b, c) in enumerate(rows):
        gram = x @ x.T
        if step == 0 and preconditioning == "aol":  # rows rescaled by 1/sqrt(sum |gram| of the row)
            scale = 1.0 / np.sqrt(np.maximum(np.abs(gram).sum(axis=-1), eps))[:, None]
            x, gram = x * scale, gram * scale * scale.T
        elif step == 0 and preconditioning == "schatten":  # by 1/sqrt(||gram||_F)
            scale = 1.0 / np.sqrt(max(np.linalg.norm(gram), eps))
            x, gram = x * scale, gram * scale ** 2
        x = a * x + (b * gram + c * (gram @ gram)) @ x
    return x.T if flip else x


def scale_by_muon(ns_coeffs: Any = (3.4445, -4.7750, 2.0315), ns_steps: int = 5, beta: float = 0.95,
                  eps: float = 1e-8, *, nesterov: bool = True, adaptive: bool = False,
                  preconditioning: str = "frobenius") -> Optimizer:
    """Muon's direction for matrices (Jordan et al. 2024), as optax with the default dimension numbers
    (reduce over axis 0, output axis 1): ``m = ema(g, beta)``; ``m_hat = beta*m/(1-beta**(t+1)) +
    (1-beta)*g/(1-beta**t)`` (``nesterov``) or ``m/(1-beta**t)``; ``u = NS(m_hat)``
    (:func:`orthogonalize_via_newton_schulz`), times ``<m_hat, u>`` when ``adaptive``. 2-d leaves only.

    Returns:
        An :class:`Optimizer`; state ``{"count", "mu"}``.

    Example:
        >>> import numpy as np
        >>> t = scale_by_muon()
        >>> u, _ = t.update({"w": np.eye(2) * 5.0}, t.init({"w": np.zeros((2, 2))}))
        >>> np.round(u["w"], 2)
        array([[1.11, 0.  ],
               [0.  , 1.11]])
    """
    steps = int(check_hyper("scale_by_muon", "ns_steps", ns_steps, low=1))
    rows = _coefficient_rows(ns_coeffs, steps)
    beta = check_hyper("scale_by_muon", "beta", beta, high=1.0)
    eps = check_hyper("scale_by_muon", "eps", eps)
    if preconditioning not in ("frobenius", "spectral", "aol", "schatten"):
        raise ValueError(f"scale_by_muon: preconditioning must be 'frobenius', 'spectral', 'aol' or 'schatten', "
                         f"got {preconditioning!r}.")
    state_keys = frozenset({"count", "mu"})

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state("scale_by_muon.update", state, state_keys)
        count = int(state["count"]) + 1

        def leaf(g: Any, m: Any, p: Any = None) -> tuple[Any, Any]:
            if g.ndim != 2:
                raise ValueError(f"scale_by_muon: expected matrices, got a leaf of shape {g.shape}; muon() sends "
                                 "the other leaves to Adam.")
            m = _ema(m, g, beta)
            if nesterov:
                m_hat = m * (beta / (1.0 - beta ** (count + 1))) + g * ((1.0 - beta) / (1.0 - beta ** count))
            else:
                m_hat = m / (1.0 - beta ** count)
            u = orthogonalize_via_newton_schulz(m_hat, rows, eps, preconditioning).astype(g.dtype, copy=False)
            if adaptive:
                u = u * np.vdot(m_hat, u)
            return u, m

        u, mu = map_leaves("scale_by_muon.update", leaf, grads, state["mu"], params=params,
                           labels=("state['mu']",), n_out=2)
        return u, {"count": count, "mu": mu}

    return Optimizer(lambda params: {"count": 0, **_zeros(params, "mu")}, update)


def _scale_by_shape(consistent_rms: float | None) -> Optimizer:
    """``u = g * sqrt(max(1, fan_out/fan_in))`` (or ``sqrt(max(fan_in, fan_out)) * consistent_rms``) for a
    matrix ``(fan_in, fan_out)`` (optax's ``scale_by_shape``)."""
    def leaf(g: Any, p: Any = None) -> Any:
        fan_in, fan_out = g.shape
        factor = (max(1.0, fan_out / fan_in) ** 0.5 if consistent_rms is None
                  else max(fan_in, fan_out) ** 0.5 * consistent_rms)
        return g * factor

    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        return map_leaves("scale_by_shape.update", leaf, grads, params=params), state

    return Optimizer(lambda params: {}, update)


def muon(learning_rate: ScalarOrSchedule, ns_coeffs: Any = (3.4445, -4.7750, 2.0315), ns_steps: int = 5,
         beta: float = 0.95, eps: float = 1e-8, weight_decay: float = 0.0, weight_decay_mask: Any = None, *,
         nesterov: bool = True, adaptive: bool = False, preconditioning: str = "frobenius", adam_b1: float = 0.9,
         adam_b2: float = 0.999, adam_eps_root: float = 0.0, adam_weight_decay: float = 0.0,
         adam_learning_rate: ScalarOrSchedule | None = None, consistent_rms: float | None = None) -> Optimizer:
    """Muon (Jordan et al. 2024), as ``optax.contrib.muon``: 2-d leaves ``(fan_in, fan_out)`` get
    ``u = -lr * (NS(m_hat) * sqrt(max(1, fan_out/fan_in)) + weight_decay*p)`` (:func:`scale_by_muon`);
    every other leaf gets AdamW (``adam_*`` options, Nesterov when ``nesterov``, as optax).
    optax's custom dimension numbers are not implemented: put conv kernels through ``partition``.

    Returns:
        ``partition({"muon": ..., "adam": ...}, leaf.ndim == 2)``.

    Example:
        >>> import numpy as np
        >>> opt = muon(0.1)
        >>> sorted(opt.init({"w": np.zeros((2, 3)), "b": np.zeros(3)}))
        ['adam', 'muon']
    """
    adam_lr = learning_rate if adam_learning_rate is None else adam_learning_rate
    wd = check_hyper("muon", "weight_decay", weight_decay)
    matrices = named_chain(
        ("muon", scale_by_muon(ns_coeffs, ns_steps, beta, eps, nesterov=nesterov, adaptive=adaptive,
                               preconditioning=preconditioning)),
        ("shape", _scale_by_shape(consistent_rms)), ("weight_decay", add_decayed_weights(wd, weight_decay_mask)),
        ("learning_rate", scale_by_learning_rate(check_learning_rate("muon", learning_rate))))
    others = named_chain(
        ("adam", scale_by_adam(adam_b1, adam_b2, eps, adam_eps_root, nesterov=nesterov)),
        ("weight_decay", add_decayed_weights(check_hyper("muon", "adam_weight_decay", adam_weight_decay))),
        ("learning_rate", scale_by_learning_rate(check_learning_rate("muon", adam_lr, "adam_learning_rate"))))
    return partition({"muon": matrices, "adam": others},
                     lambda params: _tree.tree_map(lambda x: "muon" if np.ndim(x) == 2 else "adam", params))


def normalize() -> Optimizer:
    """``u = g / ||g||`` with the norm over the whole tree (optax.contrib's ``normalize``, SAM's usual
    adversarial direction); state ``{}``.

    Example:
        >>> import numpy as np
        >>> normalize().update({"w": np.array([3.0, 4.0])}, {})[0]["w"]
        array([0.6, 0.8])
    """
    def update(grads: Updates, state: OptState, params: Params = None) -> tuple[Updates, OptState]:
        check_state("normalize.update", state, frozenset())
        norm = float(sum(np.vdot(g, g) for g in _tree.tree_leaves(grads))) ** 0.5
        return map_leaves("normalize.update", lambda g, p=None: g / norm, grads, params=params), state

    return Optimizer(lambda params: {}, update)


def sam(optimizer: Optimizer, adv_optimizer: Optimizer, sync_period: int = 2, reset_state: bool = True,
        opaque_mode: bool = False) -> Optimizer:
    """Sharpness-aware minimisation (Foret et al. 2021), as ``optax.contrib.sam`` in its transparent mode.

    Of every ``sync_period`` calls, the first ``sync_period - 1`` take adversarial steps
    ``u = -adv_optimizer(g)`` (an ascent, with e.g. ``adv_optimizer = chain(normalize, sgd(rho))``); the
    last returns the params to the cached pre-ascent ones and applies ``optimizer`` to the gradient
    taken at the adversarial point: ``u = cache - p + optimizer(g, at cache)``. ``reset_state``
    re-initialises the adversarial state at each sync.

    With ``opaque_mode=True`` every call is one outer step: ``update(grads, state, params,
    grad_fn=f)`` takes the ``sync_period - 1`` ascent steps itself, calling ``f(adv_params, i)`` for
    the gradient at each, and returns ``optimizer``'s update from ``params`` (as optax).

    Returns:
        An :class:`Optimizer`; state ``{"steps_since_sync", "opt_state", "adv_state", "cache"}`` (``cache``
        is None in opaque mode). Needs ``params``.

    Example:
        >>> import numpy as np
        >>> from fnlearn import optim
        >>> opt = sam(optim.sgd(0.1), optim.sgd(0.5))
        >>> p = {"w": np.ones(1)}
        >>> s = opt.init(p)
        >>> u, s = opt.update({"w": np.ones(1)}, s, p)
        >>> p = optim.apply_updates(p, u)
        >>> u, s = opt.update({"w": np.full(1, 3.0)}, s, p)
        >>> p["w"], optim.apply_updates(p, u)["w"]
        (array([1.5]), array([0.7]))
    """
    for label, opt in (("optimizer", optimizer), ("adv_optimizer", adv_optimizer)):
        if not is_optimizer(opt):
            raise TypeError(f"sam: {label} must be an Optimizer(init, update), got {type(opt).__name__}.")
    period = int(check_hyper("sam", "sync_period", sync_period, low=1))
    state_keys = frozenset({"steps_since_sync", "opt_state", "adv_state", "cache"})

    def init(params: Params) -> OptState:
        return {"steps_since_sync": 0, "opt_state": optimizer.init(params), "adv_state": adv_optimizer.init(params),
                "cache": None if opaque_mode else _tree.tree_map(np.copy, params)}

    def opaque(grads: Updates, state: OptState, params: Params, grad_fn: Any) -> tuple[Updates, OptState]:
        if grad_fn is None:
            raise TypeError("sam.update with opaque_mode=True needs grad_fn: call update(grads, state, params, "
                            "grad_fn=lambda params, i: gradient at params).")
        adv_params, adv_updates, adv_state = params, grads, state["adv_state"]
        for i in range(period - 1):
            adv_updates, adv_state = adv_optimizer.update(adv_updates, adv_state, adv_params)
            adv_params = map_leaves("sam.update", lambda p, a: p - a, adv_params, adv_updates)
            adv_updates = grad_fn(adv_params, i)
        if reset_state:
            adv_state = adv_optimizer.init(params)
        updates, opt_state = optimizer.update(adv_updates, state["opt_state"], params)
        return updates, {"steps_since_sync": 0, "opt_state": opt_state, "adv_state": adv_state, "cache": None}

    def update(grads: Updates, state: OptState, params: Params = None, *, grad_fn: Any = None
               ) -> tuple[Updates, OptState]:
        check_state("sam.update", state, state_keys)
        if params is None:
            raise ValueError("sam.update needs the params: call update(grads, state, params).")
        if opaque_mode:
            return opaque(grads, state, params, grad_fn)
        steps = int(state["steps_since_sync"])
        cache = params if steps == 0 else state["cache"]
        if steps == period - 1:
            opt_updates, opt_state = optimizer.update(grads, state["opt_state"], state["cache"])
            u = map_leaves("sam.update", lambda o, c, p: c - p + o, opt_updates, state["cache"], params=params,
                           labels=("state['cache']",))
            adv_state = adv_optimizer.init(params) if reset_state else state["adv_state"]
        else:
            adv_updates, adv_state = adv_optimizer.update(grads, state["adv_state"], params)
            u, opt_state = map_leaves("sam.update", lambda a: -a, adv_updates), state["opt_state"]
        return u, {"steps_since_sync": (steps + 1) % period, "opt_state": opt_state, "adv_state": adv_state,
                   "cache": _tree.tree_map(np.copy, cache) if steps == 0 else cache}

    return Optimizer(init, update)

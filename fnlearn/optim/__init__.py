"""fnlearn.optim: optimizers as small composable pure transforms, in optax's shape.

``opt = sgd(0.1, momentum=0.9)``; ``state = opt.init(params)``;
``updates, state = opt.update(grads, state, params)``; ``params = apply_updates(params, updates)``.
Names follow optax. Rules that ``torch.optim`` has follow torch's formulas and defaults; the others
(and the options named after optax's, e.g. ``adam(nesterov=True)``) follow optax's. See
``docs/optim.md`` for the formula, paper and conventions of every rule and how to write a new one.

Example:
    >>> import numpy as np
    >>> from fnlearn import optim
    >>> opt = optim.chain(optim.clip_by_global_norm(1.0), optim.adam(1e-2))
    >>> params = {"w": np.zeros(3, np.float32)}
    >>> state = opt.init(params)
    >>> updates, state = opt.update({"w": np.ones(3, np.float32)}, state, params)
    >>> optim.apply_updates(params, updates)["w"]
    array([-0.01, -0.01, -0.01], dtype=float32)
"""

from ._accumulating import add_noise, apply_every, ema
from ._adafactor import adafactor, scale_by_factored_rms, scale_by_param_block_rms
from ._alias import adadelta, adagrad, adam, adamax, adamw, amsgrad, lamb, lion, nadam, rmsprop, sgd
from ._alias_optax import (adabelief, adamaxw, adan, fromage, lars, noisy_sgd, novograd, optimistic_gradient_descent,
                           polyak_sgd, sign_sgd, signum, sm3, yogi)
from ._base import (GradientTransformation, Optimizer, OptState, ScalarOrSchedule, Schedule, Updates,
                    apply_updates, chain, declare_scalar, map_leaves, named_chain, scalar_rule)
from ._contrib import (ademamix, adopt, cocob, dog, prodigy, scale_by_ademamix, scale_by_adopt, scale_by_cocob,
                       scale_by_dog)
from ._contrib_wrappers import (lookahead, mechanize, reduce_on_plateau, schedule_free, schedule_free_adamw,
                                schedule_free_eval_params)
from ._muon_sam import muon, normalize, orthogonalize_via_newton_schulz, sam, scale_by_muon
from ._scale_by import (scale_by_adadelta, scale_by_adam, scale_by_adamax, scale_by_amsgrad, scale_by_lion,
                        scale_by_nadam, scale_by_rms, scale_by_rss, scale_by_stddev)
from ._scale_by_optax import (scale_by_adan, scale_by_belief, scale_by_novograd, scale_by_optimistic_gradient,
                              scale_by_sm3, scale_by_yogi)
from ._schedules import (constant_schedule, cosine_decay_schedule, cosine_onecycle_schedule, exponential_decay,
                         join_schedules, linear_onecycle_schedule, linear_schedule, piecewise_constant_schedule,
                         piecewise_interpolate_schedule, polynomial_schedule, sgdr_schedule,
                         warmup_constant_schedule, warmup_cosine_decay_schedule,
                         warmup_exponential_decay_schedule)
from ._shaping import (adaptive_grad_clip, centralize, clip_by_block_rms, keep_params_nonnegative, scale_by_sign,
                       zero_nans)
from ._torch_rules import asgd, nadamw, radam, rprop, scale_by_radam, scale_by_rprop
from ._transforms import (add_decayed_weights, clip, clip_by_global_norm, identity, scale, scale_by_learning_rate,
                          scale_by_schedule, scale_by_trust_ratio, set_to_zero, trace)
from ._wrappers import MultiSteps, apply_if_finite, freeze, inject_hyperparams, masked, partition

__all__ = [
    # the contract
    "Optimizer", "GradientTransformation", "OptState", "Updates", "Schedule", "ScalarOrSchedule",
    "apply_updates", "chain", "named_chain", "map_leaves", "scalar_rule", "declare_scalar",
    # named rules
    "sgd", "adam", "adamw", "amsgrad", "adamax", "nadam", "rmsprop", "adagrad", "adadelta", "lion", "lamb",
    # named rules from optax
    "adafactor", "adabelief", "yogi", "novograd", "adan", "adamaxw", "lars", "sign_sgd", "signum",
    "optimistic_gradient_descent", "sm3", "fromage", "noisy_sgd", "polyak_sgd",
    # named rules from optax.contrib
    "adopt", "ademamix", "prodigy", "dog", "cocob", "muon", "sam",
    # named rules from torch.optim
    "radam", "nadamw", "rprop", "asgd",
    # building blocks
    "identity", "set_to_zero", "scale", "scale_by_learning_rate", "scale_by_schedule", "trace",
    "add_decayed_weights", "clip", "clip_by_global_norm", "scale_by_trust_ratio",
    "scale_by_adam", "scale_by_amsgrad", "scale_by_adamax", "scale_by_nadam", "scale_by_rms",
    "scale_by_stddev", "scale_by_rss", "scale_by_adadelta", "scale_by_lion", "scale_by_radam", "scale_by_rprop",
    "scale_by_sign", "centralize", "clip_by_block_rms", "adaptive_grad_clip", "zero_nans",
    "keep_params_nonnegative", "ema", "apply_every", "add_noise", "scale_by_belief", "scale_by_yogi",
    "scale_by_novograd", "scale_by_adan", "scale_by_sm3", "scale_by_optimistic_gradient", "scale_by_adopt",
    "scale_by_ademamix", "scale_by_dog", "scale_by_cocob", "scale_by_muon", "orthogonalize_via_newton_schulz",
    "normalize", "scale_by_factored_rms", "scale_by_param_block_rms",
    # wrappers
    "lookahead", "mechanize", "reduce_on_plateau", "schedule_free", "schedule_free_adamw",
    "schedule_free_eval_params", "masked", "freeze", "partition", "MultiSteps", "inject_hyperparams", "apply_if_finite",
    # schedules
    "constant_schedule", "linear_schedule", "polynomial_schedule", "cosine_decay_schedule",
    "warmup_cosine_decay_schedule", "exponential_decay", "piecewise_constant_schedule", "join_schedules",
    "warmup_constant_schedule", "warmup_exponential_decay_schedule", "piecewise_interpolate_schedule",
    "cosine_onecycle_schedule", "linear_onecycle_schedule", "sgdr_schedule",
]

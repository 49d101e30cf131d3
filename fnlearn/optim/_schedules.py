"""Schedules: functions of the step count (0 on the first update) returning a Python float.

Semantics follow optax's schedules of the same names. Pass one anywhere a rule takes a
``learning_rate`` (or to :func:`inject_hyperparams` for any hyperparameter).
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

from ._base import Schedule

__all__ = ["constant_schedule", "linear_schedule", "polynomial_schedule", "cosine_decay_schedule",
           "warmup_cosine_decay_schedule", "exponential_decay", "piecewise_constant_schedule",
           "join_schedules", "warmup_constant_schedule", "warmup_exponential_decay_schedule",
           "piecewise_interpolate_schedule", "cosine_onecycle_schedule", "linear_onecycle_schedule",
           "sgdr_schedule"]


def _number(fn: str, name: str, value: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{fn}: {name} must be a number, got {value!r}.") from None


def _steps(fn: str, name: str, value: int, *, positive: bool = True, degenerate: bool = False) -> int:
    """An integer step count: positive, or non-negative, or (``degenerate``) any integer."""
    if isinstance(value, bool) or int(value) != value or (not degenerate and (value <= 0 if positive else value < 0)):
        kind = "an" if degenerate else "a positive" if positive else "a non-negative"
        raise ValueError(f"{fn}: {name} must be {kind} integer, got {value!r}.")
    return int(value)


def _constant_instead(fn: str, why: str, value: float) -> Schedule:
    """The constant schedule optax returns for degenerate arguments, with a warning saying so."""
    warnings.warn(f"{fn}: {why} makes this the constant schedule init_value={value} (as in optax).",
                  stacklevel=3)
    return lambda count: value


def constant_schedule(value: float) -> Schedule:
    """``value`` at every step.

    Example:
        >>> constant_schedule(0.1)(1000)
        0.1
    """
    value = _number("constant_schedule", "value", value)
    return lambda count: value


def polynomial_schedule(init_value: float, end_value: float, power: float, transition_steps: int,
                        transition_begin: int = 0) -> Schedule:
    """From ``init_value`` to ``end_value`` over ``transition_steps`` steps after ``transition_begin``:
    ``end + (init - end) * (1 - s / transition_steps)**power`` with ``s`` clipped to the transition.

    ``transition_steps <= 0`` gives the constant ``init_value`` with a warning (optax's rule).

    Example:
        >>> polynomial_schedule(1.0, 0.0, power=2, transition_steps=4)(2)
        0.25
    """
    init = _number("polynomial_schedule", "init_value", init_value)
    end = _number("polynomial_schedule", "end_value", end_value)
    steps = _steps("polynomial_schedule", "transition_steps", transition_steps, positive=False, degenerate=True)
    begin = _steps("polynomial_schedule", "transition_begin", transition_begin, positive=False)
    if steps <= 0:
        return _constant_instead("polynomial_schedule", f"transition_steps={transition_steps}", init)

    def schedule(count: int) -> float:
        s = min(max(count - begin, 0), steps)
        return end + (init - end) * (1.0 - s / steps) ** power

    return schedule


def linear_schedule(init_value: float, end_value: float, transition_steps: int,
                    transition_begin: int = 0) -> Schedule:
    """Linear from ``init_value`` to ``end_value`` over ``transition_steps`` steps, then constant.

    Example:
        >>> s = linear_schedule(0.0, 1.0, transition_steps=4)
        >>> [s(c) for c in (0, 1, 4, 10)]
        [0.0, 0.25, 1.0, 1.0]
    """
    return polynomial_schedule(init_value, end_value, 1, transition_steps, transition_begin)


def cosine_decay_schedule(init_value: float, decay_steps: int, alpha: float = 0.0,
                          exponent: float = 1.0) -> Schedule:
    """Cosine decay: ``init * ((1 - alpha) * c**exponent + alpha)`` with
    ``c = (1 + cos(pi * min(count, decay_steps) / decay_steps)) / 2``; ends at ``alpha * init_value``.

    Example:
        >>> s = cosine_decay_schedule(1.0, decay_steps=10, alpha=0.1)
        >>> [round(s(c), 4) for c in (0, 5, 10, 20)]
        [1.0, 0.55, 0.1, 0.1]
    """
    init = _number("cosine_decay_schedule", "init_value", init_value)
    steps = _steps("cosine_decay_schedule", "decay_steps", decay_steps)
    alpha = _number("cosine_decay_schedule", "alpha", alpha)

    def schedule(count: int) -> float:
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(count, steps) / steps))
        return init * ((1.0 - alpha) * cosine ** exponent + alpha)

    return schedule


def warmup_cosine_decay_schedule(init_value: float, peak_value: float, warmup_steps: int, decay_steps: int,
                                 end_value: float = 0.0, exponent: float = 1.0) -> Schedule:
    """Linear warmup from ``init_value`` to ``peak_value`` over ``warmup_steps``, then cosine decay to
    ``end_value``; ``decay_steps`` counts the warmup too (optax's convention).

    Example:
        >>> s = warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps=2, decay_steps=6)
        >>> [round(s(c), 3) for c in (0, 1, 2, 4, 6, 9)]
        [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
    """
    peak = _number("warmup_cosine_decay_schedule", "peak_value", peak_value)
    warmup = _steps("warmup_cosine_decay_schedule", "warmup_steps", warmup_steps, positive=False)
    total = _steps("warmup_cosine_decay_schedule", "decay_steps", decay_steps)
    if total <= warmup:
        raise ValueError(f"warmup_cosine_decay_schedule: decay_steps ({total}) includes the warmup and must "
                         f"be larger than warmup_steps ({warmup}).")
    alpha = 0.0 if peak == 0.0 else _number("warmup_cosine_decay_schedule", "end_value", end_value) / peak
    decay = cosine_decay_schedule(peak, total - warmup, alpha=alpha, exponent=exponent)
    if warmup == 0:
        return decay
    return join_schedules([linear_schedule(init_value, peak, warmup), decay], [warmup])


def exponential_decay(init_value: float, transition_steps: int, decay_rate: float, transition_begin: int = 0,
                      staircase: bool = False, end_value: float | None = None) -> Schedule:
    """``init * decay_rate**(s / transition_steps)`` with ``s = count - transition_begin`` (``init`` while
    ``s <= 0``); ``staircase`` floors the exponent; ``end_value`` bounds every value, also before
    ``transition_begin`` (a floor when ``decay_rate < 1``, a ceiling otherwise; optax's rule).
    ``transition_steps <= 0`` or ``decay_rate == 0`` give the constant ``init_value`` with a warning
    (optax's rule).

    Example:
        >>> s = exponential_decay(1.0, transition_steps=2, decay_rate=0.5, staircase=True)
        >>> [s(c) for c in (0, 1, 2, 3, 4)]
        [1.0, 1.0, 0.5, 0.5, 0.25]
    """
    init = _number("exponential_decay", "init_value", init_value)
    steps = _steps("exponential_decay", "transition_steps", transition_steps, degenerate=True)
    rate = _number("exponential_decay", "decay_rate", decay_rate)
    begin = _steps("exponential_decay", "transition_begin", transition_begin, positive=False)
    end = None if end_value is None else _number("exponential_decay", "end_value", end_value)
    if steps <= 0:
        return _constant_instead("exponential_decay", f"transition_steps={transition_steps}", init)
    if rate == 0.0:
        return _constant_instead("exponential_decay", "decay_rate=0", init)
    bound = max if rate < 1.0 else min

    def schedule(count: int) -> float:
        s = count - begin
        try:
            value = init if s <= 0 else init * rate ** (s // steps if staircase else s / steps)
        except OverflowError:  # a growing schedule past the float range: inf, as in optax
            value = math.copysign(math.inf, init) if init else 0.0
        return value if end is None else bound(value, end)

    return schedule


def piecewise_constant_schedule(init_value: float, boundaries_and_scales: dict[int, float] | None = None
                                ) -> Schedule:
    """``init_value`` times every scale whose boundary has been reached (``count >= boundary``).

    Example:
        >>> s = piecewise_constant_schedule(1.0, {2: 0.5, 4: 0.1})
        >>> [s(c) for c in (0, 2, 3, 4)]
        [1.0, 0.5, 0.5, 0.05]
    """
    init = _number("piecewise_constant_schedule", "init_value", init_value)
    pairs = sorted((_steps("piecewise_constant_schedule", "a boundary", b, positive=False), float(s))
                   for b, s in (boundaries_and_scales or {}).items())

    def schedule(count: int) -> float:
        value = init
        for boundary, factor in pairs:
            if count >= boundary:
                value *= factor
        return value

    return schedule


def join_schedules(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    """Run ``schedules[i]`` between ``boundaries[i-1]`` and ``boundaries[i]``; each later schedule is
    called with the steps since its boundary (``count - boundary``).

    Example:
        >>> s = join_schedules([constant_schedule(1.0), linear_schedule(1.0, 0.0, 2)], [3])
        >>> [s(c) for c in (0, 2, 3, 4, 5)]
        [1.0, 1.0, 1.0, 0.5, 0.0]
    """
    if len(schedules) != len(boundaries) + 1:
        raise ValueError(f"join_schedules: needs one more schedule than boundaries, got {len(schedules)} "
                         f"schedules and {len(boundaries)} boundaries.")
    bounds = [_steps("join_schedules", "a boundary", b, positive=False) for b in boundaries]

    def schedule(count: int) -> float:
        value, start = schedules[0], 0
        for boundary, nxt in zip(bounds, schedules[1:]):
            if count >= boundary:
                value, start = nxt, boundary
        return float(value(count - start))

    return schedule


def warmup_constant_schedule(init_value: float, peak_value: float, warmup_steps: int) -> Schedule:
    """Linear from ``init_value`` to ``peak_value`` over ``warmup_steps``, then ``peak_value``
    (optax's rule: ``warmup_steps=0`` is the constant ``init_value``, with a warning).

    Example:
        >>> s = warmup_constant_schedule(0.0, 1.0, warmup_steps=2)
        >>> [s(c) for c in (0, 1, 2, 9)]
        [0.0, 0.5, 1.0, 1.0]
    """
    return linear_schedule(init_value, peak_value, warmup_steps)


def warmup_exponential_decay_schedule(init_value: float, peak_value: float, warmup_steps: int,
                                      transition_steps: int, decay_rate: float, transition_begin: int = 0,
                                      staircase: bool = False, end_value: float | None = None) -> Schedule:
    """Linear warmup from ``init_value`` to ``peak_value`` over ``warmup_steps``, then
    :func:`exponential_decay` from ``peak_value`` (its count starts at 0 after the warmup).

    Example:
        >>> s = warmup_exponential_decay_schedule(0.0, 1.0, 2, transition_steps=1, decay_rate=0.5)
        >>> [s(c) for c in (0, 1, 2, 3, 4)]
        [0.0, 0.5, 1.0, 0.5, 0.25]
    """
    return join_schedules([linear_schedule(init_value, peak_value, warmup_steps),
                           exponential_decay(peak_value, transition_steps, decay_rate, transition_begin,
                                             staircase, end_value)], [warmup_steps])


def piecewise_interpolate_schedule(interpolate_type: str, init_value: float,
                                   boundaries_and_scales: dict[int, float] | None = None) -> Schedule:
    """Interpolate between the values ``v_0 = init_value``, ``v_i = v_{i-1} * scale_i`` at the sorted
    boundaries ``b_i`` (``b_0 = 0``): in ``[b_i, b_{i+1})`` the value goes from ``v_i`` to ``v_{i+1}``,
    linearly (``v_i + (v_{i+1} - v_i) * f``) or by a half cosine (``v_{i+1} + (v_i - v_{i+1}) *
    (1 + cos(pi * f)) / 2``), ``f = (count - b_i) / max(b_{i+1} - b_i, 1)``; ``v_last`` after the last.

    Example:
        >>> s = piecewise_interpolate_schedule("linear", 1.0, {2: 0.5, 4: 0.0})
        >>> [s(c) for c in (0, 1, 2, 3, 4, 5)]
        [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    """
    if interpolate_type not in ("linear", "cosine"):
        raise ValueError(f"piecewise_interpolate_schedule: interpolate_type must be 'linear' or 'cosine', "
                         f"got {interpolate_type!r}.")
    pairs = sorted((_steps("piecewise_interpolate_schedule", "a boundary", b, positive=False),
                    _number("piecewise_interpolate_schedule", "a scale", s))
                   for b, s in (boundaries_and_scales or {}).items())
    if any(scale < 0 for _, scale in pairs):
        raise ValueError(f"piecewise_interpolate_schedule: scales must be >= 0, got {dict(pairs)}.")
    bounds = [0] + [b for b, _ in pairs]
    values = [_number("piecewise_interpolate_schedule", "init_value", init_value)]
    for _, scale in pairs:
        values.append(values[-1] * scale)
    cosine = interpolate_type == "cosine"

    def schedule(count: int) -> float:
        if count >= bounds[-1]:
            return values[-1]
        for i in range(len(bounds) - 1):
            if bounds[i] <= count < bounds[i + 1]:
                start, end = values[i], values[i + 1]
                f = (count - bounds[i]) / max(bounds[i + 1] - bounds[i], 1)
                if cosine:
                    return end + (start - end) / 2.0 * (math.cos(math.pi * f) + 1.0)
                return (end - start) * f + start
        return 0.0  # a negative count (optax's value there)

    return schedule


def cosine_onecycle_schedule(transition_steps: int, peak_value: float, pct_start: float = 0.3,
                             div_factor: float = 25.0, final_div_factor: float = 1e4) -> Schedule:
    """One-cycle (Smith & Topin 2018) with cosine pieces: from ``peak / div_factor`` up to ``peak`` at
    ``int(pct_start * transition_steps)``, then down to ``peak / (div_factor * final_div_factor)`` at
    ``transition_steps`` (optax's rule; torch's ``OneCycleLR`` counts the steps differently).

    Example:
        >>> s = cosine_onecycle_schedule(10, 1.0, pct_start=0.2, div_factor=10.0, final_div_factor=10.0)
        >>> [round(s(c), 4) for c in (0, 1, 2, 6, 10)]
        [0.1, 0.55, 1.0, 0.505, 0.01]
    """
    steps = _steps("cosine_onecycle_schedule", "transition_steps", transition_steps)
    peak = _number("cosine_onecycle_schedule", "peak_value", peak_value)
    return piecewise_interpolate_schedule("cosine", peak / div_factor, {
        int(pct_start * steps): div_factor, steps: 1.0 / (div_factor * final_div_factor)})


def linear_onecycle_schedule(transition_steps: int, peak_value: float, pct_start: float = 0.3,
                             pct_final: float = 0.85, div_factor: float = 25.0,
                             final_div_factor: float = 1e4) -> Schedule:
    """One-cycle with linear pieces: ``peak / div_factor`` up to ``peak`` at ``int(pct_start * n)``,
    back to ``peak / div_factor`` at ``int(pct_final * n)``, then to ``peak / final_div_factor`` at ``n =
    transition_steps`` (optax's rule).

    Example:
        >>> s = linear_onecycle_schedule(10, 1.0, pct_start=0.2, pct_final=0.6, div_factor=10.0)
        >>> [round(s(c), 4) for c in (0, 1, 2, 4, 6, 10)]
        [0.1, 0.55, 1.0, 0.55, 0.1, 0.0001]
    """
    steps = _steps("linear_onecycle_schedule", "transition_steps", transition_steps)
    peak = _number("linear_onecycle_schedule", "peak_value", peak_value)
    return piecewise_interpolate_schedule("linear", peak / div_factor, {
        int(pct_start * steps): div_factor, int(pct_final * steps): 1.0 / div_factor,
        steps: 1.0 / final_div_factor})


def sgdr_schedule(cosine_kwargs: Sequence[dict[str, float]]) -> Schedule:
    """SGDR, warm restarts (Loshchilov & Hutter 2017): one :func:`warmup_cosine_decay_schedule` per entry
    of ``cosine_kwargs`` (its keyword arguments), run one after the other, each for its ``decay_steps``.

    Example:
        >>> cycle = dict(init_value=0.0, peak_value=1.0, warmup_steps=1, decay_steps=3)
        >>> s = sgdr_schedule([cycle, cycle])
        >>> [round(s(c), 2) for c in range(6)]
        [0.0, 1.0, 0.5, 0.0, 1.0, 0.5]
    """
    schedules, boundaries, step = [], [], 0
    for kwargs in cosine_kwargs:
        schedules.append(warmup_cosine_decay_schedule(**kwargs))
        step += int(kwargs["decay_steps"])
        boundaries.append(step)
    if not schedules:
        raise ValueError("sgdr_schedule: cosine_kwargs must hold at least one cycle's arguments.")
    return join_schedules(schedules, boundaries[:-1])

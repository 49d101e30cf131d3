"""Formatting the results as text tables, and checking them against the targets of issue 6."""

from __future__ import annotations

from typing import Any

TARGETS = [
    # (config, what, comparison, goal)
    ("784-128-10:100", "speedup vs torch", ">=", 1.6),
    ("784-128-10:100", "speedup vs jax", ">=", 1.0),
    ("784-128-10:100", "speedup vs jax (aim)", ">=", 1.15),
    ("784-128-10:100", "time / floor", "<=", 1.2),
    ("784-128-10:32", "speedup vs torch", ">=", 2.0),
    ("784-1024-1024-10:256", "time / floor", "<=", 1.1),
    ("784-1024-1024-10:256", "speedup vs torch", ">=", 1.5),
]


def speed_table(rows: list[dict[str, Any]], title: str) -> str:
    """Rows of samples/s, time relative to the floor, and fnlearn's speedup over each contestant."""
    lines = [title, f"{'config':<22} {'contestant':<16} {'steps':>6} {'samples/s':>11} {'time/floor':>11} "
             f"{'fnlearn speedup':>16}"]
    last = None
    for r in rows:
        config = r["config"] if r["config"] != last else ""
        last = r["config"]
        floor = f"{r['time_over_floor']:.2f}" if r.get("time_over_floor") is not None else "-"
        speedup = f"{r['fnlearn_speedup']:.2f}x" if r.get("fnlearn_speedup") is not None else "-"
        lines.append(f"{config:<22} {r['contestant']:<16} {r['steps']:>6} {r['samples_per_s']:>11,.0f} "
                     f"{floor:>11} {speedup:>16}")
    lines.append("time/floor and fnlearn speedup (= this contestant's time / fnlearn's time) are medians "
                 "of per-round ratios.")
    return "\n".join(lines)


def overhead_table(us: dict[str, float]) -> str:
    """Microseconds per call."""
    lines = ["per-call overhead on tiny inputs (x of shape (1, 4), MLP 4-8-2), microseconds per call"]
    lines += [f"  {name:<40} {v:>9.1f}" for name, v in us.items()]
    return "\n".join(lines)


def memory_table(rows: list[dict[str, Any]]) -> str:
    """Peak memory of a training step above what lives between steps, against the issue's budget."""
    lines = ["peak memory of a training step (tracemalloc), above data + params + optimizer state",
             f"{'config':<22} {'contestant':<16} {'peak KiB':>9} {'act+grads KiB':>14} {'params KiB':>11} "
             f"{'peak/params':>12} {'over budget KiB':>16}"]
    for r in rows:
        lines.append(f"{r['config']:<22} {r['contestant']:<16} {r['step_peak'] / 1024:>9,.0f} "
                     f"{r['activations_and_grads'] / 1024:>14,.0f} {r['params'] / 1024:>11,.0f} "
                     f"{r['step_peak'] / r['params']:>12.2f} {r['excess'] / 1024:>16,.0f}")
    lines.append("budget (issue 6): one batch of activations + their gradients + a small constant "
                 f"({SMALL_CONSTANT // 1024} KiB); counting one parameter gradient too, + params.")
    return "\n".join(lines)


SMALL_CONSTANT = 64 * 1024
"""The "small constant" of the memory target, in bytes."""


def check_targets(train_rows: list[dict[str, Any]],
                  memory_rows: list[dict[str, Any]] = ()) -> list[dict[str, Any]]:  # type: ignore[assignment]
    """Each target of issue 6 whose configuration ran: the measured value and whether it is met.

    Memory, two readings of "one batch of activations and their gradients, plus a small constant"
    (peak above data + params + optimizer state): strictly, those alone; and counting one gradient of
    the parameters too (the weight-gradient product must land somewhere before it is applied; the
    in-place hand-written NumPy step holds it as well).
    """
    out = []
    for config, what, cmp, goal in TARGETS:
        value = _target_value(train_rows, config, what)
        if value is not None:
            out.append(_verdict(config, what, cmp, goal, value))
    for r in memory_rows:
        if r["contestant"] != "fnlearn":
            continue
        strict = r["activations_and_grads"] + SMALL_CONSTANT
        out.append(_verdict(r["config"], "memory / strict budget", "<=", 1.0, r["step_peak"] / strict))
        out.append(_verdict(r["config"], "memory / budget + grads", "<=", 1.0,
                            r["step_peak"] / (strict + r["params"])))
    return out


def _verdict(config: str, what: str, cmp: str, goal: float, value: float) -> dict[str, Any]:
    met = value >= goal if cmp == ">=" else value <= goal
    return {"config": config, "what": what, "goal": f"{cmp} {goal}", "value": round(value, 3),
            "met": met, "margin": round(value / goal - 1.0, 3)}


def _target_value(rows: list[dict[str, Any]], config: str, what: str) -> float | None:
    by_name = {r["contestant"]: r for r in rows if r["config"] == config}
    if "fnlearn" not in by_name:
        return None
    if what == "time / floor":
        return by_name["fnlearn"].get("time_over_floor")
    other = what.split(" vs ")[1].split(" ")[0]
    return by_name[other]["fnlearn_speedup"] if other in by_name else None


def targets_table(targets: list[dict[str, Any]]) -> str:
    """One line per target: met, or missed by how much."""
    lines = ["targets (issue 6), fnlearn training epoch"]
    for t in targets:
        verdict = "met" if t["met"] else "MISSED"
        by = f"{abs(t['margin']) * 100:.0f}% {'better' if t['met'] else 'short'}"
        lines.append(f"  {t['config']:<22} {t['what']:<24} {t['goal']:<8} measured {t['value']:<7} "
                     f"{verdict} ({by})")
    return "\n".join(lines)

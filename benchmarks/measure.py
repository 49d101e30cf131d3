"""Measuring: interleaved timing, per-call overhead, peak memory, and what machine and BLAS ran it."""

from __future__ import annotations

import gc
import os
import platform
import statistics
import time
import tracemalloc
from typing import Any, Callable

import numpy as np

BLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = time.perf_counter
"""The clock every measurement reads; ``use_clock("cpu")`` switches to this process's CPU time."""


def use_clock(name: str) -> None:
    """Measure with the wall clock (the default) or with CPU time (``"cpu"``: all of this process's
    threads; robust to other processes taking the cores, meaningful with one BLAS thread)."""
    global clock
    clock = CLOCKS[name]


def interleaved(fns: dict[str, Callable[[], None]], repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each function, over ``repeats`` rounds A B C, B C A, ... (drift cancels).

    The order rotates each round so no function always runs right after the same other one. The
    garbage collector is off while a function runs (as in ``timeit``) and runs between calls.
    """
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for n in names[r % len(names):] + names[:r % len(names)]:
            gc.collect()
            gc.disable()
            try:
                start = clock()
                fns[n]()
                times[n].append(clock() - start)
            finally:
                gc.enable()
    return times


def median_ratio(num: list[float], den: list[float]) -> float:
    """The median over rounds of ``num[r] / den[r]``: a ratio of times taken close together."""
    return statistics.median(a / b for a, b in zip(num, den))


def per_call(fn: Callable[[], Any], *, target_seconds: float = 0.05, repeats: int = 7) -> float:
    """Median microseconds per call of ``fn`` (loops sized to take about ``target_seconds``)."""
    fn()
    n, elapsed = 1, 0.0
    while elapsed < target_seconds / 4 and n < 1 << 22:
        n *= 4
        start = clock()
        for _ in range(n):
            fn()
        elapsed = clock() - start
    loops = max(1, int(n * target_seconds / max(elapsed, 1e-9)))
    samples = []
    for _ in range(repeats):
        start = clock()
        for _ in range(loops):
            fn()
        samples.append((clock() - start) / loops)
    return statistics.median(samples) * 1e6


def step_peak_bytes(train: Callable[[int], None], steps: int) -> int:
    """The most memory a training step holds at once, above what is alive between steps.

    Runs one step under ``tracemalloc`` (so the parameters it returns are traced), then ``steps``
    more, and returns their peak minus what was allocated when they started (the parameters and
    optimizer state). NumPy reports its data buffers to ``tracemalloc``, so every array a step
    creates is counted; BLAS workspace and PyTorch/JAX buffers are not.
    """
    gc.collect()
    tracemalloc.start()
    try:
        train(1)
        gc.collect()
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        train(steps)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def blas_info() -> list[dict[str, Any]]:
    """The BLAS libraries loaded in this process (threadpoolctl), or one entry saying 'unknown'."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"library": "unknown (threadpoolctl is not installed)", "kernel": "unknown",
                 "threads": "unknown", "version": "unknown", "file": "unknown"}]
    out = []
    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            out.append({"library": pool.get("internal_api"), "kernel": pool.get("architecture", "unknown"),
                        "threads": pool.get("num_threads"), "version": pool.get("version"),
                        "file": os.path.basename(pool.get("filepath", ""))})
    return out or [{"library": "unknown (none found)", "kernel": "unknown", "threads": "unknown",
                    "version": "unknown", "file": ""}]


def machine_info() -> dict[str, Any]:
    """Python, NumPy, CPU, core count, load average and the BLAS override variables."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"python": platform.python_version(), "numpy": np.__version__, "cpu": cpu,
            "cores": os.cpu_count(), "loadavg_start": loadavg(),
            "env": {v: os.environ.get(v, "(unset)") for v in BLAS_VARIABLES}}


def framework_versions(names: list[str]) -> dict[str, str]:
    """The versions (and thread counts) of the frameworks that ran."""
    out = {}
    if "torch" in names:
        import torch
        blas = next((part.split("=", 1)[1] for part in torch.__config__.show().replace(",", " ").split()
                     if part.startswith("BLAS_INFO=")), "unknown")
        out["torch"] = f"{torch.__version__} ({torch.get_num_threads()} threads, BLAS {blas})"
    if "jax" in names:
        import jax
        out["jax"] = f"{jax.__version__} ({jax.default_backend()})"
    return out


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages, or 'unknown'."""
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def limit_threads(n: int | None) -> None:
    """Limit the BLAS libraries of this process to ``n`` threads (threadpoolctl); nothing for None."""
    if not n:
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        print("threadpoolctl is not installed: BLAS keeps its default threads (pip install threadpoolctl)")
        return
    threadpool_limits(n)


def blas_line(machine: dict[str, Any]) -> str:
    """One line: the BLAS override variables and which BLAS library, kernel and threads ran."""
    return ("; ".join(f"{k}={v}" for k, v in machine["env"].items()) + "; BLAS: "
            + ", ".join(f"{b['library']} {b['version']} kernel {b['kernel']} ({b['threads']} threads)"
                        for b in blas_info()))

"""Benchmark fnlearn's MLP training step against hand-written NumPy, the GEMM floor, PyTorch and JAX.

Usage (from the repository root):

    python3 benchmarks/run.py                      # the full run (about 5-10 minutes on 2 cores)
    python3 benchmarks/run.py --quick              # a few seconds per configuration
    python3 benchmarks/run.py --configs 784-128-10:100 --steps 200 --repeats 5 --json out.json
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 benchmarks/run.py   # without the overrides

Everything runs in one process; contestants are timed interleaved (A B C, B C A, ...) and every
figure is a median over the rounds. See benchmarks/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing fnlearn

import contestants  # noqa: E402
import measure  # noqa: E402
import overhead  # noqa: E402
import report  # noqa: E402

DEFAULT_CONFIGS = ["784-128-10:32", "784-128-10:100", "784-128-10:1000", "784-1024-1024-10:256"]
N_TRAIN = 60_000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", default=",".join(DEFAULT_CONFIGS),
                   help="comma-separated SIZES:BATCH, e.g. 784-128-10:100 (default: the four of issue 6)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds per measurement (default 5)")
    p.add_argument("--steps", type=int, default=None, help="steps per timed epoch (default: a full epoch)")
    p.add_argument("--epochs-fraction", type=float, default=1.0, help="time this fraction of an epoch")
    p.add_argument("--quick", action="store_true", help="3 rounds of a tenth of an epoch")
    p.add_argument("--round-seconds", type=float, default=25.0, help="cap the steps so that one round "
                   "of all contestants takes about this long (default 25; the output shows the steps)")
    p.add_argument("--frameworks", default="torch,jax", help="which of torch,jax to include ('none': neither)")
    p.add_argument("--skip", default="", help="comma-separated sections to skip: infer,overhead,memory")
    p.add_argument("--synthetic", action="store_true", help="use random data of MNIST's shape")
    p.add_argument("--data-dir", default=None, help="the MNIST directory (default: FNLEARN_DATA_DIR, "
                   "else ../shared/data/mnist beside the repository)")
    p.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (default 0.01)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="wall time (default), or this "
                   "process's CPU time for A/B runs on a busy machine (use with --threads 1 "
                   "--frameworks none)")
    p.add_argument("--threads", type=int, default=None, help="limit every contestant to this many "
                   "threads: BLAS (threadpoolctl), torch.set_num_threads, XLA's CPU thread pool")
    p.add_argument("--baseline", default=None, help="also time the fnlearn of this checkout (e.g. a git "
                   "worktree of an older commit) as the contestant 'fnlearn@base'")
    p.add_argument("--samples", type=int, default=N_TRAIN, help="training examples to use (default 60000)")
    p.add_argument("--malloc", choices=("default", "reuse"), default="default", help="'reuse': call "
                   "fl.reuse_freed_memory() first, as the examples do; it is process-wide, so every "
                   "contestant runs under it (default: glibc's defaults)")
    args = p.parse_args(argv)
    args.parsed_configs = [parse_config(c) for c in args.configs.split(",")]
    if args.quick:
        args.repeats, args.epochs_fraction = min(args.repeats, 3), min(args.epochs_fraction, 0.1)
    return args


def parse_config(text: str) -> tuple[tuple[int, ...], int]:
    """``"784-128-10:100"`` -> ``((784, 128, 10), 100)``."""
    try:
        sizes, batch = text.strip().split(":")
        return tuple(int(s) for s in sizes.split("-")), int(batch)
    except ValueError:
        raise SystemExit(f"run.py: a config must look like 784-128-10:100, got {text!r}.") from None


def load_data(synthetic: bool, data_dir: str | None, samples: int) -> tuple[np.ndarray, np.ndarray, str]:
    """MNIST's training images as float32 rows in [0, 1] and int64 labels, else random data of that shape."""
    why = "--synthetic was given"
    if not synthetic:
        from fnlearn.datasets import mnist
        directory = data_dir or os.environ.get("FNLEARN_DATA_DIR") or str(HERE.parent.parent / "shared" / "data" / "mnist")
        try:
            images, labels = mnist("train", directory, download=False, progress=False)
            X = np.multiply(images.reshape(len(images), -1), np.float32(1 / 255), dtype=np.float32)
            return X[:samples], labels[:samples].astype(np.int64), f"MNIST training set from {directory}"
        except Exception as err:  # noqa: BLE001 - any failure falls back to random data, said in the output
            why = f"MNIST could not be loaded from {directory} ({type(err).__name__})"
    rng = np.random.default_rng(0)
    X = rng.random((samples, 784), dtype=np.float32)
    return X, rng.integers(0, 10, samples), f"random data of MNIST's shape ({why})"


def available_frameworks(wanted: str, threads: int | None = None) -> tuple[list[str], dict[str, str]]:
    """The frameworks that import, and why each missing one is missing."""
    names, missing = [], {}
    for name in [w.strip() for w in wanted.split(",") if w.strip() and w.strip() != "none"]:
        if name == "jax":
            os.environ.setdefault("JAX_PLATFORMS", "cpu")
            if threads:  # must be set before jax is imported
                os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen="
                                           f"false intra_op_parallelism_threads={threads}").strip()
        try:
            __import__(name)
            names.append(name)
        except ImportError as err:
            missing[name] = f"not installed ({err})"
    return names, missing


def limit_threads(n: int, frameworks: list[str]) -> None:
    """Limit PyTorch's intra-op threads to ``n`` (XLA's are set by ``available_frameworks``)."""
    if "torch" in frameworks:
        import torch
        torch.set_num_threads(n)


def bench_config(config: str, X: np.ndarray, Y: np.ndarray, names: list[str],
                 args: argparse.Namespace) -> dict[str, Any]:
    """Training and inference rows, weight agreement and memory for one configuration."""
    sizes, batch = parse_config(config)
    full = len(X) // batch
    steps = max(1, min(full, args.steps if args.steps else int(full * args.epochs_fraction)))
    weights = contestants.initial_weights(sizes)
    cs = [contestants.BUILDERS[n](weights, X, Y, batch, args.lr) for n in ["floor", "fnlearn", "fnlearn-unfused", "numpy"] + names]
    if args.baseline_module is not None:
        cs.insert(3, contestants.fnlearn_mlp(weights, X, Y, batch, args.lr, args.baseline_module, "fnlearn@base"))
    warm = min(steps, 3)
    for c in cs:
        c.train(1)  # warm-up (and JAX's compilation); every contestant does the same steps
    per_step = sum(measure.interleaved({c.name: partial(c.train, warm - 1 or 1) for c in cs}, 1)[c.name][0]
                   for c in cs) / max(warm - 1, 1)
    if per_step * steps > args.round_seconds:
        steps = max(1, int(args.round_seconds / per_step))  # keep a round (all contestants) short
    result: dict[str, Any] = {"config": config, "steps": steps, "batch": batch,
                              "max_weight_difference_from_numpy": contestants.agree(cs)}
    times = measure.interleaved({c.name: partial(c.train, steps) for c in cs}, args.repeats)
    result["train"] = _rows(config, times, steps * batch)
    if "infer" not in args.skip:
        for c in cs:
            c.infer(min(steps, 3))
        times = measure.interleaved({c.name: partial(c.infer, steps) for c in cs}, args.repeats)
        result["infer"] = _rows(config, times, steps * batch)
    if "memory" not in args.skip:
        result["memory"] = [_memory_row(config, sizes, batch, weights, c, min(steps, 20))
                            for c in cs if c.name in ("fnlearn", "fnlearn-unfused", "fnlearn@base", "numpy")]
    return result


def _rows(config: str, times: dict[str, list[float]], samples: int) -> list[dict[str, Any]]:
    rows = []
    for name, ts in times.items():
        seconds = statistics.median(ts)
        rows.append({"config": config, "contestant": name, "steps": samples // int(config.split(":")[1]),
                     "seconds": seconds, "samples_per_s": samples / seconds,
                     "time_over_floor": measure.median_ratio(ts, times["floor"]),
                     "fnlearn_speedup": measure.median_ratio(ts, times["fnlearn"]), "all_seconds": ts})
    return rows


def _memory_row(config: str, sizes: tuple[int, ...], batch: int, weights: list[np.ndarray],
                c: contestants.Contestant, steps: int) -> dict[str, Any]:
    peak = measure.step_peak_bytes(c.train, steps)
    act_elems = batch * (2 * sum(sizes[1:-1]) + sizes[-1])  # Dense and ReLU outputs, and the logits
    acts = 2 * act_elems * 4  # ... and their gradients, float32
    params = sum(w.nbytes for w in weights)
    return {"config": config, "contestant": c.name, "step_peak": peak, "activations_and_grads": acts,
            "params": params, "excess": peak - acts}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    started = time.time()
    measure.use_clock(args.clock)
    names, missing = available_frameworks(args.frameworks, args.threads)
    args.baseline_module = contestants.load_baseline(args.baseline) if args.baseline else None
    malloc = args.malloc
    if malloc == "reuse":
        import fnlearn as fl
        malloc = "reuse (fl.reuse_freed_memory)" if fl.reuse_freed_memory() else "default (not glibc)"
    X, Y, data_note = load_data(args.synthetic, args.data_dir, args.samples)
    results: dict[str, Any] = {"command": " ".join([os.path.basename(sys.executable)] + sys.argv),
                               "machine": measure.machine_info(), "data": data_note, "clock": args.clock,
                               "missing": missing, "malloc": malloc}
    if args.threads:  # after every import, so that every BLAS library loaded is limited
        from threadpoolctl import threadpool_limits
        limit_threads(args.threads, names)
        args.blas_limit = threadpool_limits(args.threads, user_api="blas")  # kept for the whole run
    results["frameworks"] = measure.framework_versions(names)
    results["configs"] = [bench_config(c, X, Y, names, args) for c in args.configs.split(",")]
    if "overhead" not in args.skip:
        results["overhead_us"] = overhead.measure(names, target_seconds=0.02 if args.quick else 0.05)
    train_rows = [r for c in results["configs"] for r in c["train"]]
    memory_rows = [r for c in results["configs"] for r in c.get("memory", [])]
    results["targets"] = report.check_targets(train_rows, memory_rows)
    results["blas"] = measure.blas_info()  # after the frameworks loaded theirs
    results["machine"]["loadavg_end"] = measure.loadavg()
    results["wall_seconds"] = round(time.time() - started, 1)
    print(render(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return results


def render(results: dict[str, Any]) -> str:
    """The whole report as text."""
    m = results["machine"]
    parts = [f"command: {results['command']}",
             f"machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, NumPy {m['numpy']}; "
             f"load average {m['loadavg_start']} at start, {m['loadavg_end']} at end",
             "environment: " + ", ".join(f"{k}={v}" for k, v in m["env"].items())
             + f"; malloc: {results.get('malloc', 'default')}",
             "BLAS: " + "; ".join(f"{b['library']} {b['version']} kernel {b['kernel']}, {b['threads']} threads "
                                  f"({b['file']})" for b in results["blas"]),
             "frameworks: " + (", ".join(f"{k} {v}" for k, v in results["frameworks"].items()) or "none")
             + "".join(f"; {k} {v}" for k, v in results["missing"].items()),
             f"data: {results['data']}; clock: {results['clock']}", ""]
    for c in results["configs"]:
        agree = ", ".join(f"{k} {v:.1e}" for k, v in c["max_weight_difference_from_numpy"].items())
        parts.append(f"{c['config']}: weights after the warm-up steps, max |difference| from numpy: {agree}")
    parts.append(report.speed_table([r for c in results["configs"] for r in c["train"]],
                                    "\ntraining (forward, softmax cross-entropy, backward, SGD update), float32"))
    if all("infer" in c for c in results["configs"]):
        parts.append(report.speed_table([r for c in results["configs"] for r in c["infer"]],
                                        "\ninference (forward only), float32"))
    if all("memory" in c for c in results["configs"]):
        parts.append("\n" + report.memory_table([r for c in results["configs"] for r in c["memory"]]))
    if "overhead_us" in results:
        parts.append("\n" + report.overhead_table(results["overhead_us"]))
    parts.append("\n" + report.targets_table(results["targets"]))
    parts.append(f"\nwall time {results['wall_seconds']} s")
    return "\n".join(parts)


if __name__ == "__main__":
    main()

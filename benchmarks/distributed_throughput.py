"""Data-parallel training throughput with fnlearn.distributed: the big MLP, a fixed number of SGD steps.

    python3 benchmarks/distributed_throughput.py               # one rank
    mpiexec -n 2 python3 benchmarks/distributed_throughput.py  # two ranks

The model is 784-1024-1024-10 (ReLU, float32, about 1.87 M parameters); every rank trains on its own
synthetic batch of --batch-size examples (the values do not change the cost). A step is
``distributed.value_and_grad`` (forward, backward and one Allreduce of the gradients) plus the SGD update.
Each rank's BLAS gets ``cores // ranks`` threads (through threadpoolctl, when installed), so the ranks
do not oversubscribe the cores. Rank 0 prints the step time (best and median of --repeats runs of
--steps steps: the best is the least disturbed by other processes on a shared machine), the throughput
over all ranks, and the time of ``allreduce_mean`` alone (packing, Allreduce, unpacking), measured
separately on the same gradients.
"""

from __future__ import annotations

import argparse
import os
import time
from contextlib import nullcontext

import numpy as np

import fnlearn as fl
from fnlearn import distributed as dist
from fnlearn.tree import tree_map, tree_size


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, default=256, help="examples per rank and step")
    p.add_argument("--steps", type=int, default=20, help="timed steps per repeat")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats; the best and the median are shown")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p.add_argument("--threads", type=int, default=None, help="BLAS threads per rank (default: cores // ranks)")
    return p.parse_args()


def thread_limit(threads: int):
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return nullcontext()
    return threadpool_limits(limits=threads, user_api="blas")


def timed(fn, steps: int, repeats: int) -> tuple[float, float]:
    """Seconds per call of ``fn``: the best and the median over ``repeats`` runs of ``steps`` calls."""
    runs = []
    for _ in range(repeats):
        dist.allreduce_mean({"sync": np.zeros(1)})  # all ranks start together
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        runs.append((time.perf_counter() - start) / steps)
    return min(runs), float(np.median(runs))


def main() -> None:
    args = parse_args()
    n, cores = dist.size(), os.cpu_count() or 1
    threads = args.threads or max(1, cores // n)
    model = fl.serial(fl.Dense(1024), fl.Relu(), fl.Dense(1024), fl.Relu(), fl.Dense(10))
    params = dist.broadcast(model.init(np.random.default_rng(0), (-1, 784)))
    rng = np.random.default_rng(1 + dist.rank())
    x = rng.random((args.batch_size, 784), dtype=np.float32)
    y = rng.integers(0, 10, args.batch_size)
    grad_fn = dist.value_and_grad(model.apply, fl.losses.softmax_cross_entropy)
    state = {"params": params}

    def step() -> None:
        _, grads = grad_fn(state["params"], x, y)
        state["params"] = tree_map(lambda p, g: p - 0.01 * g, state["params"], grads)

    with thread_limit(threads):
        timed(step, args.warmup, 1)
        step_best, step_median = timed(step, args.steps, args.repeats)
        _, grads = grad_fn(state["params"], x, y)
        reduce_best, reduce_median = timed(lambda: dist.allreduce_mean(grads), args.steps, args.repeats)
    if dist.is_root():
        nbytes = tree_size(grads) * 4
        print(f"ranks {n}  BLAS threads/rank {threads}  batch/rank {args.batch_size}  "
              f"global batch {n * args.batch_size}  {args.repeats} x {args.steps} steps  (best / median)")
        print(f"step {1e3 * step_best:.1f} / {1e3 * step_median:.1f} ms  throughput "
              f"{n * args.batch_size / step_best:.0f} / {n * args.batch_size / step_median:.0f} examples/s  "
              f"allreduce_mean {1e3 * reduce_best:.2f} / {1e3 * reduce_median:.2f} ms of {nbytes / 1e6:.2f} MB")


if __name__ == "__main__":
    with dist.abort_on_error():
        main()

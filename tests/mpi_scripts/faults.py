"""Run under ``mpiexec -n N python3 faults.py MODE``: rank 1 misbehaves at step 3 of a training loop.

MODE: ``raise`` (an exception), ``exit`` (os._exit(3), no exception), ``mismatch_first`` (rank 1's
gradient tree has another shape from the first step), ``mismatch_later`` (from step 3 on, a transposed
leaf: as many numbers, another shape),
``bcast_mismatch`` (rank 1 builds its parameters with another hidden size). A rank that gets through
all steps prints ``rank R finished``; tests/test_distributed.py checks that none does.
"""

from __future__ import annotations

import os
import sys

import numpy as np

import fnlearn as fl
from fnlearn import distributed as dist


def main(mode: str) -> None:
    r = dist.rank()
    hidden = 7 if mode == "bcast_mismatch" and r == 1 else 8
    net = fl.serial(fl.Dense(hidden), fl.Tanh(), fl.Dense(3))
    params = dist.broadcast(net.init(np.random.default_rng(0), (-1, 5)))
    for step in range(20):
        grads = params
        if r == 1 and mode == "mismatch_first":
            grads = {**params, "2": {"w": np.zeros((8, 4), np.float32), "b": params["2"]["b"]}}
        if r == 1 and mode == "mismatch_later" and step >= 3:  # as many numbers, another shape
            grads = {**params, "2": {"w": params["2"]["w"].T, "b": params["2"]["b"]}}
        if r == 1 and step == 3 and mode == "raise":
            raise RuntimeError("injected failure on rank 1")
        if r == 1 and step == 3 and mode == "exit":
            os._exit(3)
        dist.allreduce_mean(grads)
    print(f"rank {r} finished", flush=True)


if __name__ == "__main__":
    with dist.abort_on_error():
        main(sys.argv[1])

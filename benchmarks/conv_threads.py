"""Would fnlearn's own threads help convolutions? Conv2D(64, 3) forward and VJP, three ways.

The second convolution of PyTorch's MNIST example network (x of shape (64, 26, 26, 32), float32):
- ``blas1``: BLAS limited to one thread;
- ``blas``: BLAS with its default threads (OpenBLAS's own parallel products);
- ``halves``: BLAS at one thread, and the batch split in two halves run on two Python threads
  (NumPy releases the GIL in products and large elementwise loops).
Each mode runs in its own process (a BLAS thread limit is process-wide), in turn, ``--rounds`` times.

    python3 benchmarks/conv_threads.py
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

import fnlearn as fl

sys.path.insert(0, str(Path(__file__).resolve().parent))
import measure  # noqa: E402

MODES = ("blas1", "blas", "halves")


def run_mode(mode: str, repeats: int) -> float:
    """Median seconds of one forward + VJP in this process, under ``mode``."""
    measure.limit_threads(1 if mode in ("blas1", "halves") else None)
    fl.reuse_freed_memory()
    rng = np.random.default_rng(0)
    layer = fl.Conv2D(64, 3)
    x = rng.standard_normal((64, 26, 26, 32), dtype=np.float32)
    params = layer.init(rng, x.shape)
    dy = rng.standard_normal((64, 24, 24, 64), dtype=np.float32)
    pool = ThreadPoolExecutor(2)

    def part(s: slice):
        _, vjp = layer.apply(params, x[s])
        return vjp(dy[s])

    def once():
        if mode == "halves":
            for f in [pool.submit(part, s) for s in (slice(0, 32), slice(32, 64))]:
                f.result()
        else:
            part(slice(None))

    once()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        once()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> dict[str, list[float]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=2, help="processes per mode, in turn")
    p.add_argument("--repeats", type=int, default=15, help="timed calls per process")
    p.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)  # one child process
    args = p.parse_args(argv)
    if args.mode:
        print(run_mode(args.mode, args.repeats))
        return {}
    print(measure.blas_line(measure.machine_info()))
    results: dict[str, list[float]] = {m: [] for m in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            out = subprocess.run([sys.executable, __file__, "--mode", mode, "--repeats",
                                  str(args.repeats)], check=True, capture_output=True, text=True)
            results[mode].append(float(out.stdout.split()[-1]))
    for mode, ts in results.items():
        print(f"{mode:<7} Conv2D(64, 3) forward + VJP, median ms per process: "
              + ", ".join(f"{1e3 * t:.1f}" for t in ts))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])

"""Training-step time of the row-MNIST LSTM of examples/mnist_rnn.py: fnlearn against PyTorch eager.

The same network (``LSTM(128)`` on 28 steps of 28 pixels, its last state into ``Dense(10)``), the same
float32 batches (B 64, T 28, F 28), Adam, softmax cross-entropy. The contestants alternate blocks of
steps (the order rotates each round, so drift cancels); the medians of the rounds are reported with the
epoch time they imply (60,000 images), and the median of the per-round ratios. The report says which
BLAS kernel ran and how OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE were set, and the load average: on a
shared machine the numbers are noisy.

    python3 benchmarks/lstm.py                       # the machine's BLAS settings
    python3 benchmarks/lstm.py --threads 1 --rounds 7
    python3 benchmarks/lstm.py --threads 1 --clock cpu   # CPU time: for a machine that others load
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fnlearn as fl  # noqa: E402
import measure  # noqa: E402
from measure import interleaved, loadavg, machine_info, median_ratio  # noqa: E402

HIDDEN, STEPS, FEATURES, CLASSES = 128, 28, 28, 10


def fnlearn_step(learning_rate: float):
    model = fl.serial(fl.LSTM(HIDDEN), fl.Dense(CLASSES))
    params = model.init(np.random.default_rng(0), (-1, STEPS, FEATURES))
    opt = fl.optim.adam(learning_rate)
    train_step = fl.train_step(model.apply, fl.losses.softmax_cross_entropy, opt)
    box = {"params": params, "state": opt.init(params)}

    def step(x, y):
        box["params"], box["state"], loss = train_step(box.pop("params"), box.pop("state"), x, y)
        return loss
    return step


def torch_step(learning_rate: float):
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(FEATURES, HIDDEN, batch_first=True)
            self.head = nn.Linear(HIDDEN, CLASSES)

        def forward(self, x):
            return self.head(self.lstm(x)[1][0][0])

    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=learning_rate)
    loss_fn = nn.CrossEntropyLoss()

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        opt.step()
        return float(loss.detach())
    return step


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=20, help="steps per contestant per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="limit BLAS and torch to N threads")
    p.add_argument("--no-torch", action="store_true", help="time fnlearn only")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="'cpu': this process's CPU time (robust to other processes; use with --threads 1)")
    p.add_argument("--malloc", choices=("default", "reuse"), default="default",
                   help="'reuse': call fl.reuse_freed_memory() first, as the examples do (process-wide)")
    args = p.parse_args(argv)
    measure.use_clock(args.clock)
    if args.malloc == "reuse" and not fl.reuse_freed_memory():
        print("fl.reuse_freed_memory() changed nothing here (not glibc)")
    measure.limit_threads(args.threads)
    rng = np.random.default_rng(0)
    x = rng.random((args.batch_size * args.steps, STEPS, FEATURES), dtype=np.float32)
    y = rng.integers(0, CLASSES, len(x))
    contestants = {"fnlearn": fnlearn_step(2e-3)}
    if not args.no_torch:
        try:
            import torch
            if args.threads:
                torch.set_num_threads(args.threads)
            contestants["torch"] = torch_step(2e-3)
        except ImportError:
            print("torch is not installed: timing fnlearn only (pip install torch==2.13.0)")

    def block(step):
        def run():
            for i in range(args.steps):
                s = slice(i * args.batch_size, (i + 1) * args.batch_size)
                step(x[s], y[s])
        return run

    for step in contestants.values():  # warm-up
        step(x[:args.batch_size], y[:args.batch_size])
    machine = machine_info()  # the load average before timing
    times = interleaved({name: block(step) for name, step in contestants.items()}, args.rounds)
    print(f"row-MNIST LSTM({HIDDEN}) + Dense({CLASSES}) training step, batch {args.batch_size}, T {STEPS}, "
          f"F {FEATURES}, float32, Adam; median of {args.rounds} interleaved rounds of {args.steps} steps; "
          f"clock: {args.clock}; malloc: {args.malloc}")
    print(f"BLAS threads: {args.threads or 'default'}; " + measure.blas_line(machine))
    print(f"cpu: {machine['cpu']} ({machine['cores']} cores); load average at start {machine['loadavg_start']}, "
          f"at end {loadavg()}")
    print(f"{'contestant':<10} {'ms/step':>8} {'samples/s':>10} {'epoch (60k), s':>15}")
    results = {}
    for name, ts in times.items():
        t = statistics.median(ts) / args.steps
        results[name] = t
        print(f"{name:<10} {1e3 * t:8.2f} {args.batch_size / t:10,.0f} {60000 / args.batch_size * t:15.1f}")
    if "torch" in results:
        ratio = median_ratio(times["torch"], times["fnlearn"])
        results["speedup"] = ratio
        print(f"fnlearn speedup over torch (median of per-round ratios): {ratio:.2f}x")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])

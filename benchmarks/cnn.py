"""Training-step time of the MNIST CNN of examples/mnist_cnn.py: fnlearn against PyTorch eager.

The same network (``cnn_model()``: Conv2D(32, 3, "same") -> Relu -> MaxPool2D(2) -> Conv2D(64, 3, "same")
-> Relu -> MaxPool2D(2) -> Flatten -> Dense(128) -> Relu -> Dense(10)), the same float32 batches, Adam,
softmax cross-entropy;
the two contestants alternate step blocks (A B A B ...) so drift cancels, and the medians of the rounds
are reported, with the epoch time they imply (60,000 images).

    python3 benchmarks/cnn.py                       # the machine's BLAS settings
    python3 benchmarks/cnn.py --threads 1 --rounds 3
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import fnlearn as fl

sys.path.insert(0, str(Path(__file__).resolve().parent))
import measure  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _example():
    spec = importlib.util.spec_from_file_location("mnist_cnn_example", ROOT / "examples" / "mnist_cnn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fnlearn_step(batch: int):
    model = _example().cnn_model()
    params = model.init(np.random.default_rng(0), (-1, 28, 28, 1))
    opt = fl.optim.adam(1e-3)
    train_step = fl.train_step(model.apply, fl.losses.softmax_cross_entropy, opt)
    box = {"params": params, "state": opt.init(params)}

    def step(x, y):
        box["params"], box["state"], loss = train_step(box.pop("params"), box.pop("state"), x, y)
        return loss
    return step


def torch_step(batch: int):
    import torch
    from torch import nn
    net = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(7 * 7 * 64, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    def step(x, y):
        xt = torch.from_numpy(x).permute(0, 3, 1, 2)  # NHWC -> NCHW view, as a user would feed it
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(xt), torch.from_numpy(y))
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
    p.add_argument("--malloc", choices=("default", "reuse"), default="default",
                   help="'reuse': call fl.reuse_freed_memory() first, as the examples do (process-wide)")
    args = p.parse_args(argv)
    if args.malloc == "reuse" and not fl.reuse_freed_memory():
        print("fl.reuse_freed_memory() changed nothing here (not glibc)")
    measure.limit_threads(args.threads)
    rng = np.random.default_rng(0)
    x = rng.random((args.batch_size * args.steps, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, len(x))
    contestants = {"fnlearn": fnlearn_step(args.batch_size)}
    try:
        import torch
        if args.threads:
            torch.set_num_threads(args.threads)
        contestants["torch"] = torch_step(args.batch_size)
    except ImportError:
        print("torch is not installed: timing fnlearn only (pip install torch==2.13.0)")
    times = {name: [] for name in contestants}
    for name, step in contestants.items():  # warm-up
        step(x[:args.batch_size], y[:args.batch_size])
    for _ in range(args.rounds):
        for name, step in contestants.items():
            start = time.perf_counter()
            for i in range(args.steps):
                s = slice(i * args.batch_size, (i + 1) * args.batch_size)
                step(x[s], y[s])
            times[name].append((time.perf_counter() - start) / args.steps)
    print(f"MNIST CNN training step, batch {args.batch_size}, float32, Adam; median of {args.rounds} "
          f"interleaved rounds of {args.steps} steps; BLAS threads: {args.threads or 'default'}; "
          f"malloc: {args.malloc}")
    print(f"{'contestant':<10} {'ms/step':>8} {'samples/s':>10} {'epoch (60k), s':>15}")
    results = {}
    for name, ts in times.items():
        t = statistics.median(ts)
        results[name] = t
        print(f"{name:<10} {1e3 * t:8.1f} {args.batch_size / t:10,.0f} {60000 / args.batch_size * t:15.1f}")
    if "torch" in results:
        print(f"fnlearn speedup over torch: {results['torch'] / results['fnlearn']:.2f}x")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])

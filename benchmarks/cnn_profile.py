"""Where a CNN training step's time goes: fnlearn per layer and pass, PyTorch eager per operator.

The network and optimizer of ``benchmarks/cnn.py`` (PyTorch's MNIST example network without dropout,
batch 64, float32, SGD momentum). fnlearn: each layer's forward pass and VJP timed alone inside a full
forward/backward (median over ``--repeats``; the first layer's VJP skips its input cotangent, as
``train_step`` does), then serial's steps as it runs them (Conv2D, Relu and MaxPool2D fused), the
optimizer update and the whole ``train_step``. PyTorch: ``torch.profiler``'s
self CPU time per operator over ``--repeats`` steps. Timings of single layers are noisy on a shared
machine; compare within one run.

    python3 benchmarks/cnn_profile.py --threads 1
    python3 benchmarks/cnn_profile.py               # the machine's default threads
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

import fnlearn as fl
from fnlearn.combinators import _plan

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cnn  # noqa: E402
import measure  # noqa: E402


def timed_pass(layers: list, params: dict, x: np.ndarray, labels: np.ndarray,
               times: dict[str, list[float]], timed: set[int] | None = None) -> Callable[[], None]:
    """One forward and backward pass of ``serial(*layers)`` with softmax cross-entropy (the first
    layer's VJP skips its input cotangent, as ``train_step`` does), adding the seconds of each pass of
    the layers in ``timed`` (default all) to ``times[f"{i} {layer!r} forward"]`` and ``... VJP``."""
    timed = set(range(len(layers))) if timed is None else timed

    def run(i: int, label: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        if i in timed:
            times.setdefault(f"{i} {layers[i]!r} {label}", []).append(time.perf_counter() - start)
        return out

    def one_pass() -> None:
        h, vjps = x, []
        for i, layer in enumerate(layers):
            h, vjp = run(i, "forward", layer.apply, params[str(i)], h, train=True)  # serial's keys
            vjps.append(vjp)
        _, dh = fl.losses.softmax_cross_entropy(h, labels)
        for i in reversed(range(len(layers))):
            _, dh = run(i, "VJP", vjps[i], dh, compute_dx=i > 0)

    return one_pass


def _pass_times(layers: list, params: dict, x: np.ndarray, labels: np.ndarray,
                repeats: int) -> dict[str, list[float]]:
    """Each layer's pass times (:func:`timed_pass`) over ``repeats`` passes after one to warm up."""
    times: dict[str, list[float]] = {}
    one_pass = timed_pass(layers, params, x, labels, times)
    one_pass()
    times.clear()
    for _ in range(repeats):
        one_pass()
    return times


def fnlearn_profile(repeats: int, x: np.ndarray, y: np.ndarray) -> list[tuple[str, float]]:
    layers = cnn.torch_example_layers()
    model = fl.serial(*layers)
    params = model.init(np.random.default_rng(0), cnn.INPUT_SHAPE)
    times = _pass_times(layers, params, x, y, repeats)
    # serial's steps as it runs them: Conv2D, Relu (and MaxPool2D) fused (fnlearn.combinators._plan)
    plan = _plan([(str(i), layer) for i, layer in enumerate(layers)])
    steps = [fl.serial(*[layers[i] for i in members]) for members, _ in plan]  # (a step of one: serial of one)
    step_params = {str(k): {str(j): params[str(i)] for j, i in enumerate(members)}
                   for k, (members, _) in enumerate(plan)}
    step_times = _pass_times(steps, step_params, x, y, repeats)
    fused = {str(k) for k, (members, _) in enumerate(plan) if len(members) > 1}
    times.update({f"step {name}": ts for name, ts in step_times.items() if name.split()[0] in fused})
    opt = fl.optim.sgd(0.01, momentum=0.9)
    state = opt.init(params)
    grads = fl.tree.tree_map(np.ones_like, params)
    step = fl.train_step(model.apply, fl.losses.softmax_cross_entropy, opt)
    for _ in range(repeats):
        start = time.perf_counter()
        updates, _ = opt.update(grads, state, params)
        fl.optim.apply_updates(params, updates)
        times.setdefault("optimizer update + apply_updates", []).append(time.perf_counter() - start)
    for _ in range(repeats):
        start = time.perf_counter()
        step(params, state, x, y)
        times.setdefault("whole train_step", []).append(time.perf_counter() - start)
    return [(name, statistics.median(ts)) for name, ts in times.items()]


def torch_profile(repeats: int, x: np.ndarray, y: np.ndarray, top: int) -> tuple[list[tuple[str, float]], float]:
    import torch
    from torch.profiler import profile
    net = cnn.torch_net("torch-example")
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    xt, yt = torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(y)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(net(xt), yt)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    whole = (time.perf_counter() - start) / repeats
    with profile() as prof:
        for _ in range(repeats):
            step()
    rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:top]
    return [(e.key, e.self_cpu_time_total / 1e6 / repeats) for e in rows], whole


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=None, help="limit BLAS and torch to N threads")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--top", type=int, default=12, help="PyTorch operators to list")
    p.add_argument("--malloc", choices=("default", "reuse"), default="default")
    args = p.parse_args(argv)
    if args.malloc == "reuse":
        fl.reuse_freed_memory()
    measure.limit_threads(args.threads)
    machine = measure.machine_info()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 64)
    print(f"threads: {args.threads or 'default'}; malloc: {args.malloc}; {measure.blas_line(machine)}")
    print(f"{'fnlearn':<48} {'ms':>7}")
    for name, t in fnlearn_profile(args.repeats, x, y):
        print(f"{name:<48} {1e3 * t:7.2f}")
    try:
        import torch
    except ImportError:
        print("torch is not installed: fnlearn only (pip install torch==2.13.0)")
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    rows, whole = torch_profile(args.repeats, x, y, args.top)
    print(f"{'PyTorch eager, self CPU per step':<48} {'ms':>7}")
    for name, t in rows:
        print(f"{name:<48} {1e3 * t:7.2f}")
    print(f"{'whole step (unprofiled)':<48} {1e3 * whole:7.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])

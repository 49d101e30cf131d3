"""MaxPool2D (forward and VJP) and Relu's VJP on the MNIST CNNs' shapes, float32, alone and in a step.

Alone: MaxPool2D(2) on (64, 24, 24, 64) (PyTorch's MNIST example network, after its second convolution)
and on (64, 28, 28, 32) and (64, 14, 14, 64) with padding "same" (examples/mnist_cnn.py); Relu's VJP on
(64, 26, 26, 32), (64, 24, 24, 64) and (64, 28, 28, 32). The inputs are ReLU outputs of normal draws:
half zeros, so most pooling windows hold ties. Every case runs once per round, so a case's arrays are
seldom still in cache. In a step: the same layers timed inside a whole forward and backward pass of
PyTorch's example network (``cnn.torch_example_layers``), where each pass gets arrays the previous one
has just written.

Each line gives the minimum and median milliseconds over ``--repeats`` rounds. With ``--against REV``,
the pooling and activation modules as of git revision ``REV`` run interleaved with this tree's
(``measure.interleaved``), and each line adds their times and the median per-round ratio (this tree /
REV).

    python3 benchmarks/pool_relu.py --against 672387f --repeats 30
    python3 benchmarks/pool_relu.py --against 672387f --repeats 30 --malloc reuse
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import types
from pathlib import Path
from typing import Callable

import numpy as np

import fnlearn as fl
from fnlearn.layers import activations, pooling

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cnn  # noqa: E402
import cnn_profile  # noqa: E402
import measure  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
POOL_CASES = [((64, 24, 24, 64), "valid"), ((64, 28, 28, 32), "same"), ((64, 14, 14, 64), "same")]
RELU_SHAPES = [(64, 26, 26, 32), (64, 24, 24, 64), (64, 28, 28, 32)]
Times = dict[str, list[float]]


def modules_at(rev: str) -> tuple[types.ModuleType, types.ModuleType]:
    """fnlearn's pooling and activations modules as of git revision ``rev`` (run against this tree's
    helpers)."""
    out = []
    for stem in ("pooling", "activations"):
        source = subprocess.run(["git", "show", f"{rev}:fnlearn/layers/{stem}.py"], cwd=REPO,
                                capture_output=True, text=True, check=True).stdout
        module = types.ModuleType(f"fnlearn.layers._{stem}_at_rev")
        module.__package__ = "fnlearn.layers"
        exec(compile(source, f"{rev}:fnlearn/layers/{stem}.py", "exec"), module.__dict__)
        out.append(module)
    return out[0], out[1]


def alone(pool_mod: types.ModuleType, act_mod: types.ModuleType, batch: int) -> dict[str, Callable]:
    """One callable per case, each running one layer pass on fixed inputs."""
    rng = np.random.default_rng(0)
    fns: dict[str, Callable] = {}
    for shape, padding in POOL_CASES:
        x = np.maximum(rng.standard_normal((batch, *shape[1:]), dtype=np.float32), 0)
        layer = pool_mod.MaxPool2D(2, padding=padding)
        y, vjp = layer.apply({}, x)
        dy = rng.standard_normal(y.shape, dtype=np.float32)
        label = f"MaxPool2D(2) {x.shape} {padding}"
        fns[f"{label} forward"] = lambda layer=layer, x=x: layer.apply({}, x)
        fns[f"{label} VJP"] = lambda vjp=vjp, dy=dy: vjp(dy)
    for shape in RELU_SHAPES:
        x, dy = rng.standard_normal((2, batch, *shape[1:]), dtype=np.float32)
        y = np.maximum(x, 0)
        fns[f"Relu VJP {x.shape}"] = lambda x=x, y=y, dy=dy: act_mod._relu_vjp(x, y, dy)
    return fns


def in_step(pool_mod: types.ModuleType, act_mod: types.ModuleType, batch: int,
            times: Times) -> Callable[[], None]:
    """One forward and backward pass of PyTorch's example network with these MaxPool2D and Relu,
    adding the seconds of each of their passes to ``times``."""
    layers = [act_mod.Relu() if repr(layer) == "Relu()" else pool_mod.MaxPool2D(2)
              if repr(layer) == "MaxPool2D(2)" else layer for layer in cnn.torch_example_layers()]
    params = fl.serial(*layers).init(np.random.default_rng(0), cnn.INPUT_SHAPE)
    rng = np.random.default_rng(1)
    x, labels = rng.random((batch, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, batch)
    timed = {i for i, layer in enumerate(layers) if repr(layer) in ("Relu()", "MaxPool2D(2)")}
    return cnn_profile.timed_pass(layers, params, x, labels, times, timed)


def main(argv: list[str] | None = None) -> dict[str, Times]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--against", metavar="REV", help="also time the modules of this git revision")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (0: the default)")
    p.add_argument("--malloc", choices=("default", "reuse"), default="default",
                   help="'reuse': call fl.reuse_freed_memory() first, as the examples do")
    args = p.parse_args(argv)
    if args.malloc == "reuse" and not fl.reuse_freed_memory():
        print("fl.reuse_freed_memory() changed nothing here (not glibc)")
    measure.limit_threads(args.threads)
    variants = {"now": (pooling, activations)}
    if args.against:
        variants["rev"] = modules_at(args.against)
    fns, step_times = {}, {v: {} for v in variants}
    for v, mods in variants.items():
        fns.update({f"{v} {k}": f for k, f in alone(*mods, args.batch_size).items()})
        fns[f"{v} step"] = in_step(*mods, args.batch_size, step_times[v])
    for fn in fns.values():  # warm up
        fn()
    for t in step_times.values():
        t.clear()
    times = measure.interleaved(fns, args.repeats)
    results = {v: {k[len(v) + 1:]: t for k, t in times.items()
                   if k.startswith(f"{v} ") and k != f"{v} step"} for v in variants}
    print(f"min / median ms over {args.repeats} rounds; batch {args.batch_size}; threads: "
          f"{args.threads or 'default'}; malloc: {args.malloc}")
    print(measure.blas_line(measure.machine_info()))
    print("alone:")
    _print(results, args.against)
    print("in a forward and backward pass of PyTorch's MNIST example network:")
    _print(step_times, args.against)
    return {v: {**results[v], **step_times[v]} for v in variants}


def _print(results: dict[str, Times], against: str | None) -> None:
    for key, now in results["now"].items():
        line = f"  {key:46s} {_ms(now)}"
        if against:
            ratio = measure.median_ratio(now, results["rev"][key])
            line += f" | {against}: {_ms(results['rev'][key])} | ratio {ratio:.2f}"
        print(line)


def _ms(seconds: list[float]) -> str:
    return f"{min(seconds) * 1e3:6.3f} / {statistics.median(seconds) * 1e3:6.3f}"


if __name__ == "__main__":
    main()

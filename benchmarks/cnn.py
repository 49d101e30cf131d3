"""Training-step time of a convolutional network: fnlearn against PyTorch eager, same init and batches.

The default network is PyTorch's own MNIST example (pytorch/examples ``mnist/main.py``) without its
dropout: Conv2D(32, 3) -> Relu -> Conv2D(64, 3) -> Relu -> MaxPool2D(2) -> Flatten -> Dense(128) ->
Relu -> Dense(10), "valid" convolutions, batch 64, float32, softmax cross-entropy, SGD with lr 0.01 and
momentum 0.9. ``--model example`` times the CNN of ``examples/mnist_cnn.py`` (``cnn_model()``) instead.

Both libraries start from the same weights (fnlearn's init, given to torch with
``interop.to_torch_state_dict``) and see the same batches: MNIST training images normalised as the
PyTorch example does, read from ``--data-dir`` / ``$FNLEARN_DATA_DIR`` (random images when the files
are not there, with a note). They run in alternating blocks of ``--steps`` steps (A B, B A, ...), so
OpenBLAS's spinning threads and machine drift fall on both; the medians of the blocks are reported,
and each library's loss trajectory: its first loss and its mean loss over steps 150-200.

fnlearn runs ``train_step(..., threads=N)`` with N the BLAS thread count (the machine's cores by
default, 1 with ``--threads 1``): the batch in N parts on N Python threads, BLAS on one thread
meanwhile. With N > 1 the plain ``threads=1`` step runs too, as ``fnlearn-t1``.

    python3 benchmarks/cnn.py                  # the machine's default threads
    python3 benchmarks/cnn.py --threads 1
    python3 benchmarks/cnn.py --malloc reuse   # after fl.reuse_freed_memory(), as the examples do
    python3 benchmarks/cnn.py --only torch     # one contestant alone
    python3 benchmarks/cnn.py --processes 3    # each contestant alone in its own process, 3 times each

Alternating blocks in one process leave each library's idle threads spinning into the other's block
(OpenBLAS's after a product, torch's OpenMP threads after an operator) and share one malloc heap;
``--processes`` keeps the libraries apart, at the price of the machine's drift between processes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np

import fnlearn as fl
from fnlearn import _blas, interop

sys.path.insert(0, str(Path(__file__).resolve().parent))
import measure  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
INPUT_SHAPE = (-1, 28, 28, 1)
LOSS_WINDOW = (150, 200)
"""The steps whose mean loss is compared (Python slice bounds over the recorded losses)."""


def torch_example_layers() -> list[fl.Layer]:
    """The layers of PyTorch's MNIST example network without dropout, in fnlearn (NHWC)."""
    return [fl.Conv2D(32, 3), fl.Relu(), fl.Conv2D(64, 3), fl.Relu(), fl.MaxPool2D(2), fl.Flatten(),
            fl.Dense(128), fl.Relu(), fl.Dense(10)]


def torch_example_model() -> fl.Layer:
    """PyTorch's MNIST example network without dropout, in fnlearn (NHWC)."""
    return fl.serial(*torch_example_layers())


def _example_model() -> fl.Layer:
    spec = importlib.util.spec_from_file_location("mnist_cnn_example", ROOT / "examples" / "mnist_cnn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.cnn_model()


def torch_net(model_name: str):
    from torch import nn
    if model_name == "torch-example":
        return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(),
                             nn.MaxPool2d(2), nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(),
                             nn.Linear(128, 10))
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(7 * 7 * 64, 128), nn.ReLU(), nn.Linear(128, 10))


def optimizers(model_name: str):
    """(fnlearn optimizer, torch optimizer factory): SGD momentum for the torch example, else Adam."""
    if model_name == "torch-example":
        return fl.optim.sgd(0.01, momentum=0.9), lambda torch, ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9)
    return fl.optim.adam(1e-3), lambda torch, ps: torch.optim.Adam(ps, lr=1e-3)


def fnlearn_step(model: fl.Layer, params, opt, threads: int = 1) -> Callable:
    train_step = fl.train_step(model.apply, fl.losses.softmax_cross_entropy, opt, threads=threads)
    box = {"params": params, "state": opt.init(params)}

    def step(x, y):
        box["params"], box["state"], loss = train_step(box.pop("params"), box.pop("state"), x, y)
        return float(loss)
    return step


def torch_step(model_name: str, model: fl.Layer, params, make_opt) -> Callable:
    import torch
    net = torch_net(model_name)
    sd = interop.to_torch_state_dict(model, params, input_shape=INPUT_SHAPE)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    opt = make_opt(torch, net.parameters())
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(x, y):
        xt = torch.from_numpy(x).permute(0, 3, 1, 2)  # NHWC -> NCHW view, as a user would feed it
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(xt), torch.from_numpy(y))
        loss.backward()
        opt.step()
        return float(loss.detach())
    return step


def batches(n: int, batch_size: int, data_dir: str | None) -> tuple[np.ndarray, np.ndarray, str]:
    """``n`` batches of MNIST training images (NHWC float32, normalised) and int64 labels."""
    rng = np.random.default_rng(0)
    try:
        images, labels = fl.datasets.mnist("train", data_dir, download=False)
        order = rng.permutation(len(images))[:n * batch_size]
        x = ((images[order].astype(np.float32) / 255.0 - 0.1307) / 0.3081)[..., None]
        return x, labels[order].astype(np.int64), "MNIST training images"
    except (fl.datasets.DownloadError, fl.datasets.DatasetError) as err:
        print(f"NOTE: MNIST not found ({str(err).splitlines()[0]}); timing on random images")
        x = rng.standard_normal((n * batch_size, 28, 28, 1), dtype=np.float32)
        return x, rng.integers(0, 10, n * batch_size), "random images"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--model", choices=("torch-example", "example"), default="torch-example",
                   help="torch-example: PyTorch's MNIST example network with SGD momentum (default); "
                        "example: examples/mnist_cnn.py's CNN with Adam")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=20, help="steps per contestant per block")
    p.add_argument("--rounds", type=int, default=10, help="blocks per contestant (10 x 20 = 200 steps)")
    p.add_argument("--threads", type=int, default=None, help="limit BLAS and torch to N threads")
    p.add_argument("--fl-threads", type=int, default=None,
                   help="fnlearn's train_step(threads=N) (default: the BLAS thread count after --threads); "
                        "when N > 1, fnlearn with threads=1 runs too, as 'fnlearn-t1'")
    p.add_argument("--malloc", choices=("default", "reuse"), default="default",
                   help="'reuse': call fl.reuse_freed_memory() first, as the examples do (process-wide)")
    p.add_argument("--data-dir", default=None, help="MNIST directory (default $FNLEARN_DATA_DIR)")
    p.add_argument("--only", choices=("fnlearn", "fnlearn-t1", "torch"), default=None,
                   help="run one contestant alone, for comparisons in separate processes (no other "
                        "library's threads spin in this one)")
    p.add_argument("--processes", type=int, default=0, metavar="K",
                   help="instead of alternating blocks in this process, run each contestant alone in "
                        "its own process (--only), K times each in alternating order, and report the "
                        "medians of those processes")
    args = p.parse_args(argv)
    if args.processes:
        return _in_processes(args, [a for a in (argv if argv is not None else sys.argv[1:])])
    if args.malloc == "reuse" and not fl.reuse_freed_memory():
        print("fl.reuse_freed_memory() changed nothing here (not glibc)")
    measure.limit_threads(args.threads)
    machine = measure.machine_info()
    total = args.steps * args.rounds
    x, y, source = batches(total, args.batch_size, args.data_dir)
    model = torch_example_model() if args.model == "torch-example" else _example_model()
    params = model.init(np.random.default_rng(0), INPUT_SHAPE)
    fl_opt, make_torch_opt = optimizers(args.model)
    fl_threads = args.fl_threads or args.threads or _blas.num_threads() or 1
    contestants = {"fnlearn": lambda: fnlearn_step(model, params, fl_opt, fl_threads)}
    if fl_threads > 1:
        contestants["fnlearn-t1"] = lambda: fnlearn_step(model, params, fl_opt)
    try:
        if args.only not in (None, "torch"):
            raise ImportError  # not even imported: its threads stay out of this process
        import torch
        if args.threads:
            torch.set_num_threads(args.threads)
        contestants["torch"] = lambda: torch_step(args.model, model, params, make_torch_opt)
    except ImportError:
        if args.only is None:
            print("torch is not installed: timing fnlearn only (pip install torch==2.13.0)")
    if args.only:
        if args.only not in contestants:
            p.error(f"--only {args.only}: not a contestant in this configuration ({', '.join(contestants)})")
        contestants = {args.only: contestants[args.only]}
    first = slice(0, args.batch_size)
    for make in contestants.values():  # warm-up on throwaway copies: the timed runs start fresh
        make()(x[first], y[first])
    steps = {name: make() for name, make in contestants.items()}
    losses: dict[str, list[float]] = {name: [] for name in steps}
    times: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = measure.clock()
            for i in range(r * args.steps, (r + 1) * args.steps):
                s = slice(i * args.batch_size, (i + 1) * args.batch_size)
                losses[name].append(steps[name](x[s], y[s]))
            times[name].append((measure.clock() - start) / args.steps)
    what = ("PyTorch's MNIST example network (no dropout), SGD 0.01 momentum 0.9"
            if args.model == "torch-example" else "examples/mnist_cnn.py's CNN, Adam 1e-3")
    print(f"{what}; batch {args.batch_size}, float32, {source}; medians of {args.rounds} alternating "
          f"blocks of {args.steps} steps; threads: {args.threads or 'default'}; malloc: {args.malloc}; "
          f"fnlearn: train_step(threads={fl_threads})")
    print(measure.blas_line(machine))
    print(f"{'contestant':<11} {'ms/step':>8} {'samples/s':>10} {'first loss':>11} "
          f"{'mean loss ' + '-'.join(map(str, LOSS_WINDOW)):>20}")
    results = {}
    for name, ts in times.items():
        t = statistics.median(ts)
        window = losses[name][LOSS_WINDOW[0]:LOSS_WINDOW[1]]
        mean = float(np.mean(window)) if window else float("nan")
        results[name] = t
        results[f"{name}_losses"] = losses[name]
        print(f"{name:<11} {1e3 * t:8.1f} {args.batch_size / t:10,.0f} {losses[name][0]:11.6f} "
              f"{mean:20.4f}")
        if args.only:
            print("RESULT " + json.dumps({"name": name, "ms": 1e3 * t, "first": losses[name][0], "mean": mean}))
    if "torch" in times and "fnlearn" in times:
        print(f"fnlearn speed relative to torch: {results['torch'] / results['fnlearn']:.2f}x "
              f"(median of per-round ratios {measure.median_ratio(times['torch'], times['fnlearn']):.2f}x)")
    return results


def _in_processes(args: argparse.Namespace, argv: list[str]) -> dict:
    """``--processes K``: each contestant alone in its own process, K times, in alternating order."""
    passed, skip = [], False
    for a in argv:  # drop --processes K (and --only) from the arguments passed on
        if skip:
            skip = False
        elif a in ("--processes", "--only"):
            skip = True
        elif not a.startswith(("--processes=", "--only=")):
            passed.append(a)
    names = ["fnlearn", "torch"] if importlib.util.find_spec("torch") else ["fnlearn"]
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for k in range(args.processes):
        for name in names[k % len(names):] + names[:k % len(names)]:
            run = subprocess.run([sys.executable, __file__, *passed, "--only", name],
                                 capture_output=True, text=True)
            if run.returncode:
                raise SystemExit(f"--processes: the {name} process failed:\n{run.stderr}")
            out = run.stdout
            line = next(x for x in out.splitlines() if x.startswith("RESULT "))
            runs[name].append(json.loads(line[len("RESULT "):]))
            if k == 0 and name == names[0]:  # the first process's description and BLAS lines
                lines = out.splitlines()
                print("\n".join(lines[:next(i for i, x in enumerate(lines) if x.startswith("contestant"))]))
    print(f"each contestant alone in its own process, {args.processes} processes each, alternating; "
          f"medians of their ms/step")
    print(f"{'contestant':<11} {'ms/step':>8} {'all processes':>30} {'first loss':>11} "
          f"{'mean loss ' + '-'.join(map(str, LOSS_WINDOW)):>20}")
    results = {}
    for name, rs in runs.items():
        ms = [r["ms"] for r in rs]
        results[name] = statistics.median(ms) / 1e3
        print(f"{name:<11} {statistics.median(ms):8.1f} {' '.join(f'{m:.1f}' for m in ms):>30} "
              f"{rs[0]['first']:11.6f} {rs[0]['mean']:20.4f}")
    if "torch" in results:
        print(f"fnlearn speed relative to torch: {results['torch'] / results['fnlearn']:.2f}x (medians)")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])

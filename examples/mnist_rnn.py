"""Row-sequential MNIST with an LSTM: each image is 28 steps of 28 pixels (at least 98.5% test accuracy).

Examples (run from the repository root; the files are read from --data-dir, else $FNLEARN_DATA_DIR, else
downloaded into ~/.cache/fnlearn/mnist):

    python examples/mnist_rnn.py                          # LSTM(128) -> Dense(10), Adam 2e-3 with cosine
                                                          # decay over 8 epochs, batch 64
    python examples/mnist_rnn.py --schedule constant      # Adam at a constant 2e-3
    python examples/mnist_rnn.py --cell gru --epochs 2    # a GRU instead
    python examples/mnist_rnn.py --torch                  # also train torch.nn.LSTM from the same init
                                                          # and batches, and print both epoch times

With ``--torch`` the two libraries take turns on each batch, so a change in the machine's load affects
both alike; the epoch times are the sums of each library's step times, wall clock and this process's
CPU time (the latter is robust to other processes taking the cores).

The model reads the rows top to bottom and classifies the image from the LSTM's last state. Each epoch
prints the training loss, the validation accuracy and the training time; the run ends with the test
accuracy. ``main(argv)`` returns the results as a dict, so tests run the script in-process;
``rnn_model()`` builds the network and ``torch_twin()`` its PyTorch copy (for tests and benchmarks).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence, Union

import numpy as np

import fnlearn as fl
from fnlearn import datasets, interop
from fnlearn.data import batches, train_val_split
from fnlearn.metrics import accuracy

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mnist_mlp as mlp  # the sibling example: BLAS threads

NUM_CLASSES, ROWS, PIXELS = 10, 28, 28
CELLS = {"lstm": fl.LSTM, "gru": fl.GRU, "rnn": fl.SimpleRNN}
EVAL_BATCH = 1000


def rnn_model(hidden: int = 128, cell: str = "lstm") -> fl.Layer:
    """``LSTM(hidden)`` (or GRU, SimpleRNN) over the rows, its last state into ``Dense(10)`` (logits).

    Example:
        >>> params = rnn_model().init(np.random.default_rng(0), (-1, ROWS, PIXELS))
        >>> params["0"]["w_hh"].shape, params["1"]["w"].shape
        ((128, 512), (128, 10))
    """
    return fl.serial(CELLS[cell](hidden), fl.Dense(NUM_CLASSES))


def rows(images: np.ndarray) -> np.ndarray:
    """Images ``(n, 28, 28)`` (or flat ``(n, 784)``) as float32 sequences ``(n, 28 steps, 28 pixels)``."""
    return images.reshape(-1, ROWS, PIXELS).astype(np.float32) / 255.0


LearningRate = Union[float, Callable[[int], float]]


def fnlearn_trainer(params: Any, learning_rate: LearningRate, cell: str = "lstm") -> Callable[..., float]:
    """``step(x, y) -> loss``: one Adam step of :func:`rnn_model` from ``params`` (state kept inside).

    ``learning_rate`` is a number or a schedule ``f(step)``, ``step`` counting from 0.
    """
    hidden = params["0"]["w_hh"].shape[0]
    opt = fl.optim.adam(learning_rate)
    train_step = fl.train_step(rnn_model(hidden, cell).apply, fl.losses.softmax_cross_entropy, opt)
    box = {"params": params, "state": opt.init(params)}

    def step(x: np.ndarray, y: np.ndarray) -> float:
        box["params"], box["state"], loss = train_step(box.pop("params"), box.pop("state"), x, y)
        return float(loss)

    step.box = box  # type: ignore[attr-defined]
    return step


def torch_twin(params: Any, learning_rate: LearningRate, cell: str = "lstm") -> Callable[..., float]:
    """``step(x, y) -> loss``: the same model in PyTorch (``nn.LSTM`` + ``nn.Linear``), loaded with a copy
    of ``params`` (through :func:`fnlearn.interop.to_torch_rnn_state_dict`), trained with
    ``torch.optim.Adam``. Needs torch."""
    import torch
    from torch import nn

    hidden = params["0"]["w_hh"].shape[0]
    module = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell]

    class Twin(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = module(PIXELS, hidden, batch_first=True)
            self.head = nn.Linear(hidden, NUM_CLASSES)

        def forward(self, x: Any) -> Any:
            h_n = self.rnn(x)[1]
            return self.head((h_n[0] if cell == "lstm" else h_n)[0])

    net = Twin()
    state = {f"rnn.{k}": v for k, v in interop.to_torch_rnn_state_dict(params["0"]).items()}
    state.update({"head.weight": params["1"]["w"].T, "head.bias": params["1"]["b"]})
    net.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()})
    schedule = learning_rate if callable(learning_rate) else None
    opt = torch.optim.Adam(net.parameters(), lr=schedule(0) if schedule else learning_rate)
    loss_fn = nn.CrossEntropyLoss()
    count = [0]

    def step(x: np.ndarray, y: np.ndarray) -> float:
        if schedule is not None:
            for group in opt.param_groups:
                group["lr"] = schedule(count[0])
            count[0] += 1
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--cell", choices=sorted(CELLS), default="lstm", help="the recurrent layer")
    p.add_argument("--hidden", type=int, default=128, help="size of the recurrent state")
    p.add_argument("--lr", type=float, default=2e-3, help="Adam's (initial) learning rate")
    p.add_argument("--schedule", choices=("cosine", "constant"), default="cosine",
                   help="the learning rate: cosine decay to 0 over all steps of the run, or constant")
    p.add_argument("--batch-size", type=int, default=64, help="examples per step")
    p.add_argument("--epochs", type=int, default=8, help="passes over the training set")
    p.add_argument("--val-fraction", type=float, default=0.1, help="held out from the training set")
    p.add_argument("--seed", type=int, default=0, help="seeds the split, the init and the shuffling")
    p.add_argument("--data-dir", default=None, help="directory with the MNIST files (unset: "
                   "$FNLEARN_DATA_DIR, else ~/.cache/fnlearn/mnist, downloaded and verified on first use)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="use only N training examples")
    p.add_argument("--torch", action="store_true",
                   help="also train torch's twin from the same init and batches; print both epoch times")
    p.add_argument("--quiet", action="store_true", help="print only the final results")
    p.add_argument("--threads", type=int, default=None, metavar="N", help=mlp.THREADS_HELP)
    args = p.parse_args(argv)
    if args.batch_size < 1 or args.epochs < 1 or args.hidden < 1 or (args.limit is not None and args.limit < 2):
        p.error("--batch-size, --epochs and --hidden must be positive and --limit at least 2")
    return args


def evaluate(params: Any, model: fl.Layer, x: np.ndarray, y: np.ndarray) -> float:
    """The accuracy of ``model`` on ``(x, y)``, in batches of ``EVAL_BATCH``."""
    predicted = [model.apply(params, x[i:i + EVAL_BATCH])[0].argmax(axis=1) for i in range(0, len(x), EVAL_BATCH)]
    return accuracy(y, np.concatenate(predicted)) if len(x) else float("nan")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the example; returns the config, per-epoch history, test accuracy, params and timings."""
    args = parse_args(argv)
    with mlp.blas_threads(args.threads):
        if args.threads is not None and args.torch:
            import torch
            torch.set_num_threads(args.threads)
        return _run(args)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    fl.reuse_freed_memory()  # a step's freed arrays serve the next step (no page faults)
    split_rng, init_rng, shuffle_rng = np.random.default_rng(args.seed).spawn(3)
    x, y = datasets.mnist("train", args.data_dir)
    x_test, y_test = datasets.mnist("test", args.data_dir)
    if args.limit is not None:
        x, y = x[:args.limit], y[:args.limit]
    (x_tr, y_tr), (x_va, y_va) = train_val_split(rows(x), y.astype(np.int64), args.val_fraction, rng=split_rng)
    model = rnn_model(args.hidden, args.cell)
    params = model.init(init_rng, (-1, ROWS, PIXELS))
    total = args.epochs * -(-len(x_tr) // args.batch_size)
    lr = fl.optim.cosine_decay_schedule(args.lr, total) if args.schedule == "cosine" else args.lr
    steps = {"fnlearn": fnlearn_trainer(params, lr, args.cell)}
    if args.torch:
        steps["torch"] = torch_twin(params, lr, args.cell)
    history = []
    for epoch in range(1, args.epochs + 1):
        record: dict[str, Any] = {"epoch": epoch}
        seconds = {name: [0.0, 0.0] for name in steps}  # wall, CPU
        losses: dict[str, list[float]] = {name: [] for name in steps}
        for xb, yb in batches(x_tr, y_tr, args.batch_size, rng=shuffle_rng):
            for name, step in steps.items():  # the same batch for both, timed step by step
                wall, cpu = time.perf_counter(), time.process_time()
                losses[name].append(step(xb, yb))
                seconds[name][0] += time.perf_counter() - wall
                seconds[name][1] += time.process_time() - cpu
        for name in steps:
            record[f"{name}_seconds"], record[f"{name}_cpu_seconds"] = seconds[name]
            record[f"{name}_loss"] = float(np.mean(losses[name]))
        record["val_accuracy"] = evaluate(steps["fnlearn"].box["params"], model, x_va, y_va)
        history.append(record)
        if not args.quiet:
            extra = (f"; torch loss {record['torch_loss']:.4f}, {record['torch_seconds']:.1f} s "
                     f"(CPU {record['torch_cpu_seconds']:.1f} s)" if args.torch else "")
            print(f"epoch {epoch}/{args.epochs}: loss {record['fnlearn_loss']:.4f}, val accuracy "
                  f"{100 * record['val_accuracy']:.2f}%, training {record['fnlearn_seconds']:.1f} s "
                  f"(CPU {record['fnlearn_cpu_seconds']:.1f} s){extra}", flush=True)
    params = steps["fnlearn"].box["params"]
    test_accuracy = evaluate(params, model, rows(x_test), y_test.astype(np.int64))
    epoch_seconds = {name: float(np.mean([r[f"{name}_seconds"] for r in history])) for name in steps}
    epoch_cpu = {name: float(np.mean([r[f"{name}_cpu_seconds"] for r in history])) for name in steps}
    times = ", ".join(f"{name} {epoch_seconds[name]:.1f} s (CPU {epoch_cpu[name]:.1f} s)" for name in steps)
    print(f"test accuracy {100 * test_accuracy:.2f}%  training time per epoch: {times}")
    return {"config": vars(args), "history": history, "test_accuracy": test_accuracy, "params": params,
            "epoch_seconds": epoch_seconds, "epoch_cpu_seconds": epoch_cpu}


if __name__ == "__main__":
    main()

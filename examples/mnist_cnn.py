"""Train a small convolutional network on MNIST with fnlearn (at least 99% test accuracy).

Examples (run from the repository root; the files are read from --data-dir, else $FNLEARN_DATA_DIR, else
downloaded into ~/.cache/fnlearn/mnist):

    python examples/mnist_cnn.py                          # conv32-pool-conv64-pool-dense128, Adam, 6 epochs
    python examples/mnist_cnn.py --epochs 1 --limit 6000  # a short run: one epoch on 6,000 images
    python examples/mnist_cnn.py --batch-norm --plots plots   # BatchNorm after each convolution
    python examples/mnist_cnn.py --channels 16,32 --kernel 5 --padding valid --hidden 0

Each epoch prints the loss and accuracy on the training and validation sets; the run ends with the test
accuracy and the wall time. The same --seed gives the same run. ``main(argv)`` returns the results as a
dict, so tests run the script in-process; ``cnn_model()`` builds the default network (for benchmarks).
The progress bar, plots and optimizer flags come from ``mnist_mlp.py``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import fnlearn as fl
from fnlearn import datasets
from fnlearn.data import batches, train_val_split
from fnlearn.metrics import accuracy, confusion_matrix

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mnist_mlp as mlp  # the sibling example: progress bar, plots, optimizers

NUM_CLASSES = 10
IMAGE_SHAPE = (-1, 28, 28, 1)
EVAL_BATCH = 500


def cnn_model(channels: Sequence[int] = (32, 64), *, kernel_size: int = 3, padding: str = "same",
              hidden: int = 128, batch_norm: bool = False, dropout: float = 0.0,
              w_init: Any = None) -> fl.Layer | fl.StatefulLayer:
    """[Conv2D -> (BatchNorm) -> Relu -> MaxPool2D(2)] per entry of ``channels``, Flatten, then
    ``Dense(hidden) -> Relu -> (Dropout)`` when ``hidden > 0``, and ``Dense(10)`` (logits).

    Inputs are NHWC images ``(batch, 28, 28, 1)``. With ``batch_norm=True`` the model is a
    :class:`fnlearn.StatefulLayer` (its state holds the running statistics).

    Example:
        >>> model = cnn_model()
        >>> params = model.init(np.random.default_rng(0), IMAGE_SHAPE)
        >>> [params[k]["w"].shape for k in ("0", "3", "7", "9")]
        [(3, 3, 1, 32), (3, 3, 32, 64), (3136, 128), (128, 10)]
    """
    extra = {} if w_init is None else {"w_init": w_init}
    layers: list[Any] = []
    for width in channels:
        layers.append(fl.Conv2D(width, kernel_size, padding=padding, **extra))
        layers += [fl.BatchNorm()] if batch_norm else []
        layers += [fl.Relu(), fl.MaxPool2D(2)]
    layers.append(fl.Flatten())
    if hidden:
        layers += [fl.Dense(hidden, **extra), fl.Relu()]
        layers += [fl.Dropout(dropout)] if dropout else []
    layers.append(fl.Dense(NUM_CLASSES, **extra))
    return fl.serial(*layers)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; the defaults reach 99% test accuracy (see docs/layers.md for a measured run)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--channels", type=mlp._hidden_sizes, default=(32, 64),
                   help='output channels of the convolutions, e.g. "16,32"')
    p.add_argument("--kernel", type=int, default=3, help="kernel size of every convolution")
    p.add_argument("--padding", choices=("valid", "same"), default="same", help="of every convolution")
    p.add_argument("--hidden", type=int, default=128, help="width of the dense layer (0: none)")
    p.add_argument("--batch-norm", action="store_true", help="BatchNorm after each convolution")
    p.add_argument("--dropout", type=float, default=0.0, help="drop probability after the dense layer")
    p.add_argument("--init", choices=mlp.INITS, default="he_normal", help="initializer of the weights")
    p.add_argument("--optimizer", choices=mlp._optimizer_names(), default="adam", help="the update rule (fnlearn.optim)")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    p.add_argument("--schedule", choices=("constant", "cosine"), default="cosine",
                   help="learning-rate schedule over all steps of the run")
    p.add_argument("--momentum", type=float, default=0.0, help="momentum (sgd)")
    p.add_argument("--l2", type=float, default=0.0, help="L2 weight decay, through the optimizer")
    p.add_argument("--batch-size", type=int, default=64, help="examples per step")
    p.add_argument("--epochs", type=int, default=6, help="passes over the training set")
    p.add_argument("--val-fraction", type=float, default=0.1, help="held out from the training set")
    p.add_argument("--seed", type=int, default=0, help="seeds the split, the init, the shuffling and dropout")
    p.add_argument("--data-dir", default=None, help="directory with the MNIST files (unset: $FNLEARN_DATA_DIR, else ~/.cache/fnlearn/mnist, "
                        "downloaded and verified on first use)")
    p.add_argument("--plots", default=None, metavar="DIR", help="write accuracy.png, confusion_matrix.png")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="use only N training examples")
    p.add_argument("--quiet", action="store_true", help="print only the final results")
    p.add_argument("--threads", type=int, default=None, metavar="N", help=mlp.THREADS_HELP)
    args = p.parse_args(argv)
    if args.plots is not None and not mlp._have_matplotlib():
        p.error("--plots needs matplotlib, which is not installed: pip install matplotlib "
                "(or pip install -e '.[examples]').")
    if args.batch_size < 1 or args.epochs < 1 or (args.limit is not None and args.limit < 2):
        p.error("--batch-size and --epochs must be positive and --limit at least 2")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be positive")
    return args


def load_data(args: argparse.Namespace, rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Train/validation/test splits: NHWC images (n, 28, 28, 1) float32 in [0, 1], int64 labels."""
    x, y = datasets.mnist("train", args.data_dir)
    x_test, y_test = datasets.mnist("test", args.data_dir)
    if args.limit is not None:
        x, y = x[:args.limit], y[:args.limit]
    (x_tr, y_tr), (x_va, y_va) = train_val_split(x, y, args.val_fraction, rng=rng)
    return {"train": (_images(x_tr), y_tr.astype(np.int64)), "val": (_images(x_va), y_va.astype(np.int64)),
            "test": (_images(x_test), y_test.astype(np.int64))}


def _images(images: np.ndarray) -> np.ndarray:
    return images.reshape(IMAGE_SHAPE).astype(np.float32) / 255.0


def make_step(model: Any, opt: fl.optim.Optimizer) -> Any:
    """``step(params, (opt_state, model_state), xb, yb, rng) -> (params, states, loss)``."""
    stateful = isinstance(model, fl.StatefulLayer)
    loss = fl.losses.softmax_cross_entropy
    value_and_grad = fl.value_and_grad(model.apply, loss, has_state=stateful)

    def step(params: Any, states: Any, xb: np.ndarray, yb: np.ndarray, rng: np.random.Generator):
        opt_state, model_state = states
        if stateful:
            (value, model_state), grads = value_and_grad(params, model_state, xb, yb, rng=rng)
        else:
            value, grads = value_and_grad(params, xb, yb, rng=rng)
        updates, opt_state = opt.update(grads, opt_state, params)
        return fl.optim.apply_updates(params, updates), (opt_state, model_state), value

    return step


def train_epoch(step: Any, params: Any, states: Any, data: tuple[np.ndarray, np.ndarray],
                args: argparse.Namespace, rngs: tuple[np.random.Generator, np.random.Generator],
                bar: Any) -> tuple[Any, Any, float]:
    """One pass over the shuffled training set; returns the new params, states and mean batch loss."""
    shuffle_rng, dropout_rng = rngs
    losses = []
    for xb, yb in batches(*data, args.batch_size, rng=shuffle_rng):
        params, states, value = step(params, states, xb, yb, dropout_rng)
        losses.append(value)
        if bar is not None:
            bar.update(1)
            if len(losses) % 20 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
    return params, states, float(np.mean(losses))


def evaluate(apply: Any, params: Any, x: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """The mean cross-entropy over ``x`` and the predicted labels, in batches of ``EVAL_BATCH``."""
    total, predictions = 0.0, []
    for start in range(0, len(x), EVAL_BATCH):
        logits, _ = apply(params, x[start:start + EVAL_BATCH], train=False)
        total += fl.losses.softmax_cross_entropy(logits, labels[start:start + EVAL_BATCH])[0] * len(logits)
        predictions.append(logits.argmax(axis=1))
    return total / len(x), np.concatenate(predictions)


def predictor(model: Any, model_state: Any) -> Any:
    """An ``apply(params, x, *, train=False)`` for evaluation (running statistics for BatchNorm)."""
    return fl.bind_state(model, model_state).apply if isinstance(model, fl.StatefulLayer) else model.apply


def fit(model: Any, params: Any, model_state: Any, data: dict[str, Any], args: argparse.Namespace,
        rngs: tuple[np.random.Generator, np.random.Generator]) -> tuple[Any, Any, list[dict[str, Any]]]:
    """Train for ``args.epochs`` epochs; after each, evaluate on the training and validation sets."""
    steps_per_epoch = math.ceil(len(data["train"][0]) / args.batch_size)
    opt = mlp.make_optimizer(args, args.epochs * steps_per_epoch)
    step, progress = make_step(model, opt), mlp.Progress(args.quiet)
    states, history = (opt.init(params), model_state), []
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        bar = progress.bar(steps_per_epoch, f"epoch {epoch}/{args.epochs}")
        params, states, batch_loss = train_epoch(step, params, states, data["train"], args, rngs, bar)
        if bar is not None:
            bar.close()
        train_seconds = time.perf_counter() - start
        record = {"epoch": epoch, "batch_loss": batch_loss, "train_seconds": train_seconds}
        for split in ("train", "val"):
            x, y = data[split]
            split_loss, predicted = (evaluate(predictor(model, states[1]), params, x, y)
                                     if len(x) else (None, None))
            record[f"{split}_loss"] = split_loss
            record[f"{split}_accuracy"] = accuracy(y, predicted) if len(x) else None
        record["seconds"] = time.perf_counter() - start
        history.append(record)
        progress.print(mlp._epoch_line(epoch, args.epochs, record) + f"  (training {train_seconds:.1f} s)")
    return params, states[1], history


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the example; returns the config, per-epoch history, test results, params and timings."""
    args = parse_args(argv)
    with mlp.blas_threads(args.threads):
        try:
            return _run(args)
        except datasets.DatasetError as err:  # no local copy and no network, or a damaged file
            sys.exit(f"mnist_cnn: {err}")


def _run(args: argparse.Namespace) -> dict[str, Any]:
    fl.reuse_freed_memory()  # a step's freed arrays serve the next step (no page faults)
    start = time.perf_counter()
    split_rng, init_rng, shuffle_rng, dropout_rng = np.random.default_rng(args.seed).spawn(4)
    data = load_data(args, split_rng)
    model = cnn_model(args.channels, kernel_size=args.kernel, padding=args.padding, hidden=args.hidden,
                      batch_norm=args.batch_norm, dropout=args.dropout,
                      w_init=getattr(fl.initializers, args.init)())
    init = model.init(init_rng, IMAGE_SHAPE)
    params, model_state = init if isinstance(model, fl.StatefulLayer) else (init, None)
    params, model_state, history = fit(model, params, model_state, data, args, (shuffle_rng, dropout_rng))
    test_loss, predicted = evaluate(predictor(model, model_state), params, *data["test"])
    test_accuracy = accuracy(data["test"][1], predicted)
    matrix = confusion_matrix(data["test"][1], predicted, num_classes=NUM_CLASSES)
    seconds = time.perf_counter() - start
    epoch_seconds = float(np.mean([r["train_seconds"] for r in history]))
    print(f"test loss {test_loss:.4f}  test accuracy {100 * test_accuracy:.2f}%  "
          f"training time per epoch {epoch_seconds:.1f} s  wall time {seconds:.1f} s")
    plots = mlp.save_plots(args.plots, history, matrix, test_accuracy) if args.plots is not None else []
    return {"config": vars(args), "history": history, "test_loss": test_loss,
            "test_accuracy": test_accuracy, "confusion_matrix": matrix, "params": params,
            "state": model_state, "seconds": seconds, "epoch_seconds": epoch_seconds, "plots": plots}


if __name__ == "__main__":
    main()

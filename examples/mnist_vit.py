"""Train a small Vision Transformer on MNIST with fnlearn (at least 98% test accuracy).

Examples (run from the repository root; the files are read from --data-dir, else $FNLEARN_DATA_DIR, else
downloaded into ~/.cache/fnlearn/mnist):

    python examples/mnist_vit.py --threads 1              # 7x7 patches, 4 blocks of width 64, 12 epochs
    python examples/mnist_vit.py --epochs 1 --limit 6000  # a short run: one epoch on 6,000 images
    python examples/mnist_vit.py --n-layer 6 --mlp-ratio 4 --dropout 0.1 --epochs 20

The images are cut into 16 patches of 7x7 pixels; a class token and learned positions are added; the
encoder is pre-LN transformer blocks; the head reads the class token (``fnlearn.models.vit``). AdamW
(weight decay on the 2-D weights only) with a linear warmup and a cosine decay over the whole run;
each training image is shifted by up to --shift pixels (augmentation).
Each epoch prints the mean training loss; the run ends with the test accuracy and the wall time. The
same --seed gives the same run. ``main(argv)`` returns the results as a dict, so tests can run the
script in-process.
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
from fnlearn.data import batches
from fnlearn.metrics import accuracy

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mnist_mlp as mlp  # the sibling example: progress bar and BLAS threads
from mnist_cnn import evaluate  # the sibling example: loss and predictions in batches of 500

NUM_CLASSES = 10
IMAGE_SHAPE = (-1, 28, 28, 1)
MEAN, STD = 0.1307, 0.3081      # of the MNIST training pixels in [0, 1]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; the defaults are the configuration in docs/vit.md."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--patch-size", type=int, default=7, help="side of the square patches (divides 28)")
    p.add_argument("--n-layer", type=int, default=4, help="transformer blocks")
    p.add_argument("--n-head", type=int, default=4, help="attention heads (divides --n-embd)")
    p.add_argument("--n-embd", type=int, default=64, help="token width")
    p.add_argument("--mlp-ratio", type=int, default=2, help="MLP hidden width / token width")
    p.add_argument("--dropout", type=float, default=0.0, help="drop probability (attention and blocks)")
    p.add_argument("--gelu-approximate", action="store_true", help="the tanh GELU instead of the exact one")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    p.add_argument("--warmup", type=int, default=300, help="linear warmup steps, then cosine decay to 0")
    p.add_argument("--weight-decay", type=float, default=0.05, help="AdamW decay of the 2-D weights")
    p.add_argument("--shift", type=int, default=2, metavar="S",
                   help="augment: shift each training image by up to S pixels in each direction")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None, help="directory with the MNIST files")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="use only N training images")
    p.add_argument("--test-limit", type=int, default=None, metavar="N", help="use only N test images")
    p.add_argument("--threads", type=int, default=None, metavar="N", help=mlp.THREADS_HELP)
    p.add_argument("--quiet", action="store_true", help="print only the final results")
    args = p.parse_args(argv)
    if (args.batch_size < 1 or args.epochs < 1 or args.warmup < 0
            or (args.limit is not None and args.limit < 1)):
        p.error("--batch-size, --epochs and --limit must be positive and --warmup not negative")
    if not 0 <= args.shift < 28:
        p.error("--shift must be in [0, 28)")
    if 28 % args.patch_size or args.n_embd % args.n_head:
        p.error("--patch-size must divide 28 and --n-head must divide --n-embd")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be positive")
    return args


def load_data(args: argparse.Namespace) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Training and test sets: NHWC images (n, 28, 28, 1) float32, standardised; int64 labels."""
    x, y = datasets.mnist("train", args.data_dir)
    x_test, y_test = datasets.mnist("test", args.data_dir)
    x, y = x[:args.limit], y[:args.limit]
    x_test, y_test = x_test[:args.test_limit], y_test[:args.test_limit]
    return {"train": (_images(x), y.astype(np.int64)), "test": (_images(x_test), y_test.astype(np.int64))}


def _images(images: np.ndarray) -> np.ndarray:
    x = images.reshape(IMAGE_SHAPE).astype(np.float32)
    x *= np.float32(1.0 / (255.0 * STD))
    x -= np.float32(MEAN / STD)
    return x


def shift_images(x: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Each image moved by its own random offset in ``[-max_shift, max_shift]`` along both axes; the
    pixels moved in are background (one gather over the padded batch, no loop over images)."""
    n, height, width, _ = x.shape
    s = max_shift
    padded = np.pad(x, ((0, 0), (s, s), (s, s), (0, 0)), constant_values=np.float32(-MEAN / STD))
    rows = rng.integers(0, 2 * s + 1, size=(n, 1)) + np.arange(height)
    cols = rng.integers(0, 2 * s + 1, size=(n, 1)) + np.arange(width)
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def build_model(args: argparse.Namespace) -> fl.Layer:
    return fl.models.vit(28, args.patch_size, NUM_CLASSES, n_layer=args.n_layer, n_head=args.n_head,
                         n_embd=args.n_embd, mlp_ratio=args.mlp_ratio, dropout=args.dropout,
                         gelu_approximate=args.gelu_approximate)


def make_optimizer(args: argparse.Namespace, total_steps: int) -> fl.optim.Optimizer:
    """AdamW with warmup and cosine decay; no decay on biases, norms, the class token or positions."""
    warmup = min(args.warmup, total_steps - 1)
    schedule = fl.optim.warmup_cosine_decay_schedule(0.0, args.lr, warmup, total_steps)
    return fl.optim.adamw(schedule, weight_decay=args.weight_decay, mask=_is_matrix)


def _is_matrix(params: Any) -> Any:
    return fl.tree.tree_map(lambda leaf: leaf.ndim >= 2, params)


def fit(model: fl.Layer, params: Any, data: dict[str, Any], args: argparse.Namespace,
        rngs: tuple[np.random.Generator, np.random.Generator]) -> tuple[Any, list[dict[str, Any]]]:
    """Train for ``args.epochs`` epochs with ``fl.train_step``; returns the params and per-epoch records."""
    shuffle_rng, dropout_rng = rngs
    steps_per_epoch = math.ceil(len(data["train"][0]) / args.batch_size)
    opt = make_optimizer(args, args.epochs * steps_per_epoch)
    step, state = fl.train_step(model.apply, fl.losses.softmax_cross_entropy, opt), opt.init(params)
    progress, history = mlp.Progress(args.quiet), []
    for epoch in range(1, args.epochs + 1):
        start, losses = time.perf_counter(), []
        bar = progress.bar(steps_per_epoch, f"epoch {epoch}/{args.epochs}")
        for xb, yb in batches(*data["train"], args.batch_size, rng=shuffle_rng):
            if args.shift:
                xb = shift_images(xb, args.shift, shuffle_rng)
            params, state, value = step(params, state, xb, yb, rng=dropout_rng)
            if not math.isfinite(value):
                sys.exit(f"mnist_vit: the training loss became {value} in epoch {epoch}; lower --lr.")
            losses.append(value)
            if bar is not None:
                bar.update(1)
                if len(losses) % 20 == 0:
                    bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        if bar is not None:
            bar.close()
        record = {"epoch": epoch, "train_loss": float(np.mean(losses)),
                  "seconds": time.perf_counter() - start}
        history.append(record)
        progress.print(f"epoch {epoch:>3}/{args.epochs}  train loss {record['train_loss']:.4f}  "
                       f"({record['seconds']:.1f} s)")
    return params, history


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the example; returns the config, per-epoch history, test results, params and timings."""
    args = parse_args(argv)
    with mlp.blas_threads(args.threads):
        return _run(args)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    fl.reuse_freed_memory()  # a step's freed arrays serve the next step (no page faults)
    start = time.perf_counter()
    init_rng, shuffle_rng, dropout_rng = np.random.default_rng(args.seed).spawn(3)
    data = load_data(args)
    model = build_model(args)
    params = model.init(init_rng, IMAGE_SHAPE)
    params, history = fit(model, params, data, args, (shuffle_rng, dropout_rng))
    test_loss, predicted = evaluate(model.apply, params, *data["test"])
    test_accuracy = accuracy(data["test"][1], predicted)
    seconds = time.perf_counter() - start
    train_seconds = sum(r["seconds"] for r in history)
    print(f"test loss {test_loss:.4f}  test accuracy {100 * test_accuracy:.2f}%  "
          f"training time {train_seconds:.1f} s  wall time {seconds:.1f} s")
    return {"config": vars(args), "history": history, "test_loss": test_loss,
            "test_accuracy": test_accuracy, "params": params, "seconds": seconds,
            "train_seconds": train_seconds}


if __name__ == "__main__":
    main()

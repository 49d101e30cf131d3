"""Compare update rules on the MNIST MLP: the same model, initial params and batch order for every rule.

Examples (from the repository root; MNIST is read from --data-dir, else $FNLEARN_DATA_DIR, else
downloaded into ~/.cache/fnlearn/mnist):

    python examples/compare_optimizers.py                                  # 10,000 examples, 3 epochs
    python examples/compare_optimizers.py --rules sgd,adam,lion --epochs 5 --limit 60000
    python examples/compare_optimizers.py --rules adam:3e-3,rmsprop:1e-3 --out adam_vs_rmsprop.png

Draws one PNG with three panels: training loss per step (smoothed), validation loss and validation
accuracy over the run; prints each rule's final validation and test accuracy. ``main(argv)`` returns
the curves as a dict, so a test runs the script in-process.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable, Sequence

import numpy as np

import fnlearn as fl
from fnlearn import datasets, optim
from fnlearn.data import batches, train_val_split
from fnlearn.metrics import accuracy

# name -> (factory of the learning rate, default learning rate for this MLP with batches of 100)
RULES: dict[str, tuple[Callable[[float], optim.Optimizer], float]] = {
    "sgd": (lambda lr: optim.sgd(lr), 0.1),
    "momentum": (lambda lr: optim.sgd(lr, momentum=0.9), 0.02),
    "nesterov": (lambda lr: optim.sgd(lr, momentum=0.9, nesterov=True), 0.02),
    "adam": (lambda lr: optim.adam(lr), 1e-3),
    "adamw": (lambda lr: optim.adamw(lr, weight_decay=1e-2), 1e-3),
    "amsgrad": (lambda lr: optim.amsgrad(lr), 1e-3),
    "adamax": (lambda lr: optim.adamax(lr), 2e-3),
    "nadam": (lambda lr: optim.nadam(lr), 1e-3),
    "rmsprop": (lambda lr: optim.rmsprop(lr), 1e-3),
    "adagrad": (lambda lr: optim.adagrad(lr), 0.02),
    "adadelta": (lambda lr: optim.adadelta(lr), 1.0),
    "lion": (lambda lr: optim.lion(lr, weight_decay=0.0), 3e-4),
    "lamb": (lambda lr: optim.lamb(lr), 5e-3),
}
DEFAULT_RULES = "sgd,momentum,adam,rmsprop,adagrad,lion"


def _rules(text: str) -> list[tuple[str, float | None]]:
    """``"adam,sgd:0.05"`` -> [("adam", None), ("sgd", 0.05)]."""
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, _, lr = item.partition(":")
        if name not in RULES:
            raise argparse.ArgumentTypeError(f"unknown rule {name!r}; choose from {', '.join(RULES)}")
        try:
            out.append((name, float(lr) if lr else None))
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad learning rate in {item!r}") from None
    if not out:
        raise argparse.ArgumentTypeError("give at least one rule")
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--rules", type=_rules, default=DEFAULT_RULES,
                   help=f"comma-separated rules, each optionally name:learning_rate; from {', '.join(RULES)}")
    p.add_argument("--hidden", type=int, default=128, help="hidden units (784-hidden-10, ReLU)")
    p.add_argument("--limit", type=int, default=10000, help="training examples used (60000 for all)")
    p.add_argument("--epochs", type=int, default=3, help="passes over the training examples")
    p.add_argument("--batch-size", type=int, default=100, help="examples per step")
    p.add_argument("--evals-per-epoch", type=int, default=4, help="validation points per epoch")
    p.add_argument("--val-fraction", type=float, default=0.1, help="held out from the training examples")
    p.add_argument("--seed", type=int, default=0, help="seeds the split, the init, the shuffling and dropout")
    p.add_argument("--data-dir", default=None, help="directory with the MNIST files (unset: $FNLEARN_DATA_DIR, else ~/.cache/fnlearn/mnist, "
                        "downloaded and verified on first use)")
    p.add_argument("--out", default="compare_optimizers.png", help="the PNG to write")
    p.add_argument("--quiet", action="store_true", help="print only the final table")
    args = p.parse_args(argv)
    if min(args.hidden, args.limit - 10, args.epochs, args.batch_size, args.evals_per_epoch) < 1:
        p.error("--hidden, --epochs, --batch-size, --evals-per-epoch must be positive; --limit above 10")
    return args


def load(args: argparse.Namespace) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Train/validation/test splits, images as (n, 784) float32 in [0, 1], labels as int64."""
    x, y = datasets.mnist("train", args.data_dir)
    x_test, y_test = datasets.mnist("test", args.data_dir)
    (x_tr, y_tr), (x_va, y_va) = train_val_split(x[:args.limit], y[:args.limit], args.val_fraction,
                                                 rng=np.random.default_rng(args.seed))
    prep = lambda images: images.reshape(len(images), -1).astype(np.float32) / 255.0  # noqa: E731
    return {"train": (prep(x_tr), y_tr.astype(np.int64)), "val": (prep(x_va), y_va.astype(np.int64)),
            "test": (prep(x_test), y_test.astype(np.int64))}


def evaluate(model: fl.Layer, params: Any, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over ``x`` in batches of 2,000."""
    total, correct = 0.0, 0
    for xb, yb in batches(x, y, 2000):
        logits, _ = model.apply(params, xb)
        total += fl.losses.softmax_cross_entropy(logits, yb)[0] * len(xb)
        correct += int((logits.argmax(axis=1) == yb).sum())
    return total / len(x), correct / len(x)


def train(rule: optim.Optimizer, model: fl.Layer, params: Any, data: dict[str, Any],
          args: argparse.Namespace) -> dict[str, Any]:
    """Train with ``rule`` from ``params``; the batch order depends only on --seed."""
    value_and_grad = fl.value_and_grad(model.apply, fl.losses.softmax_cross_entropy)
    shuffle = np.random.default_rng([args.seed, 1])
    n_train = len(data["train"][0])
    steps_per_epoch = -(-n_train // args.batch_size)
    eval_every = max(1, steps_per_epoch // args.evals_per_epoch)
    state, step, curve = rule.init(params), 0, {"step": [], "loss": [], "eval_step": [], "val_loss": [],
                                                "val_accuracy": []}

    def record_eval() -> None:
        loss, acc = evaluate(model, params, *data["val"])
        curve["eval_step"].append(step)
        curve["val_loss"].append(loss)
        curve["val_accuracy"].append(acc)

    record_eval()
    for _ in range(args.epochs):
        for xb, yb in batches(*data["train"], args.batch_size, rng=shuffle):
            loss, grads = value_and_grad(params, xb, yb)
            updates, state = rule.update(grads, state, params)
            params = optim.apply_updates(params, updates)
            step += 1
            curve["step"].append(step)
            curve["loss"].append(float(loss))
            if step % eval_every == 0:
                record_eval()
    if curve["eval_step"][-1] != step:
        record_eval()
    curve["test_loss"], curve["test_accuracy"] = evaluate(model, params, *data["test"])
    return curve


def _smooth(values: list[float], width: int) -> np.ndarray:
    """A trailing moving average (the first points average what exists so far)."""
    v = np.asarray(values, dtype=np.float64)
    c = np.cumsum(np.insert(v, 0, 0.0))
    idx = np.arange(1, len(v) + 1)
    lo = np.maximum(idx - width, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def plot(curves: dict[str, dict[str, Any]], path: str, title: str) -> str:
    """Draw the training loss, validation loss and validation accuracy of every rule into one PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_val, ax_acc) = plt.subplots(1, 3, figsize=(15, 4.2))
    for name, c in curves.items():
        width = max(1, len(c["loss"]) // 50)
        line, = ax_loss.plot(c["step"], _smooth(c["loss"], width), label=name, lw=1.2)
        ax_val.plot(c["eval_step"], c["val_loss"], marker=".", color=line.get_color(), label=name)
        ax_acc.plot(c["eval_step"], 100 * np.asarray(c["val_accuracy"]), marker=".", color=line.get_color(),
                    label=f"{name} ({100 * c['test_accuracy']:.1f}% test)")
    ax_loss.set(xlabel="step", ylabel="cross-entropy (moving average)", title="training loss", yscale="log")
    ax_val.set(xlabel="step", ylabel="cross-entropy", title="validation loss", yscale="log")
    ax_acc.set(xlabel="step", ylabel="accuracy (%)", title="validation accuracy")
    finals = [100 * c["val_accuracy"][-1] for c in curves.values()]
    ax_acc.set_ylim(max(0.0, min(finals) - 15.0), 100.0)
    for ax in (ax_loss, ax_val, ax_acc):
        ax.grid(alpha=0.3)
    ax_acc.legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run every rule from the same start; returns {"curves": {rule: curve}, "png": path, "config"}."""
    args = parse_args(argv)
    fl.reuse_freed_memory()  # a step's freed arrays serve the next step (no page faults)
    data = load(args)
    model = fl.serial(fl.Dense(args.hidden), fl.Relu(), fl.Dense(10))
    params = model.init(np.random.default_rng([args.seed, 0]), (-1, 784))
    curves = {}
    for name, lr in args.rules:
        factory, default_lr = RULES[name]
        label = f"{name} lr={lr if lr is not None else default_lr:g}"
        start = time.perf_counter()
        curves[label] = train(factory(lr if lr is not None else default_lr), model, params, data, args)
        curves[label]["seconds"] = time.perf_counter() - start
        if not args.quiet:
            c = curves[label]
            print(f"{label:22s} val acc {100 * c['val_accuracy'][-1]:6.2f}%  test acc "
                  f"{100 * c['test_accuracy']:6.2f}%  final loss {np.mean(c['loss'][-20:]):.4f}  "
                  f"({c['seconds']:.1f} s)", flush=True)
    title = (f"MNIST 784-{args.hidden}-10 ReLU, {len(data['train'][0])} training examples, "
             f"{args.epochs} epochs, batch {args.batch_size}, seed {args.seed}")
    png = plot(curves, args.out, title)
    print(f"wrote {png}")
    return {"curves": curves, "png": png, "config": vars(args)}


if __name__ == "__main__":
    main()

"""Train a multilayer perceptron on MNIST with fnlearn.

Examples (run from the repository root; the files are read from --data-dir, else $FNLEARN_DATA_DIR, else
downloaded into ~/.cache/fnlearn/mnist):

    python examples/mnist_mlp.py                      # sigmoid 784-128-10, cross-entropy, SGD
    python examples/mnist_mlp.py --loss mse --lr 2    # the same network trained with MSE
    python examples/mnist_mlp.py --activation relu --optimizer adam --lr 1e-3 --epochs 20 --plots plots
    python examples/mnist_mlp.py --epochs 5 --save run.npz && python examples/mnist_mlp.py --epochs 10 --resume run.npz
    mpiexec -n 2 python examples/mnist_mlp.py          # data-parallel: each rank takes half of every batch

Each epoch prints the loss and accuracy on the training and validation sets; the run ends with the test
accuracy and the wall time. The same --seed gives the same run. ``main(argv)`` returns the results as a
dict, so tests run the script in-process.

``--save`` writes a checkpoint (params, optimizer state, random generators, history) after every epoch,
atomically; ``--resume`` continues from one, giving bit-identical results to a run without the stop.
A non-finite loss stops the run with the first parameter or gradient path that holds NaN or inf.
Under ``mpiexec -n N`` (with the ``mpi`` extra) every rank takes its share of each global batch and the
gradients are averaged, so the run matches one process up to summation order; only rank 0 prints,
saves and plots.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import fnlearn as fl
from fnlearn import checkpoint, datasets, debug
from fnlearn.data import batches, one_hot, train_val_split
from fnlearn.metrics import accuracy, confusion_matrix

NUM_CLASSES = 10
ACTIVATIONS = {"sigmoid": fl.Sigmoid, "relu": fl.Relu, "tanh": fl.Tanh, "gelu": fl.Gelu,
               "elu": fl.Elu, "leaky_relu": fl.LeakyRelu, "softplus": fl.Softplus}
OUTPUTS = {"softmax": fl.Softmax, "sigmoid": fl.Sigmoid}
INITS = ("lecun_normal", "lecun_uniform", "glorot_normal", "glorot_uniform", "he_normal", "he_uniform")
EVAL_BATCH = 2000


def _optimizer_names() -> list[str]:
    return sorted(n for n, f in vars(fl.optim).items()
                  if callable(f) and n[0].islower() and not n.startswith(("_", "scale_by"))
                  and "learning_rate" in inspect.signature(f).parameters)


def _hidden_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive ints, got {text!r}") from None
    if any(s <= 0 for s in sizes):
        raise argparse.ArgumentTypeError(f"hidden sizes must be positive, got {text!r}")
    return sizes


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; defaults reproduce NumPy-Learn's cross-entropy run (sigmoid 784-128-10, SGD)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--hidden", type=_hidden_sizes, default=(128,), help='hidden sizes, e.g. "256,128"')
    p.add_argument("--activation", choices=sorted(ACTIVATIONS), default="sigmoid", help="of the hidden layers")
    p.add_argument("--init", choices=INITS, default="lecun_normal", help="initializer of the weights")
    p.add_argument("--loss", choices=("cross_entropy", "mse"), default="cross_entropy", help="the training loss")
    p.add_argument("--mse-output", choices=sorted(OUTPUTS) + ["linear"], default="softmax",
                   help="with --loss mse: the output activation the squared error is measured after")
    p.add_argument("--optimizer", choices=_optimizer_names(), default="sgd", help="the update rule (fnlearn.optim)")
    p.add_argument("--lr", type=float, default=0.1, help="learning rate")
    p.add_argument("--schedule", choices=("constant", "cosine"), default="constant",
                   help="learning-rate schedule over all steps of the run")
    p.add_argument("--momentum", type=float, default=0.0, help="momentum (sgd)")
    p.add_argument("--l2", type=float, default=0.0, help="L2 weight decay, through the optimizer")
    p.add_argument("--dropout", type=float, default=0.0, help="drop probability after each hidden layer")
    p.add_argument("--batch-size", type=int, default=100, help="examples per step")
    p.add_argument("--epochs", type=int, default=10, help="passes over the training set")
    p.add_argument("--val-fraction", type=float, default=0.2, help="held out from the training set")
    p.add_argument("--seed", type=int, default=0, help="seeds the split, the init, the shuffling and dropout")
    p.add_argument("--data-dir", default=None, help="directory with the MNIST files (unset: $FNLEARN_DATA_DIR, else ~/.cache/fnlearn/mnist, "
                        "downloaded and verified on first use)")
    p.add_argument("--plots", default=None, metavar="DIR", help="write accuracy.png, confusion_matrix.png")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="use only N training examples")
    p.add_argument("--quiet", action="store_true", help="print only the final results")
    p.add_argument("--save", default=None, metavar="PATH", help="write a checkpoint after every epoch")
    p.add_argument("--resume", default=None, metavar="PATH", help="continue from a checkpoint of --save")
    p.add_argument("--threads", type=int, default=None, metavar="N", help=THREADS_HELP)
    args = p.parse_args(argv)
    if args.plots is not None and not _have_matplotlib():
        p.error("--plots needs matplotlib, which is not installed: pip install matplotlib "
                "(or pip install -e '.[examples]').")
    if args.batch_size < 1 or args.epochs < 1 or (args.limit is not None and args.limit < 2):
        p.error("--batch-size and --epochs must be positive and --limit at least 2")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be positive")
    return args


THREADS_HELP = ("BLAS threads for the matrix products (unset: the library's default, one per core); on a "
                "busy or shared machine 1 can be several times faster. Needs threadpoolctl")


def blas_threads(n: int | None) -> Any:
    """A context that limits the BLAS library to ``n`` threads (threadpoolctl); nothing for None."""
    if n is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        sys.exit("--threads needs threadpoolctl: pip install threadpoolctl (or pip install -e "
                 "'.[examples]'), or set OPENBLAS_NUM_THREADS (OMP_NUM_THREADS, MKL_NUM_THREADS) "
                 "before starting Python.")
    return threadpool_limits(limits=n, user_api="blas")


def _distributed() -> Any:
    """``fnlearn.distributed`` when started by mpiexec with more than one rank, else None."""
    launched = any(os.environ.get(v) for v in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK"))
    if not launched:
        return None
    from fnlearn import distributed
    return distributed if distributed.size() > 1 else None


DIST = _distributed()
IS_ROOT = DIST is None or DIST.is_root()


def _have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def load_data(args: argparse.Namespace, rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Train/validation/test splits: images flattened to (n, 784) float32 in [0, 1], uint8 labels."""
    x, y = datasets.mnist("train", args.data_dir)
    x_test, y_test = datasets.mnist("test", args.data_dir)
    if args.limit is not None:
        x, y = x[:args.limit], y[:args.limit]
    (x_tr, y_tr), (x_va, y_va) = train_val_split(x, y, args.val_fraction, rng=rng)
    return {"train": (_pixels(x_tr), y_tr), "val": (_pixels(x_va), y_va), "test": (_pixels(x_test), y_test)}


def _pixels(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), 28 * 28).astype(np.float32) / 255.0


def build_model(args: argparse.Namespace) -> fl.Layer:
    """Dense-activation(-dropout) blocks, then Dense(10); with MSE, then the chosen output activation."""
    w_init = getattr(fl.initializers, args.init)()
    layers = []
    for size in args.hidden:
        layers += [fl.Dense(size, w_init=w_init), ACTIVATIONS[args.activation]()]
        if args.dropout:
            layers.append(fl.Dropout(args.dropout))
    layers.append(fl.Dense(NUM_CLASSES, w_init=w_init))
    if args.loss == "mse" and args.mse_output != "linear":
        layers.append(OUTPUTS[args.mse_output]())
    return fl.serial(*layers)


def make_loss(args: argparse.Namespace) -> tuple[Callable[..., Any], Callable[[np.ndarray], np.ndarray]]:
    """The loss and the target encoding: class ids for cross-entropy, one-hot rows for MSE."""
    if args.loss == "mse":
        return fl.losses.mse, lambda labels: one_hot(labels, NUM_CLASSES)
    return fl.losses.softmax_cross_entropy, lambda labels: labels.astype(np.int64)


def make_optimizer(args: argparse.Namespace, total_steps: int) -> fl.optim.Optimizer:
    """The named optimizer; --momentum and --l2 (its ``weight_decay``) go to it when it takes them."""
    factory = getattr(fl.optim, args.optimizer)
    accepted = inspect.signature(factory).parameters
    lr: Any = args.lr
    if args.schedule == "cosine":
        lr = fl.optim.cosine_decay_schedule(args.lr, total_steps)
    options = {}
    for flag, name, value in (("--momentum", "momentum", args.momentum), ("--l2", "weight_decay", args.l2)):
        if name in accepted:
            options[name] = value
        elif value:
            sys.exit(f"mnist_mlp: {flag} is not supported by --optimizer {args.optimizer}.")
    return factory(lr, **options)


def evaluate(apply: Callable[..., Any], params: Any, x: np.ndarray, labels: np.ndarray,
             loss: Callable[..., Any], encode: Callable[[np.ndarray], np.ndarray]) -> tuple[float, np.ndarray]:
    """The mean loss over ``x`` and the predicted labels, computed in batches (no dropout)."""
    total, predictions = 0.0, []
    for xb, yb in batches(x, labels, EVAL_BATCH):
        out, _ = apply(params, xb, train=False)
        total += loss(out, encode(yb))[0] * len(xb)
        predictions.append(out.argmax(axis=1))
    return total / len(x), np.concatenate(predictions)


class Progress:
    """A tqdm bar over the steps of each epoch when stdout is a terminal; plain lines otherwise."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        try:
            from tqdm import tqdm
        except ImportError:
            tqdm = None
        self.tqdm = tqdm if tqdm is not None and sys.stdout.isatty() and not quiet else None

    def bar(self, total: int, desc: str) -> Any:
        return self.tqdm(total=total, desc=desc, leave=False, file=sys.stdout) if self.tqdm else None

    def print(self, line: str) -> None:
        if self.quiet:
            return
        if self.tqdm:
            self.tqdm.write(line, file=sys.stdout)
        else:
            print(line, flush=True)


def train_epoch(step: Callable[..., Any], params: Any, state: Any, data: tuple[np.ndarray, np.ndarray],
                args: argparse.Namespace, rngs: tuple[np.random.Generator, np.random.Generator],
                bar: Any) -> tuple[Any, Any, float]:
    """One pass over the shuffled training set; returns the new params, state and mean minibatch loss."""
    shuffle_rng, dropout_rng = rngs
    losses = []
    for xb, yb in batches(*data, args.batch_size, rng=shuffle_rng):
        if DIST is not None:  # every rank draws the same global batch and takes its share
            part = DIST.shard(len(xb))
            xb, yb = xb[part], yb[part]
        params, state, value = step(params, state, xb, yb, dropout_rng)
        losses.append(value)
        if bar is not None:
            bar.update(1)
            if len(losses) % 20 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
    return params, state, float(np.mean(losses))


def make_step(model: fl.Layer, loss: Callable[..., Any], encode: Callable[[np.ndarray], np.ndarray],
              opt: fl.optim.Optimizer) -> Callable[..., Any]:
    """``step(params, state, xb, yb, rng) -> (params, state, loss)``: one optimizer update.

    One process: ``fl.train_step`` (fused; on a non-finite loss the gradients of that batch are
    recomputed, with new dropout draws, to say where it started). Under MPI: the global-mean
    gradients of ``fnlearn.distributed``, then the update.
    """
    if DIST is None:
        fused = fl.train_step(model.apply, loss, opt)
        value_and_grad = fl.value_and_grad(model.apply, loss)

        def fused_step(params: Any, state: Any, xb: np.ndarray, yb: np.ndarray, rng: np.random.Generator):
            new_params, new_state, value = fused(params, state, xb, encode(yb), rng=rng)
            if not math.isfinite(value):
                _, grads = value_and_grad(params, xb, encode(yb), rng=rng, train=True)
                raise debug.NonFiniteError(_divergence(value, grads, params))
            return new_params, new_state, value

        return fused_step

    value_and_grad = DIST.value_and_grad(model.apply, loss)

    def step(params: Any, state: Any, xb: np.ndarray, yb: np.ndarray, rng: np.random.Generator):
        value, grads = value_and_grad(params, xb, encode(yb), rng=rng, train=True)
        if not math.isfinite(value):
            raise debug.NonFiniteError(_divergence(value, grads, params))
        updates, state = opt.update(grads, state, params)
        return fl.optim.apply_updates(params, updates), state, value

    return step


def _divergence(value: float, grads: Any, params: Any) -> str:
    where = [f"first non-finite {what} at '{path}'" for what, tree in (("gradient", grads), ("parameter", params))
             if (path := debug.find_nonfinite(tree)) is not None]
    return (f"the training loss became {value}" + (f" ({'; '.join(where)})" if where else "")
            + ". The run diverged: lower --lr, add --momentum 0 or a --schedule, or check the data.")


def _epoch_line(epoch: int, epochs: int, record: dict[str, Any]) -> str:
    line = (f"epoch {epoch:>3}/{epochs}  train loss {record['train_loss']:.4f} "
            f"acc {100 * record['train_accuracy']:.2f}%")
    if record["val_loss"] is not None:
        line += f"  val loss {record['val_loss']:.4f} acc {100 * record['val_accuracy']:.2f}%"
    return line + f"  ({record['seconds']:.1f} s)"


def fit(model: fl.Layer, params: Any, data: dict[str, Any], args: argparse.Namespace,
        rngs: tuple[np.random.Generator, np.random.Generator]) -> tuple[Any, list[dict[str, Any]]]:
    """Train until epoch ``args.epochs``; after each, evaluate on the training and validation sets.

    With ``--resume`` the params, optimizer state, generators and history come from the checkpoint;
    with ``--save`` a checkpoint is written after every epoch.
    """
    loss, encode = make_loss(args)
    steps_per_epoch = math.ceil(len(data["train"][0]) / args.batch_size)
    opt = make_optimizer(args, args.epochs * steps_per_epoch)
    step, state, progress = make_step(model, loss, encode, opt), opt.init(params), Progress(args.quiet or not IS_ROOT)
    history: list[dict[str, Any]] = []
    if args.resume is not None:
        params, state, rngs, history = resume(args, params, state, rngs)
    for epoch in range(len(history) + 1, args.epochs + 1):
        start = time.perf_counter()
        bar = progress.bar(steps_per_epoch, f"epoch {epoch}/{args.epochs}")
        params, state, batch_loss = train_epoch(step, params, state, data["train"], args, rngs, bar)
        if bar is not None:
            bar.close()
        record = {"epoch": epoch, "batch_loss": batch_loss}
        for split in ("train", "val"):
            x, y = data[split]
            split_loss, predicted = evaluate(model.apply, params, x, y, loss, encode) if len(x) else (None, None)
            record[f"{split}_loss"] = split_loss
            record[f"{split}_accuracy"] = accuracy(y, predicted) if len(x) else None
        record["seconds"] = time.perf_counter() - start
        history.append(record)
        progress.print(_epoch_line(epoch, args.epochs, record))
        if args.save is not None and IS_ROOT:
            checkpoint.save(args.save, {"params": params, "opt_state": state,
                                        "rngs": [checkpoint.generator_state(r) for r in rngs]},
                            metadata={"config": _run_config(args), "history": history})
    return params, history


# Everything that shapes a run except its length: a checkpoint only resumes the run it came from.
_RESUME_KEYS = ("hidden", "activation", "init", "loss", "mse_output", "optimizer", "lr", "schedule",
                "momentum", "l2", "dropout", "batch_size", "val_fraction", "seed", "limit")


def _run_config(args: argparse.Namespace) -> dict[str, Any]:
    config = {k: getattr(args, k) for k in _RESUME_KEYS}
    config["hidden"] = list(config["hidden"])
    if args.schedule != "constant":  # the schedule spans the whole run, so its length matters
        config["epochs"] = args.epochs
    return config


def resume(args: argparse.Namespace, params: Any, state: Any,
           rngs: tuple[np.random.Generator, ...]) -> tuple[Any, Any, tuple[np.random.Generator, ...], list]:
    """Load ``args.resume`` against templates of this run; refuse a checkpoint of another configuration."""
    meta = checkpoint.load_metadata(args.resume) or {}
    if meta.get("config") != _run_config(args):
        theirs = meta.get("config") or {}
        diff = {k: (theirs.get(k), v) for k, v in _run_config(args).items() if theirs.get(k) != v}
        sys.exit(f"mnist_mlp: {args.resume} comes from another configuration (checkpoint vs now: {diff}); "
                 "resume with the same flags, changing only --epochs.")
    like = {"params": params, "opt_state": state, "rngs": [checkpoint.generator_state(r) for r in rngs]}
    saved = checkpoint.load(args.resume, like=like)
    history = meta["history"]
    if len(history) >= args.epochs:
        sys.exit(f"mnist_mlp: {args.resume} has {len(history)} epochs already; ask for more with --epochs.")
    return (saved["params"], saved["opt_state"],
            tuple(checkpoint.generator_from_state(r) for r in saved["rngs"]), history)


def save_plots(directory: str, history: list[dict[str, Any]], matrix: np.ndarray,
               test_accuracy: float) -> list[str]:
    """Write accuracy.png (accuracy and loss per epoch) and confusion_matrix.png (test set) into ``directory``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    os.makedirs(directory, exist_ok=True)
    epochs = [r["epoch"] for r in history]
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 4))
    for split in ("train", "val"):
        if history[0][f"{split}_accuracy"] is not None:
            ax_acc.plot(epochs, [100 * r[f"{split}_accuracy"] for r in history], marker="o", label=split)
            ax_loss.plot(epochs, [r[f"{split}_loss"] for r in history], marker="o", label=split)
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy per epoch")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss per epoch")
    for ax in (ax_acc, ax_loss):
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    paths = [os.path.join(directory, "accuracy.png"), os.path.join(directory, "confusion_matrix.png")]
    fig.savefig(paths[0], dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax)
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=7,
                color="white" if count > matrix.max() / 2 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=f"confusion matrix (test set, accuracy {100 * test_accuracy:.2f}%)",
           xticks=range(len(matrix)), yticks=range(len(matrix)))
    fig.tight_layout()
    fig.savefig(paths[1], dpi=100)
    plt.close(fig)
    return paths


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the example; returns the config, per-epoch history, test results, params and timings."""
    args = parse_args(argv)
    with blas_threads(args.threads):
        try:
            return _run(args)
        except datasets.DatasetError as err:  # no local copy and no network, or a damaged file
            sys.exit(f"mnist_mlp: {err}")


def _run(args: argparse.Namespace) -> dict[str, Any]:
    fl.reuse_freed_memory()  # a step's freed arrays serve the next step (no page faults)
    start = time.perf_counter()
    split_rng, init_rng, shuffle_rng, dropout_rng = np.random.default_rng(args.seed).spawn(4)
    if DIST is not None:  # the same batches everywhere, but each rank's own dropout noise
        dropout_rng = dropout_rng.spawn(DIST.size())[DIST.rank()]
    data = load_data(args, split_rng)
    model = build_model(args)
    params = model.init(init_rng, (-1, data["train"][0].shape[1]))
    if DIST is not None:
        params = DIST.broadcast(params)
    try:
        params, history = fit(model, params, data, args, (shuffle_rng, dropout_rng))
    except debug.NonFiniteError as err:
        sys.exit(f"mnist_mlp: {err}")
    loss, encode = make_loss(args)
    test_loss, predicted = evaluate(model.apply, params, *data["test"], loss, encode)
    test_accuracy = accuracy(data["test"][1], predicted)
    matrix = confusion_matrix(data["test"][1], predicted, num_classes=NUM_CLASSES)
    seconds = time.perf_counter() - start
    plots = []
    if IS_ROOT:
        print(f"test loss {test_loss:.4f}  test accuracy {100 * test_accuracy:.2f}%  wall time {seconds:.1f} s")
        plots = save_plots(args.plots, history, matrix, test_accuracy) if args.plots is not None else []
    return {"config": vars(args), "history": history, "test_loss": test_loss, "test_accuracy": test_accuracy,
            "confusion_matrix": matrix, "params": params, "seconds": seconds, "plots": plots}


if __name__ == "__main__":
    if DIST is None:
        main()
    else:
        with DIST.abort_on_error():
            main()

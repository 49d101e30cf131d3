"""Train nanoGPT's character-level GPT on tiny Shakespeare with fnlearn, then sample from it.

The defaults are nanoGPT's CPU run of ``config/train_shakespeare_char.py`` (its README: n_layer 4,
n_head 4, n_embd 128, block 64, batch 12, dropout 0, 2000 iterations, eval_iters 20), with the
config's AdamW (lr 1e-3, betas (0.9, 0.99), weight decay 0.1 on the 2-D parameters only), warmup 100
then cosine to 1e-4 at 2000 iterations, gradient clipping at 1.0, and ``train.py``'s ``bias=False``.

    python examples/shakespeare_gpt.py                   # about 1.92 validation loss (nanoGPT's model: 1.92 too)
    python examples/shakespeare_gpt.py --iters 200 --eval-interval 100 --sample-tokens 200

The corpus is read from --data-dir, else $FNLEARN_SHAKESPEARE_DIR, else downloaded into
~/.cache/fnlearn/tinyshakespeare. ``main(argv)`` returns the results as a dict (tests run it in-process).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

import fnlearn as fl

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mnist_mlp as mlp  # the sibling example: BLAS threads


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-dir", default=None, help="directory with input.txt (default: "
                   "$FNLEARN_SHAKESPEARE_DIR, else the cache, downloading if needed)")
    p.add_argument("--iters", type=int, default=2000, help="training iterations")
    p.add_argument("--eval-interval", type=int, default=250, help="iterations between evaluations")
    p.add_argument("--eval-iters", type=int, default=20, help="batches per split in an evaluation")
    p.add_argument("--batch-size", type=int, default=12)
    p.add_argument("--block-size", type=int, default=64)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--bias", action="store_true", help="biases in Linear and LayerNorm (nanoGPT's "
                   "train.py default is no bias)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    p.add_argument("--min-lr", type=float, default=1e-4, help="learning rate at the end of the decay")
    p.add_argument("--warmup-iters", type=int, default=100)
    p.add_argument("--lr-decay-iters", type=int, default=2000)
    p.add_argument("--weight-decay", type=float, default=0.1, help="AdamW decay of the 2-D parameters")
    p.add_argument("--beta1", type=float, default=0.9)
    p.add_argument("--beta2", type=float, default=0.99)
    p.add_argument("--grad-clip", type=float, default=1.0, help="global norm clip (0: none)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--seed", type=int, default=1337, help="seeds the init and the batches")
    p.add_argument("--sample-tokens", type=int, default=500, help="characters to sample at the end")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=200)
    p.add_argument("--threads", type=int, default=None, metavar="N", help=mlp.THREADS_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be positive")
    return args


def nanogpt_lr(lr: float, min_lr: float, warmup: int, decay_iters: int) -> Callable[[int], float]:
    """nanoGPT's ``get_lr(it)``: linear warmup ``lr * (it + 1) / (warmup + 1)``, cosine to ``min_lr``."""
    def schedule(it: int) -> float:
        if it < warmup:
            return lr * (it + 1) / (warmup + 1)
        if it > decay_iters:
            return min_lr
        ratio = (it - warmup) / (decay_iters - warmup)
        return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)
    return schedule


def make_optimizer(args: argparse.Namespace) -> fl.optim.Optimizer:
    """Clip the global gradient norm, then AdamW with decay on the parameters of rank >= 2 only."""
    decay_mask = lambda params: fl.tree.tree_map(lambda a: a.ndim >= 2, params)  # noqa: E731
    schedule = nanogpt_lr(args.lr, args.min_lr, args.warmup_iters, args.lr_decay_iters)
    adamw = fl.optim.adamw(schedule, b1=args.beta1, b2=args.beta2, weight_decay=args.weight_decay,
                           mask=decay_mask)
    if args.grad_clip <= 0:
        return adamw
    return fl.optim.chain(fl.optim.clip_by_global_norm(args.grad_clip), adamw)


def estimate_loss(model: fl.Layer, params: Any, corpus: Any, args: argparse.Namespace,
                  rng: np.random.Generator) -> dict[str, float]:
    """nanoGPT's ``estimate_loss``: the mean loss over ``eval_iters`` random batches of each split."""
    out = {}
    for split in ("train", "val"):
        losses = []
        for _ in range(args.eval_iters):
            x, y = corpus.get_batch(split, args.batch_size, args.block_size, rng)
            logits, _ = model.apply(params, x)
            losses.append(fl.losses.softmax_cross_entropy(logits, y)[0])
        out[split] = float(np.mean(losses))
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    fl.reuse_freed_memory()
    with mlp.blas_threads(args.threads):
        return train(args)


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Train, evaluate every ``eval_interval`` iterations, sample; the results as a dict."""
    corpus = fl.datasets.tiny_shakespeare(args.data_dir)
    model = fl.models.gpt(corpus.vocab_size, args.block_size, args.n_layer, args.n_head, args.n_embd,
                          dropout=args.dropout, bias=args.bias)
    init_rng, data_rng, eval_rng, drop_rng, sample_rng = np.random.default_rng(args.seed).spawn(5)
    params = model.init(init_rng, (-1, args.block_size), dtype=np.dtype(args.dtype))
    count = sum(leaf.size for leaf in fl.tree.tree_leaves(params))
    print(f"{count / 1e6:.2f}M parameters, vocabulary {corpus.vocab_size}, "
          f"{len(corpus.train):,} train / {len(corpus.val):,} val characters")
    optimizer = make_optimizer(args)
    opt_state = optimizer.init(params)
    step = fl.train_step(model.apply, fl.losses.softmax_cross_entropy, optimizer)
    bar = _progress(args.iters, args.quiet)
    history, losses, start = [], [], time.perf_counter()
    for it in range(args.iters + 1):
        if it % args.eval_interval == 0 or it == args.iters:
            record = {"iter": it, **estimate_loss(model, params, corpus, args, eval_rng),
                      "seconds": time.perf_counter() - start}
            history.append(record)
            _write(bar, f"step {it}: train loss {record['train']:.4f}, val loss {record['val']:.4f} "
                        f"({record['seconds']:.0f} s)")
        if it == args.iters:
            break
        x, y = corpus.get_batch("train", args.batch_size, args.block_size, data_rng)
        params, opt_state, loss = step(params, opt_state, x, y,
                                       rng=drop_rng if args.dropout > 0 else None)
        if not math.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss} at iteration {it}; lower --lr.")
        losses.append(loss)
        if bar is not None:
            bar.set_postfix(loss=f"{loss:.4f}")
            bar.update()
    seconds = time.perf_counter() - start
    if bar is not None:
        bar.close()
    sample = ""
    if args.sample_tokens > 0:
        ids = fl.models.generate(model, params, corpus.encode("\n")[None], args.sample_tokens,
                                 temperature=args.temperature, top_k=args.top_k, rng=sample_rng)
        sample = corpus.decode(ids[0])
        print(sample)
    print(f"final val loss {history[-1]['val']:.4f} after {args.iters} iterations, {seconds:.1f} s "
          f"({1e3 * seconds / max(args.iters, 1):.1f} ms per iteration with evaluation)")
    return {"history": history, "losses": losses, "seconds": seconds, "sample": sample,
            "val_loss": history[-1]["val"], "params": params}


def _progress(total: int, quiet: bool) -> Any:
    if quiet or not sys.stdout.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc="train", file=sys.stdout)


def _write(bar: Any, line: str) -> None:
    if bar is not None:
        bar.write(line)
    else:
        print(line, flush=True)


if __name__ == "__main__":
    main()

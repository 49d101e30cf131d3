"""Train a character-level LSTM on tiny Shakespeare with fnlearn, then sample from it.

The model is char-rnn's: an embedding of the 65 characters, ``--layers`` LSTMs over the sequence
(dropout between them), and a Dense layer to the next character's logits; Adam with the global
gradient norm clipped, on random windows of ``--block-size`` characters (nanoGPT's ``get_batch``).

    python examples/shakespeare_lstm.py                       # 1 LSTM(256), 2000 iterations
    python examples/shakespeare_lstm.py --layers 2 --dropout 0.2 --iters 5000
    python examples/shakespeare_lstm.py --iters 200 --eval-interval 100 --sample-tokens 200

Sampling feeds one character at a time and carries each LSTM's state ``(h, c)`` from step to step
(``return_state=True`` and the input ``(x, None, state)``), so a sample costs one step per character.
The corpus is read from --data-dir, else $FNLEARN_SHAKESPEARE_DIR, else downloaded into
~/.cache/fnlearn/tinyshakespeare. ``main(argv)`` returns the results as a dict (tests run it in-process).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mnist_mlp as mlp  # the sibling example: BLAS threads
from shakespeare_gpt import estimate_loss  # the sibling example: nanoGPT's estimate_loss


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-dir", default=None, help="directory with input.txt (default: "
                   "$FNLEARN_SHAKESPEARE_DIR, else the cache, downloading if needed)")
    p.add_argument("--iters", type=int, default=2000, help="training iterations")
    p.add_argument("--eval-interval", type=int, default=250, help="iterations between evaluations")
    p.add_argument("--eval-iters", type=int, default=20, help="batches per split in an evaluation")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--block-size", type=int, default=64, help="characters per training window")
    p.add_argument("--embedding", type=int, default=64, help="size of a character's embedding")
    p.add_argument("--hidden", type=int, default=256, help="size of each LSTM's state")
    p.add_argument("--layers", type=int, default=1, help="stacked LSTMs")
    p.add_argument("--dropout", type=float, default=0.0, help="drop probability between the LSTMs")
    p.add_argument("--lr", type=float, default=2e-3, help="Adam's learning rate")
    p.add_argument("--grad-clip", type=float, default=5.0, help="global norm clip (0: none), as char-rnn")
    p.add_argument("--seed", type=int, default=1337, help="seeds the init, the batches and the sample")
    p.add_argument("--sample-tokens", type=int, default=500, help="characters to sample at the end")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--prompt", default="\n", help="the text the sample continues")
    p.add_argument("--quiet", action="store_true", help="print only the final results")
    p.add_argument("--threads", type=int, default=None, metavar="N", help=mlp.THREADS_HELP)
    args = p.parse_args(argv)
    if min(args.iters, args.batch_size, args.block_size, args.hidden, args.layers, args.embedding) < 1:
        p.error("--iters, --batch-size, --block-size, --hidden, --layers and --embedding must be positive")
    return args


def char_lstm(vocab_size: int, embedding: int = 64, hidden: int = 256, layers: int = 1,
              dropout: float = 0.0) -> fl.Layer:
    """``Embedding -> LSTM (-> Dropout -> LSTM)* -> Dense(vocab)``: ids ``(B, T)`` to logits ``(B, T, V)``.

    Params are keyed ``embed``, ``lstm0``, ``drop0``, ``lstm1``, ..., ``head``.

    Example:
        >>> model = char_lstm(65, 8, 16, layers=2)
        >>> params = model.init(np.random.default_rng(0), (-1, 10), input_dtype=np.int64)
        >>> list(params), model.apply(params, np.zeros((2, 10), np.int64))[0].shape
        (['embed', 'lstm0', 'drop0', 'lstm1', 'head'], (2, 10, 65))
    """
    layers_, names = [fl.Embedding(vocab_size, embedding)], ["embed"]
    for k in range(layers):
        if k:
            layers_.append(fl.Dropout(dropout))
            names.append(f"drop{k - 1}")
        layers_.append(fl.LSTM(hidden, return_sequences=True))
        names.append(f"lstm{k}")
    layers_.append(fl.Dense(vocab_size))
    names.append("head")
    return fl.serial(*layers_, names=names)


def next_logits(params: Any, ids: np.ndarray, states: dict[str, Any] | None) -> tuple[np.ndarray, dict[str, Any]]:
    """The logits ``(B, V)`` of the character after ``ids`` ``(B, T)``, and every LSTM's state after it.

    ``states`` is what the previous call returned (None at the start): the LSTMs continue from it, so
    feeding a text in pieces gives the logits of feeding it at once.
    """
    embed = fl.Embedding(*params["embed"]["embeddings"].shape)
    lstm = fl.LSTM(params["lstm0"]["w_hh"].shape[0], return_sequences=True, return_state=True)
    x, _ = embed.apply(params["embed"], ids)
    states = dict(states or {})
    for k in (k for k in params if k.startswith("lstm")):
        (x, states[k]), _ = lstm.apply(params[k], (x, None, states[k]) if k in states else (x, None))
    logits, _ = fl.Dense(params["head"]["w"].shape[1]).apply(params["head"], x[:, -1])
    return logits, states


def sample(params: Any, corpus: Any, prompt: str, n: int, *, temperature: float = 1.0,
           rng: np.random.Generator) -> str:
    """``prompt`` and ``n`` characters after it, drawn from ``softmax(logits / temperature)``.

    The prompt goes through the LSTMs in one call; after it, each new character is one step from the
    states the previous step returned.
    """
    ids, states, out = corpus.encode(prompt)[None], None, []
    for _ in range(n):
        logits, states = next_logits(params, ids, states)
        z = logits[0].astype(np.float64) / temperature
        p = np.exp(z - z.max())
        ids = rng.choice(corpus.vocab_size, size=(1, 1), p=p / p.sum())
        out.append(int(ids[0, 0]))
    return prompt + corpus.decode(np.array(out, dtype=np.int64))


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the example; returns the loss history, the sample, the time and the params."""
    args = parse_args(argv)
    with mlp.blas_threads(args.threads):
        return _run(args)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    fl.reuse_freed_memory()
    corpus = fl.datasets.tiny_shakespeare(args.data_dir)
    model = char_lstm(corpus.vocab_size, args.embedding, args.hidden, args.layers, args.dropout)
    init_rng, data_rng, eval_rng, drop_rng, sample_rng = np.random.default_rng(args.seed).spawn(5)
    params = model.init(init_rng, (-1, args.block_size), input_dtype=np.int64)
    adam = fl.optim.adam(args.lr)
    optimizer = fl.optim.chain(fl.optim.clip_by_global_norm(args.grad_clip), adam) if args.grad_clip > 0 else adam
    opt_state = optimizer.init(params)
    step = fl.train_step(model.apply, fl.losses.softmax_cross_entropy, optimizer)
    count = sum(leaf.size for leaf in fl.tree.tree_leaves(params))
    if not args.quiet:
        print(f"{count / 1e6:.2f}M parameters, vocabulary {corpus.vocab_size}", flush=True)
    history, losses, start = [], [], time.perf_counter()
    for it in range(args.iters + 1):
        if it % args.eval_interval == 0 or it == args.iters:
            record = {"iter": it, **estimate_loss(model, params, corpus, args, eval_rng),
                      "seconds": time.perf_counter() - start}
            history.append(record)
            if not args.quiet:
                print(f"step {it}: train loss {record['train']:.4f}, val loss {record['val']:.4f} "
                      f"({record['seconds']:.0f} s)", flush=True)
        if it == args.iters:
            break
        x, y = corpus.get_batch("train", args.batch_size, args.block_size, data_rng)
        params, opt_state, loss = step(params, opt_state, x, y, rng=drop_rng)
        if not math.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss} at iteration {it}; lower --lr.")
        losses.append(loss)
    seconds = time.perf_counter() - start
    text = sample(params, corpus, args.prompt, args.sample_tokens, temperature=args.temperature,
                  rng=sample_rng) if args.sample_tokens > 0 else ""
    print(text)
    print(f"final val loss {history[-1]['val']:.4f} after {args.iters} iterations, {seconds:.1f} s "
          f"({1e3 * seconds / args.iters:.1f} ms per iteration with evaluation)")
    return {"history": history, "losses": losses, "seconds": seconds, "sample": text,
            "val_loss": history[-1]["val"], "params": params}


if __name__ == "__main__":
    main()

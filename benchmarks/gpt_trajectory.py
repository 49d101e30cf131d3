"""fnlearn's GPT and nanoGPT trained side by side from the same init on the same batches of tiny Shakespeare.

nanoGPT's CPU configuration (its README: ``train_shakespeare_char`` with ``--device=cpu --compile=False
--eval_iters=20 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000
--lr_decay_iters=2000 --dropout=0.0``, and train.py's ``bias=False``): AdamW lr 1e-3, betas (0.9, 0.99), eps 1e-8, weight decay 0.1 on
the parameters with two or more dimensions only, the learning rate of nanoGPT's ``get_lr`` (linear warmup
``lr * (it + 1) / (warmup + 1)`` for 100 iterations, then cosine down to 1e-4 at iteration 2000), and the
gradients clipped to global norm 1.0 as ``torch.nn.utils.clip_grad_norm_`` does it (scaled by
``min(1, max_norm / (norm + 1e-6))``). float32 throughout.

The torch side is tests/nanogpt_torch.py (nanoGPT's ``GPT`` and ``configure_optimizers``); its init
(``torch.manual_seed(seed)``) is copied into fnlearn with ``interop.from_nanogpt_state_dict``. Every
iteration both models take the same batch (``CharCorpus.get_batch`` with one NumPy generator), and the
script reports the difference of the two training losses per step. At the end it estimates both
models' losses as nanoGPT's ``estimate_loss`` does (``--eval-iters`` random batches per split, the same
batches for both models).

    python3 benchmarks/gpt_trajectory.py                  # 300 steps, the per-step loss differences
    python3 benchmarks/gpt_trajectory.py --iters 2000     # the whole run and both validation losses
    python3 benchmarks/gpt_trajectory.py --iters 2000 --bias   # with biases (nanoGPT's GPTConfig default)
    python3 benchmarks/gpt_trajectory.py --iters 50 --threads 1 --json out.json   # on a busy machine

Needs torch (``pip install torch==2.13.0``) and char-rnn's ``input.txt`` (``--data-dir``, else
``FNLEARN_SHAKESPEARE_DIR``, else a download into fnlearn's cache). The step times it prints are of one
process running both models in turn; they are not a benchmark of speed (see issue 14's speed item).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

import fnlearn as fl
from fnlearn import interop, models, optim

ROOT = Path(__file__).resolve().parents[1]

CONFIG = dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12, dropout=0.0, bias=False,
              learning_rate=1e-3, min_lr=1e-4, warmup_iters=100, lr_decay_iters=2000,
              beta1=0.9, beta2=0.99, weight_decay=0.1, grad_clip=1.0)
"""nanoGPT's CPU configuration for tiny Shakespeare (vocab_size comes from the corpus: 65)."""


def nanogpt_lr(it: int, c: dict[str, Any] = CONFIG) -> float:
    """nanoGPT's ``get_lr(it)`` in train.py (the example's schedule): the learning rate of iteration
    ``it`` (0 first)."""
    return _example().nanogpt_lr(c["learning_rate"], c["min_lr"], c["warmup_iters"], c["lr_decay_iters"])(it)


@functools.lru_cache(maxsize=1)
def _example() -> Any:
    """examples/shakespeare_gpt.py, which writes nanoGPT's schedule once for both."""
    spec = importlib.util.spec_from_file_location("shakespeare_gpt", ROOT / "examples" / "shakespeare_gpt.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def clip_grad_norm_as_torch(max_norm: float) -> optim.Optimizer:
    """``torch.nn.utils.clip_grad_norm_``'s rule: every gradient times ``min(1, max_norm / (norm + 1e-6))``
    (optax's ``clip_by_global_norm``, which ``optim.clip_by_global_norm`` follows, has no 1e-6)."""
    def init(params: Any) -> dict:
        return {}

    def update(grads: Any, state: dict, params: Any = None) -> tuple[Any, dict]:
        factor = min(1.0, max_norm / (fl.tree.tree_global_norm(grads) + 1e-6))
        return fl.tree.tree_map(lambda g: g * factor, grads), state

    return optim.Optimizer(init, update)


def fnlearn_optimizer(c: dict[str, Any] = CONFIG) -> optim.Optimizer:
    """nanoGPT's clip + AdamW + learning-rate schedule as one fnlearn optimizer. A schedule is called with
    the number of updates made so far, so ``schedule(count) = get_lr(count)``."""
    decay_2d = lambda params: fl.tree.tree_map(lambda p: p.ndim >= 2, params)  # noqa: E731
    return optim.chain(clip_grad_norm_as_torch(c["grad_clip"]),
                       optim.adamw(lambda count: nanogpt_lr(count, c), b1=c["beta1"], b2=c["beta2"],
                                   eps=1e-8, weight_decay=c["weight_decay"], mask=decay_2d))


def _nanogpt_module() -> Any:
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        import nanogpt_torch
    finally:
        sys.path.remove(str(ROOT / "tests"))
    return nanogpt_torch


class Side:
    """One model being trained: ``step(x, y) -> loss`` (one optimizer update), ``loss(x, y)`` (no update)."""

    def __init__(self, name: str, step: Callable[..., float], loss: Callable[..., float]):
        self.name, self.step, self.loss, self.seconds = name, step, loss, 0.0


def make_sides(vocab_size: int, seed: int, c: dict[str, Any] = CONFIG) -> tuple[Side, Side]:
    """nanoGPT (torch, ``torch.manual_seed(seed)`` init) and fnlearn's GPT from the same weights."""
    import torch
    nanogpt_torch = _nanogpt_module()
    arch = dict(vocab_size=vocab_size, block_size=c["block_size"], n_layer=c["n_layer"],
                n_head=c["n_head"], n_embd=c["n_embd"], dropout=c["dropout"], bias=c["bias"])
    torch.manual_seed(seed)
    net = nanogpt_torch.GPT(nanogpt_torch.GPTConfig(**arch))
    params = interop.from_nanogpt_state_dict({k: v.detach().numpy() for k, v in net.state_dict().items()})
    torch_opt = net.configure_optimizers(c["weight_decay"], c["learning_rate"], (c["beta1"], c["beta2"]))
    it = {"torch": 0}

    def torch_step(x: np.ndarray, y: np.ndarray) -> float:
        for group in torch_opt.param_groups:
            group["lr"] = nanogpt_lr(it["torch"], c)
        _, loss = net(torch.from_numpy(x), torch.from_numpy(y))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), c["grad_clip"])
        torch_opt.step()
        torch_opt.zero_grad(set_to_none=True)
        it["torch"] += 1
        return loss.item()

    def torch_loss(x: np.ndarray, y: np.ndarray) -> float:
        net.eval()
        with torch.no_grad():
            loss = net(torch.from_numpy(x), torch.from_numpy(y))[1].item()
        net.train()
        return loss

    model = models.gpt(vocab_size, c["block_size"], c["n_layer"], c["n_head"], c["n_embd"],
                       dropout=c["dropout"], bias=c["bias"])
    opt = fnlearn_optimizer(c)
    box = {"params": params, "state": opt.init(params)}

    def fnlearn_loss_and_grads(x: np.ndarray, y: np.ndarray, *, grads: bool) -> tuple[float, Any]:
        logits, vjp = model.apply(box["params"], x, train=grads)
        loss, dlogits = fl.losses.softmax_cross_entropy(logits.reshape(-1, vocab_size), y.reshape(-1))
        return loss, vjp(dlogits.reshape(logits.shape))[0] if grads else None

    def fnlearn_step(x: np.ndarray, y: np.ndarray) -> float:
        loss, grads = fnlearn_loss_and_grads(x, y, grads=True)
        updates, box["state"] = opt.update(grads, box["state"], box["params"])
        box["params"] = optim.apply_updates(box["params"], updates)
        return float(loss)

    return (Side("nanoGPT", torch_step, torch_loss),
            Side("fnlearn", fnlearn_step, lambda x, y: float(fnlearn_loss_and_grads(x, y, grads=False)[0])))


def run(corpus: Any, iters: int, *, seed: int = 1337, data_seed: int = 0, eval_iters: int = 20,
        c: dict[str, Any] = CONFIG, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train both models ``iters`` steps on the same batches; then estimate both losses per split.

    Returns:
        ``{"losses": {"nanoGPT": [...], "fnlearn": [...]}, "eval": {name: {"train": ..., "val": ...}},
        "seconds_per_step": {name: ...}}``.
    """
    sides = make_sides(corpus.vocab_size, seed, c)
    rng = np.random.default_rng(data_seed)
    losses: dict[str, list[float]] = {s.name: [] for s in sides}
    for it in range(iters):
        x, y = corpus.get_batch("train", c["batch_size"], c["block_size"], rng)
        for side in sides:
            start = time.perf_counter()
            losses[side.name].append(side.step(x, y))
            side.seconds += time.perf_counter() - start
        if log is not None and (it % 50 == 0 or it == iters - 1):
            a, b = losses["nanoGPT"][-1], losses["fnlearn"][-1]
            log(f"iter {it:5d}  lr {nanogpt_lr(it, c):.3e}  nanoGPT {a:.5f}  fnlearn {b:.5f}  "
                f"diff {b - a:+.2e}")
    evaluation: dict[str, dict[str, float]] = {s.name: {} for s in sides}
    eval_rng = np.random.default_rng(data_seed + 1)
    for split in ("train", "val"):
        batches = [corpus.get_batch(split, c["batch_size"], c["block_size"], eval_rng)
                   for _ in range(eval_iters)]
        for side in sides:
            evaluation[side.name][split] = float(np.mean([side.loss(x, y) for x, y in batches]))
    return {"losses": losses, "eval": evaluation,
            "seconds_per_step": {s.name: s.seconds / max(iters, 1) for s in sides}}


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The per-step loss differences (fnlearn - nanoGPT) and the estimated losses."""
    a, b = (np.asarray(result["losses"][n]) for n in ("nanoGPT", "fnlearn"))
    diff = np.abs(b - a)
    out: dict[str, Any] = {"steps": int(len(a)), "first_loss": {"nanoGPT": float(a[0]), "fnlearn": float(b[0])},
                           "first_diff": float(diff[0]), "max_abs_diff": float(diff.max()),
                           "argmax_diff": int(diff.argmax())}
    if len(a) > 300:
        out["max_abs_diff_first_300"] = float(diff[:300].max())
    out["eval"] = result["eval"]
    out["val_diff"] = result["eval"]["fnlearn"]["val"] - result["eval"]["nanoGPT"]["val"]
    out["seconds_per_step"] = result["seconds_per_step"]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=int, default=300, help="training steps (2000: nanoGPT's whole run)")
    parser.add_argument("--eval-iters", type=int, default=20, help="batches per split for the loss estimate")
    parser.add_argument("--seed", type=int, default=1337, help="torch.manual_seed for nanoGPT's init")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the batch sampler")
    parser.add_argument("--data-dir", default=None, help="directory with input.txt")
    parser.add_argument("--threads", type=int, default=None,
                        help="limit torch and (with threadpoolctl) NumPy's BLAS to N threads")
    parser.add_argument("--bias", action="store_true",
                        help="biases in Linear and LayerNorm (nanoGPT's train.py default: none)")
    parser.add_argument("--json", default=None, help="write the per-step losses and the summary here")
    args = parser.parse_args(argv)
    config = {**CONFIG, "bias": args.bias}
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
        try:
            from threadpoolctl import threadpool_limits
            threadpool_limits(args.threads)
        except ImportError:
            print("threadpoolctl is not installed: BLAS keeps its default threads (pip install threadpoolctl)")
    corpus = fl.datasets.tiny_shakespeare(args.data_dir)
    result = run(corpus, args.iters, seed=args.seed, data_seed=args.data_seed, eval_iters=args.eval_iters,
                 c=config, log=print)
    report = summary(result)
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps({"config": config, "args": vars(args), "summary": report,
                                               "losses": result["losses"]}, indent=1))


if __name__ == "__main__":
    main()

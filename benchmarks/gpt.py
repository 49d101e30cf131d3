"""Training-step time of nanoGPT's character GPT (the CPU config): fnlearn against PyTorch eager.

The model of examples/shakespeare_gpt.py (n_layer 4, n_head 4, n_embd 128, block 64, vocabulary 65,
no bias, batch 12, float32) with its optimizer (global-norm clipping, AdamW with decay on the 2-D
parameters); PyTorch runs the reference GPT of tests/nanogpt_torch.py (nanoGPT's modules, names and
init) with ``torch.optim.AdamW`` and ``clip_grad_norm_``, as nanoGPT's train.py does. The contestants
alternate blocks of steps (A B A B ...) on the same batches, and the medians of the rounds are reported.

    python3 benchmarks/gpt.py                           # the machine's BLAS settings and threads
    python3 benchmarks/gpt.py --threads 1
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 benchmarks/gpt.py

The header says which OPENBLAS_* variables were set and which BLAS kernel ran (threadpoolctl).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

import fnlearn as fl

sys.path.insert(0, str(Path(__file__).resolve().parent))
import measure  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = dict(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128)


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def fnlearn_step(args: argparse.Namespace) -> Callable[[np.ndarray, np.ndarray], float]:
    example = _load("shakespeare_gpt_example", ROOT / "examples" / "shakespeare_gpt.py")
    model = fl.models.gpt(**CONFIG, bias=False)
    params = model.init(np.random.default_rng(0), (-1, CONFIG["block_size"]))
    opt = example.make_optimizer(example.parse_args([]))
    step = fl.train_step(model.apply, fl.losses.softmax_cross_entropy, opt)
    box = {"params": params, "state": opt.init(params)}

    def run(x: np.ndarray, y: np.ndarray) -> float:
        box["params"], box["state"], loss = step(box.pop("params"), box.pop("state"), x, y)
        return loss
    return run


def torch_step(args: argparse.Namespace) -> Callable[[np.ndarray, np.ndarray], float]:
    import torch
    reference = _load("nanogpt_torch", ROOT / "tests" / "nanogpt_torch.py")
    torch.manual_seed(0)
    model = reference.GPT(reference.GPTConfig(**CONFIG, bias=False, dropout=0.0))
    opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.99))

    def run(x: np.ndarray, y: np.ndarray) -> float:
        _, loss = model(torch.from_numpy(x), torch.from_numpy(y))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return float(loss.detach())
    return run


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--batch-size", type=int, default=12)
    p.add_argument("--steps", type=int, default=20, help="steps per contestant per round")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=None, help="limit BLAS and torch to N threads")
    p.add_argument("--malloc", choices=("default", "reuse"), default="reuse",
                   help="'reuse': fl.reuse_freed_memory() first, as the examples do")
    p.add_argument("--only", choices=("fnlearn", "torch"), default=None, help="time one contestant")
    p.add_argument("--json", default=None, help="write the results to this file")
    args = p.parse_args(argv)
    if args.malloc == "reuse":
        fl.reuse_freed_memory()
    measure.limit_threads(args.threads)
    rng = np.random.default_rng(0)
    n = args.batch_size * args.steps
    x = rng.integers(0, CONFIG["vocab_size"], (n, CONFIG["block_size"]))
    y = rng.integers(0, CONFIG["vocab_size"], (n, CONFIG["block_size"]))
    contestants: dict[str, Callable[..., float]] = {}
    if args.only in (None, "fnlearn"):
        contestants["fnlearn"] = fnlearn_step(args)
    if args.only in (None, "torch"):
        try:
            import torch
            if args.threads:
                torch.set_num_threads(args.threads)
            contestants["torch"] = torch_step(args)
        except ImportError:
            print("torch is not installed: timing fnlearn only (pip install torch==2.13.0)")
    def block(step: Callable[..., float]) -> Callable[[], None]:
        def run() -> None:
            for i in range(args.steps):
                s = slice(i * args.batch_size, (i + 1) * args.batch_size)
                step(x[s], y[s])
        return run

    for step in contestants.values():  # warm-up
        for i in range(3):
            step(x[:args.batch_size], y[:args.batch_size])
    machine = measure.machine_info()
    rounds = measure.interleaved({name: block(step) for name, step in contestants.items()}, args.rounds)
    times = {name: [t / args.steps for t in ts] for name, ts in rounds.items()}
    threads = args.threads or "default"
    blas = measure.blas_line(machine)
    print(f"GPT training step (nanoGPT CPU config: 4 layers, 4 heads, 128 wide, block 64, batch "
          f"{args.batch_size}, float32, AdamW + clipping); median of {args.rounds} interleaved rounds "
          f"of {args.steps} steps; threads: {threads}; malloc: {args.malloc}")
    print(blas)
    results: dict[str, Any] = {"threads": threads, "blas": blas, "ms_per_step": {}}
    for name, ts in times.items():
        t = statistics.median(ts)
        results["ms_per_step"][name] = 1e3 * t
        print(f"{name:<8} {1e3 * t:7.1f} ms/step  (rounds: {', '.join(f'{1e3 * v:.1f}' for v in ts)})")
    if len(times) == 2:
        results["speedup"] = measure.median_ratio(times["torch"], times["fnlearn"])
        print(f"fnlearn speed relative to torch (median of per-round torch/fnlearn): "
              f"{results['speedup']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])

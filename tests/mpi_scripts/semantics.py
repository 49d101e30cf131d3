"""Run under ``mpiexec -n N python3 semantics.py OUT_DIR``: fnlearn.distributed with real ranks.

Every rank writes what it computed to OUT_DIR/rank{r}.npz; tests/test_distributed.py compares the
files with a single-process computation. Only rank 0 prints progress and writes OUT_DIR/checkpoint.npz.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import fnlearn as fl
from fnlearn import distributed as dist
from fnlearn.data import batches as global_batches
from fnlearn.tree import tree_flatten_with_path, tree_map

from common import EPOCHS, GLOBAL_BATCH, LEARNING_RATE, SHUFFLE_SEED, STEP_BATCH, data, init, model


def flat(prefix: str, tree: object) -> dict[str, np.ndarray]:
    return {f"{prefix}:{path}": np.asarray(leaf) for path, leaf in tree_flatten_with_path(tree)[0]}


def train(params, step, shuffled_batches):
    losses = []
    for epoch in range(EPOCHS):
        for xb, yb in shuffled_batches():
            value, grads = step(params, xb, yb)
            params = tree_map(lambda p, g: p - LEARNING_RATE * g, params, grads)
            losses.append(value)
        if dist.is_root():
            print(f"epoch {epoch} loss {losses[-1]:.6f}", flush=True)
    return params, np.array(losses)


def main(out: Path) -> None:
    r, n = dist.rank(), dist.size()
    net, (x, y) = model(), data()
    own = init(r)
    params = dist.broadcast(own)
    step = dist.value_and_grad(net.apply, fl.losses.softmax_cross_entropy)
    part = slice(r * STEP_BATCH, (r + 1) * STEP_BATCH)
    step_loss, step_grads = step(params, x[part], y[part])

    rng = np.random.default_rng(SHUFFLE_SEED)
    final, losses = train(params, step, lambda: dist.batches(x, y, GLOBAL_BATCH // n, rng=rng))
    rng_b = np.random.default_rng(SHUFFLE_SEED)
    sharded = lambda: ((xb[dist.shard(len(xb))], yb[dist.shard(len(yb))])  # noqa: E731
                       for xb, yb in global_batches(x, y, GLOBAL_BATCH, rng=rng_b))
    final_b, losses_b = train(params, step, sharded)
    rng_c = np.random.default_rng(SHUFFLE_SEED + 1000 * r)  # another seed on each rank: rank 0's shuffle wins
    final_c, losses_c = train(params, step, lambda: dist.batches(x, y, GLOBAL_BATCH // n, rng=rng_c))

    weighted = dist.allreduce_mean({"v": np.array([r + 1.0, -(r + 1.0)], np.float32)}, weight=r + 1)["v"]
    if dist.is_root():
        np.savez(out / "checkpoint.npz", **flat("params", final))
    np.savez(out / f"rank{r}.npz", rank=r, size=n, is_root=dist.is_root(), step_loss=step_loss,
             losses=losses, losses_b=losses_b, losses_c=losses_c, weighted=weighted, **flat("own", own),
             **flat("bcast", params), **flat("grads", step_grads), **flat("final", final),
             **flat("final_b", final_b), **flat("final_c", final_c))


if __name__ == "__main__":
    with dist.abort_on_error():
        main(Path(sys.argv[1]))

"""How fast could a NumPy training step on PyTorch's MNIST example network be? A floor, against torch.

The floor is the work of the step in NumPy that fusing within a layer cannot remove, each piece on
preallocated arrays, with no checks, no layers and no Python around it, in the cheapest spelling
found (a reviewer's spellings of ReLU and max pooling included):

- **the matrix products** (the FLOPs that fnlearn multiplies): each convolution's forward and weight
  gradient, the second convolution's input cotangent (the first layer needs none), both Dense layers'
  three products, and the bias gradients as ``ones @ dy``;
- **the layers' own passes**, as the network's layers make them when each is a layer of its own (the
  library's design): ReLU forward in place and its VJP after both convolutions, max pooling forward
  (three ``np.maximum``) and VJP (one comparison and one product over a 6-D view), the loss, and an
  SGD momentum update with the learning rate folded into the gradient (three passes over the
  parameters). The ReLU after the first Dense layer and the last layer's bias (a few microseconds)
  are left out.

Not in the floor, and timed beside it: the passes of the im2col formulation that fnlearn uses (the
window rows of both convolutions, once each, and the input cotangent's nine strided adds over the
whole batch; fnlearn's chunked and by-phase versions of these are cheaper, see cnn_profile.py), and
the bias adds, which a column of ones in the window rows would fold into the products.

Each round runs one block of ``--steps`` steps of torch and of fnlearn's ``train_step`` (the same
network, init and MNIST batches as ``benchmarks/cnn.py``) and calls each piece ``--steps`` times, in
rotating order (so each piece runs on data in cache, which favours the floor); ratios to torch are
medians over rounds of per-round ratios. Every pass runs on one core: a step that split its passes
over two Python threads (BLAS at one thread) could go below the two-thread floor.

    python3 benchmarks/cnn_floor.py              # the machine's default threads
    python3 benchmarks/cnn_floor.py --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

sys.path.insert(0, str(Path(__file__).resolve().parent))
import measure  # noqa: E402

Piece = tuple[str, str, Callable[[], object]]


def floor_pieces(batch: int, rng: np.random.Generator) -> list[Piece]:
    """``(name, kind, fn)`` for every piece; ``kind`` is a key of :data:`KINDS`."""
    f32 = np.float32

    def arr(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape, dtype=f32)

    n = batch
    r1, r2 = n * 26 * 26, n * 24 * 24  # output positions of the two convolutions
    x = arr(n, 28, 28, 1)
    cols1, w1, y1, dy1 = np.empty((9, r1), f32), arr(9, 32), np.empty((r1, 32), f32), arr(r1, 32)
    dw1 = np.empty((9, 32), f32)
    h1 = arr(n, 26, 26, 32)  # the first ReLU's output: the second convolution's input
    cols2, w2, y2, dy2 = np.empty((r2, 288), f32), arr(288, 64), np.empty((r2, 64), f32), arr(r2, 64)
    dw2, dcols2 = np.empty((288, 64), f32), np.empty((r2, 288), f32)
    dh1 = arr(n, 26, 26, 32)  # written by the input cotangent's adds, read by the ReLU VJP
    a2, pooled = arr(n, 24, 24, 64), np.empty((n, 12, 12, 64), f32)
    dpooled, da2 = arr(n, 12, 12, 64), arr(n, 24, 24, 64)
    flat, w3, z3, dz3 = arr(n, 9216), arr(9216, 128), np.empty((n, 128), f32), arr(n, 128)
    dw3, dflat = np.empty((9216, 128), f32), np.empty((n, 9216), f32)
    h3, w4, z4, dz4 = arr(n, 128), arr(128, 10), np.empty((n, 10), f32), arr(n, 10)
    dw4, dh3 = np.empty((128, 10), f32), np.empty((n, 128), f32)
    ones1, ones2, ones3 = np.ones(r1, f32), np.ones(r2, f32), np.ones(n, f32)
    b1, b2, b3 = arr(32), arr(64), arr(128)
    a1 = y1.reshape(n, 26, 26, 32)
    dx_relu1, dx_relu2 = np.empty(a1.shape, f32), np.empty(a2.shape, f32)
    sizes = (9 * 32, 32, 288 * 64, 64, 9216 * 128, 128, 128 * 10, 10)
    params = [arr(s) for s in sizes]
    grads = [arr(s) for s in sizes]
    velocity = [np.zeros(s, f32) for s in sizes]
    labels = rng.integers(0, 10, n)
    taps2 = [(i, j) for i in range(3) for j in range(3)]
    pool_taps = [(i, j) for i in range(2) for j in range(2)]  # the forward's views

    def conv1_rows():
        rows = cols1.reshape(9, n, 26, 26)
        for t, (i, j) in enumerate(taps2):
            rows[t] = x[:, i:i + 26, j:j + 26, 0]

    def conv2_rows():
        np.copyto(cols2.reshape(n, 24, 24, 3, 3, 32),
                  sliding_window_view(h1, (3, 3), axis=(1, 2)).transpose(0, 1, 2, 4, 5, 3))

    def col2im_adds():
        d = dcols2.reshape(n, 24, 24, 3, 3, 32)
        dh1[...] = 0
        for i, j in taps2:
            dh1[:, i:i + 24, j:j + 24] += d[:, :, :, i, j]

    def bias_adds():
        y1.__iadd__(b1)
        y2.__iadd__(b2)
        z3.__iadd__(b3)

    zeros1, zeros2 = np.zeros((4, 26, 26, 32), f32), np.zeros((4, 24, 24, 64), f32)

    def relu_forward():  # in place, four examples at a time against a block of zeros
        for a, zeros in ((a1, zeros1), (a2, zeros2)):
            for k in range(0, n, 4):
                part = a[k:k + 4]
                np.maximum(part, zeros[:len(part)], out=part)

    def relu_vjp():  # the mask written into dx and multiplied there, four examples at a time
        for a, d, dx in ((a1, dh1, dx_relu1), (a2, da2, dx_relu2)):
            for k in range(0, n, 4):
                part = dx[k:k + 4]
                np.greater(a[k:k + 4], 0.0, out=part)
                part *= d[k:k + 4]

    def pool_forward():
        views = [a2[:, i::2, j::2] for i, j in pool_taps]
        np.maximum(views[0], views[1], out=pooled)
        np.maximum(pooled, views[2], out=pooled)
        np.maximum(pooled, views[3], out=pooled)

    def pool_vjp():  # one comparison and one product over the (n, 12, 2, 12, 2, 64) view
        d6 = da2.reshape(n, 12, 2, 12, 2, 64)
        np.equal(a2.reshape(n, 12, 2, 12, 2, 64), pooled[:, :, None, :, None, :], out=d6)
        d6 *= dpooled[:, :, None, :, None, :]

    def loss():
        z = z4 - z4.max(axis=1, keepdims=True)
        e = np.exp(z)
        p = e / e.sum(axis=1, keepdims=True)
        p[np.arange(n), labels] -= 1.0
        p *= 1.0 / n

    def sgd_momentum():
        for p, g, v in zip(params, grads, velocity):
            v *= 0.9
            v += g  # the learning rate folded into the gradient, as fl.train_step does
            p -= v

    pieces = [
        ("conv1 forward product (r1 x 9 @ 9 x 32)", "product", lambda: np.matmul(cols1.T, w1, out=y1)),
        ("conv1 weight-gradient product", "product", lambda: np.matmul(cols1, dy1, out=dw1)),
        ("conv2 forward product (r2 x 288 @ 288 x 64)", "product", lambda: np.matmul(cols2, w2, out=y2)),
        ("conv2 weight-gradient product", "product", lambda: np.matmul(cols2.T, dy2, out=dw2)),
        ("conv2 input-cotangent product", "product", lambda: np.matmul(dy2, w2.T, out=dcols2)),
        ("dense1 forward product (9216 -> 128)", "product", lambda: np.matmul(flat, w3, out=z3)),
        ("dense1 weight-gradient product", "product", lambda: np.matmul(flat.T, dz3, out=dw3)),
        ("dense1 input-cotangent product", "product", lambda: np.matmul(dz3, w3.T, out=dflat)),
        ("dense2 three products", "product", lambda: (np.matmul(h3, w4, out=z4),
                                                       np.matmul(h3.T, dz4, out=dw4),
                                                       np.matmul(dz4, w4.T, out=dh3))),
        ("bias gradients (ones @ dy, three layers)", "product",
         lambda: (ones1 @ dy1, ones2 @ dy2, ones3 @ dz3)),
        ("conv1 window rows, tap by tap", "outside", conv1_rows),
        ("conv2 window rows (once)", "outside", conv2_rows),
        ("conv2 input cotangent: nine strided adds", "outside", col2im_adds),
        ("bias adds (three layers)", "outside", bias_adds),
        ("ReLU forward in place (two layers)", "pass", relu_forward),
        ("ReLU VJP: dy * (y > 0) (two layers)", "pass", relu_vjp),
        ("max pool forward: three np.maximum", "pass", pool_forward),
        ("max pool VJP: one compare, one multiply", "pass", pool_vjp),
        ("softmax cross-entropy and its gradient", "pass", loss),
        ("SGD momentum: three passes over the parameters", "pass", sgd_momentum),
    ]
    conv1_rows()  # every buffer holds real values before anything is timed
    conv2_rows()
    for _, _, fn in pieces:
        fn()
    return pieces


KINDS = {"product": "the step's matrix products",
         "pass": "the layers' own passes",
         "outside": "not in the floor: im2col's passes; bias adds"}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=None, help="limit BLAS and torch to N threads")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=20, help="steps (and calls of each piece) per block")
    p.add_argument("--rounds", type=int, default=8, help="blocks per contestant")
    p.add_argument("--data-dir", default=None, help="MNIST directory (default $FNLEARN_DATA_DIR)")
    args = p.parse_args(argv)
    import fnlearn as fl
    import cnn  # the same network, init, batches and torch step as benchmarks/cnn.py

    fl.reuse_freed_memory()  # as the examples do
    measure.limit_threads(args.threads)
    machine = measure.machine_info()
    pieces = floor_pieces(args.batch_size, np.random.default_rng(0))
    x, y, source = cnn.batches(args.steps, args.batch_size, args.data_dir)
    model = cnn.torch_example_model()
    params = model.init(np.random.default_rng(0), cnn.INPUT_SHAPE)
    fl_opt, make_torch_opt = cnn.optimizers("torch-example")
    steps: dict[str, Callable[[np.ndarray, np.ndarray], object]] = {
        "fnlearn": cnn.fnlearn_step(model, params, fl_opt)}
    try:
        import torch
        if args.threads:
            torch.set_num_threads(args.threads)
        steps["torch"] = cnn.torch_step("torch-example", model, params, make_torch_opt)
    except ImportError:
        print("torch is not installed: the floor against fnlearn only (pip install torch==2.13.0)")
    batches = [(x[i * args.batch_size:(i + 1) * args.batch_size],
                y[i * args.batch_size:(i + 1) * args.batch_size]) for i in range(args.steps)]

    def pieces_block() -> None:  # each piece `steps` times: seconds per call, this round
        for name, _, fn in pieces:
            start = time.perf_counter()
            for _ in range(args.steps):
                fn()
            times[name].append((time.perf_counter() - start) / args.steps)

    def step_block(name: str):
        def block() -> None:
            start = time.perf_counter()
            for xb, yb in batches:
                steps[name](xb, yb)
            times[name].append((time.perf_counter() - start) / args.steps)
        return block

    blocks = {"pieces": pieces_block, **{name: step_block(name) for name in steps}}
    for name in steps:
        steps[name](*batches[0])
    for _, _, fn in pieces:
        fn()
    times: dict[str, list[float]] = {name: [] for name in [*steps, *(n for n, _, _ in pieces)]}
    order = list(blocks)
    for r in range(args.rounds):
        for name in order[r % len(order):] + order[:r % len(order)]:
            blocks[name]()

    def sums(kinds: tuple[str, ...]) -> list[float]:  # per round
        return [sum(times[n][r] for n, k, _ in pieces if k in kinds) for r in range(args.rounds)]

    ms = lambda ts: 1e3 * statistics.median(ts)  # noqa: E731
    print(f"PyTorch's MNIST example network, batch {args.batch_size}, float32 ({source}); threads: "
          f"{args.threads or 'default'}; medians of {args.rounds} rounds: one block of {args.steps} "
          "steps of each library, and each piece of the floor called as often, in rotating order")
    print(measure.blas_line(machine))
    results: dict = {"pieces": {}}
    for kind, title in KINDS.items():
        print(f"{title:<56} {'ms':>7}")
        for name, k, _ in pieces:
            if k == kind:
                results["pieces"][name] = ms(times[name])
                print(f"  {name:<54} {results['pieces'][name]:7.2f}")
        print(f"  {'sum':<54} {ms(sums((kind,))):7.2f}")
    floors = {"the products alone": sums(("product",)),
              "floor: the products and the layers' passes": sums(("product", "pass"))}
    print(f"{'step':<56} {'ms':>7} {'/ torch':>8}")
    for name, ts in {**floors, **{n: times[n] for n in steps}}.items():
        results[name] = ms(ts)
        ratio = (f"{measure.median_ratio(ts, times['torch']):8.2f}" if "torch" in steps else "")
        print(f"  {name:<54} {results[name]:7.2f} {ratio}")
    if "torch" in steps:
        print("(/ torch: the median over rounds of the ratio to torch's step in the same round)")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])

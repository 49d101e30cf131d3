"""The contestants: one SGD training step (and one forward pass) of the same ReLU MLP, written five ways.

Every contestant starts from the same float32 weights, sees the same batches (``X[i:i + batch]``) and
runs plain SGD on the mean softmax cross-entropy; :func:`agree` checks that their weights stay equal.

- ``fnlearn``: the library as a user writes it (``value_and_grad``, ``optim.sgd``, ``apply_updates``).
- ``numpy``: a tight hand-written NumPy step (in-place updates, no framework).
- ``floor``: only the matrix products a step cannot avoid (``2L - 1`` of them for ``L`` Dense layers:
  the first layer needs no input gradient), into preallocated outputs. Nothing is computed with them.
- ``torch``: PyTorch eager (``nn.Sequential``, ``F.cross_entropy``, ``torch.optim.SGD``), if installed.
- ``jax``: the whole step under ``jax.jit`` with donated parameters, the data on the device, if installed.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, NamedTuple

import numpy as np


class Contestant(NamedTuple):
    """``train(steps)`` runs ``steps`` training steps, ``infer(steps)`` as many forward passes;
    ``weights()`` returns ``[w1, b1, w2, b2, ...]`` as float32 NumPy arrays, ``w`` shaped (in, out)."""

    name: str
    train: Callable[[int], None]
    infer: Callable[[int], None]
    weights: Callable[[], list[np.ndarray]]


def initial_weights(sizes: tuple[int, ...], seed: int = 0) -> list[np.ndarray]:
    """LeCun-normal float32 weights and zero biases for an MLP with these layer sizes."""
    rng = np.random.default_rng(seed)
    out = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        out.append((rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32))
        out.append(np.zeros(n_out, np.float32))
    return out


def fnlearn_mlp(weights: list[np.ndarray], X: np.ndarray, Y: np.ndarray, batch: int,
                lr: float, fl: Any = None, name: str = "fnlearn", fused: bool = True) -> Contestant:
    """fnlearn as its README shows it: ``fl.train_step(model.apply, loss, optim.sgd(lr))``; with
    ``fused=False`` the same step spelled out: ``value_and_grad`` + ``optim.sgd`` + ``apply_updates``.

    ``fl`` is the package to use (default: ``import fnlearn``; another checkout for ``--baseline``,
    which is timed unfused when it has no ``train_step``).
    """
    if fl is None:
        import fnlearn as fl

    layers: list[Any] = []
    for w in weights[0:-2:2]:
        layers += [fl.Dense(w.shape[1]), fl.Relu()]
    model = fl.serial(*layers, fl.Dense(weights[-1].shape[0]))
    params = model.init(np.random.default_rng(0), (-1, weights[0].shape[0]))
    for k in range(len(weights) // 2):
        params[str(2 * k)] = {"w": weights[2 * k].copy(), "b": weights[2 * k + 1].copy()}
    grad_fn = fl.value_and_grad(model.apply, fl.losses.softmax_cross_entropy)
    opt = fl.optim.sgd(lr)

    def unfused_step(params, opt_state, x, y):
        loss, grads = grad_fn(params, x, y)
        updates, opt_state = opt.update(grads, opt_state, params)
        return fl.optim.apply_updates(params, updates), opt_state, loss

    if fused and hasattr(fl, "train_step"):
        train_step = fl.train_step(model.apply, fl.losses.softmax_cross_entropy, opt)
    else:
        train_step = unfused_step

    box = {"params": params, "state": opt.init(params)}

    def train(steps: int) -> None:
        p, s = box.pop("params"), box.pop("state")  # the box must not keep old params alive
        for i in range(0, steps * batch, batch):
            p, s, _ = train_step(p, s, X[i:i + batch], Y[i:i + batch])
        box["params"], box["state"] = p, s

    def infer(steps: int) -> None:
        p = box["params"]
        for i in range(0, steps * batch, batch):
            model.apply(p, X[i:i + batch])

    def current() -> list[np.ndarray]:
        p = box["params"]
        return [a for k in sorted(p, key=int) if p[k] for a in (p[k]["w"], p[k]["b"])]

    return Contestant(name, train, infer, current)


def numpy_mlp(weights: list[np.ndarray], X: np.ndarray, Y: np.ndarray, batch: int, lr: float) -> Contestant:
    """A tight hand-written NumPy step: in-place ReLU, softmax and parameter updates."""
    ws = [w.copy() for w in weights[0::2]]
    bs = [b.copy() for b in weights[1::2]]
    rows = np.arange(batch)

    def forward(x: np.ndarray) -> list[np.ndarray]:
        acts = [x]
        for k, (w, b) in enumerate(zip(ws, bs)):
            z = acts[-1] @ w
            z += b
            if k < len(ws) - 1:
                np.maximum(z, 0.0, out=z)
            acts.append(z)
        return acts

    def step(x: np.ndarray, y: np.ndarray) -> float:
        acts = forward(x)
        z = acts.pop()
        z -= z.max(axis=1, keepdims=True)
        loss = -z[rows, y].sum()
        np.exp(z, out=z)
        sums = z.sum(axis=1, keepdims=True)
        loss += np.log(sums).sum()
        z /= sums
        z[rows, y] -= 1.0
        z *= 1.0 / batch
        for k in range(len(ws) - 1, -1, -1):
            a = acts[k]
            dw, db = a.T @ z, z.sum(axis=0)
            if k:
                z = z @ ws[k].T
                z *= a > 0.0
            dw *= lr
            ws[k] -= dw
            db *= lr
            bs[k] -= db
        return float(loss) / batch

    def train(steps: int) -> None:
        for i in range(0, steps * batch, batch):
            step(X[i:i + batch], Y[i:i + batch])

    def infer(steps: int) -> None:
        for i in range(0, steps * batch, batch):
            forward(X[i:i + batch])

    return Contestant("numpy", train, infer, lambda: [a for wb in zip(ws, bs) for a in wb])


def floor_mlp(weights: list[np.ndarray], X: np.ndarray, Y: np.ndarray, batch: int, lr: float) -> Contestant:
    """Only the matrix products of a step, into preallocated outputs (``infer``: the forward ones)."""
    ws = [w.copy() for w in weights[0::2]]
    outs = [np.zeros((batch, w.shape[1]), np.float32) for w in ws]
    grads = [np.full((batch, w.shape[1]), 1e-3, np.float32) for w in ws]
    dws = [np.empty_like(w) for w in ws]
    n = len(ws)

    def forward(x: np.ndarray) -> None:
        a = x
        for k in range(n):
            np.matmul(a, ws[k], out=outs[k])
            a = outs[k]

    def train(steps: int) -> None:
        for i in range(0, steps * batch, batch):
            x = X[i:i + batch]
            forward(x)
            for k in range(n - 1, -1, -1):
                np.matmul((outs[k - 1] if k else x).T, grads[k], out=dws[k])
                if k:
                    np.matmul(grads[k], ws[k].T, out=grads[k - 1])

    def infer(steps: int) -> None:
        for i in range(0, steps * batch, batch):
            forward(X[i:i + batch])

    return Contestant("floor", train, infer, lambda: [])


def torch_mlp(weights: list[np.ndarray], X: np.ndarray, Y: np.ndarray, batch: int, lr: float) -> Contestant:
    """PyTorch eager with its defaults: ``nn.Sequential`` of ``nn.Linear``/``nn.ReLU``, ``optim.SGD``."""
    import torch

    mods: list[Any] = []
    for k in range(0, len(weights), 2):
        w, b = weights[k], weights[k + 1]
        lin = torch.nn.Linear(w.shape[0], w.shape[1])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))
            lin.bias.copy_(torch.from_numpy(b))
        mods += [lin, torch.nn.ReLU()]
    model = torch.nn.Sequential(*mods[:-1])
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
    cross_entropy = torch.nn.functional.cross_entropy

    def train(steps: int) -> None:
        for i in range(0, steps * batch, batch):
            opt.zero_grad(set_to_none=True)
            loss = cross_entropy(model(Xt[i:i + batch]), Yt[i:i + batch])
            loss.backward()
            opt.step()

    def infer(steps: int) -> None:
        with torch.inference_mode():
            for i in range(0, steps * batch, batch):
                model(Xt[i:i + batch])

    def current() -> list[np.ndarray]:
        out = []
        for m in model:
            if isinstance(m, torch.nn.Linear):
                out += [m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy()]
        return out

    return Contestant("torch", train, infer, current)


def jax_mlp(weights: list[np.ndarray], X: np.ndarray, Y: np.ndarray, batch: int, lr: float) -> Contestant:
    """JAX with the whole step (batch slice, loss, gradient, SGD) under ``jit``; params donated."""
    import jax
    import jax.numpy as jnp

    def logits_of(params, x):
        for w, b in params[:-1]:
            x = jax.nn.relu(x @ w + b)
        w, b = params[-1]
        return x @ w + b

    def loss_fn(params, x, y):
        logp = jax.nn.log_softmax(logits_of(params, x))
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    @partial(jax.jit, donate_argnums=0)
    def step(params, Xd, Yd, i):
        x = jax.lax.dynamic_slice_in_dim(Xd, i * batch, batch)
        y = jax.lax.dynamic_slice_in_dim(Yd, i * batch, batch)
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads), loss

    @jax.jit
    def forward(params, Xd, i):
        return logits_of(params, jax.lax.dynamic_slice_in_dim(Xd, i * batch, batch))

    Xd, Yd = jnp.asarray(X), jnp.asarray(Y.astype(np.int32))
    box = {"params": [(jnp.asarray(weights[k]), jnp.asarray(weights[k + 1])) for k in range(0, len(weights), 2)]}

    def train(steps: int) -> None:
        p = box["params"]
        for i in range(steps):
            p, _ = step(p, Xd, Yd, i)
        box["params"] = jax.block_until_ready(p)

    def infer(steps: int) -> None:
        out = None
        for i in range(steps):
            out = forward(box["params"], Xd, i)
        jax.block_until_ready(out)

    return Contestant("jax", train, infer,
                      lambda: [np.asarray(a) for wb in box["params"] for a in wb])


def load_baseline(checkout: str) -> Any:
    """The ``fnlearn`` package of another checkout (e.g. a ``git worktree`` of an older commit), imported
    under the name ``fnlearn_baseline`` so both versions run in one process."""
    import importlib.util
    import sys
    from pathlib import Path

    init = Path(checkout) / "fnlearn" / "__init__.py"
    spec = importlib.util.spec_from_file_location("fnlearn_baseline", init,
                                                  submodule_search_locations=[str(init.parent)])
    if spec is None or not init.exists():
        raise SystemExit(f"run.py: --baseline {checkout} has no fnlearn/__init__.py.")
    module = importlib.util.module_from_spec(spec)
    sys.modules["fnlearn_baseline"] = module
    spec.loader.exec_module(module)
    return module


BUILDERS: dict[str, Callable[..., Contestant]] = {
    "floor": floor_mlp, "fnlearn": fnlearn_mlp, "numpy": numpy_mlp, "torch": torch_mlp, "jax": jax_mlp,
    "fnlearn-unfused": partial(fnlearn_mlp, name="fnlearn-unfused", fused=False)}


def agree(contestants: list[Contestant], atol: float = 1e-4) -> dict[str, float]:
    """The largest absolute weight difference of each contestant from the numpy reference."""
    ref = next((c.weights() for c in contestants if c.name == "numpy"), None)
    out = {}
    for c in contestants:
        got = c.weights()
        if ref is None or not got:
            continue
        out[c.name] = max(float(np.max(np.abs(a - b))) for a, b in zip(got, ref))
    return out

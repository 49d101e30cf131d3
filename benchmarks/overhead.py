"""Per-call overhead: microseconds per call on tiny inputs, where the arithmetic costs next to nothing."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from measure import per_call


def fnlearn_cases() -> dict[str, Callable[[], Any]]:
    """The calls a training loop makes, on a (1, 4) input and a 4-8-2 MLP."""
    import fnlearn as fl

    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 4)).astype(np.float32)
    label = np.array([1])
    dense, relu = fl.Dense(8), fl.Relu()
    dense_params = dense.init(rng, (-1, 4))
    model = fl.serial(fl.Dense(8), fl.Relu(), fl.Dense(2))
    params = model.init(rng, (-1, 4))
    y, vjp = model.apply(params, x)
    dy = np.ones_like(y)
    grad_fn = fl.value_and_grad(model.apply, fl.losses.softmax_cross_entropy)
    opt = fl.optim.sgd(0.1)
    state = opt.init(params)
    _, grads = grad_fn(params, x, label)

    def update():
        updates, _ = opt.update(grads, state, params)
        return fl.optim.apply_updates(params, updates)

    def step():
        _, g = grad_fn(params, x, label)
        updates, s = opt.update(g, state, params)
        return fl.optim.apply_updates(params, updates), s

    fused = fl.train_step(model.apply, fl.losses.softmax_cross_entropy, opt)
    w, b = dense_params["w"], dense_params["b"]
    return {
        "numpy x @ w + b (reference)": lambda: x @ w + b,
        "Dense(8).apply": lambda: dense.apply(dense_params, x),
        "Relu().apply": lambda: relu.apply({}, x),
        "serial(Dense, Relu, Dense).apply": lambda: model.apply(params, x),
        "its vjp(dy, compute_dx=False)": lambda: vjp(dy, compute_dx=False),
        "softmax_cross_entropy": lambda: fl.losses.softmax_cross_entropy(y, label),
        "value_and_grad(model, loss)": lambda: grad_fn(params, x, label),
        "sgd update + apply_updates": update,
        "whole training step": step,
        "whole training step, train_step": lambda: fused(params, state, x, label),
    }


def torch_cases() -> dict[str, Callable[[], Any]]:
    """PyTorch eager on the same sizes, for scale."""
    import torch

    x = torch.randn(1, 4)
    label = torch.tensor([1])
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def forward():
        with torch.no_grad():
            return model(x)

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), label).backward()
        opt.step()

    return {"torch: forward (no_grad)": forward, "torch: whole training step": step}


def jax_cases() -> dict[str, Callable[[], Any]]:
    """A jitted JAX forward and step on the same sizes (dispatch cost of one compiled call)."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    params = [(jnp.asarray(rng.standard_normal((4, 8)), jnp.float32), jnp.zeros(8, jnp.float32)),
              (jnp.asarray(rng.standard_normal((8, 2)), jnp.float32), jnp.zeros(2, jnp.float32))]
    x, label = jnp.ones((1, 4), jnp.float32), jnp.array([1])

    def logits(p, x):
        (w1, b1), (w2, b2) = p
        return jax.nn.relu(x @ w1 + b1) @ w2 + b2

    def loss(p, x, y):
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits(p, x)), y[:, None], axis=1))

    forward = jax.jit(logits)
    step = jax.jit(lambda p, x, y: jax.tree_util.tree_map(lambda a, g: a - 0.1 * g, p,
                                                          jax.grad(loss)(p, x, y)))
    return {"jax: jit forward": lambda: forward(params, x).block_until_ready(),
            "jax: jit whole training step": lambda: jax.block_until_ready(step(params, x, label))}


def measure(frameworks: list[str], *, target_seconds: float = 0.05) -> dict[str, float]:
    """Microseconds per call of every case."""
    cases = fnlearn_cases()
    if "torch" in frameworks:
        cases.update(torch_cases())
    if "jax" in frameworks:
        cases.update(jax_cases())
    return {name: per_call(fn, target_seconds=target_seconds) for name, fn in cases.items()}

"""fnlearn's GPT trained as nanoGPT trains (benchmarks/gpt_trajectory.py) follows nanoGPT's losses.

The optimizer chain (torch's gradient clipping, AdamW with decay on 2-D parameters only, nanoGPT's
learning-rate schedule) is compared with torch's on its own in float64; then both models train from
the same init on the same tiny Shakespeare batches with nanoGPT's CPU configuration in float32, and
every step's training loss must stay within 2e-3 of nanoGPT's.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

import fnlearn as fl
from fnlearn import optim

torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch==2.13.0); the "
                                           "nanoGPT training comparison needs it")

ROOT = Path(__file__).resolve().parents[1]
TRAJECTORY_STEPS = 120  # both models, nanoGPT's CPU config, one thread each: about a minute


@pytest.fixture
def one_thread():
    """torch and (with threadpoolctl installed) NumPy's BLAS on one thread while the test runs: on a
    shared, loaded 2-core machine their default thread pools spin (seen: 3 s per torch step, not 0.2 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        limits = None
    else:
        limits = threadpool_limits(1)
    yield
    torch.set_num_threads(threads)
    if limits is not None:
        limits.restore_original_limits()


def _trajectory_module():
    spec = importlib.util.spec_from_file_location("gpt_trajectory", ROOT / "benchmarks" / "gpt_trajectory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_learning_rate_is_nanogpts_get_lr():
    lr = _trajectory_module().nanogpt_lr
    assert lr(0) == pytest.approx(1e-3 / 101)                     # warmup (it + 1) / (warmup + 1)
    assert lr(99) == pytest.approx(1e-3 * 100 / 101)
    assert lr(100) == pytest.approx(1e-3)                          # then cosine from the peak
    assert lr(1050) == pytest.approx(1e-4 + 0.5 * (1e-3 - 1e-4))
    assert lr(2000) == pytest.approx(1e-4) and lr(5000) == pytest.approx(1e-4)


def test_the_optimizer_chain_equals_torch_clip_adamw_and_schedule():
    trajectory = _trajectory_module()
    config = dict(trajectory.CONFIG, warmup_iters=5, lr_decay_iters=15)  # every phase in 20 steps
    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=(4, 3)), "b": rng.normal(size=3), "e": rng.normal(size=(5, 2))}
    grads = [{k: rng.normal(size=v.shape) * (0.1 if i % 3 else 2.0) for k, v in params.items()}
             for i in range(20)]  # every third step's norm is above 1: clipped
    torch_params = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    torch_opt = torch.optim.AdamW(
        [{"params": [torch_params["w"], torch_params["e"]], "weight_decay": config["weight_decay"]},
         {"params": [torch_params["b"]], "weight_decay": 0.0}],
        lr=config["learning_rate"], betas=(config["beta1"], config["beta2"]))
    opt = trajectory.fnlearn_optimizer(config)
    state = opt.init(params)
    for it, g in enumerate(grads):
        for group in torch_opt.param_groups:
            group["lr"] = trajectory.nanogpt_lr(it, config)
        for k, p in torch_params.items():
            p.grad = torch.tensor(g[k])
        torch.nn.utils.clip_grad_norm_(list(torch_params.values()), config["grad_clip"])
        torch_opt.step()
        updates, state = opt.update(g, state, params)
        params = optim.apply_updates(params, updates)
    for k, p in torch_params.items():
        np.testing.assert_allclose(params[k], p.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=k)


def test_fnlearn_follows_nanogpt_step_by_step(shakespeare_dir, one_thread):
    trajectory = _trajectory_module()
    corpus = fl.datasets.tiny_shakespeare(shakespeare_dir, download=False)
    result = trajectory.run(corpus, TRAJECTORY_STEPS, eval_iters=2)
    theirs, ours = (np.asarray(result["losses"][name]) for name in ("nanoGPT", "fnlearn"))
    assert theirs[0] == pytest.approx(math.log(corpus.vocab_size), abs=0.1)  # a fresh model: ~uniform
    assert abs(ours[0] - theirs[0]) < 1e-5                      # same init, same batch: round-off only
    worst = int(np.abs(ours - theirs).argmax())
    assert abs(ours[worst] - theirs[worst]) < 2e-3, (worst, ours[worst], theirs[worst])  # issue 14's bound
    # Seen: at most 7e-7 in 300 steps (float32 round-off). Weight decay on every parameter instead of
    # the 2-D ones only moves the losses by 1e-3 within these steps, under issue 14's bound; this one
    # catches it.
    assert abs(ours[worst] - theirs[worst]) < 1e-4, (worst, ours[worst], theirs[worst])
    assert theirs[-10:].mean() < theirs[0] - 1.0                # and both really trained
    for split in ("train", "val"):
        assert result["eval"]["fnlearn"][split] == pytest.approx(result["eval"]["nanoGPT"][split], abs=2e-3)


def test_the_script_runs_and_writes_its_json(shakespeare_dir, one_thread, tmp_path, capsys):
    out = tmp_path / "trajectory.json"
    _trajectory_module().main(["--iters", "2", "--eval-iters", "1", "--data-dir", str(shakespeare_dir),
                               "--json", str(out)])
    written = json.loads(out.read_text())
    assert len(written["losses"]["fnlearn"]) == 2 and written["summary"]["steps"] == 2
    assert '"max_abs_diff"' in capsys.readouterr().out

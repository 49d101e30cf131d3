"""benchmarks/cnn.py runs on a tiny configuration (no timing is asserted) and gives both libraries
the same start: the same weights and batches give the same first loss. cnn_profile.py and pool_relu.py
run too."""

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "cnn.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_cnn", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("model", ["torch-example", "example"])
def test_cnn_benchmark_runs_and_reports_every_contestant(model, capsys):
    results = _bench().main(["--model", model, "--batch-size", "4", "--steps", "2", "--rounds", "2",
                             "--threads", "1"])
    out = capsys.readouterr().out
    assert results["fnlearn"] > 0 and len(results["fnlearn_losses"]) == 4
    assert np.all(np.isfinite(results["fnlearn_losses"]))
    assert "first loss" in out and "BLAS:" in out


def test_cnn_benchmark_runs_each_contestant_in_its_own_process(capsys):
    results = _bench().main(["--processes", "1", "--batch-size", "4", "--steps", "2", "--rounds", "1",
                             "--threads", "1"])
    out = capsys.readouterr().out
    assert results["fnlearn"] > 0 and "each contestant alone in its own process" in out
    assert "BLAS:" in out and "train_step(threads=1)" in out


def test_cnn_benchmark_runs_fnlearn_on_threads_beside_one_thread():
    results = _bench().main(["--batch-size", "4", "--steps", "2", "--rounds", "2", "--fl-threads", "2",
                             "--only", "fnlearn-t1"])
    assert set(results) == {"fnlearn-t1", "fnlearn-t1_losses"}
    both = _bench().main(["--batch-size", "4", "--steps", "2", "--rounds", "2", "--fl-threads", "2"])
    np.testing.assert_allclose(both["fnlearn_losses"], both["fnlearn-t1_losses"], rtol=1e-5)


def test_cnn_benchmark_starts_both_libraries_from_the_same_weights_and_batches():
    pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[compare]')")
    results = _bench().main(["--batch-size", "8", "--steps", "3", "--rounds", "2", "--threads", "1"])
    fn, tr = np.array(results["fnlearn_losses"]), np.array(results["torch_losses"])
    assert fn.shape == tr.shape == (6,)
    np.testing.assert_allclose(fn[0], tr[0], rtol=1e-5)  # same init, same first batch
    np.testing.assert_allclose(fn, tr, rtol=1e-3)  # the same SGD trajectory over the first steps


def test_cnn_profile_lists_every_layer_and_pass(capsys):
    spec = importlib.util.spec_from_file_location("bench_cnn_profile", BENCH.parent / "cnn_profile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--threads", "1", "--repeats", "1", "--top", "3"])
    out = capsys.readouterr().out
    for layer in ("0 Conv2D(32, 3) forward", "2 Conv2D(64, 3) VJP", "4 MaxPool2D(2) VJP", "whole train_step",
                  "step 1 serial(Conv2D(64, 3), Relu(), MaxPool2D(2)) VJP"):
        assert layer in out


def test_pool_relu_benchmark_times_every_case_against_a_git_revision(capsys):
    if shutil.which("git") is None or not (BENCH.parents[1] / ".git").exists():
        pytest.skip("benchmarks/pool_relu.py --against needs git and the repository's history")
    spec = importlib.util.spec_from_file_location("bench_pool_relu", BENCH.parent / "pool_relu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    times = module.main(["--against", "HEAD", "--repeats", "2", "--batch-size", "2"])
    out = capsys.readouterr().out
    assert len(times["now"]) == len(times["rev"]) == 9 + 8  # alone; the Relu and MaxPool2D passes
    for line in ("MaxPool2D(2) (2, 24, 24, 64) valid forward", "MaxPool2D(2) (2, 14, 14, 64) same VJP",
                 "Relu VJP (2, 28, 28, 32)", "4 MaxPool2D(2) VJP", "1 Relu() forward", "| HEAD:",
                 "BLAS:"):
        assert line in out


def test_conv_threads_benchmark_times_every_mode():
    spec = importlib.util.spec_from_file_location("bench_conv_threads", BENCH.parent / "conv_threads.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.main(["--rounds", "1", "--repeats", "1"])
    assert set(results) == {"blas1", "blas", "halves"}
    assert all(len(ts) == 1 and ts[0] > 0 for ts in results.values())


def test_cnn_floor_times_every_piece_and_both_floors(capsys):
    spec = importlib.util.spec_from_file_location("bench_cnn_floor", BENCH.parent / "cnn_floor.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    pieces = module.floor_pieces(4, np.random.default_rng(0))
    assert {kind for _, kind, _ in pieces} == set(module.KINDS)
    results = module.main(["--threads", "1", "--batch-size", "4", "--steps", "2", "--rounds", "2"])
    out = capsys.readouterr().out
    assert set(results["pieces"]) == {name for name, _, _ in pieces}
    assert all(ms > 0 for ms in results["pieces"].values())
    assert results["floor: the products and the layers' passes"] > results["the products alone"] > 0
    for title in module.KINDS.values():
        assert title in out
    assert "fnlearn" in results and "BLAS:" in out

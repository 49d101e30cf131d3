"""The benchmark runner still runs: a tiny configuration, a few steps, one round; no timing is asserted."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUNNER = REPO / "benchmarks" / "run.py"


def _installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    cmd = [sys.executable, str(RUNNER), "--configs", "784-16-10:8,784-8-8-10:4", "--steps", "3",
           "--repeats", "1", "--quick", "--synthetic", "--samples", "256", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def test_every_section_and_contestant_is_reported(results: tuple[dict, str]) -> None:
    data, text = results
    expected = {"floor", "fnlearn", "fnlearn-unfused", "numpy"} | {n for n in ("torch", "jax") if _installed(n)}
    assert [c["config"] for c in data["configs"]] == ["784-16-10:8", "784-8-8-10:4"]
    for config in data["configs"]:
        assert {r["contestant"] for r in config["train"]} == expected
        assert {r["contestant"] for r in config["infer"]} == expected
        assert {r["contestant"] for r in config["memory"]} == {"fnlearn", "fnlearn-unfused", "numpy"}
        for row in config["train"]:
            assert row["steps"] == 3 and row["samples_per_s"] > 0 and len(row["all_seconds"]) == 1
    for heading in ("training (forward", "inference (forward only)", "peak memory", "per-call overhead",
                    "targets (issue 6)", "BLAS:", "OPENBLAS_CORETYPE=", "OPENBLAS_L2_SIZE="):
        assert heading in text
    assert "random data of MNIST's shape" in data["data"]


def test_all_contestants_compute_the_same_step(results: tuple[dict, str]) -> None:
    # Same initial weights, same batches: after the warm-up steps every contestant holds the same
    # weights as the hand-written NumPy step (float32 round-off only).
    for config in results[0]["configs"]:
        diffs = config["max_weight_difference_from_numpy"]
        assert "fnlearn" in diffs
        assert max(diffs.values()) < 1e-4, diffs


def test_overhead_and_machine_facts_are_recorded(results: tuple[dict, str]) -> None:
    data, _ = results
    assert data["overhead_us"]["whole training step"] > 0
    assert set(data["machine"]["env"]) == {"OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"}
    assert data["blas"] and all("kernel" in b and "threads" in b for b in data["blas"])
    # The two configurations are not those of the speed targets: only the memory target is judged,
    # in both readings, for each configuration.
    assert [(t["config"], t["what"]) for t in data["targets"]] == [
        (c, f"memory / {b}") for c in ("784-16-10:8", "784-8-8-10:4") for b in ("strict budget", "budget + grads")]


def test_a_bad_config_is_a_clear_error() -> None:
    proc = subprocess.run([sys.executable, str(RUNNER), "--configs", "784x10", "--synthetic"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode != 0
    assert "784-128-10:100" in proc.stderr

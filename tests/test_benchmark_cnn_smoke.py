"""benchmarks/cnn.py runs on a tiny configuration (no timing is asserted)."""

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "cnn.py"


def test_cnn_benchmark_runs_and_reports_every_contestant(capsys):
    spec = importlib.util.spec_from_file_location("bench_cnn", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.main(["--batch-size", "4", "--steps", "1", "--rounds", "1", "--threads", "1"])
    out = capsys.readouterr().out
    assert "fnlearn" in results and results["fnlearn"] > 0
    assert "epoch (60k), s" in out and "fnlearn" in out

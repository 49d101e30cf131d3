"""benchmarks/lstm.py runs (one tiny round; timings are never asserted)."""

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "lstm.py"


def test_lstm_benchmark_runs_and_reports_its_settings(capsys):
    spec = importlib.util.spec_from_file_location("lstm_benchmark", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.main(["--steps", "1", "--rounds", "1", "--batch-size", "4", "--no-torch", "--clock", "cpu"])
    out = capsys.readouterr().out
    assert set(results) == {"fnlearn"} and results["fnlearn"] > 0
    assert "OPENBLAS_CORETYPE=" in out and "OPENBLAS_L2_SIZE=" in out and "load average" in out

"""The README's quickstart runs and prints what the README says it prints."""

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(text, lang):
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_quickstart_runs_and_matches_its_expected_output():
    text = README.read_text()
    quickstart = text.split("## Quickstart", 1)[1]
    code = _blocks(quickstart, "python")[0]
    expected = _blocks(quickstart.split("Expected output", 1)[1], "")[0]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README quickstart", "exec"), {})
    got_lines, want_lines = out.getvalue().splitlines(), expected.strip().splitlines()
    assert len(got_lines) == len(want_lines)
    for got, want in zip(got_lines, want_lines):
        g = [float(v) for v in re.findall(r"\d+\.?\d*", got)]
        w = [float(v) for v in re.findall(r"\d+\.?\d*", want)]
        assert g[0] == w[0]  # the epoch
        # BLAS summation order may differ between machines; the numbers must agree closely.
        assert all(abs(a - b) <= 0.01 for a, b in zip(g[1:], w[1:])), (got, want)

"""docs/testing.md's "Testing your own layer" stays true: its code runs, and the reports it shows are the real
output."""

import contextlib
import io
import re
from pathlib import Path

import numpy as np

DOC = Path(__file__).resolve().parents[1] / "docs" / "testing.md"
NUMBER = re.compile(r"[-+]?\d+\.?\d*(?:e[-+]?\d+)?")


def blocks():
    """(language, text) of each fenced block of the page's section, in order."""
    text = DOC.read_text()
    start = text.index("## Testing your own layer")
    section = text[start:text.find("\n## ", start + 1)]
    return re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)


def same_report(got: str, want: str) -> bool:
    """Equal text, with numbers equal to 1e-3 relative (the last printed digit may differ by platform)."""
    if NUMBER.sub("#", got) != NUMBER.sub("#", want):
        return False
    pairs = zip(NUMBER.findall(got), NUMBER.findall(want))
    return all(np.isclose(float(a), float(b), rtol=1e-3, atol=1e-12) for a, b in pairs)


def test_the_page_runs_and_its_outputs_are_real():
    namespace: dict = {}
    found = blocks()
    checked = 0
    for k, (lang, code) in enumerate(found):
        if lang != "python":
            continue
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"<docs/testing.md, Testing your own layer, block {k}>", "exec"), namespace)
        if k + 1 < len(found) and found[k + 1][0] == "text":
            want = found[k + 1][1].rstrip("\n")
            assert same_report(out.getvalue().rstrip("\n"), want), out.getvalue()
            checked += 1
    assert checked == 2
    namespace["test_swish"]()   # the hypothesis test on the page

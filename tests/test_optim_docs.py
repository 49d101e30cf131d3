"""docs/optim.md: the "Writing a new rule" block runs and prints what the page says."""

import contextlib
import io
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "optim.md"


def _section(text: str, title: str) -> str:
    start = text.index(f"### {title}")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def test_custom_rule_block_trains_and_prints_the_documented_output():
    section = _section(DOC.read_text(), "Writing a new rule")
    blocks = re.findall(r"```(\w*)\n(.*?)```", section, flags=re.S)
    code = next(body for lang, body in blocks if lang == "python")
    expected = next(body for lang, body in blocks if lang == "")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(DOC), "exec"), {"__name__": "optim_doc"})
    assert out.getvalue().split() == expected.split()


def test_map_leaves_variant_in_the_docs_gives_the_same_updates():
    import numpy as np
    from fnlearn import optim

    section = _section(DOC.read_text(), "Writing a new rule")
    blocks = [body for lang, body in re.findall(r"```(\w*)\n(.*?)```", section, flags=re.S) if lang == "python"]
    namespace = {"np": np, "optim": optim, "decay": 0.9}
    exec(blocks[1], namespace)
    grads, m = {"w": np.array([0.5, -2.0])}, {"w": np.array([-1.0, 1.0])}
    u, state = namespace["update"](grads, {"count": 0, "m": m})
    np.testing.assert_array_equal(u["w"], np.sign(0.9 * m["w"] + 0.1 * grads["w"]))
    assert state["count"] == 1

"""The README's code blocks: the examples run and print what the README says, every command works on a
fresh machine as written (no path of this repository's build environment), and the page stays a front
page whose links resolve (issue 18 items 1-5, 7, 21)."""

import contextlib
import importlib.util
import io
import re
import shlex
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
TEXT = README.read_text()
EXTRAS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def _blocks(text, lang):
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def _section(title):
    start = TEXT.index(f"\n## {title}\n")
    end = TEXT.find("\n## ", start + 1)
    return TEXT[start:end if end != -1 else None]


def _commands():
    """Every shell command of the README: bash blocks and indented command lines, one per line (a
    trailing backslash joins lines), comments removed."""
    lines = [line for block in _blocks(TEXT, "bash") for line in block.splitlines()]
    lines += [line[4:] for line in TEXT.splitlines() if line.startswith("    python3 ") or line.startswith("    env ")]
    text = "\n".join(lines).replace("\\\n", " ")
    return [c.split(" #")[0].strip() for c in text.splitlines() if c.strip() and not c.lstrip().startswith("#")]


def _load_example(path):
    spec = importlib.util.spec_from_file_location(f"readme_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(code, namespace):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README", "exec"), namespace)
    return out.getvalue()


def test_quickstart_runs_and_matches_its_expected_output():
    quickstart = _section("Quickstart")
    code = _blocks(quickstart, "python")[0]
    expected = _blocks(quickstart.split("Expected output", 1)[1], "")[0]
    namespace = {}
    got_lines, want_lines = _run(code, namespace).splitlines(), expected.strip().splitlines()
    assert len(got_lines) == len(want_lines)
    for got, want in zip(got_lines, want_lines):
        g = [float(v) for v in re.findall(r"\d+\.?\d*", got)]
        w = [float(v) for v in re.findall(r"\d+\.?\d*", want)]
        assert g[0] == w[0]  # the epoch
        # BLAS summation order may differ between machines; the numbers must agree closely.
        assert all(abs(a - b) <= 0.01 for a, b in zip(g[1:], w[1:])), (got, want)
    # the train_step block continues the quickstart's session
    _run(_blocks(quickstart, "python")[1], namespace)
    assert namespace["loss"] < 0.05


def test_the_inspect_block_prints_exactly_what_the_readme_shows():
    section = _section("Inspect a model")
    code, = _blocks(section, "python")
    shown, = _blocks(section, "text")
    assert _run(code, {}) == shown


def test_every_python_block_compiles():
    for k, code in enumerate(_blocks(TEXT, "python")):
        compile(code, f"README python block {k}", "exec")


def test_no_command_depends_on_this_repositorys_build_environment():
    # issue 18 item 1: ../shared exists only beside this checkout
    assert "../shared" not in TEXT and "shared/data" not in TEXT
    for command in _commands():
        assert "FNLEARN_DATA_DIR=" not in command, command


def test_the_two_commands():
    commands = _commands()
    two = [c for c in _blocks(_section("The two commands"), "bash")[0].splitlines()
           if c.strip() and not c.startswith("#")]
    assert len(two) == 2
    main, tests = (shlex.split(c) for c in two)
    # the main job: the examples extra, then the MLP example with flags it accepts; no data path given,
    # so the loader downloads into its cache (fnlearn.datasets.default_data_dir)
    assert main[:4] == ["pip", "install", "-e", ".[examples]"] and main[4] == "&&"
    assert main[5:7] == ["python3", "examples/mnist_mlp.py"]
    args = _load_example(REPO / main[6]).parse_args(main[7:])
    assert args.data_dir is None and args.lr == 0.5 and args.momentum == 0.9
    # the tests: only the core and the test extra, then exactly what .ci/run runs
    assert tests == ["pip", "install", "-e", ".[test]", "&&", "python3", "-m", "pytest", "-q"]
    assert "python3 -m pytest -q" in (REPO / ".ci" / "run").read_text()
    assert all(c in commands for c in two)


def test_the_main_job_downloads_into_a_user_cache_when_no_copy_is_given(monkeypatch):
    from fnlearn.datasets import default_data_dir
    monkeypatch.delenv("FNLEARN_DATA_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert default_data_dir() == Path("~/.cache/fnlearn/mnist").expanduser()
    assert "~/.cache/fnlearn/mnist" in _section("The two commands")


def test_every_installed_extra_exists_and_the_test_extra_is_light():
    for command in _commands():
        for extras in re.findall(r"\.\[([\w,]+)\]", command):
            for extra in extras.split(","):
                assert extra in EXTRAS, f"{command}: no extra {extra!r} in pyproject.toml"
    assert not {"torch==2.13.0", "optax==0.2.8"} & set(EXTRAS["test"])


def test_every_example_and_benchmark_command_names_a_real_script_and_real_flags():
    checked = 0
    for command in _commands():
        words = shlex.split(command)
        for i, word in enumerate(words):
            if word.startswith(("examples/", "benchmarks/")) and word.endswith(".py"):
                assert (REPO / word).exists(), command
                if word.startswith("examples/"):
                    flags = words[i + 1:words.index("&&", i) if "&&" in words[i:] else None]
                    _load_example(REPO / word).parse_args(flags)
                    checked += 1
    assert checked >= 2   # the main job and --threads


def test_the_short_cnn_command_is_short():
    # issue 18 item 4
    inline = re.search(r"`(python3 examples/mnist_cnn\.py [^`]+)`", TEXT)
    assert inline, "the README shows no short CNN command"
    args = _load_example(REPO / "examples" / "mnist_cnn.py").parse_args(shlex.split(inline.group(1))[2:])
    assert args.epochs == 1 and args.limit is not None and args.limit <= 10_000


def test_links_resolve():
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", TEXT):
        if not target.startswith("http"):
            assert (REPO / target).exists(), target


def test_it_is_a_front_page():
    # issue 18 item 5: what it is, install, the two commands, an example, results, links; detail in docs/
    titles = re.findall(r"^## (.+)$", TEXT, flags=re.M)
    assert titles[:3] == ["Install", "The two commands", "Quickstart"]
    assert {"What is in it", "Results", "Running the tests", "Documentation"} <= set(titles)
    assert len(TEXT.splitlines()) <= 300
    assert len(re.findall(r"\]\(docs/", TEXT)) >= 8


def test_the_performance_section_says_how_to_set_threads():
    # issue 18 item 7
    results = _section("Results")
    assert "3.6-28x slower" in results
    for needle in ("--threads 1", "threadpool_limits", "OPENBLAS_NUM_THREADS=1"):
        assert needle in results, needle


def test_the_readme_says_an_uncaught_exception_aborts_an_mpi_job():
    # issue 18 item 21
    assert "uncaught exception on any rank abort the whole job" in " ".join(TEXT.split())


@pytest.mark.parametrize("page", sorted((REPO / "docs").glob("*.md")), ids=lambda p: p.name)
def test_docs_pages_link_to_files_that_exist(page):
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text()):
        if not target.startswith("http"):
            assert (page.parent / target).exists(), f"{page.name}: {target}"

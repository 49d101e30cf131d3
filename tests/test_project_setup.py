"""What a newcomer meets before any code runs: the extras, pytest's options, .gitignore and .ci/run."""

import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
EXTRAS = PYPROJECT["project"]["optional-dependencies"]
PEERS = ("torch", "jax", "jaxlib", "optax", "mpi4py", "mpich", "threadpoolctl")


def _names(requirements):
    return {req.split("=")[0].split(">")[0].split("<")[0].split("[")[0].strip() for req in requirements}


def test_the_core_test_command_installs_no_peer_library():
    # issue 18 item 3: `pip install -e '.[test]'` must not pull PyTorch (1.3 GB) or the other peers
    installed = _names(PYPROJECT["project"]["dependencies"]) | _names(EXTRAS["test"])
    assert not installed & set(PEERS), installed


def test_the_compare_extra_pins_the_peers():
    compare = EXTRAS["compare"]
    assert "torch==2.13.0" in compare                    # never let pip resolve another torch
    assert "optax==0.2.8" in compare
    assert {"jax", "jaxlib", "mpi4py", "mpich", "safetensors", "threadpoolctl"} <= _names(compare)
    assert all("==" in req for req in compare if _names([req]) & {"jax", "jaxlib"})


def test_skipped_tests_say_why_in_the_summary():
    # issue 18 item 2: -rs lists every skip with its reason
    addopts = PYPROJECT["tool"]["pytest"]["ini_options"]["addopts"].split()
    assert any(opt.startswith("-r") and "s" in opt[2:] for opt in addopts), addopts


def test_a_missing_mnist_directory_is_named_in_the_summary(tmp_path):
    # issue 18 item 2: without the data the MNIST tests skip loudly, not silently
    test = tmp_path / "test_uses_mnist.py"
    test.write_text(textwrap.dedent("""
        def test_needs_mnist(mnist_dir):
            pass
    """))
    (tmp_path / "conftest.py").write_text((REPO / "tests" / "conftest.py").read_text())
    env = {"FNLEARN_DATA_DIR": str(tmp_path / "nowhere"), "PATH": "/usr/bin:/bin",
           "HYPOTHESIS_PROFILE": "ci", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                          str(test)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 tests on real MNIST SKIPPED" in out.stdout, out.stdout
    assert f"SKIPPED [1] {test.name}" in out.stdout or "MNIST files not found" in out.stdout, out.stdout
    assert str(tmp_path / "nowhere") in out.stdout


def test_a_virtual_environment_is_git_ignored():
    # issue 18 item 6
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: cannot ask git what it ignores")
    for name in (".venv", "venv"):
        out = subprocess.run(["git", "check-ignore", "-q", name + "/bin/python"], cwd=REPO)
        assert out.returncode == 0, f"{name}/ is not git-ignored"


def test_ci_installs_the_peers_points_at_the_shared_data_and_runs_the_readme_command():
    ci = (REPO / ".ci" / "run").read_text()
    assert "'.[test,compare,examples,interop,mpi]'" in ci
    assert "shared/data" in ci and "FNLEARN_DATA_DIR" in ci and "FNLEARN_SHAKESPEARE_DIR" in ci
    assert "python3 -m pytest -q" in ci
    assert "-eq 5" in ci                                  # pytest's "no tests collected"
    readme = (REPO / "README.md").read_text()
    assert "python3 -m pytest -q" in readme


def test_import_fnlearn_does_not_import_scipy_special():
    # issue 18 item 11: `import scipy.special` cost 0.29 s of the 0.5 s of `import fnlearn`; modules
    # import it inside the functions that use it
    code = "import sys, fnlearn; print(sorted(m for m in sys.modules if m.startswith('scipy.special')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


def test_no_module_imports_scipy_at_module_level():
    import ast
    eager = []
    for path in sorted((REPO / "fnlearn").rglob("*.py")):
        for node in ast.parse(path.read_text()).body:   # module level only: function bodies are lazy
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(m == "scipy" or m.startswith("scipy.") for m in mods):
                eager.append(str(path.relative_to(REPO)))
    assert not eager, f"modules importing scipy at import time: {eager}"

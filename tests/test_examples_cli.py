"""Issue 18 items 4 and 7: every example flag shows its default in --help, and --threads limits BLAS."""

import contextlib
import importlib.util
import io
import re
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"{name}_cli_example", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _help(module):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        module.parse_args(["--help"])
    return out.getvalue()


def _options(text):
    """``{flag: its help text}`` from argparse's options section (continuation lines joined)."""
    section = text.split("options:", 1)[1]
    entries = re.split(r"\n  (?=-)", "\n" + section)
    return {entry.split()[0].rstrip(","): " ".join(entry.split()) for entry in entries if entry.strip()}


@pytest.mark.parametrize("name", ["mnist_mlp", "mnist_cnn", "compare_optimizers"])
def test_every_flag_shows_its_default(name):
    options = _options(_help(_load(name)))
    assert len(options) > 8
    missing = [flag for flag, text in options.items() if flag != "-h" and "(default:" not in text]
    assert not missing, f"{name} --help shows no default for {missing}"


def test_the_optimizer_rules_default_reads_as_typed():
    options = _options(_help(_load("compare_optimizers")))
    assert "(default: sgd,momentum,adam,rmsprop,adagrad,lion)" in options["--rules"]


@pytest.mark.parametrize("name", ["mnist_mlp", "mnist_cnn"])
def test_threads_limits_the_blas_library_while_the_run_lasts(name):
    threadpoolctl = pytest.importorskip("threadpoolctl", reason="--threads needs threadpoolctl (the examples extra)")
    module = _load(name)
    assert module.parse_args(["--threads", "1"]).threads == 1
    assert "--threads" in _options(_help(module))
    mlp = module if name == "mnist_mlp" else module.mlp
    blas = [p for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    if not blas:
        pytest.skip("no BLAS library that threadpoolctl can see")
    before = [p["num_threads"] for p in blas]
    with mlp.blas_threads(1):
        assert all(p["num_threads"] == 1 for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas")
    assert [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"] == before
    with pytest.raises(SystemExit):
        module.parse_args(["--threads", "0"])


def test_without_data_or_network_the_example_exits_with_the_loaders_message(tmp_path, monkeypatch):
    from fnlearn.datasets import DownloadError, _mnist

    def offline(name, directory, *args, **kwargs):
        raise DownloadError(f"could not download {name} (no network)")

    monkeypatch.setattr(_mnist, "download_verified", offline)
    module = _load("mnist_mlp")
    with pytest.raises(SystemExit) as info:
        module.main(["--data-dir", str(tmp_path), "--epochs", "1", "--quiet"])
    message = str(info.value.code)
    assert message.startswith("mnist_mlp: mnist: could not download") and str(tmp_path) in message


def test_the_main_job_downloads_verifies_and_caches_mnist_then_trains(tmp_path, mnist_dir):
    # item 1: a run without a local copy downloads the files; a local mirror stands in for the network
    import fnlearn as fl
    cache = tmp_path / "cache"
    mirror = mnist_dir.resolve().as_uri() + "/"
    for split in ("train", "test"):
        fl.datasets.mnist(split, cache, mirrors=[mirror], progress=False)
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        name for names in fl.datasets.MNIST_FILES.values() for name in names)
    result = _load("mnist_mlp").main(["--data-dir", str(cache), "--epochs", "1", "--limit", "2000",
                                       "--lr", "0.5", "--momentum", "0.9", "--quiet"])
    assert result["test_accuracy"] > 0.5   # chance is 0.1; one short epoch of the sigmoid MLP gives ~0.69

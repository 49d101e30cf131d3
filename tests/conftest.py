"""Shared test configuration: hypothesis profiles and the MNIST data directory."""

import os
import sys
from pathlib import Path

import pytest

from fnlearn.testing.strategies import register_profiles

# Profiles ci (derandomized, no database, no deadline), dev and nightly; loads HYPOTHESIS_PROFILE,
# else "ci" when CI is set, else "dev".
register_profiles(load=True)

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"
SHARED_SHAKESPEARE = REPO.parent / "shared" / "data" / "tinyshakespeare"


def _mnist_candidates() -> list[Path]:
    """Where the MNIST tests look: FNLEARN_DATA_DIR if set; else the download cache of
    ``fnlearn.datasets.mnist`` (filled by the README's main command), then ../shared/data/mnist."""
    if os.environ.get("FNLEARN_DATA_DIR"):
        return [Path(os.environ["FNLEARN_DATA_DIR"]).expanduser()]
    from fnlearn.datasets import default_data_dir
    return [default_data_dir(), SHARED_MNIST]


def _find_mnist() -> Path | None:
    return next((d for d in _mnist_candidates() if (d / "train-images-idx3-ubyte.gz").exists()), None)


def pytest_report_header(config) -> list[str]:
    """One header line saying where the test data is, or loudly that it is missing."""
    found = _find_mnist()
    if found is not None:
        return [f"MNIST data: {found}"]
    return [f"MNIST data: NOT FOUND; the tests on real MNIST will SKIP. {_missing_mnist()}"]


def _missing_mnist() -> str:
    return (f"The MNIST files are not in {', '.join(map(str, _mnist_candidates()))}: set FNLEARN_DATA_DIR "
            "to a directory with them, or run the README's main command once to download them.")


def pytest_terminal_summary(terminalreporter) -> None:
    """Repeat the missing-data line at the end, where it is seen also under -q."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if "MNIST files not found" in str(r.longrepr)]
    if skipped:
        terminalreporter.write_line(f"{len(skipped)} tests on real MNIST SKIPPED. {_missing_mnist()}",
                                    yellow=True, bold=True)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The directory with the real MNIST files (see ``_mnist_candidates``); else skip with the reason."""
    found = _find_mnist()
    if found is None:
        pytest.skip(f"MNIST files not found in {', '.join(map(str, _mnist_candidates()))}; set "
                    "FNLEARN_DATA_DIR to their directory (CI does)")
    return found



@pytest.fixture(scope="session")
def shakespeare_dir() -> Path:
    """The directory with char-rnn's tiny Shakespeare input.txt: FNLEARN_SHAKESPEARE_DIR, else
    ../shared/data/tinyshakespeare; else skip, naming both."""
    d = Path(os.environ.get("FNLEARN_SHAKESPEARE_DIR") or SHARED_SHAKESPEARE).expanduser()
    if not (d / "input.txt").is_file():
        pytest.skip(f"TINY SHAKESPEARE NOT FOUND: no input.txt in {d}; set FNLEARN_SHAKESPEARE_DIR to the "
                    "directory holding char-rnn's input.txt (CI must export it)")
    return d

# test modules import the shared registry (tests/registry.py) by name
sys.path.insert(0, str(Path(__file__).resolve().parent))

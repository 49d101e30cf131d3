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


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The directory with the real MNIST files: FNLEARN_DATA_DIR, else ../shared/data/mnist; else skip."""
    d = Path(os.environ.get("FNLEARN_DATA_DIR", SHARED_MNIST))
    if not (d / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"the MNIST files are not in {d}; set FNLEARN_DATA_DIR to their directory")
    return d


# test modules import the shared registry (tests/registry.py) by name
sys.path.insert(0, str(Path(__file__).resolve().parent))

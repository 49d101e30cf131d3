"""Shared test configuration: hypothesis profiles and the MNIST data directory."""

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, print_blob=True, max_examples=50,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", max_examples=20, deadline=None)
settings.register_profile("nightly", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The directory with the real MNIST files: FNLEARN_DATA_DIR, else ../shared/data/mnist; else skip."""
    d = Path(os.environ.get("FNLEARN_DATA_DIR", SHARED_MNIST))
    if not (d / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"the MNIST files are not in {d}; set FNLEARN_DATA_DIR to their directory")
    return d

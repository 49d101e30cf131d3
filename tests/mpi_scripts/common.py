"""The model, data and settings shared by semantics.py (run on N ranks) and the single-process oracle.

No MPI here: tests/test_distributed.py imports this module into the pytest process.
"""

from __future__ import annotations

import numpy as np

import fnlearn as fl

N_EXAMPLES, N_FEATURES, N_CLASSES = 50, 5, 3
STEP_BATCH = 4        # per rank, for the one-step check
GLOBAL_BATCH = 12     # for the training runs: GLOBAL_BATCH // size() per rank; 50 % 12 = 2 in the last one
EPOCHS, LEARNING_RATE = 3, 0.3
DATA_SEED, INIT_SEED, SHUFFLE_SEED = 1, 100, 7


def model() -> fl.Layer:
    return fl.serial(fl.Dense(8), fl.Tanh(), fl.Dense(N_CLASSES))


def init(rank: int):
    """Each rank's own float64 initialisation (they differ until broadcast)."""
    return model().init(np.random.default_rng(INIT_SEED + rank), (-1, N_FEATURES), dtype=np.float64)


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(DATA_SEED)
    return rng.normal(size=(N_EXAMPLES, N_FEATURES)), rng.integers(0, N_CLASSES, N_EXAMPLES)

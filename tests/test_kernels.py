"""The array helpers of fnlearn._kernels against plain NumPy."""

import numpy as np
import pytest

from fnlearn import _kernels


@pytest.mark.parametrize("limit", [0, 2**22])  # np.add.at, and the one-hot product
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_add_rows_adds_repeated_ids(limit, dtype, monkeypatch):
    monkeypatch.setattr(_kernels, "_ONE_HOT_LIMIT", limit)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 7, 50)
    rows = rng.normal(size=(50, 3)).astype(dtype)
    out = rng.normal(size=(7, 3)).astype(dtype)
    want = out.copy()
    np.add.at(want, ids, rows)
    _kernels.add_rows(out, ids, rows)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, want, rtol=1e-6 if dtype == np.float32 else 1e-13)

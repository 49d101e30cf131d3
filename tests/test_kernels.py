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


def test_add_rows_on_a_large_table(monkeypatch):
    """Past _ONE_HOT_ROWS rows the scatter is np.add.at: the one-hot product would cost vocab times more."""
    products = []
    monkeypatch.setattr(_kernels.np, "zeros", lambda *a, **k: products.append(a) or np.empty(*a, **k))
    out = np.full((1000, 2), 0.5)
    _kernels.add_rows(out, np.array([3, 3, 999]), np.ones((3, 2)))
    assert products == []  # no one-hot matrix was built
    np.testing.assert_array_equal(out[[3, 999, 0], 0], [2.5, 1.5, 0.5])

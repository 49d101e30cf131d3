"""Small array helpers shared by the hot paths of layers and losses.

``column_sums(a)`` is ``a.sum(axis=0)`` for a 2-D array, computed as the matrix-vector product
``ones @ a``: BLAS does it several times faster than NumPy's reduction over the leading axis (which
adds the rows one after another, with the same float32 accuracy). The vector of ones is cached per
length and dtype, read-only, so no call can change what another sees.

Example:
    >>> import numpy as np
    >>> from fnlearn._kernels import column_sums
    >>> column_sums(np.arange(6, dtype=np.float32).reshape(3, 2))
    array([6., 9.], dtype=float32)
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ._types import Array


@lru_cache(maxsize=64)
def ones(n: int, dtype: np.dtype) -> Array:
    """A read-only vector of ``n`` ones in ``dtype`` (cached: do not rely on its identity)."""
    out = np.ones(n, dtype)
    out.flags.writeable = False
    return out


def column_sums(a: Array) -> Array:
    """``a.sum(axis=0)`` of a 2-D float array, shape ``(a.shape[1],)``, in ``a``'s dtype."""
    return ones(a.shape[0], a.dtype) @ a


def add_rows(out: Array, ids: Array, rows: Array) -> None:
    """``out[ids[i]] += rows[i]`` for every ``i`` (repeated ids add up), in place.

    ``ids`` is 1-D int, ``rows`` is ``(len(ids), out.shape[1])``. For a small table (a character
    vocabulary) this is one matrix product with a one-hot matrix, 4-5x faster than ``np.add.at``; the
    product costs ``vocab`` times more arithmetic than the scatter, so for larger tables (past about
    512 rows) it is ``np.add.at``.
    """
    n, vocab = len(ids), out.shape[0]
    if vocab <= _ONE_HOT_ROWS and n * vocab <= _ONE_HOT_LIMIT:
        one_hot = np.zeros((vocab, n), rows.dtype)
        one_hot[ids, np.arange(n)] = 1.0
        out += one_hot @ rows
    else:
        np.add.at(out, ids, rows)


_ONE_HOT_ROWS = 512
"""The largest table :func:`add_rows` scatters into with a one-hot product (measured crossover)."""
_ONE_HOT_LIMIT = 2**22
"""The largest one-hot matrix (entries) :func:`add_rows` builds: 16 MiB in float32."""

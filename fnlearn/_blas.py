"""The thread count of the OpenBLAS that NumPy multiplies with, read and set through its C API.

``train_step(..., threads=N)`` runs parts of the batch on N Python threads and needs BLAS on one
thread meanwhile: OpenBLAS's own worker threads keep spinning for about 0.1 s after every product
and would take the cores from the Python threads (docs/perf.md). NumPy's wheels ship OpenBLAS as a
shared library next to the package (``numpy.libs`` on Linux and Windows, ``numpy/.dylibs`` on macOS);
its ``openblas_set_num_threads`` is found under the names the scipy-openblas builds give it. Nothing
is found, and nothing is changed, where NumPy uses another BLAS (MKL, Accelerate) or an OpenBLAS
from elsewhere (a Linux distribution's or conda's NumPy); ``train_step`` then warns. The setting is
process-wide: other threads' products during the block run on one BLAS thread too.
"""

from __future__ import annotations

import ctypes
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

_SUFFIXES = ("64_", "")
_PREFIXES = ("scipy_openblas_", "openblas_")


def _find() -> tuple[Any, Any] | None:
    """``(get_num_threads, set_num_threads)`` of NumPy's OpenBLAS, or None."""
    root = Path(np.__file__).resolve().parent
    for folder in (root.parent / "numpy.libs", root / ".dylibs"):
        for path in sorted(folder.glob("*openblas*")) if folder.is_dir() else ():
            try:
                lib = ctypes.CDLL(str(path))  # already loaded by NumPy: the same handle
            except OSError:
                continue
            for prefix in _PREFIXES:
                for suffix in _SUFFIXES:
                    get = getattr(lib, f"{prefix}get_num_threads{suffix}", None)
                    put = getattr(lib, f"{prefix}set_num_threads{suffix}", None)
                    if get is not None and put is not None:
                        get.restype, get.argtypes = ctypes.c_int, []
                        put.restype, put.argtypes = None, [ctypes.c_int]
                        return get, put
    return None


_API: list[Any] = []
_LOCK = threading.Lock()
_DEPTH = [0, 0]  # [callers inside one_thread, the thread count to restore]


def _reset_after_fork() -> None:
    """A forked child has none of the parent's threads inside ``one_thread``: start from zero."""
    global _LOCK
    _LOCK = threading.Lock()
    _DEPTH[:] = [0, 0]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _api() -> tuple[Any, Any] | None:
    if not _API:
        _API.append(_find())
    return _API[0]


def num_threads() -> int | None:
    """The thread count NumPy's OpenBLAS uses now, or None when it is not found."""
    api = _api()
    return None if api is None else int(api[0]())


@contextmanager
def one_thread() -> Iterator[bool]:
    """Run the block with NumPy's OpenBLAS on one thread, restoring its count after (nested and
    concurrent blocks restore once, when the last one ends). Yields whether OpenBLAS was found."""
    api = _api()
    if api is None:
        yield False
        return
    with _LOCK:
        if _DEPTH[0] == 0:
            _DEPTH[1] = int(api[0]())
            if _DEPTH[1] != 1:
                api[1](1)
        _DEPTH[0] += 1
    try:
        yield True
    finally:
        with _LOCK:
            _DEPTH[0] -= 1
            if _DEPTH[0] == 0 and _DEPTH[1] != 1:
                api[1](_DEPTH[1])

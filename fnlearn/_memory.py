"""``reuse_freed_memory``: keep glibc from handing each training step's freed arrays back to the OS.

A pure training step allocates its activations, gradients and new parameters afresh and frees them a
moment later. glibc's malloc serves large arrays with ``mmap`` (returned to the OS at ``free``) and
returns free memory at the top of its heap to the OS once more than a *trim threshold* is free there;
both thresholds adapt to the largest ``mmap``-ed array freed so far, up to 32 MiB. When a step frees
more than the trim threshold, the next step gets its memory back as new pages, and the kernel must
fault in and zero every page it touches: for the MNIST CNN of ``examples/mnist_cnn.py`` (activations
of 6.4 MB) that was about half of each step. This function sets both thresholds once for the whole
process, so freed arrays below ``mmap_threshold`` stay in the heap for the next step. It changes when
memory is returned to the OS, never how much a step uses; like any malloc setting it applies to
everything in the process.

Example:
    >>> import fnlearn as fl
    >>> isinstance(fl.reuse_freed_memory(), bool)   # False where the C library is not glibc
    True
"""

from __future__ import annotations

import ctypes
import sys

import numpy as np

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MAX_INT = 2 ** 31 - 1
"""``mallopt`` takes a C int."""


def reuse_freed_memory(*, trim_threshold: int = 2 ** 30, mmap_threshold: int = 2 ** 28) -> bool:
    """Ask glibc to keep freed memory for reuse: ``mallopt(M_TRIM_THRESHOLD)``, ``mallopt(M_MMAP_THRESHOLD)``.

    Call it once, at the start of a training script before any threads start (``mallopt`` is not
    thread-safe; the examples call it first). Arrays smaller than ``mmap_threshold`` bytes then come
    from the heap, and freed heap memory goes back to the OS only when more than ``trim_threshold``
    bytes are free at its top, so a step's temporaries reuse the previous step's pages instead of
    faulting in new ones. The process's resident memory stays near its peak instead of shrinking
    between steps. Equivalent to starting Python with ``MALLOC_TRIM_THRESHOLD_`` and
    ``MALLOC_MMAP_THRESHOLD_`` set. Under another allocator loaded with ``LD_PRELOAD`` (jemalloc,
    tcmalloc) the call may report success and change nothing; those allocators keep freed memory
    anyway.

    Args:
        trim_threshold: bytes of free memory at the top of the heap kept before any is returned
            (default 1 GiB).
        mmap_threshold: arrays of at least this many bytes are still served by ``mmap`` and returned at
            once (default 256 MiB).

    Returns:
        True if glibc accepted both settings; False on other C libraries and systems (nothing changed).

    Raises:
        ValueError: a threshold that is not an integer in ``[1, 2**31 - 1]``.

    Example:
        >>> import fnlearn as fl
        >>> fl.reuse_freed_memory(mmap_threshold=2 ** 40)
        Traceback (most recent call last):
        ...
        ValueError: reuse_freed_memory: mmap_threshold must be an integer number of bytes in [1, 2147483647], got 1099511627776.
    """
    for name, value in (("trim_threshold", trim_threshold), ("mmap_threshold", mmap_threshold)):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
                or not 1 <= value <= MAX_INT:
            raise ValueError(f"reuse_freed_memory: {name} must be an integer number of bytes in "
                             f"[1, {MAX_INT}], got {value!r}.")
    mallopt = _glibc_mallopt()
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, int(mmap_threshold)) == 1
                and mallopt(M_TRIM_THRESHOLD, int(trim_threshold)) == 1)


def _glibc_mallopt():  # type: ignore[no-untyped-def]
    """glibc's ``mallopt``, or None (another C library, or no C library to load)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # only glibc has it (musl's mallopt does nothing)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt

"""``reuse_freed_memory``: keep glibc from handing each training step's freed arrays back to the OS.

A pure training step allocates its activations, gradients and new parameters afresh and frees them a
moment later. glibc's malloc returns freed memory at the top of its heap to the OS once more than a
*trim threshold* is free there (a threshold that it raises to twice the largest array freed so far),
and serves large arrays with ``mmap``. When a step frees more than that, the next step gets the
memory back as new pages, and the kernel must fault in and zero every page it touches: for the MNIST
CNN of ``examples/mnist_cnn.py`` (activations of 6.4 MB) that is most of the step's time. This
function sets the two thresholds once for the whole process, so freed arrays below ``mmap_threshold``
stay in the heap for the next step. It changes when memory is returned to the OS, never how much a
step uses; like any malloc setting it applies to everything in the process.

Example:
    >>> import fnlearn as fl
    >>> fl.reuse_freed_memory() in (True, False)   # False where the C library is not glibc
    True
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MAX_MMAP_THRESHOLD = 32 * 2 ** 20
"""glibc's upper limit for ``M_MMAP_THRESHOLD`` on 64-bit systems."""


def reuse_freed_memory(*, trim_threshold: int = 2 ** 30, mmap_threshold: int = MAX_MMAP_THRESHOLD) -> bool:
    """Ask glibc to keep freed memory for reuse: ``mallopt(M_TRIM_THRESHOLD)``, ``mallopt(M_MMAP_THRESHOLD)``.

    Call it once at the start of a training script (the examples do). Arrays smaller than
    ``mmap_threshold`` bytes come from the heap, and freed heap memory goes back to the OS only when
    more than ``trim_threshold`` bytes are free at its top, so a step's temporaries reuse the previous
    step's pages instead of faulting in new ones. The process's resident memory then stays near its
    peak instead of shrinking between steps. Equivalent to starting Python with
    ``MALLOC_TRIM_THRESHOLD_`` and ``MALLOC_MMAP_THRESHOLD_`` set.

    Args:
        trim_threshold: bytes of free memory at the top of the heap kept before any is returned
            (default 1 GiB); at most ``2**31 - 1``.
        mmap_threshold: arrays of at least this many bytes are still served by ``mmap`` and returned at
            once (default 32 MiB, glibc's maximum).

    Returns:
        True if glibc accepted both settings; False on other C libraries and systems (nothing changed).

    Raises:
        ValueError: a threshold that is not a positive int in range.

    Example:
        >>> import fnlearn as fl
        >>> fl.reuse_freed_memory(mmap_threshold=2 ** 40)
        Traceback (most recent call last):
        ...
        ValueError: reuse_freed_memory: mmap_threshold must be an int in [1, 33554432] (bytes; glibc's maximum is 32 MiB), got 1099511627776.
    """
    for name, value, high, note in (("trim_threshold", trim_threshold, 2 ** 31 - 1, ""),
                                    ("mmap_threshold", mmap_threshold, MAX_MMAP_THRESHOLD,
                                     " (bytes; glibc's maximum is 32 MiB)")):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
            raise ValueError(f"reuse_freed_memory: {name} must be an int in [1, {high}]{note}, got {value!r}.")
    mallopt = _glibc_mallopt()
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold) == 1 and mallopt(M_TRIM_THRESHOLD, trim_threshold) == 1)


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

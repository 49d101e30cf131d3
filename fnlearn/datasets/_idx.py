"""The IDX file format (the format of the MNIST files), gzipped or plain.

An IDX file is a 4-byte magic number ``0x00 0x00 <dtype code> <ndim>``, then ``ndim`` big-endian
uint32 dimensions, then exactly ``prod(dims)`` big-endian items of the given dtype.
"""

from __future__ import annotations

import hashlib
import math
import os
import zlib

import numpy as np

from .._types import Array

__all__ = ["DatasetError", "DownloadError", "parse_idx", "read_idx", "read_uncompressed", "sha256_hex"]

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


class DatasetError(ValueError):
    """A data file is missing, truncated, corrupt or not the expected file; the message names it."""


class DownloadError(DatasetError):
    """A data file could not be downloaded from any mirror; the message says where to put it by hand."""


def sha256_hex(data: bytes) -> str:
    """The sha256 of ``data`` as a lowercase hex string."""
    return hashlib.sha256(data).hexdigest()


MAX_UNCOMPRESSED = 1 << 30
"""The most bytes a gzipped IDX file may expand to (1 GiB; MNIST's largest is 47 MB): a gzip bomb
in the data directory is an error, not an exhausted memory."""


def read_uncompressed(path: str | os.PathLike[str], *, max_bytes: int = MAX_UNCOMPRESSED) -> bytes:
    """The content of ``path``, gunzipped when it starts with the gzip magic bytes.

    Raises:
        DatasetError: the gzip stream is truncated or corrupt, or expands past ``max_bytes`` (the
            message names the file).
    """
    with open(path, "rb") as f:
        raw = f.read()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return _gunzip(raw, max_bytes, os.fspath(path))
    except zlib.error as e:
        raise DatasetError(
            f"{os.fspath(path)} is not a valid gzip file ({e}); it is probably corrupt. "
            "Delete it and load again to download a fresh copy.") from e


def _gunzip(raw: bytes, max_bytes: int, name: str) -> bytes:
    out, data = bytearray(), raw
    while data:  # one pass per gzip member; each member's CRC is checked at its end
        member = zlib.decompressobj(wbits=31)
        out += member.decompress(data, max_bytes + 1 - len(out))
        if len(out) > max_bytes:
            raise DatasetError(f"{name} expands to more than {max_bytes} bytes; it is not an IDX file "
                               "of a data set this loader knows. Delete it.")
        if not member.eof:
            raise DatasetError(f"{name} is not a valid gzip file (the stream ends early); it is "
                               "probably truncated. Delete it and load again to download a fresh copy.")
        data = member.unused_data
    return bytes(out)


def parse_idx(data: bytes, name: str = "<bytes>") -> Array:
    """Parse the uncompressed bytes of an IDX file into an array in native byte order.

    Args:
        data: the whole file content.
        name: the file's name, used in error messages.

    Returns:
        an array with the file's shape and dtype (uint8 for MNIST), writable and in native byte order.

    Raises:
        DatasetError: the magic number, dtype code, dimensions or size are wrong.

    Example:
        >>> import numpy as np
        >>> data = bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6))
        >>> parse_idx(data)
        array([[0, 1, 2],
               [3, 4, 5]], dtype=uint8)
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DatasetError(f"{name} is not an IDX file: expected the magic bytes 0x00 0x00 at the start, "
                           f"got {data[:4]!r}. Check that the file is the right one and not truncated.")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise DatasetError(f"{name} has an unknown IDX dtype code 0x{code:02x}; expected one of "
                           f"{[hex(c) for c in _IDX_DTYPES]}. The file is corrupt or not an IDX file.")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{name} is truncated: its header needs {header} bytes for {ndim} dimensions, "
                           f"got {len(data)} bytes.")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = header + math.prod(int(d) for d in dims) * dtype.itemsize  # Python ints: no overflow
    if len(data) != expected:
        kind = "truncated" if len(data) < expected else "longer than its header says"
        raise DatasetError(f"{name} is {kind}: dimensions {dims} of {dtype.name} need {expected} bytes, "
                           f"got {len(data)}. Delete the file and load again to download a fresh copy.")
    items = np.frombuffer(memoryview(data)[header:], dtype)
    return items.reshape(dims).astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike[str]) -> Array:
    """Read an IDX file, gzipped or plain.

    Args:
        path: the file.

    Returns:
        the array stored in the file (see :func:`parse_idx`).

    Raises:
        DatasetError: the file is truncated, corrupt or not an IDX file (the message names it).
    """
    return parse_idx(read_uncompressed(path), os.fspath(path))

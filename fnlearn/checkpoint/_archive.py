"""The archive layer: atomic writes, and reads of a zip that check every size before reading.

The file is a plain uncompressed ``.npz`` (a zip of ``.npy`` members), so ``numpy.load`` can open it.
Reading never trusts a size it has not checked: the number of members, each member's declared size
against the file's real size, the manifest's size, and each ``.npy`` header's dtype and shape against
the manifest, all before a byte of data is read or an array allocated.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import socket
import tempfile
import zipfile
from typing import IO, Callable, Iterable, Union

import numpy as np
from numpy.lib import format as npy_format

from ._errors import CheckpointError

PathLike = Union[str, "os.PathLike[str]"]
MAX_MEMBERS = 1_000_000
MAX_MANIFEST_BYTES = 64 * 2**20
MAX_HEADER_BYTES = 10_000
_EPOCH = (1980, 1, 1, 0, 0, 0)


def atomic_write(path: PathLike, write: Callable[[IO[bytes]], None], who: str = "fnlearn.checkpoint.save") -> None:
    """Write ``path`` through a temporary file in its directory: flush, fsync, rename, fsync the dir.

    A failure at any point removes the temporary file and leaves an existing ``path`` untouched. The
    temporary file is ``.<name>.<pid>-<host>.<random>.tmp``; a writer killed before its rename leaves
    it behind, and the next write to ``path`` removes those whose process no longer runs on this host
    (:func:`remove_stale_temps`). A missing directory is a FileNotFoundError that names it.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        kind = "is not a directory" if os.path.exists(directory) else "does not exist"
        error = NotADirectoryError if os.path.exists(directory) else FileNotFoundError
        raise error(f"{who}('{path}'): the directory {directory} {kind}. Create it first, e.g. "
                    f"os.makedirs({directory!r}, exist_ok=True).")
    remove_stale_temps(path)
    prefix = f".{os.path.basename(path)}.{os.getpid()}-{_HOST}."
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_TEMP_NAME = re.compile(r"(\d+)-([0-9a-f]{8})\.[^.]+\.tmp")


def remove_stale_temps(path: PathLike) -> list[str]:
    """Remove the temporary files that killed writers of ``path`` left in its directory; return them.

    Only files named by :func:`atomic_write` whose writer ran on this host and is no longer running
    are removed: a live writer's file, another host's (on a shared file system) and any file of
    another name are left alone.
    """
    path = os.fspath(path)
    directory, base = os.path.split(os.path.abspath(path))
    removed = []
    try:
        entries = [e.name for e in os.scandir(directory) if e.name.startswith(f".{base}.")]
    except OSError:
        return removed
    for name in entries:
        m = _TEMP_NAME.fullmatch(name[len(base) + 2:])
        if m is None or m.group(2) != _HOST or _running(int(m.group(1))):
            continue
        try:
            os.unlink(os.path.join(directory, name))
            removed.append(name)
        except OSError:  # removed meanwhile by another writer, or not ours to remove
            pass
    return removed


def _running(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (one of another user counts as running)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover  (platforms without directory handles)
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def write_npz(f: IO[bytes], members: Iterable[tuple[str, np.ndarray]]) -> None:
    """Write ``(key, array)`` pairs as an uncompressed npz with fixed timestamps (same tree, same bytes)."""
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, arr in members:
            info = zipfile.ZipInfo(key + ".npy", date_time=_EPOCH)
            with zf.open(info, "w", force_zip64=True) as out:
                npy_format.write_array(out, arr, allow_pickle=False)


class SafeNpz:
    """A read-only view of an npz whose members are checked against the file before any read."""

    def __init__(self, path: PathLike) -> None:
        self.path = os.fspath(path)
        self._where = f"fnlearn.checkpoint.load('{self.path}')"
        self.size = os.path.getsize(self.path)
        with open(self.path, "rb") as f:
            magic = f.read(4)
        if magic != b"PK\x03\x04":
            raise CheckpointError(
                f"{self._where}: the file is not an npz checkpoint (a zip archive starts with "
                f"b'PK\\x03\\x04', this file starts with {magic!r}). Pass a file written by "
                "fnlearn.checkpoint.save.")
        self._zf = zipfile.ZipFile(self.path)
        try:
            self._infos = self._check_members()
        except BaseException:
            self._zf.close()
            raise

    def _check_members(self) -> dict[str, zipfile.ZipInfo]:
        infos = self._zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise CheckpointError(f"{self._where}: the archive declares {len(infos)} members, more "
                                  f"than the limit of {MAX_MEMBERS}; it is not a checkpoint.")
        out: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            if info.flag_bits & 0x1:
                raise CheckpointError(f"{self._where}: the member '{info.filename}' is marked "
                                      "encrypted; fnlearn checkpoints never are, so this file is "
                                      "foreign or corrupted.")
            if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
                raise CheckpointError(f"{self._where}: the member '{info.filename}' is compressed; "
                                      "fnlearn checkpoints are written uncompressed, so this file is "
                                      "foreign or corrupted.")
            if info.file_size > self.size or info.header_offset + info.file_size > self.size:
                raise CheckpointError(f"{self._where}: the member '{info.filename}' declares "
                                      f"{info.file_size} bytes but the file has only {self.size}; "
                                      "the file is truncated or corrupted.")
            if not info.filename.endswith(".npy") or info.filename in out:
                raise CheckpointError(f"{self._where}: unexpected member '{info.filename}'.")
            out[info.filename] = info
        return out

    def keys(self) -> set[str]:
        """The member keys (file names without ``.npy``)."""
        return {name[:-4] for name in self._infos}

    def read(self, key: str, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        """The array ``key``, which must have exactly ``dtype`` and ``shape``; read only once checked."""
        info = self._info(key, "the manifest lists")
        nbytes = _nbytes(dtype, shape)
        if not nbytes <= info.file_size <= nbytes + MAX_HEADER_BYTES:
            raise CheckpointError(f"{self._where}: '{key}' holds {info.file_size} bytes, which does "
                                  f"not fit dtype {dtype} and shape {shape}; the file is corrupted.")
        with self._zf.open(info) as f:
            got_shape, fortran, got_dtype = _read_header(f)
            if got_dtype.hasobject or got_dtype != dtype or got_shape != shape:
                raise CheckpointError(f"{self._where}: '{key}' holds dtype {got_dtype} and shape "
                                      f"{got_shape}, but the manifest says {dtype} and {shape}; the "
                                      "file is corrupted or was not written by fnlearn.checkpoint.")
            data = self._read_exactly(f, key, nbytes)
        flat = np.frombuffer(bytearray(data), dtype=dtype, count=math.prod(shape))
        return flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)

    def read_manifest(self, key: str) -> bytes:
        """The raw bytes of the 1-D uint8 member ``key``, size-checked before it is read."""
        info = self._info(key, "a checkpoint needs")
        if info.file_size > MAX_MANIFEST_BYTES + MAX_HEADER_BYTES:
            raise CheckpointError(f"{self._where}: the manifest declares {info.file_size} bytes, more "
                                  f"than the limit of {MAX_MANIFEST_BYTES}.")
        with self._zf.open(info) as f:
            shape, _, dtype = _read_header(f)
            if dtype != np.uint8 or len(shape) != 1 or shape[0] > info.file_size:
                raise CheckpointError(f"{self._where}: the manifest member is not a 1-D uint8 array "
                                      f"that fits its member (dtype {dtype}, shape {shape}).")
            return self._read_exactly(f, key, shape[0])

    def _info(self, key: str, who: str) -> zipfile.ZipInfo:
        info = self._infos.get(key + ".npy")
        if info is None:
            raise CheckpointError(f"{self._where}: {who} the member '{key}' but the archive has none; "
                                  "the file is not an fnlearn checkpoint or is corrupted. (Plain npz "
                                  "files load with numpy.load(path, allow_pickle=False).)")
        return info

    def _read_exactly(self, f: IO[bytes], key: str, nbytes: int) -> bytes:
        data = f.read(nbytes)
        if len(data) != nbytes or f.read(1):
            raise CheckpointError(f"{self._where}: the member '{key}' does not hold exactly {nbytes} "
                                  "data bytes; the file is corrupted.")
        return data

    def close(self) -> None:
        self._zf.close()

    def __enter__(self) -> "SafeNpz":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def manifest_array(text: str) -> np.ndarray:
    """The manifest as the uint8 array stored in the archive."""
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)


def _nbytes(dtype: np.dtype, shape: tuple[int, ...]) -> int:
    return math.prod(shape) * dtype.itemsize


def _read_header(f: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = npy_format.read_magic(f)
    if version not in ((1, 0), (2, 0)):
        raise CheckpointError(f"an npy member has the unsupported format version {version}.")
    read = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
    shape, fortran, dtype = read(f, max_header_size=MAX_HEADER_BYTES)
    return tuple(shape), bool(fortran), dtype

"""Downloading a file from a list of mirrors, with a progress bar, verified, written atomically; the
per-user cache directory and the sha256 check that the data set loaders share."""

from __future__ import annotations

import http.client
import os
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from ._idx import DatasetError, DownloadError, read_uncompressed, sha256_hex

__all__ = ["cache_dir", "download_verified", "sha256_verifier"]

_CHUNK = 1 << 16
_TIMEOUT_SECONDS = 30.0


def cache_dir(env_var: str, name: str) -> Path:
    """``$env_var`` when set and not empty, else ``$XDG_CACHE_HOME/fnlearn/name``, else
    ``~/.cache/fnlearn/name``."""
    env = os.environ.get(env_var)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(cache).expanduser() / "fnlearn" / name


def sha256_verifier(who: str, path: str | os.PathLike[str], expected: str,
                    original: str) -> Callable[[bytes], None]:
    """A check that raises DatasetError naming ``who`` and ``path`` when the content's sha256 is not
    ``expected``; the message tells the user to delete the file or replace it with ``original``."""
    def verify(data: bytes) -> None:
        actual = sha256_hex(data)
        if actual != expected:
            raise DatasetError(
                f"{who}: {path} is not the expected file: the sha256 of its uncompressed content is "
                f"{actual}, expected {expected}. It is corrupt or a different file; delete it and load "
                f"again to download a fresh copy, or replace it with {original}.")
    return verify


class _PlainProgress:
    """A progress report without tqdm: one line on stderr at every tenth of the file."""

    def __init__(self, total: int | None, desc: str) -> None:
        self.total, self.desc, self.done, self.reported = total, desc, 0, -1

    def update(self, n: int) -> None:
        self.done += n
        if self.total:
            tenth = 10 * self.done // self.total
            if tenth > self.reported:
                self.reported = tenth
                print(f"{self.desc}: {10 * tenth}% of {self.total / 1e6:.1f} MB", file=sys.stderr)

    def close(self) -> None:
        if not self.total:
            print(f"{self.desc}: {self.done / 1e6:.1f} MB", file=sys.stderr)


class _Silent:
    """No progress report (``progress=False``)."""

    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int | None, desc: str, enabled: bool) -> object:
    if not enabled:
        return _Silent()
    try:
        from tqdm import tqdm
    except ImportError:
        return _PlainProgress(total, desc)
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, file=sys.stderr, leave=False)


def _fetch_into(url: str, f: object, desc: str, progress: bool) -> None:
    """Stream ``url`` into the open binary file ``f``; raise on an HTTP error or a short body."""
    with urllib.request.urlopen(url, timeout=_TIMEOUT_SECONDS) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length is not None and length.isdigit() else None
        bar = _progress_bar(total, desc, progress)
        received = 0
        try:
            while chunk := response.read(_CHUNK):
                f.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        finally:
            bar.close()
    if total is not None and received != total:
        raise DatasetError(f"the server sent {received} of {total} bytes")


def _try_mirror(url: str, dest: str, verify: Callable[[bytes], None], progress: bool) -> None:
    """Download ``url`` to a temporary file beside ``dest``, verify it, then move it to ``dest``."""
    directory, name = os.path.split(dest)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            _fetch_into(url, f, name, progress)
            f.flush()
            os.fsync(f.fileno())
        verify(read_uncompressed(tmp))
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def download_verified(name: str, directory: str, mirrors: Sequence[str],
                      verify: Callable[[bytes], None], *, progress: bool = True) -> None:
    """Download ``name`` into ``directory`` from the first mirror that serves a file passing ``verify``.

    Each mirror is a base URL; the file's URL is the base joined with ``name``. The file is written to
    a temporary file in ``directory``, flushed to disk, checked with ``verify(uncompressed_bytes)``
    (which raises :class:`DatasetError` on a wrong file) and only then renamed to its final name, so a
    failed or interrupted download never leaves a partial file under that name.

    Raises:
        DownloadError: no mirror served a good file; the message lists each mirror's failure.
    """
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"could not create the directory {directory} for {name} ({e})") from e
    failures = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + name
        try:
            _try_mirror(url, os.path.join(directory, name), verify, progress)
            return
        except (OSError, http.client.HTTPException, DatasetError, ValueError) as e:
            failures.append(f"{url}: {e}")
    tried = "; ".join(failures) if failures else "no mirrors were given"
    raise DownloadError(f"could not download {name} ({tried})")

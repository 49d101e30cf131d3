"""MNIST: find, download and verify the four IDX files, and load a split as uint8 arrays."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .._types import Array
from ._download import cache_dir, download_verified, sha256_verifier
from ._idx import DatasetError, DownloadError, parse_idx, read_uncompressed

__all__ = ["MNIST_FILES", "MNIST_MIRRORS", "MNIST_SHA256", "default_data_dir", "mnist"]

MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
"""Base URLs of public MNIST mirrors, tried in turn; each serves the four gzipped files."""

MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
"""The (images, labels) file names of each split."""

MNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte.gz": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte.gz": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte.gz": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
"""The sha256 of each file's *uncompressed* content (so a re-gzipped or gunzipped copy still passes)."""


def default_data_dir() -> Path:
    """The directory ``mnist`` uses when given none: ``$FNLEARN_DATA_DIR``, else a per-user cache.

    The cache is ``$XDG_CACHE_HOME/fnlearn/mnist``, or ``~/.cache/fnlearn/mnist`` when
    ``XDG_CACHE_HOME`` is unset.
    """
    return cache_dir("FNLEARN_DATA_DIR", "mnist")


def _find(directory: Path, name: str) -> Path | None:
    """The gzipped file ``name`` in ``directory``, else its gunzipped form (without ``.gz``), else None."""
    for candidate in (directory / name, directory / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def _verifier(path: Path, expected: str) -> Callable[[bytes], None]:
    """A check that raises DatasetError naming ``path`` when the content's sha256 is not ``expected``."""
    return sha256_verifier("mnist", path, expected, "the original MNIST file")


def _where_to_put(directory: Path, missing: Sequence[str]) -> str:
    return (f"To load MNIST without network access, put {', '.join(missing)} (gzipped, or gunzipped "
            f"without the .gz suffix) in {directory}, or pass data_dir= (or set FNLEARN_DATA_DIR to) "
            "a directory that has them.")


def _check_pair(images: Array, labels: Array, names: tuple[str, str]) -> None:
    if images.dtype != "uint8" or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DatasetError(f"mnist: {names[0]} should hold uint8 images of shape (n, 28, 28), got "
                           f"{images.dtype} of shape {images.shape}. It is not an MNIST image file.")
    if labels.dtype != "uint8" or labels.shape != images.shape[:1] or (labels.size and labels.max() > 9):
        raise DatasetError(f"mnist: {names[1]} should hold {images.shape[0]} uint8 labels in 0..9 (one per "
                           f"image), got {labels.dtype} of shape {labels.shape}. It does not match "
                           f"{names[0]}.")


def _checked_table(sha256: Any, names: tuple[str, str]) -> Mapping[str, str]:
    """``sha256`` if it maps each of ``names`` to a hex digest; a ValueError naming the file otherwise."""
    if not isinstance(sha256, Mapping):
        raise TypeError(f"mnist: sha256 must be a mapping from file name to hex digest, got "
                        f"{type(sha256).__name__}. Omit it to use MNIST_SHA256.")
    for name in names:
        digest = sha256.get(name)
        if not isinstance(digest, str) or len(digest) != 64:
            got = "no entry" if name not in sha256 else f"{digest!r}, not 64 hex digits"
            raise ValueError(f"mnist: sha256 has {got} for {name}. Give the sha256 of the uncompressed "
                             f"content of every file of the split ({', '.join(names)}), or omit sha256= "
                             "to use fnlearn.datasets.MNIST_SHA256.")
    return sha256


def mnist(split: str = "train", data_dir: str | os.PathLike[str] | None = None, *,
          mirrors: Sequence[str] = MNIST_MIRRORS, sha256: Mapping[str, str] | None = None,
          download: bool = True, progress: bool = True) -> tuple[Array, Array]:
    """Load an MNIST split, downloading missing files; every file is verified by sha256.

    Args:
        split: ``"train"`` (60,000 examples) or ``"test"`` (10,000).
        data_dir: the directory with the files; default :func:`default_data_dir`.
        mirrors: base URLs to download missing files from, tried in turn (default
            :data:`MNIST_MIRRORS`).
        sha256: the expected sha256 of each file's uncompressed content, keyed by the gzipped file
            name (default :data:`MNIST_SHA256`).
        download: when False, a missing file is an error instead of a download.
        progress: show a progress bar while downloading (tqdm when installed).

    Returns:
        ``(images, labels)``: uint8 arrays of shape ``(n, 28, 28)`` (pixels 0..255) and ``(n,)`` (0..9).

    Raises:
        DownloadError: a file is missing and could not be downloaded; the message says which files to
            put in which directory.
        DatasetError: a file is truncated, corrupt or not the expected file; the message names it.

    Example:
        >>> images, labels = mnist("test")  # doctest: +SKIP
        >>> images.shape, images.dtype, labels.shape, labels[:5]  # doctest: +SKIP
        ((10000, 28, 28), dtype('uint8'), (10000,), array([7, 2, 1, 0, 4], dtype=uint8))
    """
    if split not in MNIST_FILES:
        raise ValueError(f"mnist: split must be one of {sorted(MNIST_FILES)}, got {split!r}.")
    names = MNIST_FILES[split]
    table = MNIST_SHA256 if sha256 is None else _checked_table(sha256, names)
    directory = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    missing = [name for name in names if _find(directory, name) is None]
    if missing and not download:
        raise DownloadError(f"mnist: {', '.join(missing)} not found in {directory} and download=False. "
                            + _where_to_put(directory, missing))
    for name in missing:
        try:
            download_verified(name, str(directory), mirrors, _verifier(directory / name, table[name]),
                              progress=progress)
        except DownloadError as e:
            raise DownloadError(f"mnist: {e}. " + _where_to_put(directory, missing)) from e
    arrays = []
    for name in names:
        path = _find(directory, name)
        data = read_uncompressed(path)
        _verifier(path, table[name])(data)
        arrays.append(parse_idx(data, str(path)))
    images, labels = arrays
    _check_pair(images, labels, names)
    return images, labels

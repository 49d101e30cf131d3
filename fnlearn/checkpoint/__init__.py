"""Checkpoints: save and load any tree of arrays and scalars, without pickle.

A checkpoint is one uncompressed ``.npz`` file. Each array (or NumPy scalar) of the tree is a member
named by its path (``"0/w"``), and the member ``__manifest__`` is a JSON document (stored as a uint8
array) with the format version, the tree's structure and leaf kinds, user metadata, and a SHA-256 of
the structure, metadata, and every array's key, dtype, shape and bytes. So ``load`` returns exactly
what was saved (a Python ``int`` stays an ``int`` of any size, a ``float32`` scalar stays one, a tuple
stays a tuple) and detects corruption.

Safety: nothing is ever unpickled (object arrays are refused on save, and headers are checked before
reading), every size in the file is checked against the file's real size before it is read, and any
foreign, truncated or corrupted file raises :class:`CheckpointError` instead of returning a partial
tree. Writes are atomic: a temporary file in the same directory is flushed, fsynced and renamed over
``path``, so a crash mid-write leaves the previous checkpoint intact.

To resume a run exactly, save a random generator with :func:`generator_state` (not only
``rng.bit_generator.state``: ``rng.spawn``, which ``fl.serial`` uses, also depends on the generator's
seed sequence) and rebuild it with :func:`generator_from_state`.

Example:
    >>> import os, tempfile, numpy as np
    >>> from fnlearn import checkpoint
    >>> rng = np.random.default_rng(0)
    >>> state = {"params": {"0": {"w": np.ones((2, 3), np.float32), "b": np.zeros(3, np.float32)}},
    ...          "step": 10, "rng": checkpoint.generator_state(rng)}
    >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.npz")
    >>> checkpoint.save(path, state, metadata={"epoch": 1})
    >>> restored = checkpoint.load(path, like=state)
    >>> restored["step"], restored["params"]["0"]["w"].dtype, restored["rng"] == state["rng"]
    (10, dtype('float32'), True)
    >>> checkpoint.load_metadata(path)
    {'epoch': 1}
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zipfile
import zlib
from typing import Any

import numpy as np

from .._types import PyTree
from . import _archive, _manifest, _template
from ._archive import PathLike
from ._errors import CheckpointError
from ._rng import generator_from_state, generator_state

__all__ = ["CheckpointError", "save", "load", "load_metadata", "generator_state",
           "generator_from_state", "FORMAT", "VERSION"]

FORMAT = "fnlearn.checkpoint"
VERSION = 1
# What a foreign or damaged file can make the zip, npy and JSON readers raise; load turns each into a
# CheckpointError. (FileNotFoundError, IsADirectoryError and PermissionError pass through unchanged.)
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, TypeError, KeyError,
                struct.error, UnicodeDecodeError, RecursionError, NotImplementedError, OverflowError,
                OSError, RuntimeError)


def save(path: PathLike, tree: PyTree, *, metadata: dict[str, Any] | None = None) -> None:
    """Save ``tree`` to ``path`` atomically (the file name is used as given; ``.npz`` is customary).

    Args:
        path: the file to write; its directory must exist. An existing file is replaced only once the
            new one is completely on disk. Temporary files that killed saves to ``path`` left behind
            (``.<name>.<pid>-<host>.*.tmp``, of a process no longer running on this host) are removed.
        tree: nested dicts (str or int keys), lists, tuples and ``None``, with NumPy arrays (any shape,
            including 0-d and empty; bool, integer, float, complex, str, bytes or datetime dtypes),
            NumPy scalars, or Python ``bool``/``int``/``float``/``str`` leaves. NamedTuples are
            saved as tuples.
        metadata: an optional JSON-serialisable dict (strings, numbers, lists, dicts; no NaN), read
            back with :func:`load_metadata`.

    Raises:
        CheckpointError: for an unsupported leaf (object arrays, which would need pickle), a dict key
            that is not a str or int, two leaves with the same path, or metadata that is not JSON.
        FileNotFoundError: the directory of ``path`` does not exist (the message names it).
    """
    node, arrays = _manifest.encode(tree)
    meta = _check_metadata(metadata)
    manifest = {"format": FORMAT, "version": VERSION, "tree": node, "metadata": meta,
                "sha256": _checksum(node, meta, arrays)}
    text = json.dumps(manifest, ensure_ascii=True, allow_nan=False)
    members = [(_manifest.MANIFEST_KEY, _archive.manifest_array(text))] + arrays
    try:
        _archive.atomic_write(path, lambda f: _archive.write_npz(f, members))
    except UnicodeEncodeError as e:
        raise CheckpointError(f"fnlearn.checkpoint.save: a path of the tree cannot be written as a "
                              f"file name ({e}). Use printable dict keys.") from None


def load(path: PathLike, *, like: PyTree = None) -> PyTree:
    """Load the tree saved at ``path``, checking its checksum (and, if given, the template ``like``).

    Args:
        path: a file written by :func:`save`.
        like: an optional template tree (e.g. freshly initialised params). When given, the loaded
            tree must have exactly its paths, container kinds, leaf kinds, shapes and dtypes; every
            difference is named in one error. NamedTuples in ``like`` are restored.

    Returns:
        The saved tree, leaf for leaf: arrays with their dtype and shape (writable, C-ordered),
        NumPy scalars, and Python scalars of their saved type.

    Raises:
        CheckpointError: the file is not a checkpoint (a PNG, a plain or pickled npz, a zip bomb),
            is truncated or corrupted (bad checksum, malformed manifest), or does not match ``like``.
        FileNotFoundError: ``path`` does not exist.
    """
    tree, _ = _read(path)
    if like is not None:
        problems = _template.compare(like, tree)
        if problems:
            raise CheckpointError(
                f"fnlearn.checkpoint.load('{os.fspath(path)}'): the checkpoint does not match the "
                f"template `like` ({len(problems)} problem{'s' if len(problems) > 1 else ''}):\n  "
                + "\n  ".join(problems) + "\nLoad without like= to inspect it, or build the template "
                "from the same model and optimizer that wrote the checkpoint.")
        tree = _template.adopt(like, tree)
    return tree


def load_metadata(path: PathLike) -> dict[str, Any] | None:
    """The ``metadata`` saved with the checkpoint at ``path`` (the whole file is verified first).

    Raises:
        CheckpointError: as :func:`load`.
    """
    return _read(path)[1]


def _check_metadata(metadata: Any) -> Any:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise CheckpointError(f"fnlearn.checkpoint.save: metadata must be a dict or None, got "
                              f"{type(metadata).__name__}.")
    try:
        return json.loads(json.dumps(metadata, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"fnlearn.checkpoint.save: metadata must be JSON-serialisable (str, "
                              f"finite numbers, bool, None, lists and dicts with str keys): {e}.") from None


def _checksum(node: Any, metadata: Any, arrays: list[tuple[str, np.ndarray]]) -> str:
    h = hashlib.sha256()

    def put(data: bytes) -> None:
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)

    put(json.dumps({"tree": node, "metadata": metadata}, sort_keys=True, ensure_ascii=True).encode())
    for key, arr in arrays:
        put(key.encode("utf-8", "surrogatepass"))
        put(arr.dtype.str.encode())
        put(repr(tuple(arr.shape)).encode())
        put(arr.tobytes(order="C"))
    return h.hexdigest()


def _read(path: PathLike) -> tuple[PyTree, Any]:
    path = os.fspath(path)
    with open(path, "rb"):  # FileNotFoundError and friends surface unchanged
        pass
    try:
        with _archive.SafeNpz(path) as npz:
            return _read_checked(npz)
    except CheckpointError:
        raise
    except _READ_ERRORS as e:
        raise CheckpointError(f"fnlearn.checkpoint.load('{path}'): the file is not a readable "
                              f"checkpoint ({type(e).__name__}: {e}); it is truncated, corrupted or "
                              "foreign.") from e


def _read_checked(npz: _archive.SafeNpz) -> tuple[PyTree, Any]:
    where = f"fnlearn.checkpoint.load('{npz.path}')"
    manifest = _parse_manifest(npz.read_manifest(_manifest.MANIFEST_KEY), where)
    nodes = _manifest.array_nodes(manifest["tree"])
    listed = [n.get("key") for n in nodes]
    present = npz.keys() - {_manifest.MANIFEST_KEY}
    if len(set(listed)) != len(listed) or set(listed) != present:
        missing = sorted(set(map(str, listed)) - present)[:5]
        extra = sorted(present - set(map(str, listed)))[:5]
        raise CheckpointError(f"{where}: the archive's members do not match its manifest (missing "
                              f"{missing}, unlisted {extra}, or listed twice); the file is corrupted.")
    arrays: list[tuple[str, np.ndarray]] = []

    def read(key: str, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        arr = npz.read(key, dtype, shape)
        arrays.append((key, arr))
        return arr

    tree = _manifest.decode(manifest["tree"], read)
    if _checksum(manifest["tree"], manifest["metadata"], arrays) != manifest["sha256"]:
        raise CheckpointError(f"{where}: the checksum does not match the contents; the file is "
                              "corrupted. Restore it from a backup or an earlier checkpoint.")
    return tree, manifest["metadata"]


def _parse_manifest(raw: bytes, where: str) -> dict[str, Any]:
    def reject(constant: str) -> None:
        raise ValueError(f"non-standard JSON constant {constant}")

    try:
        manifest = json.loads(raw.decode("utf-8"), parse_constant=reject)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise CheckpointError(f"{where}: the manifest is not valid JSON ({e}); the file is corrupted "
                              "or foreign.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{where}: the manifest is not an fnlearn checkpoint manifest (no "
                              f"\"format\": \"{FORMAT}\").")
    version = manifest.get("version")
    if type(version) is not int or version != VERSION:
        raise CheckpointError(f"{where}: the checkpoint has format version {version!r}, but this "
                              f"fnlearn reads version {VERSION} only. Load it with the fnlearn "
                              "version that wrote it.")
    sha = manifest.get("sha256")
    if not isinstance(sha, str) or len(sha) != 64 or "tree" not in manifest or "metadata" not in manifest:
        raise CheckpointError(f"{where}: the manifest lacks its tree, metadata or sha256 entry.")
    return manifest

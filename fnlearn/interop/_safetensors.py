"""safetensors files: a params tree under its paths, its nesting and a checksum in the metadata.

The safetensors format checks its header and sizes but not the tensor bytes, so a flipped data byte
loads silently. :func:`save_safetensors` therefore stores the SHA-256 of every tensor's name, dtype,
shape and bytes under ``"fnlearn.sha256"``, and :func:`load_safetensors` verifies it. A file without
that entry (written by another library, or by fnlearn before the checksum) loads unverified, unless
``require_checksum=True``.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Mapping

import numpy as np

from .._types import Params
from ..checkpoint import CheckpointError
from ..checkpoint import _archive

__all__ = ["save_safetensors", "load_safetensors"]

STRUCTURE_KEY = "fnlearn.structure"
CHECKSUM_KEY = "fnlearn.sha256"
_MAX_HEADER = 100 * 2**20


def _safetensors_numpy() -> Any:
    try:
        import safetensors.numpy
    except ImportError:
        raise ImportError("fnlearn.interop needs the optional package safetensors for .safetensors "
                          "files. Install it with: pip install 'fnlearn[interop]' (or pip install "
                          "safetensors).") from None
    return safetensors.numpy


def _flatten_dicts(fn: str, params: Params, path: str = "") -> tuple[Any, dict[str, np.ndarray]]:
    """The skeleton (dicts with ``None`` for leaves) and the ``path -> array`` table of ``params``."""
    if isinstance(params, dict):
        skeleton, flat = {}, {}
        for k, v in params.items():
            if not isinstance(k, str) or "/" in k or not k:
                raise ValueError(f"{fn}: every key must be a non-empty str without '/', got {k!r} "
                                 f"under '{path or '<root>'}'. Rename it.")
            skeleton[k], sub = _flatten_dicts(fn, v, f"{path}/{k}" if path else k)
            flat.update(sub)
        return skeleton, flat
    if not isinstance(params, np.ndarray) or not path:
        raise TypeError(f"{fn}: params must be nested dicts of NumPy arrays; '{path or '<root>'}' is "
                        f"a {type(params).__name__}. Convert it with np.asarray, or save trees with "
                        "lists, tuples and scalars with fnlearn.checkpoint.save.")
    return None, {path: params}


def save_safetensors(path: str | os.PathLike[str], params: Params, *,
                     metadata: Mapping[str, str] | None = None) -> None:
    """Write ``params`` (nested dicts of arrays) to a ``.safetensors`` file, atomically.

    Args:
        path: the file to write.
        params: nested dicts with str keys (no ``/``) and NumPy array leaves of a dtype safetensors
            stores (bool, (u)int8-64, float16/32/64).
        metadata: optional extra ``str -> str`` entries for the file header.

    Raises:
        TypeError, ValueError: a leaf that is not an array, or a key that cannot be a path.
        CheckpointError: safetensors refused an array (e.g. an unsupported dtype).
        ImportError: safetensors is not installed.
    """
    skeleton, flat = _flatten_dicts("save_safetensors", params)
    flat = {k: v if v.flags.c_contiguous else v.copy(order="C") for k, v in flat.items()}
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta[STRUCTURE_KEY] = json.dumps(skeleton)
    meta[CHECKSUM_KEY] = _checksum(flat)
    st = _safetensors_numpy()
    try:
        data = st.save(flat, metadata=meta)
    except Exception as e:  # safetensors raises its own error types, not ValueError
        raise CheckpointError(f"save_safetensors: safetensors could not store the params ({e}). It "
                              "stores bool, integer and float16/32/64 arrays.") from None
    _archive.atomic_write(path, lambda f: f.write(data), who="save_safetensors")


def _checksum(flat: Mapping[str, np.ndarray]) -> str:
    """The SHA-256 of every tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(flat):
        arr = flat[name]
        h.update(f"{name}\0{arr.dtype.str}\0{arr.shape}\0".encode())
        if not arr.dtype.hasobject:  # object arrays: safetensors refuses them just after
            h.update(np.ascontiguousarray(arr).reshape(-1).view(np.uint8).data)
    return h.hexdigest()


def load_safetensors(path: str | os.PathLike[str], *, require_checksum: bool = False) -> Params:
    """Read a ``.safetensors`` file: the nested params saved by :func:`save_safetensors`, or, for a
    file written elsewhere, a flat dict ``{tensor name: array}``.

    Args:
        path: the file to read.
        require_checksum: refuse a file without fnlearn's checksum entry. By default such a file (one
            written by another library) loads unverified: safetensors checks only its header and
            sizes, so damaged tensor bytes would go unnoticed.

    Raises:
        CheckpointError: the file is not a valid safetensors file, its checksum does not match its
            tensors (a damaged file), or its structure entry disagrees with its tensors.
        ImportError: safetensors is not installed.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        head = f.read(8)
        size = os.fstat(f.fileno()).st_size
        declared = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 0 < declared <= min(size - 8, _MAX_HEADER):
            raise CheckpointError(f"load_safetensors('{path}'): the file is not a safetensors file "
                                  f"(its 8-byte header length {declared} does not fit the file's "
                                  f"{size} bytes).")
        raw = head + f.read()
    st = _safetensors_numpy()
    try:
        flat = st.load(raw)
        header = json.loads(raw[8:8 + declared])
    except Exception as e:  # SafetensorError, or a numpy error for a dtype it cannot represent
        raise CheckpointError(f"load_safetensors('{path}'): the file is not a readable safetensors "
                              f"file ({type(e).__name__}: {e}).") from None
    meta = header.get("__metadata__") or {}
    _verify(path, meta.get(CHECKSUM_KEY), flat, require_checksum)
    structure = meta.get(STRUCTURE_KEY)
    return flat if structure is None else _rebuild(path, structure, flat)


def _verify(path: str, expected: Any, flat: Mapping[str, np.ndarray], required: bool) -> None:
    where = f"load_safetensors('{path}')"
    if expected is None:
        if required:
            raise CheckpointError(f"{where}: the file has no '{CHECKSUM_KEY}' entry, so its tensors "
                                  "cannot be verified (it was not written by fnlearn's "
                                  "save_safetensors). Pass require_checksum=False to load it unverified.")
        return
    actual = _checksum(flat)
    if actual != expected:
        raise CheckpointError(f"{where}: the tensors do not match the file's checksum (sha256 "
                              f"{actual}, recorded {expected}); the file is corrupted. Restore it "
                              "from a good copy.")


def _rebuild(path: str, structure: str, flat: dict[str, np.ndarray]) -> Params:
    where = f"load_safetensors('{path}')"
    try:
        skeleton = json.loads(structure)
    except (ValueError, RecursionError):
        skeleton = None
    if not isinstance(skeleton, dict):
        raise CheckpointError(f"{where}: the '{STRUCTURE_KEY}' metadata entry is not a JSON object; "
                              "the file is corrupted.")
    used: list[str] = []

    def build(node: Any, prefix: str) -> Any:
        if node is None and prefix in flat:
            used.append(prefix)
            return flat[prefix]
        if isinstance(node, dict):
            return {k: build(v, f"{prefix}/{k}" if prefix else k) for k, v in node.items()}
        raise CheckpointError(f"{where}: the '{STRUCTURE_KEY}' entry does not match the tensors at "
                              f"'{prefix}'; the file is corrupted.")

    params = build(skeleton, "")
    if len(used) != len(flat):
        raise CheckpointError(f"{where}: tensors {sorted(set(flat) - set(used))} are not in the "
                              f"'{STRUCTURE_KEY}' entry; the file is corrupted.")
    return params

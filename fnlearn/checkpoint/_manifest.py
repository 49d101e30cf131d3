"""The JSON manifest of a checkpoint: the tree's structure, leaf kinds, dtypes and shapes.

A tree is encoded node by node. Containers and Python scalars live in the manifest itself; arrays and
NumPy scalars are stored as ``.npy`` members of the archive under their path and only described here:

``{"t": "dict", "k": [key, ...], "c": [child, ...]}``  (a key is ``["s", "name"]`` or ``["i", "12"]``)
``{"t": "list", "c": [...]}`` / ``{"t": "tuple", "c": [...]}`` / ``{"t": "none"}``
``{"t": "array" | "npscalar", "key": member, "dtype": "<f4", "shape": [2, 3]}``
``{"t": "int", "v": "123"}`` (decimal string: any size), ``{"t": "float", "v": "3ff0000000000000"}``
(the IEEE-754 bits, so NaN, inf and -0.0 come back exactly), ``{"t": "bool", "v": true}``,
``{"t": "str", "v": "PCG64"}``.

A NamedTuple is saved as a tuple; ``load(path, like=template)`` gives it back its type.
"""

from __future__ import annotations

import re
import struct
from typing import Any, Callable

import numpy as np

from ._errors import CheckpointError

MANIFEST_KEY = "__manifest__"
ROOT_KEY = "__root__"
MAX_DEPTH = 256
MAX_NDIM = 64
_DTYPE = re.compile(r"^[<>|=][biufcUSmM][0-9]{1,9}(\[[0-9a-zA-Z]{1,4}\])?$")


def _join(path: str, key: Any) -> str:
    return f"{path}/{key}" if path else str(key)


def encode(tree: Any) -> tuple[dict[str, Any], list[tuple[str, np.ndarray]]]:
    """The manifest node for ``tree`` and its ``(member key, array)`` pairs, in traversal order."""
    arrays: list[tuple[str, np.ndarray]] = []
    node = _encode("", tree, arrays, 0)
    keys = [k for k, _ in arrays]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise CheckpointError(f"fnlearn.checkpoint.save: two leaves share the path '{dup}' (a dict key "
                              "contains '/', or a NUL where another has '\\x00'). Rename the key so that "
                              "every path is unique.")
    return node, arrays


def _encode(path: str, x: Any, arrays: list[tuple[str, np.ndarray]], depth: int) -> dict[str, Any]:
    if depth > MAX_DEPTH:
        raise CheckpointError(f"fnlearn.checkpoint.save: the tree is nested deeper than {MAX_DEPTH} "
                              f"levels at '{path}'. Flatten the structure.")
    if x is None:
        return {"t": "none"}
    if isinstance(x, dict):
        keys = [_encode_key(path, k) for k in x]
        return {"t": "dict", "k": keys,
                "c": [_encode(_join(path, k), v, arrays, depth + 1) for k, v in x.items()]}
    if isinstance(x, (list, tuple)):
        kind = "list" if isinstance(x, list) else "tuple"
        return {"t": kind, "c": [_encode(_join(path, i), v, arrays, depth + 1) for i, v in enumerate(x)]}
    return _encode_leaf(path, x, arrays)


def _encode_key(path: str, k: Any) -> list[str]:
    if isinstance(k, str):
        return ["s", k]
    if isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_)):
        return ["i", str(int(k))]
    raise CheckpointError(f"fnlearn.checkpoint.save: dict keys must be str or int, got "
                          f"{type(k).__name__} {k!r} under '{path or '<root>'}'. Use string keys.")


def _encode_leaf(path: str, x: Any, arrays: list[tuple[str, np.ndarray]]) -> dict[str, Any]:
    if isinstance(x, (np.ndarray, np.generic)):
        kind = "array" if isinstance(x, np.ndarray) else "npscalar"
        arr = np.asarray(x)
        arr = arr if arr.flags.c_contiguous else arr.copy(order="C")
        check_dtype(arr.dtype, f"fnlearn.checkpoint.save: the leaf at '{path or '<root>'}'")
        # zip member names end at a NUL byte (Python's zipfile cuts them there), so a key holding one
        # is stored under an escaped member name; the manifest maps the leaf to it
        key = path.replace("\x00", "\\x00") if path else ROOT_KEY
        if key == MANIFEST_KEY:
            raise CheckpointError(f"fnlearn.checkpoint.save: the path '{MANIFEST_KEY}' is reserved for "
                                  "the manifest. Rename that key.")
        arrays.append((key, arr))
        return {"t": kind, "key": key, "dtype": arr.dtype.str, "shape": list(arr.shape)}
    if isinstance(x, bool):
        return {"t": "bool", "v": x}
    if isinstance(x, int):
        return {"t": "int", "v": str(int(x))}
    if isinstance(x, float):
        return {"t": "float", "v": struct.pack(">d", float(x)).hex()}
    if isinstance(x, str):
        return {"t": "str", "v": str(x)}
    raise CheckpointError(
        f"fnlearn.checkpoint.save: cannot store the leaf at '{path or '<root>'}' of type "
        f"{type(x).__name__}. Leaves must be NumPy arrays, NumPy scalars, or Python bool, int, float "
        "or str; convert it (e.g. np.asarray) or keep it out of the tree.")


def check_dtype(dtype: np.dtype, where: str) -> None:
    """A CheckpointError for dtypes that cannot be stored without pickle (object, structured, void)."""
    if dtype.hasobject:
        raise CheckpointError(f"{where} has dtype object, which can only be stored with pickle, and "
                              "checkpoints never pickle. Convert it to a numeric array.")
    if not _DTYPE.match(dtype.str) or dtype.itemsize == 0:
        raise CheckpointError(f"{where} has dtype {dtype} ({dtype.str}); checkpoints store bool, "
                              "integer, float, complex, str, bytes and datetime arrays only.")


def parse_dtype(s: Any, where: str) -> np.dtype:
    """The dtype described by the manifest string ``s``; a CheckpointError for anything else."""
    if not isinstance(s, str) or not _DTYPE.match(s):
        raise CheckpointError(f"{where}: the manifest names the dtype {s!r}, which is not a dtype "
                              "that fnlearn.checkpoint.save writes.")
    try:
        dtype = np.dtype(s)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: the manifest dtype {s!r} is invalid ({e}).") from None
    check_dtype(dtype, where)
    return dtype


def parse_shape(s: Any, where: str) -> tuple[int, ...]:
    """The shape described by the manifest list ``s``; a CheckpointError unless it is valid."""
    if (not isinstance(s, list) or len(s) > MAX_NDIM
            or not all(type(n) is int and 0 <= n < 2**62 for n in s)):
        raise CheckpointError(f"{where}: the manifest shape {s!r} is not a list of at most {MAX_NDIM} "
                              "non-negative integers.")
    return tuple(s)


def decode(node: Any, read: Callable[[str, np.dtype, tuple[int, ...]], np.ndarray],
           path: str = "", depth: int = 0) -> Any:
    """Rebuild the tree from a manifest node; ``read(key, dtype, shape)`` gives each stored array."""
    where = f"fnlearn.checkpoint.load: manifest node at '{path or '<root>'}'"
    if depth > MAX_DEPTH or not isinstance(node, dict) or not isinstance(node.get("t"), str):
        raise CheckpointError(f"{where} is malformed (expected an object with a type tag).")
    t = node["t"]
    if t == "none":
        return None
    if t in ("list", "tuple", "dict"):
        children = node.get("c")
        if not isinstance(children, list):
            raise CheckpointError(f"{where} has no list of children.")
        keys = _decode_keys(node, len(children), where) if t == "dict" else list(range(len(children)))
        values = [decode(c, read, _join(path, k), depth + 1) for k, c in zip(keys, children)]
        if t == "dict":
            return dict(zip(keys, values))
        return values if t == "list" else tuple(values)
    return _decode_leaf(t, node, read, where)


def _decode_keys(node: dict[str, Any], n: int, where: str) -> list[Any]:
    keys = node.get("k")
    ok = isinstance(keys, list) and len(keys) == n and all(
        isinstance(k, list) and len(k) == 2 and k[0] in ("s", "i") and isinstance(k[1], str)
        for k in keys)
    if not ok:
        raise CheckpointError(f"{where} has malformed dict keys.")
    out = [k[1] if k[0] == "s" else _to_int(k[1], where) for k in keys]
    if len(set(out)) != len(out):
        raise CheckpointError(f"{where} has duplicate dict keys.")
    return out


def _to_int(s: str, where: str) -> int:
    if not re.fullmatch(r"-?[0-9]{1,4000}", s):
        raise CheckpointError(f"{where} holds the integer {s[:40]!r}, which is not a decimal number.")
    return int(s)


def _decode_leaf(t: str, node: dict[str, Any], read: Callable[..., np.ndarray], where: str) -> Any:
    v = node.get("v")
    if t == "bool" and isinstance(v, bool):
        return v
    if t == "int" and isinstance(v, str):
        return _to_int(v, where)
    if t == "float" and isinstance(v, str) and re.fullmatch(r"[0-9a-f]{16}", v):
        return struct.unpack(">d", bytes.fromhex(v))[0]
    if t == "str" and isinstance(v, str):
        return v
    if t in ("array", "npscalar") and isinstance(node.get("key"), str):
        dtype = parse_dtype(node.get("dtype"), where)
        shape = parse_shape(node.get("shape"), where)
        if t == "npscalar" and shape != ():
            raise CheckpointError(f"{where} is a NumPy scalar with the non-empty shape {shape}.")
        arr = read(node["key"], dtype, shape)
        return arr[()] if t == "npscalar" else arr
    raise CheckpointError(f"{where} has the unknown or malformed leaf type {t!r}.")


def array_nodes(node: Any, depth: int = 0) -> list[dict[str, Any]]:
    """Every array/npscalar node of a manifest tree (structure errors are left to :func:`decode`)."""
    if depth > MAX_DEPTH or not isinstance(node, dict):
        return []
    if node.get("t") in ("array", "npscalar"):
        return [node]
    children = node.get("c")
    if not isinstance(children, list):
        return []
    return [a for c in children for a in array_nodes(c, depth + 1)]

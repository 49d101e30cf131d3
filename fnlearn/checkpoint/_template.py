"""Validation of a loaded tree against a template (``load(path, like=template)``).

Every difference is collected, not just the first: missing and extra paths, container kinds, leaf
kinds, shapes and dtypes. A path is written as in :mod:`fnlearn.tree` (``"0/w"``; ``<root>`` for the
root).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _join(path: str, key: Any) -> str:
    return f"{path}/{key}" if path else str(key)


def _name(path: str) -> str:
    return f"'{path}'" if path else "<root>"


def _kind(x: Any) -> str:
    if x is None:
        return "None"
    if isinstance(x, dict):
        return "dict"
    if isinstance(x, list):
        return "list"
    if isinstance(x, tuple):
        return "tuple"
    return "leaf"


def _describe_leaf(x: Any) -> str:
    if isinstance(x, np.ndarray):
        return f"array {x.dtype}{list(x.shape)}"
    if isinstance(x, np.generic):
        return f"NumPy scalar {x.dtype}"
    return f"Python {type(x).__name__}"


def compare(like: Any, got: Any, path: str = "") -> list[str]:
    """Every difference between the template ``like`` and the loaded tree ``got``, one line each."""
    kl, kg = _kind(like), _kind(got)
    if kl != kg:
        return [f"{_name(path)}: expected a {kl}, the checkpoint has a {kg}"]
    if kl == "dict":
        return _compare_keyed(like, got, list(like), list(got), path)
    if kl in ("list", "tuple"):
        return _compare_keyed(like, got, range(len(like)), range(len(got)), path)
    if kl == "leaf":
        return _compare_leaf(like, got, path)
    return []


def _compare_keyed(like: Any, got: Any, like_keys: Any, got_keys: Any, path: str) -> list[str]:
    got_set, like_set = set(got_keys), set(like_keys)
    problems = [f"missing {_name(_join(path, k))}: the template has it, the checkpoint does not"
                for k in like_keys if k not in got_set]
    problems += [f"extra {_name(_join(path, k))}: the checkpoint has it, the template does not"
                 for k in got_keys if k not in like_set]
    for k in like_keys:
        if k in got_set:
            problems += compare(like[k], got[k], _join(path, k))
    return problems


def _leaf_kind(x: Any) -> str:
    if isinstance(x, np.ndarray):
        return "array"
    return "numpy scalar" if isinstance(x, np.generic) else type(x).__name__


def _compare_leaf(like: Any, got: Any, path: str) -> list[str]:
    if _leaf_kind(like) != _leaf_kind(got):
        return [f"kind {_name(path)}: expected {_describe_leaf(like)}, got {_describe_leaf(got)}"]
    if not isinstance(like, (np.ndarray, np.generic)):
        return []
    problems = []
    if like.shape != got.shape:
        problems.append(f"shape {_name(path)}: expected {like.shape}, got {got.shape}")
    if like.dtype != got.dtype:
        problems.append(f"dtype {_name(path)}: expected {like.dtype}, got {got.dtype}")
    return problems


def adopt(like: Any, got: Any) -> Any:
    """``got`` with the NamedTuple types of ``like`` restored (``got`` already matches ``like``)."""
    if isinstance(like, dict):
        return {k: adopt(like[k], v) for k, v in got.items()}
    if isinstance(like, (list, tuple)):
        children = [adopt(a, b) for a, b in zip(like, got)]
        if hasattr(like, "_fields"):
            return type(like)(*children)
        return children if isinstance(got, list) else tuple(children)
    return got

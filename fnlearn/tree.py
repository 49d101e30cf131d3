"""Utilities for pytrees: nested dicts, lists and tuples of arrays, with ``None`` as an empty node.

A *leaf* is anything that is not a dict, list, tuple or ``None`` (usually a NumPy array or a scalar).
A leaf's *path* is its keys and indices joined by ``/``, e.g. ``"0/w"``; paths are how parameters
appear in error messages and checkpoints. Dicts are traversed in insertion order; two dicts have the
same structure when they have the same keys (in any order).

Example:
    >>> import numpy as np
    >>> from fnlearn import tree
    >>> params = {"0": {"w": np.ones((2, 3)), "b": np.zeros(3)}, "1": {}}
    >>> [p for p, _ in tree.tree_flatten_with_path(params)[0]]
    ['0/w', '0/b']
    >>> tree.tree_map(lambda a, b: a + b, params, params)["0"]["w"][0]
    array([2., 2., 2.])
    >>> float(tree.tree_global_norm(params))
    2.449489742783178
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, NamedTuple

import numpy as np

from ._types import PyTree

__all__ = [
    "TreeMismatchError", "TreeDef", "tree_map", "tree_map_with_path", "tree_leaves", "tree_flatten", "tree_flatten_with_path",
    "tree_unflatten", "tree_structure", "tree_zeros_like", "tree_add", "tree_sub", "tree_scale",
    "tree_vdot", "tree_global_norm", "tree_paths", "tree_size", "tree_assert_same_structure",
]


class TreeMismatchError(ValueError):
    """Two trees that must have the same structure differ; the message names the first path."""


def _is_node(x: Any) -> bool:
    return x is None or type(x) in (dict, list, tuple) or isinstance(x, (dict, list, tuple))


def _describe(node: Any) -> str:
    if node is None:
        return "None"
    if isinstance(node, dict):
        return f"dict with keys {sorted(map(str, node))}"
    if isinstance(node, (list, tuple)):
        return f"{type(node).__name__} of length {len(node)}"
    shape = getattr(node, "shape", None)
    return f"leaf {type(node).__name__}" + (f" of shape {shape}" if shape is not None else "")


def _join(path: str, key: Any) -> str:
    return f"{path}/{key}" if path else str(key)


def _mismatch(path: str, expected: Any, got: Any, what: str = "") -> TreeMismatchError:
    where = f"at path '{path}'" if path else "at the root"
    return TreeMismatchError(
        f"tree structures differ {where}{what}: expected {_describe(expected)}, got {_describe(got)}. "
        "Trees passed together (params and grads, params and a template) must have the same "
        "nesting, keys and lengths.")


class _Mismatch(Exception):
    pass


def _map(f: Callable[..., Any], node: Any, rest: tuple[Any, ...]) -> Any:
    # The hot path (optimizer updates): no path strings; on a mismatch the caller re-walks with paths.
    if type(node) is dict:
        for other in rest:
            if type(other) is not dict or other.keys() != node.keys():
                raise _Mismatch
        if not rest:
            return {k: _map(f, v, rest) for k, v in node.items()}
        return {k: _map(f, v, tuple(o[k] for o in rest)) for k, v in node.items()}
    if isinstance(node, (dict, list, tuple)) or node is None:
        try:
            return _map_path(lambda p, leaf, others: f(leaf, *others), "", node, rest)
        except TreeMismatchError:
            raise _Mismatch from None
    for other in rest:
        if _is_node(other):
            raise _Mismatch
    return f(node, *rest)


def _map_path(f: Callable[[str, Any, tuple[Any, ...]], Any], path: str, node: Any,
              rest: tuple[Any, ...]) -> Any:
    if isinstance(node, dict):
        for other in rest:
            if not isinstance(other, dict) or other.keys() != node.keys():
                raise _mismatch(path, node, other)
        return {k: _map_path(f, _join(path, k), v, tuple(o[k] for o in rest)) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        for other in rest:
            if not isinstance(other, (list, tuple)) or len(other) != len(node):
                raise _mismatch(path, node, other)
        children = [_map_path(f, _join(path, i), v, tuple(o[i] for o in rest)) for i, v in enumerate(node)]
        return _rebuild(node, children)
    if node is None:
        for other in rest:
            if other is not None:
                raise _mismatch(path, node, other)
        return None
    for other in rest:
        if _is_node(other):
            raise _mismatch(path, node, other)
    return f(path, node, rest)


def _rebuild(node: Any, children: list[Any]) -> Any:
    if isinstance(node, list):
        return children
    if hasattr(node, "_fields"):  # a NamedTuple
        return type(node)(*children)
    return tuple(children)


def tree_map(f: Callable[..., Any], tree: PyTree, *rest: PyTree) -> PyTree:
    """Apply ``f`` to every leaf of ``tree`` (and the matching leaves of ``rest``), keeping the structure.

    Raises:
        TreeMismatchError: when a tree in ``rest`` differs in structure; names the first path.
    """
    try:
        return _map(f, tree, rest)
    except _Mismatch:
        tree_assert_same_structure(tree, *rest)
        raise  # pragma: no cover  (the line above always raises)


def tree_map_with_path(f: Callable[..., Any], tree: PyTree, *rest: PyTree) -> PyTree:
    """Like :func:`tree_map`, but ``f(path, leaf, *others)`` also receives the leaf's path string."""
    def visit(path: str, node: Any, others: tuple[Any, ...]) -> Any:
        return f(path, node, *others)
    return _map_path(visit, "", tree, rest)


def _iter(path: str, node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _iter(_join(path, k), v)
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _iter(_join(path, i), v)
    elif node is not None:
        yield path, node


def tree_leaves(tree: PyTree) -> list[Any]:
    """The leaves of ``tree`` in traversal order (``None`` nodes hold no leaf)."""
    return [leaf for _, leaf in _iter("", tree)]


def tree_paths(tree: PyTree) -> list[str]:
    """The path string of every leaf, in traversal order."""
    return [p for p, _ in _iter("", tree)]


class TreeDef(NamedTuple):
    """The structure of a tree without its leaves; built by :func:`tree_flatten`."""

    kind: str          # "dict", "list", "tuple", "namedtuple", "none" or "leaf"
    meta: Any          # dict keys, or the NamedTuple type
    children: tuple["TreeDef", ...]

    @property
    def num_leaves(self) -> int:
        if self.kind == "leaf":
            return 1
        return sum(c.num_leaves for c in self.children)


_LEAF = TreeDef("leaf", None, ())


def _structure(node: Any) -> TreeDef:
    if isinstance(node, dict):
        return TreeDef("dict", tuple(node.keys()), tuple(_structure(v) for v in node.values()))
    if isinstance(node, list):
        return TreeDef("list", None, tuple(_structure(v) for v in node))
    if isinstance(node, tuple):
        kind, meta = ("namedtuple", type(node)) if hasattr(node, "_fields") else ("tuple", None)
        return TreeDef(kind, meta, tuple(_structure(v) for v in node))
    if node is None:
        return TreeDef("none", None, ())
    return _LEAF


def tree_structure(tree: PyTree) -> TreeDef:
    """The :class:`TreeDef` of ``tree``."""
    return _structure(tree)


def tree_flatten(tree: PyTree) -> tuple[list[Any], TreeDef]:
    """Split ``tree`` into its list of leaves and its structure; :func:`tree_unflatten` inverts it."""
    return tree_leaves(tree), _structure(tree)


def tree_flatten_with_path(tree: PyTree) -> tuple[list[tuple[str, Any]], TreeDef]:
    """Like :func:`tree_flatten`, with each leaf paired with its path string (``"0/w"``)."""
    return list(_iter("", tree)), _structure(tree)


def tree_unflatten(treedef: TreeDef, leaves: list[Any]) -> PyTree:
    """Rebuild a tree of structure ``treedef`` from ``leaves`` (in traversal order)."""
    leaves = list(leaves)
    if len(leaves) != treedef.num_leaves:
        raise TreeMismatchError(f"tree_unflatten: the structure holds {treedef.num_leaves} leaves, "
                                f"got {len(leaves)}.")
    it = iter(leaves)

    def build(td: TreeDef) -> Any:
        if td.kind == "leaf":
            return next(it)
        if td.kind == "none":
            return None
        children = [build(c) for c in td.children]
        if td.kind == "dict":
            return dict(zip(td.meta, children))
        if td.kind == "list":
            return children
        if td.kind == "namedtuple":
            return td.meta(*children)
        return tuple(children)

    return build(treedef)


def tree_assert_same_structure(tree: PyTree, *others: PyTree) -> None:
    """Raise :class:`TreeMismatchError` naming the first path where any of ``others`` differs."""
    _map_path(lambda *a: None, "", tree, others)


def tree_zeros_like(tree: PyTree) -> PyTree:
    """A tree of zero arrays with the shapes and dtypes of ``tree``'s leaves."""
    return tree_map(np.zeros_like, tree)


def tree_add(a: PyTree, b: PyTree) -> PyTree:
    """Leafwise ``a + b``."""
    return tree_map(np.add, a, b)


def tree_sub(a: PyTree, b: PyTree) -> PyTree:
    """Leafwise ``a - b``."""
    return tree_map(np.subtract, a, b)


def tree_scale(scalar: float, tree: PyTree) -> PyTree:
    """Leafwise ``scalar * leaf``, keeping each leaf's dtype."""
    return tree_map(lambda x: np.multiply(x, np.asarray(scalar, dtype=np.result_type(x)), dtype=np.result_type(x)), tree)


def tree_vdot(a: PyTree, b: PyTree) -> float:
    """The sum over leaves of ``vdot(a_leaf, b_leaf)``, accumulated in float64."""
    parts = tree_leaves(tree_map(lambda x, y: np.vdot(np.asarray(x, np.float64), np.asarray(y, np.float64)), a, b))
    return float(sum(parts))


def tree_global_norm(tree: PyTree) -> float:
    """The L2 norm of all leaves together (as in ``optax.global_norm``), accumulated in float64."""
    total = 0.0
    for leaf in tree_leaves(tree):
        v = np.asarray(leaf, dtype=np.float64).ravel()
        total += float(np.dot(v, v))
    return float(np.sqrt(total))


def tree_size(tree: PyTree) -> int:
    """The total number of elements over all leaves."""
    return int(sum(np.size(leaf) for leaf in tree_leaves(tree)))

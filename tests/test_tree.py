"""fnlearn.tree: structure handling, paths, and the arithmetic helpers."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fnlearn import tree

leaves = st.builds(lambda n: np.arange(n, dtype=np.float64), st.integers(0, 4)) | st.integers(-5, 5)
trees = st.recursive(
    leaves | st.none(),
    lambda children: (st.lists(children, max_size=3)
                      | st.lists(children, max_size=3).map(tuple)
                      | st.dictionaries(st.text("abcxyz", min_size=1, max_size=3), children, max_size=3)),
    max_leaves=10)


@given(trees)
def test_flatten_unflatten_round_trip(t):
    leaves_, treedef = tree.tree_flatten(t)
    rebuilt = tree.tree_unflatten(treedef, leaves_)
    assert tree.tree_structure(rebuilt) == treedef
    for a, b in zip(tree.tree_leaves(rebuilt), leaves_):
        assert a is b


@given(trees)
def test_paths_are_unique_and_follow_the_leaves(t):
    pairs, _ = tree.tree_flatten_with_path(t)
    assert [p for p, _ in pairs] == tree.tree_paths(t)
    assert len(set(tree.tree_paths(t))) == len(pairs)
    assert [v for _, v in pairs] == tree.tree_leaves(t)


@given(trees)
def test_tree_map_keeps_structure(t):
    assert tree.tree_structure(tree.tree_map(lambda x: x, t)) == tree.tree_structure(t)


def test_readable_paths():
    params = {"0": {"w": np.ones(2), "b": np.ones(1)}, "1": {}, "2": [np.ones(1), (None, np.ones(1))]}
    assert tree.tree_paths(params) == ["0/w", "0/b", "2/0", "2/1/1"]


def test_mismatch_names_the_first_differing_path():
    a = {"0": {"w": 1, "b": 2}, "1": [1, 2]}
    with pytest.raises(tree.TreeMismatchError, match=r"at path '0'.*keys \['b', 'w'\].*keys \['w'\]"):
        tree.tree_map(lambda x, y: x, a, {"0": {"w": 1}, "1": [1, 2]})
    with pytest.raises(tree.TreeMismatchError, match=r"at path '1'.*list of length 2.*length 3"):
        tree.tree_add(a, {"0": {"w": 1, "b": 2}, "1": [1, 2, 3]})
    with pytest.raises(tree.TreeMismatchError, match=r"at path '1/0'"):
        tree.tree_assert_same_structure(a, {"0": {"w": 1, "b": 2}, "1": [[1], 2]})


def test_arithmetic_helpers_keep_dtype_and_compute_in_float64():
    a = {"w": np.full(3, 2.0, np.float32), "b": [np.ones(2, np.float32)]}
    assert tree.tree_scale(0.5, a)["w"].dtype == np.float32
    np.testing.assert_array_equal(tree.tree_scale(0.5, a)["w"], [1, 1, 1])
    assert tree.tree_vdot(a, a) == pytest.approx(14.0)
    assert tree.tree_global_norm(a) == pytest.approx(np.sqrt(14.0))
    assert tree.tree_size(a) == 5
    z = tree.tree_zeros_like(a)
    assert z["b"][0].dtype == np.float32 and not z["w"].any()
    np.testing.assert_array_equal(tree.tree_sub(tree.tree_add(a, a), a)["w"], a["w"])
    assert tree.tree_map_with_path(lambda p, x: p, a) == {"w": "w", "b": ["b/0"]}

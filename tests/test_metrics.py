"""fnlearn.metrics against brute-force oracles written as plain loops."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fnlearn.metrics import accuracy, confusion_matrix


@st.composite
def label_pairs(draw, max_class=6):
    n = draw(st.integers(1, 40))
    labels = st.lists(st.integers(0, max_class), min_size=n, max_size=n)
    return np.array(draw(labels)), np.array(draw(labels))


def oracle_confusion(y_true, y_pred, k):
    c = [[0] * k for _ in range(k)]
    for t, p in zip(y_true.tolist(), y_pred.tolist()):
        c[t][p] += 1
    return np.array(c)


@given(label_pairs())
def test_accuracy_matches_a_loop(pair):
    t, p = pair
    hits = sum(1 for a, b in zip(t.tolist(), p.tolist()) if a == b)
    assert accuracy(t, p) == hits / len(t)


@given(label_pairs(), st.integers(0, 3))
def test_confusion_matrix_matches_a_loop(pair, extra):
    t, p = pair
    k = int(max(t.max(), p.max())) + 1
    np.testing.assert_array_equal(confusion_matrix(t, p), oracle_confusion(t, p, k))
    c = confusion_matrix(t, p, num_classes=k + extra)
    assert c.shape == (k + extra, k + extra) and c.dtype == np.int64 and c.sum() == len(t)
    np.testing.assert_array_equal(c, oracle_confusion(t, p, k + extra))
    assert np.trace(c) / len(t) == accuracy(t, p)


def test_orientation_is_rows_true_columns_predicted():
    # scikit-learn's documented example: confusion_matrix([2, 0, 2, 2, 0, 1], [0, 0, 2, 2, 0, 2])
    c = confusion_matrix([2, 0, 2, 2, 0, 1], [0, 0, 2, 2, 0, 2])
    np.testing.assert_array_equal(c, [[2, 0, 0], [0, 0, 1], [1, 0, 2]])


@given(st.integers(1, 30), st.integers(2, 5), st.integers(0, 2**32 - 1))
def test_scores_and_one_hot_are_reduced_by_argmax(n, k, seed):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(n, k))
    labels = rng.integers(0, k, n)
    one_hot = np.eye(k)[labels]
    predicted = [int(np.argmax(row)) for row in scores]
    assert accuracy(labels, scores) == accuracy(labels, np.array(predicted))
    assert accuracy(one_hot, scores) == accuracy(labels, np.array(predicted))
    np.testing.assert_array_equal(confusion_matrix(one_hot, scores, num_classes=k),
                                  oracle_confusion(labels, np.array(predicted), k))


def test_metrics_validate_their_arguments():
    with pytest.raises(ValueError, match="same number of examples, got 3 and 2"):
        accuracy([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="no examples"):
        accuracy([], [])
    with pytest.raises(TypeError, match="integer class labels, got dtype float64"):
        accuracy([0.0, 1.0], [0, 1])
    with pytest.raises(ValueError, match=r"shape \(n,\) or scores of shape \(n, k\)"):
        confusion_matrix(np.zeros((2, 2, 2)), [0, 1])
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\), got values from 0 to 2"):
        confusion_matrix([0, 2], [0, 1], num_classes=2)
    with pytest.raises(ValueError, match="labels must be in"):
        confusion_matrix([0, -1], [0, 1])
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        confusion_matrix([0, 1], [0, 1], num_classes=0)

import numpy as np
import pytest

from mmfc.metrics import confusion_matrix, mean_class_accuracy, most_confused_pairs, topk_accuracy


def test_topk_counts_label_among_k_largest():
    logits = np.array([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05], [0.2, 0.3, 0.5]])
    labels = np.array([2, 0, 0])
    assert topk_accuracy(logits, labels, 1) == pytest.approx(1 / 3)
    assert topk_accuracy(logits, labels, 2) == pytest.approx(2 / 3)
    assert topk_accuracy(logits, labels, 3) == pytest.approx(1.0)
    # k larger than the class count is all classes.
    assert topk_accuracy(logits, labels, 5) == pytest.approx(1.0)


def test_topk_matches_sorting_on_random_scores():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 10))
    labels = rng.integers(0, 10, 200)
    ranks = (logits > logits[np.arange(200), labels][:, None]).sum(axis=1)
    for k in (1, 3, 5):
        assert topk_accuracy(logits, labels, k) == pytest.approx(np.mean(ranks < k))


def test_mean_class_accuracy_weights_classes_equally():
    # Class 0: 4 samples all right; class 1: 1 sample wrong. Top-1 0.8, mean class 0.5.
    logits = np.array([[1, 0, 0]] * 4 + [[1, 0, 0]], dtype=float)
    labels = np.array([0, 0, 0, 0, 1])
    assert topk_accuracy(logits, labels, 1) == pytest.approx(0.8)
    # Class 2 has no samples and is left out of the mean, not counted as 0.
    assert mean_class_accuracy(logits, labels, 3) == pytest.approx(0.5)


def test_confusion_matrix_rows_are_true_classes():
    cm = confusion_matrix(np.array([0, 1, 1, 2]), np.array([0, 0, 1, 2]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(np.array([3]), np.array([0]), 3)


def test_most_confused_pairs_orders_by_count_and_skips_diagonal():
    cm = np.array([[50, 3, 0], [7, 40, 1], [0, 0, 9]])
    pairs = most_confused_pairs(cm, ["a", "b", "c"], 5)
    assert [(p.true, p.predicted, p.count) for p in pairs] == [("b", "a", 7), ("a", "b", 3), ("b", "c", 1)]
    assert pairs[0].rate == pytest.approx(7 / 48)

"""Metrics agree with definitions computed the slow, obvious way in the test."""

import itertools

import numpy as np
import pytest
import torch

from convlab.train import metrics


@pytest.fixture
def scored():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, 300)
    logits = rng.normal(size=(300, 6)) + 2.0 * np.eye(6)[labels]  # informative but imperfect
    logits[:20] = np.round(logits[:20])  # some ties
    return logits, labels


def test_cross_entropy_matches_torch_with_and_without_smoothing(scored):
    logits, labels = scored
    for eps in (0.0, 0.1):
        want = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(labels),
                                                 label_smoothing=eps)
        assert metrics.cross_entropy(logits, labels, eps) == pytest.approx(float(want), rel=1e-12)


def test_accuracy_counts_argmax_hits():
    scores = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    assert metrics.accuracy(scores, np.array([1, 0, 0, 0])) == 0.75
    assert metrics.accuracy(np.array([1, 1]), np.array([1, 0])) == 0.5


def test_top5_accuracy_matches_a_sort_per_row(scored):
    logits, labels = scored
    logits = logits - 1e-9 * np.arange(6)  # no exact ties, so the top 5 is unambiguous
    want = np.mean([labels[i] in np.argsort(-logits[i])[:5] for i in range(len(labels))])
    assert metrics.topk_accuracy(logits, labels, 5) == pytest.approx(want)
    assert metrics.topk_accuracy(logits, labels, 1) == metrics.accuracy(logits, labels)
    assert metrics.topk_accuracy(logits, labels, 6) == 1.0


def test_confusion_matrix_counts_every_pair(scored):
    logits, labels = scored
    predictions = logits.argmax(axis=1)
    cm = metrics.confusion_matrix(labels, predictions, 6)
    for t, p in itertools.product(range(6), range(6)):
        assert cm[t, p] == np.sum((labels == t) & (predictions == p))
    assert cm.sum() == len(labels)


def test_precision_recall_f1_follow_their_definitions(scored):
    logits, labels = scored
    predictions = logits.argmax(axis=1)
    confusion = metrics.confusion_matrix(labels, predictions, 6)
    precision, recall, f1, support = metrics.precision_recall_f1(confusion)
    for k in range(6):
        tp = np.sum((predictions == k) & (labels == k))
        assert precision[k] == pytest.approx(tp / np.sum(predictions == k))
        assert recall[k] == pytest.approx(tp / np.sum(labels == k))
        assert f1[k] == pytest.approx(2 * precision[k] * recall[k] / (precision[k] + recall[k]))
        assert support[k] == np.sum(labels == k)


def test_precision_of_a_never_predicted_class_is_zero_not_nan():
    precision, recall, f1, _ = metrics.precision_recall_f1(np.array([[3, 0], [2, 0]]))
    assert precision[1] == 0 and recall[1] == 0 and f1[1] == 0
    assert precision[0] == pytest.approx(0.6)


def rank_auc(scores, positive):
    """P(score of a random positive > score of a random negative) + ½ P(tie), by brute force."""
    pos, neg = scores[positive], scores[~positive]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (len(pos) * len(neg))


def test_one_vs_rest_auc_equals_the_rank_statistic(scored):
    logits, labels = scored
    probabilities = metrics.softmax(logits)
    curves = metrics.roc_curves(probabilities, labels)
    assert len(curves) == 6
    for k, curve in enumerate(curves):
        assert curve["auc"] == pytest.approx(rank_auc(probabilities[:, k], labels == k), abs=1e-12)
        assert curve["fpr"][0] == curve["tpr"][0] == 0 and curve["fpr"][-1] == curve["tpr"][-1] == 1
        assert np.all(np.diff(curve["fpr"]) >= 0) and np.all(np.diff(curve["tpr"]) >= 0)


def test_auc_with_heavy_ties_equals_the_rank_statistic():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 4, 200).astype(float)
    positive = rng.random(200) < scores / 5
    fpr, tpr, thresholds = metrics.roc_curve(scores, positive)
    assert len(thresholds) == 5  # +inf and the four distinct scores
    assert metrics.auc(fpr, tpr) == pytest.approx(rank_auc(scores, positive), abs=1e-12)


def test_perfect_and_reversed_scores_give_auc_one_and_zero():
    positive = np.array([0, 0, 1, 1], dtype=bool)
    fpr, tpr, _ = metrics.roc_curve(np.array([0.1, 0.2, 0.8, 0.9]), positive)
    assert metrics.auc(fpr, tpr) == 1.0
    fpr, tpr, _ = metrics.roc_curve(np.array([0.9, 0.8, 0.2, 0.1]), positive)
    assert metrics.auc(fpr, tpr) == 0.0


def test_classification_report_bundles_consistent_numbers(scored):
    logits, labels = scored
    report = metrics.classification_report(logits, labels, class_names="abcdef")
    assert report["accuracy"] == metrics.accuracy(logits, labels)
    assert np.trace(report["confusion_matrix"]) == round(report["accuracy"] * len(labels))
    assert [c["class"] for c in report["per_class"]] == list("abcdef")
    assert 0.5 < report["macro_auc"] <= 1
    probabilities = metrics.softmax(logits)
    for k, row in enumerate(report["per_class"]):  # AUC of the probabilities, not of the raw logits
        assert row["auc"] == pytest.approx(rank_auc(probabilities[:, k], labels == k), abs=1e-12)


def test_metrics_reject_mismatched_shapes():
    with pytest.raises(ValueError, match=r"expected labels of shape \(3,\)"):
        metrics.topk_accuracy(np.zeros((3, 4)), np.zeros(2, dtype=int))
    with pytest.raises(ValueError, match="classes must lie in 0..1"):
        metrics.confusion_matrix(np.array([0, 2]), np.array([0, 1]), 2)

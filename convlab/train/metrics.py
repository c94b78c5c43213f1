"""Classification metrics on NumPy arrays: loss, accuracy, top-k accuracy, the confusion matrix,
per-class precision / recall / F1, and one-vs-rest ROC curves with their AUC.

`scores` are (N, K) logits or probabilities, `labels` (N,) integers in 0..K-1; every function
returns NumPy values (or Python floats) and works on host arrays, so it is called on
`to_numpy(...)` of whatever the model produced.
"""

from __future__ import annotations

import numpy as np


def _check_scores(scores, labels, where):
    scores, labels = np.asarray(scores), np.asarray(labels)
    if scores.ndim != 2:
        raise ValueError(f"{where}: expected scores of shape (N, classes), got {scores.shape}")
    if labels.shape != (scores.shape[0],):
        raise ValueError(f"{where}: expected labels of shape ({scores.shape[0]},), got {labels.shape}")
    return scores, labels.astype(np.int64, copy=False)


def cross_entropy(logits, labels, label_smoothing=0.0) -> float:
    """Mean softmax cross-entropy of (N, K) logits against integer labels, in float64."""
    logits, labels = _check_scores(logits, labels, "cross_entropy")
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    nll = -logp[np.arange(len(labels)), labels]
    if label_smoothing:
        return float(((1 - label_smoothing) * nll - label_smoothing * logp.mean(axis=1)).mean())
    return float(nll.mean())


def softmax(logits) -> np.ndarray:
    """Row-wise softmax of (N, K) logits, in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def accuracy(scores, labels) -> float:
    """Fraction of samples whose highest score is their label; `scores` may also be (N,) predictions."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    predictions = scores if scores.ndim == 1 else scores.argmax(axis=1)
    if predictions.shape != labels.shape:
        raise ValueError(f"accuracy: {predictions.shape[0]} predictions for {labels.shape[0]} labels")
    return float((predictions == labels).mean()) if labels.size else float("nan")


def topk_accuracy(scores, labels, k=5) -> float:
    """Fraction of samples whose label is among their `k` highest scores (ties broken by index)."""
    scores, labels = _check_scores(scores, labels, "topk_accuracy")
    k = min(int(k), scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # (N, k), unordered
    return float((top == labels[:, None]).any(axis=1).mean()) if labels.size else float("nan")


def confusion_matrix(labels, predictions, num_classes) -> np.ndarray:
    """(K, K) int64 counts: row = true class, column = predicted class."""
    labels = np.asarray(labels, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    if labels.shape != predictions.shape:
        raise ValueError(f"confusion_matrix: {labels.shape} labels but {predictions.shape} predictions")
    bad = (labels < 0) | (labels >= num_classes) | (predictions < 0) | (predictions >= num_classes)
    if bad.any():
        raise ValueError(f"confusion_matrix: classes must lie in 0..{num_classes - 1}")
    return np.bincount(labels * num_classes + predictions, minlength=num_classes**2).reshape(num_classes,
                                                                                            num_classes)


def precision_recall_f1(confusion):
    """Per-class precision, recall, F1 and support (true count) from a confusion matrix.

    A class never predicted has precision 0; a class never present has recall 0 (not NaN).
    """
    c = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(c)
    predicted, support = c.sum(axis=0), c.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return precision, recall, f1, support.astype(np.int64)


def roc_curve(scores, positive):
    """ROC of a binary problem: `scores` (N,) (higher = more positive), `positive` (N,) booleans.

    Returns (fpr, tpr, thresholds), starting at (0, 0) with threshold +inf and ending at (1, 1);
    one point per distinct score, so tied scores make one diagonal segment.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    order = np.argsort(-scores, kind="stable")
    s, pos = scores[order], positive[order]
    last_of_group = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # end index of each distinct score
    tps = np.cumsum(pos)[last_of_group]
    fps = (last_of_group + 1) - tps
    n_pos, n_neg = max(int(pos.sum()), 0), len(pos) - int(pos.sum())
    tpr = np.r_[0.0, tps / n_pos] if n_pos else np.full(len(tps) + 1, np.nan)
    fpr = np.r_[0.0, fps / n_neg] if n_neg else np.full(len(fps) + 1, np.nan)
    return fpr, tpr, np.r_[np.inf, s[last_of_group]]


def auc(x, y) -> float:
    """Area under a curve by the trapezoid rule (for ROC: under tpr as a function of fpr)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))


def roc_curves(scores, labels):
    """One-vs-rest ROC for each class: a list of dicts {class, fpr, tpr, thresholds, auc}.

    `scores` (N, K): the class probabilities (softmax of the logits), as scikit-learn's one-vs-rest
    AUC uses; raw logits rank the samples of a class differently. A class with no positive or no
    negative sample has auc NaN.
    """
    scores, labels = _check_scores(scores, labels, "roc_curves")
    curves = []
    for k in range(scores.shape[1]):
        fpr, tpr, thresholds = roc_curve(scores[:, k], labels == k)
        curves.append({"class": k, "fpr": fpr, "tpr": tpr, "thresholds": thresholds, "auc": auc(fpr, tpr)})
    return curves


def macro_auc(scores, labels) -> float:
    """Mean one-vs-rest AUC over the classes that have positives and negatives."""
    values = [c["auc"] for c in roc_curves(scores, labels)]
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def classification_report(scores, labels, num_classes=None, class_names=None) -> dict:
    """Everything above for one evaluation of (N, K) logits: loss, accuracy, top-5, confusion matrix,
    per-class precision / recall / F1 / support / AUC (of the softmax probabilities) and macro
    averages, as JSON-ready Python values."""
    scores, labels = _check_scores(scores, labels, "classification_report")
    k = num_classes or scores.shape[1]
    predictions = scores.argmax(axis=1)
    cm = confusion_matrix(labels, predictions, k)
    precision, recall, f1, support = precision_recall_f1(cm)
    aucs = [c["auc"] for c in roc_curves(softmax(scores), labels)]
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    per_class = [
        {"class": names[i], "precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
         "support": int(support[i]), "auc": float(aucs[i])}
        for i in range(k)
    ]
    finite_aucs = [a for a in aucs if np.isfinite(a)]
    return {
        "loss": cross_entropy(scores, labels),
        "accuracy": accuracy(predictions, labels),
        "top5": topk_accuracy(scores, labels, 5),
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "macro_auc": float(np.mean(finite_aucs)) if finite_aucs else float("nan"),
        "confusion_matrix": cm.tolist(),
        "per_class": per_class,
    }

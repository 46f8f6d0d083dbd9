"""Classification metrics shared by training, fusion and the report (numpy in, numpy out).

Accuracies are fractions in [0, 1]; the report turns them into percentages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of samples whose label is among the k highest scores. logits [N, K], labels [N]."""
    logits, labels = _check(logits, labels)
    k = min(k, logits.shape[1])
    if labels.size == 0:
        return float("nan")
    # argpartition puts the k largest (in some order) in the last k columns.
    top = np.argpartition(logits, -k, axis=1)[:, -k:]  # [N, k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def log_softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64. [N, K] -> [N, K]"""
    scores = np.asarray(scores, dtype=np.float64)
    shifted = scores - scores.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def nll(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the labels under softmax(scores)."""
    logp = log_softmax(scores)
    return float(-logp[np.arange(len(labels)), labels].mean())


def mean_class_accuracy(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    """Top-1 accuracy averaged over the classes that have samples (FineGym's metric)."""
    logits, labels = _check(logits, labels)
    cm = confusion_matrix(logits.argmax(axis=1), labels, num_classes)
    per_class = per_class_recall(cm)
    present = ~np.isnan(per_class)
    return float(per_class[present].mean()) if present.any() else float("nan")


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts [K, K]: row = true class, column = predicted class."""
    pred = np.asarray(pred, dtype=np.int64).ravel()
    labels = np.asarray(labels, dtype=np.int64).ravel()
    if pred.shape != labels.shape:
        raise ValueError(f"pred has {pred.size} entries but labels has {labels.size}")
    for name, values in (("pred", pred), ("labels", labels)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} outside [0, {num_classes}): {values.min()}..{values.max()}")
    flat = np.bincount(labels * num_classes + pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


@dataclass
class ConfusedPair:
    true: str
    predicted: str
    count: int
    # Share of the true class's samples that went to `predicted`.
    rate: float


def most_confused_pairs(cm: np.ndarray, class_names: list[str], n: int) -> list[ConfusedPair]:
    """The n largest off-diagonal cells of a confusion matrix, largest count first."""
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(class_names):
        raise ValueError(f"confusion matrix {cm.shape} does not match {len(class_names)} class names")
    off = cm.astype(np.int64).copy()
    np.fill_diagonal(off, 0)
    row_totals = cm.sum(axis=1)
    # Stable sort on the negated counts keeps row-major order among equal counts.
    order = np.argsort(-off.ravel(), kind="stable")
    pairs = []
    for flat in order[:n]:
        t, p = divmod(int(flat), cm.shape[0])
        if off[t, p] == 0:
            break
        pairs.append(ConfusedPair(class_names[t], class_names[p], int(off[t, p]), float(off[t, p] / row_totals[t])))
    return pairs


def per_class_recall(cm: np.ndarray) -> np.ndarray:
    """Diagonal over row totals; NaN for classes with no samples. [K]"""
    totals = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(cm) / totals, np.nan)


def _check(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logits = np.asarray(logits)
    labels = np.asarray(labels, dtype=np.int64).ravel()
    if logits.ndim != 2 or logits.shape[0] != labels.size:
        raise ValueError(f"logits {logits.shape} and labels ({labels.size},) do not match")
    return logits, labels

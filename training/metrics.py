"""Evaluation metrics in plain numpy (checked against hand-computed values in tests)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def confusion_matrix(y_true: IntArray, y_pred: IntArray, num_classes: int) -> IntArray:
    """Rows are true classes, columns predicted classes."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def per_class_prf(cm: IntArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Precision, recall and F1 for each class (0 where undefined)."""
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    actual = cm.sum(axis=1).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return precision, recall, f1


def balanced_accuracy(cm: IntArray) -> float:
    """Mean recall over the classes present (the ISIC 2018 task 3 metric)."""
    actual = cm.sum(axis=1)
    present = actual > 0
    return float(np.mean(np.diag(cm)[present] / actual[present]))


def roc_auc(y_true: npt.ArrayLike, score: npt.ArrayLike) -> float:
    """Area under the ROC curve via the rank-sum statistic (ties get half credit)."""
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(score, np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), np.float64)
    sorted_s = s[order]
    # Average ranks over ties.
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_curve(y_true: npt.ArrayLike, score: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """False- and true-positive rates over all thresholds, from (0, 0) to (1, 1)."""
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(score, np.float64)
    thresholds = np.unique(s)[::-1]
    tpr = [0.0] + [float((s[y] >= t).mean()) for t in thresholds]
    fpr = [0.0] + [float((s[~y] >= t).mean()) for t in thresholds]
    return np.asarray(fpr), np.asarray(tpr)


def sensitivity_specificity(
    y_true: npt.ArrayLike, score: npt.ArrayLike, threshold: float
) -> tuple[float, float]:
    """Rates of ``score >= threshold`` among positives and of ``<`` among negatives."""
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(score, np.float64)
    sens = float((s[y] >= threshold).mean()) if y.any() else float("nan")
    spec = float((s[~y] < threshold).mean()) if (~y).any() else float("nan")
    return sens, spec


def threshold_for_sensitivity(y_true: npt.ArrayLike, score: npt.ArrayLike, target: float) -> float:
    """The highest threshold whose sensitivity is at least ``target``."""
    y = np.asarray(y_true).astype(bool)
    pos = np.sort(np.asarray(score, np.float64)[y])[::-1]
    if len(pos) == 0:
        raise ValueError("no positive examples")
    k = int(np.ceil(target * len(pos)))  # need at least k positives at or above
    return float(pos[max(k, 1) - 1])


def threshold_for_specificity(y_true: npt.ArrayLike, score: npt.ArrayLike, target: float) -> float:
    """The lowest threshold whose specificity is at least ``target``."""
    y = np.asarray(y_true).astype(bool)
    neg = np.sort(np.asarray(score, np.float64)[~y])
    if len(neg) == 0:
        raise ValueError("no negative examples")
    k = int(np.ceil(target * len(neg)))  # at least k negatives strictly below
    if k >= len(neg):
        return float(np.nextafter(neg[-1], np.inf))
    return float(np.nextafter(neg[k - 1], np.inf)) if k > 0 else float(neg[0])


def expected_calibration_error(
    probs: npt.ArrayLike, y_true: npt.ArrayLike, bins: int = 15
) -> tuple[float, FloatArray, FloatArray, IntArray]:
    """Top-label ECE with equal-width confidence bins; also per-bin accuracy/confidence/count."""
    p = np.asarray(probs, np.float64)
    y = np.asarray(y_true)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    acc = np.zeros(bins)
    mean_conf = np.zeros(bins)
    count = np.zeros(bins, np.int64)
    for b in range(bins):
        sel = idx == b
        count[b] = int(sel.sum())
        if count[b]:
            acc[b] = correct[sel].mean()
            mean_conf[b] = conf[sel].mean()
    ece = float(np.sum(count * np.abs(acc - mean_conf)) / max(len(y), 1))
    return ece, acc, mean_conf, count


def softmax(logits: npt.ArrayLike, temperature: float = 1.0) -> FloatArray:
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def fit_temperature(logits: npt.ArrayLike, y_true: npt.ArrayLike) -> float:
    """Temperature minimising the validation negative log-likelihood (golden-section search)."""
    z = np.asarray(logits, np.float64)
    y = np.asarray(y_true)

    def nll(t: float) -> float:
        p = softmax(z, t)
        return float(-np.mean(np.log(p[np.arange(len(y)), y] + 1e-12)))

    lo, hi = np.log(0.05), np.log(20.0)
    golden = (np.sqrt(5) - 1) / 2
    a, b = hi - golden * (hi - lo), lo + golden * (hi - lo)
    for _ in range(80):
        if nll(float(np.exp(a))) < nll(float(np.exp(b))):
            hi = b
        else:
            lo = a
        a, b = hi - golden * (hi - lo), lo + golden * (hi - lo)
    return float(np.exp((lo + hi) / 2))

"""Metric functions against values computed by hand, so the model card's numbers can be trusted."""

import numpy as np
import pytest

from training.metrics import (
    balanced_accuracy,
    confusion_matrix,
    expected_calibration_error,
    fit_temperature,
    per_class_prf,
    roc_auc,
    sensitivity_specificity,
    softmax,
    threshold_for_sensitivity,
    threshold_for_specificity,
)


def test_confusion_matrix_counts_true_rows_predicted_columns() -> None:
    cm = confusion_matrix(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 2, 0]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_precision_recall_f1_by_hand() -> None:
    cm = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    precision, recall, f1 = per_class_prf(cm)
    # class 0: tp 1, predicted 2, actual 2; class 1: tp 1, predicted 2, actual 1
    assert precision.tolist() == pytest.approx([0.5, 0.5, 1.0])
    assert recall.tolist() == pytest.approx([0.5, 1.0, 2 / 3])
    assert f1.tolist() == pytest.approx([0.5, 2 / 3, 0.8])


def test_balanced_accuracy_is_mean_recall_over_present_classes() -> None:
    cm = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert balanced_accuracy(cm) == pytest.approx((0.5 + 1.0 + 2 / 3) / 3)
    with_absent = np.array([[3, 1, 0], [0, 0, 0], [0, 0, 4]])
    assert balanced_accuracy(with_absent) == pytest.approx((0.75 + 1.0) / 2)


def test_auc_by_hand_with_a_tie() -> None:
    # positives 0.8, 0.4; negatives 0.4, 0.1: pairs (0.8>0.4, 0.8>0.1, 0.4=0.4, 0.4>0.1) -> 3.5/4
    assert roc_auc([1, 1, 0, 0], [0.8, 0.4, 0.4, 0.1]) == pytest.approx(0.875)
    assert roc_auc([1, 0], [0.1, 0.9]) == 0.0


def test_sensitivity_specificity_at_threshold() -> None:
    sens, spec = sensitivity_specificity([1, 1, 1, 0, 0], [0.9, 0.5, 0.2, 0.6, 0.1], 0.5)
    assert sens == pytest.approx(2 / 3)
    assert spec == pytest.approx(0.5)


def test_threshold_for_sensitivity_is_the_highest_that_reaches_it() -> None:
    y = [1, 1, 1, 1, 0]
    s = [0.9, 0.7, 0.3, 0.2, 0.5]
    t = threshold_for_sensitivity(y, s, 0.75)
    assert t == pytest.approx(0.3)
    assert sensitivity_specificity(y, s, t)[0] >= 0.75


def test_threshold_for_specificity_is_the_lowest_that_reaches_it() -> None:
    y = [0, 0, 0, 0, 1]
    s = [0.1, 0.2, 0.3, 0.4, 0.9]
    t = threshold_for_specificity(y, s, 0.75)
    assert sensitivity_specificity(y, s, t)[1] == pytest.approx(0.75)
    assert 0.3 < t <= 0.3 + 1e-9


def test_ece_by_hand() -> None:
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    y = np.array([0, 1, 0, 0])
    # bin ~0.9: acc 0.5 vs conf 0.9; bin ~0.6: acc 1.0 vs conf 0.6 -> (2*0.4 + 2*0.4)/4
    ece, *_ = expected_calibration_error(probs, y, bins=10)
    assert ece == pytest.approx(0.4)


def test_temperature_recovers_a_known_scale() -> None:
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, (4000, 3))
    y = np.array([rng.choice(3, p=p) for p in softmax(true_logits)])
    # The model is 3x over-confident: the fitted temperature should undo that.
    assert fit_temperature(true_logits * 3, y) == pytest.approx(3.0, rel=0.1)

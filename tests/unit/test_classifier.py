"""The shipped ONNX classifier's flip averaging: a mirrored lesion gets the same answer,
and the mirror is run only when its answer could differ."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inference.classifier import OnnxClassifier, near_cutoff


def _crop(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    crop = np.full((200, 200, 3), (205, 160, 130), np.float32)
    yy, xx = np.mgrid[0:200, 0:200]
    blob = ((xx - 80) / 45) ** 2 + ((yy - 110) / 35) ** 2 < 1  # off-centre: not symmetric
    crop[blob] = (110, 70, 50)
    crop += rng.normal(0, 4, crop.shape)
    return np.clip(crop, 0, 255).astype(np.uint8)


def test_flip_averaging_answers_a_mirrored_crop_alike() -> None:
    model = OnnxClassifier(flip_average=True)
    model.second_look_margin = None  # both looks for every crop, whatever the model says
    crop = _crop()
    a, b = model.predict(crop), model.predict(np.ascontiguousarray(crop[:, ::-1]))
    for c in model.metadata.classes:
        assert abs(a.probabilities[c] - b.probabilities[c]) < 1e-4
    assert abs(a.ood_score - b.ood_score) < 1e-2 * max(1.0, a.ood_score)
    # The heatmap follows the lesion: the mirror's map is the map mirrored.
    np.testing.assert_allclose(a.heatmap, b.heatmap[:, ::-1], atol=1e-3)


def test_without_flip_averaging_the_mirror_is_a_different_view() -> None:
    model = OnnxClassifier(flip_average=False)
    crop = _crop()
    a, b = model.predict(crop), model.predict(np.ascontiguousarray(crop[:, ::-1]))
    assert max(abs(a.probabilities[c] - b.probabilities[c]) for c in model.metadata.classes) > 1e-4


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _distance_to_cutoffs(model: OnnxClassifier, p: float) -> float:
    t = model.metadata.thresholds
    return min(abs(_logit(p) - _logit(c)) for c in (t.medium, t.high))


def test_a_first_look_far_from_every_cutoff_is_the_answer() -> None:
    """The mirror is run only near a cut-off: far from both, one pass, the single look's
    probabilities; near one, two passes and exactly the two-look answer."""
    crop = _crop()
    one = OnnxClassifier(flip_average=False).predict(crop)
    both_model = OnnxClassifier(flip_average=True)
    both_model.second_look_margin = None
    both = both_model.predict(crop)
    assert (one.looks, both.looks) == (1, 2)

    model = OnnxClassifier(flip_average=True)
    d = _distance_to_cutoffs(model, one.malignant_probability)
    model.second_look_margin = d / 2
    far = model.predict(crop)
    assert far.looks == 1
    assert far.probabilities == pytest.approx(one.probabilities, abs=1e-6)
    np.testing.assert_allclose(far.heatmap, one.heatmap, atol=1e-6)
    model.second_look_margin = d * 2
    near = model.predict(crop)
    assert near.looks == 2
    assert near.probabilities == pytest.approx(both.probabilities, abs=1e-6)
    np.testing.assert_allclose(near.heatmap, both.heatmap, atol=1e-6)


def test_near_cutoff_is_measured_in_log_odds_from_either_cutoff() -> None:
    meta = OnnxClassifier().metadata
    medium, high = meta.thresholds.medium, meta.thresholds.high
    for cut in (medium, high):
        assert near_cutoff(cut, meta, 0.0)
        below = 1 / (1 + math.exp(-(_logit(cut) - 0.3)))
        assert near_cutoff(below, meta, 0.31)
        assert not near_cutoff(below, meta, 0.29)
    assert not near_cutoff(1e-6, meta, 1.0)
    assert not near_cutoff(1 - 1e-6, meta, 1.0)

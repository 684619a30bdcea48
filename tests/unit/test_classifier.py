"""The shipped ONNX classifier's flip averaging: a mirrored lesion gets the same answer."""

from __future__ import annotations

import numpy as np

from inference.classifier import OnnxClassifier


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

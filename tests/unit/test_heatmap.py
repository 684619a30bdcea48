"""The heatmap follows the lesion: each cell of the classifier's map is drawn on the pixels
it came from, on a photo and on its mirror image.

Why the shipped model's heatmaps lean right and up (issue 18) is in docs/model_card.md
("Heatmap"): the registration (crop to photo, cell centres, the network's padding) is
exact, the lean is the model's own; these tests hold the registration.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from inference.classifier import overlay_heatmap
from inference.pipeline import Screener
from inference.types import LesionBox, RGBImage

W, H = 640, 480


def heat_centroid(photo: RGBImage, overlay: RGBImage, crop: LesionBox) -> tuple[float, float]:
    """Centre of mass of what the overlay changed inside the crop (outline excluded)."""
    diff = np.abs(overlay.astype(np.int32) - photo.astype(np.int32)).sum(axis=2).astype(float)
    edge = max(2, min(photo.shape[:2]) // 250) + 1
    inside = np.zeros_like(diff, bool)
    inside[crop.y0 + edge : crop.y1 - edge, crop.x0 + edge : crop.x1 - edge] = True
    weight = np.where(inside, diff, 0.0)
    ys, xs = np.mgrid[0 : diff.shape[0], 0 : diff.shape[1]]
    total = weight.sum()
    assert total > 0, "the overlay drew nothing"
    return float((xs * weight).sum() / total), float((ys * weight).sum() / total)


def mirrored(box: LesionBox, width: int) -> LesionBox:
    return LesionBox(width - box.x1, box.y0, width - box.x0, box.y1)


@pytest.mark.parametrize("cell", [(1, 1), (3, 1), (2, 2), (1, 3), (0, 2), (4, 4)])
def test_each_heatmap_cell_is_drawn_on_its_own_pixels(cell: tuple[int, int]) -> None:
    """Cell (i, j) of an n x n map covers the crop's pixels [i/n, (i+1)/n) of its side: an
    overlay offset by a few pixels, a cell or a margin, or drawn unmirrored, fails here.
    (A cell on the crop's edge loses the part of its blur beyond the edge, so its centre
    of mass sits up to 2 % of the side inward.)"""
    n = 5
    i, j = cell
    heat: npt.NDArray[np.float32] = np.zeros((n, n), np.float32)
    heat[j, i] = 1.0
    photo = np.full((H, W, 3), 128, np.uint8)
    crop = LesionBox(170, 90, 420, 340)  # 250 px square
    side = crop.width
    expected = (crop.x0 + (i + 0.5) * side / n - 0.5, crop.y0 + (j + 0.5) * side / n - 0.5)
    got = heat_centroid(photo, overlay_heatmap(photo, heat, crop.as_tuple()), crop)
    tolerance = (0.02 if {i, j} & {0, n - 1} else 0.005) * side
    assert got == pytest.approx(expected, abs=tolerance)
    # The same heatmap mirrored, on the mirrored photo and crop: drawn mirrored.
    mcrop = mirrored(crop, W)
    mheat = np.ascontiguousarray(heat[:, ::-1])
    mx, my = heat_centroid(photo, overlay_heatmap(photo, mheat, mcrop.as_tuple()), mcrop)
    assert (mx, my) == pytest.approx((W - 1 - got[0], got[1]), abs=0.002 * side)


def skin_with_lesion(cx: int, cy: int, seed: int = 0) -> RGBImage:
    """A phone-like frame of skin with one dark oval lesion at (cx, cy), 70 x 60 px."""
    rng = np.random.default_rng(seed)
    img = np.full((H, W, 3), (205, 150, 120), np.float32)
    texture = cv2.GaussianBlur(rng.normal(0, 1, (H, W)).astype(np.float32), (0, 0), 1.0) * 8
    img += texture[..., None]
    lesion = np.zeros((H, W), np.float32)
    cv2.ellipse(lesion, (cx, cy), (35, 30), 0, 0, 360, 1.0, -1, cv2.LINE_AA)
    lesion = cv2.GaussianBlur(lesion, (0, 0), 2.0)[..., None]
    img = img * (1 - lesion) + np.array((95, 55, 35), np.float32) * lesion
    img += rng.normal(0, 2, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def screener() -> Screener:
    return Screener()


# Lesions in the middle of the frame, where the crop is centred on them, and against the
# left, right or bottom edge, where the crop is pushed inside the frame and the lesion sits
# off its centre (a third of the way across).
CENTRES = [(330, 250), (150, 120), (45, 240), (595, 300), (320, 435)]


@pytest.mark.parametrize("centre", CENTRES)
def test_the_heatmap_sits_on_a_lesion_at_any_place_and_on_its_mirror_image(
    screener: Screener, centre: tuple[int, int]
) -> None:
    """Through the whole pipeline: the heat's centre lies on the lesion in the photo and on
    the mirrored lesion in the photo's mirror image, within a fifth of the crop's side (one
    cell of the map). Measured with lite0-pad-160-2026-12-01: up to 0.15 (the map's cells see
    far beyond the crop, which pulls a lesion off the crop's centre towards it) and the
    model's own lean of 0.03-0.04 right and 0.06-0.08 up; an overlay offset by a cell, drawn
    mirrored or on the wrong box fails."""
    cx, cy = centre
    photo = skin_with_lesion(cx, cy)
    mirror = np.ascontiguousarray(photo[:, ::-1])
    for image, x in ((photo, cx), (mirror, W - 1 - cx)):
        result = screener.screen(image)
        assert result.crop_box is not None and result.heatmap_overlay is not None
        hx, hy = heat_centroid(image, result.heatmap_overlay, result.crop_box)
        side = result.crop_box.width
        assert abs(hx - x) < 0.2 * side and abs(hy - cy) < 0.2 * side, (hx, hy, x, cy, side)

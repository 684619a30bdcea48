"""The phone-photo synthesis, transform by transform, on small synthetic dermoscopy images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inference.localize import skin_mask
from inference.types import LesionBox, RGBImage
from training.phone import (
    SKIN_TONES,
    PhoneCamera,
    compose_phone_photo,
    extend_with_skin,
    phone_camera,
    random_skin_tone,
    retone,
    training_view,
)

BOX = LesionBox(70, 45, 130, 105)  # the lesion in the 200x150 image below
# Everything off but what a test turns on.
STILL = PhoneCamera(
    wb_temperature=0.0,
    wb_tint=0.0,
    exposure=(1.0, 1.0),
    metered=None,
    gamma=(1.0, 1.0),
    side_light=0.0,
    p_glare=0.0,
    defocus_sigma=(0.0, 0.0),
    p_sharpen=0.0,
    noise_sigma=(0.0, 0.0),
    jpeg_quality=(100, 100),
)


def dermoscopy_like(cast: tuple[int, int, int] = (150, 160, 175), lesion: bool = True) -> RGBImage:
    """A 200x150 'dermoscopy' image: blue-grey cast, bright centre, dark ring, brown lesion."""
    yy, xx = np.mgrid[0:150, 0:200].astype(np.float32)
    r = np.hypot((xx - 100) / 100, (yy - 75) / 75)
    img = np.asarray(cast, np.float32)[None, None, :] * (1.15 - 0.3 * r)[..., None]
    img[r > 1.05] *= 0.15  # the dermoscope's ring
    if lesion:
        img[((xx - 100) / 28) ** 2 + ((yy - 75) / 28) ** 2 < 1] *= 0.45
    img += np.random.default_rng(0).normal(0, 2, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def outside(box: LesionBox, shape: tuple[int, ...], margin: int = 8) -> np.ndarray:
    keep = np.ones(shape[:2], bool)
    keep[box.y0 - margin : box.y1 + margin, box.x0 - margin : box.x1 + margin] = False
    return keep


def test_random_skin_tones_lie_between_the_listed_ones_and_read_as_skin() -> None:
    rng = np.random.default_rng(1)
    tones = np.array([random_skin_tone(rng) for _ in range(200)])
    assert (tones >= SKIN_TONES.min(0) - 1e-3).all() and (tones <= SKIN_TONES.max(0) + 1e-3).all()
    swatches = np.clip(tones, 0, 255).astype(np.uint8)[None]
    assert skin_mask(swatches).all()


def test_retone_flattens_the_lens_falloff_where_skin_is_seen() -> None:
    """Flat field, in part: the light map is smoothed over a quarter of the frame, so a
    lens's bright centre is reduced by about a third, not removed (phone_synthesis.md)."""
    img = dermoscopy_like(lesion=False)
    corner = LesionBox(20, 20, 30, 30)
    out = retone(img, corner, SKIN_TONES[2]).astype(np.float32)
    yy, xx = np.mgrid[0:150, 0:200]
    r = np.hypot((xx - 100) / 100, (yy - 75) / 75)

    def falloff(x: np.ndarray) -> float:  # bright centre over the outer skin, minus 1
        return float(x[r < 0.3].mean() / x[(r > 0.6) & (r < 0.9)].mean() - 1)

    assert falloff(img.astype(np.float32)) > 0.1
    assert abs(falloff(out)) < 0.8 * falloff(img.astype(np.float32))


def test_retone_removes_the_cast_and_keeps_the_lesion() -> None:
    img = dermoscopy_like()
    tone = SKIN_TONES[1]
    out = retone(img, BOX, tone).astype(np.float32)
    yy, xx = np.mgrid[0:150, 0:200]
    skin = outside(BOX, img.shape) & (np.hypot((xx - 100) / 100, (yy - 75) / 75) < 0.9)
    assert np.abs(np.median(out[skin], axis=0) - tone).max() < 8  # the cast is gone
    disc = ((xx - 100) / 28) ** 2 + ((yy - 75) / 28) ** 2 < 0.8
    assert out[disc].mean() < 0.6 * out[skin].mean()  # still clearly darker than its skin


def test_extend_with_skin_leaves_no_seam_around_the_patch() -> None:
    img = dermoscopy_like()
    out = extend_with_skin(img, BOX, 60, np.random.default_rng(2)).astype(np.float32)
    assert out.shape == (150 + 120, 200 + 120, 3)
    luma = out.mean(axis=2)
    field = np.concatenate([luma[:30].ravel(), luma[-30:].ravel()])
    seam = luma[60 + 30 : 60 + 120, 60:80].ravel()  # the patch's left edge, away from the ring
    assert abs(seam.mean() - field.mean()) < 0.08 * field.mean()


def test_compose_sets_the_lesion_off_centre_in_a_larger_photo_never_enlarged() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        photo, box = compose_phone_photo(dermoscopy_like(), BOX, rng)
        h, w = photo.shape[:2]
        assert 480 <= w <= 1280 and abs(h - 0.75 * w) <= 1
        assert 0 <= box.x0 < box.x1 <= w and 0 <= box.y0 < box.y1 <= h
        assert box.width <= BOX.width + 1 and box.height <= BOX.height + 1  # never enlarged
        cx, cy = (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2
        assert 0.15 * w <= cx <= 0.85 * w and 0.15 * h <= cy <= 0.85 * h
        inside = photo[box.y0 : box.y1, box.x0 : box.x1].mean()
        assert inside < 0.9 * photo[outside(box, photo.shape, 4)].mean()  # the lesion is there
        frame = np.ones(photo.shape[:2], bool)
        frame[box.y0 : box.y1, box.x0 : box.x1] = False
        assert skin_mask(photo)[frame].mean() > 0.95  # skin coloured, no dermoscope cast


def test_white_balance_moves_red_and_blue_in_opposite_directions() -> None:
    grey = np.full((64, 64, 3), 128, np.uint8)
    cam = PhoneCamera(**{**STILL.__dict__, "wb_temperature": 0.2})
    for seed in range(10):
        r, g, b = phone_camera(grey, np.random.default_rng(seed), cam).reshape(-1, 3).mean(0)
        assert (r - 128) * (b - 128) <= 0 and abs(g - 128) < 2


def test_metering_brings_a_dark_or_bright_frame_to_the_asked_brightness() -> None:
    cam = PhoneCamera(**{**STILL.__dict__, "metered": (0.5, 0.5)})
    for level in (40, 220):
        img = np.full((64, 64, 3), level, np.uint8)
        out = phone_camera(img, np.random.default_rng(0), cam)
        assert abs(float(np.median(out)) - 127.5) < 3


def test_side_light_darkens_one_side_of_the_frame() -> None:
    cam = PhoneCamera(**{**STILL.__dict__, "side_light": 0.45})
    img = np.full((100, 100, 3), 200, np.uint8)
    out = phone_camera(img, np.random.default_rng(4), cam).mean(axis=2)
    corners = [
        out[:10, :10].mean(),
        out[:10, -10:].mean(),
        out[-10:, :10].mean(),
        out[-10:, -10:].mean(),
    ]
    assert max(corners) - min(corners) > 10


def test_glare_adds_bright_colourless_spots() -> None:
    cam = PhoneCamera(**{**STILL.__dict__, "p_glare": 1.0})
    img = np.full((200, 200, 3), (180, 120, 100), np.uint8)
    out = phone_camera(img, np.random.default_rng(5), cam).astype(np.int16)
    brighter = out.min(axis=2) - 100  # the darkest channel rises only under a highlight
    assert brighter.max() > 40
    spread = out.max(axis=2) - out.min(axis=2)
    assert spread[brighter > 40].mean() < 0.6 * 80  # and the highlight is nearly colourless


@pytest.mark.parametrize("lesion_px", [None, 40])
def test_defocus_is_scaled_to_the_lesion_not_the_frame(lesion_px: int | None) -> None:
    """On a 640 px frame, 1 px of blur per 160 px of lesion is 4 px if the frame counts,
    0.25 px (nothing) for a 40 px mole."""
    rng = np.random.default_rng(6)
    img = (rng.random((480, 640, 3)) * 255).astype(np.uint8)
    cam = PhoneCamera(**{**STILL.__dict__, "defocus_sigma": (1.0, 1.0)})
    out = phone_camera(img, np.random.default_rng(6), cam, lesion_px=lesion_px)
    sharpness = cv2.Laplacian(out.mean(axis=2), cv2.CV_64F).var()
    original = cv2.Laplacian(img.mean(axis=2), cv2.CV_64F).var()
    if lesion_px is None:
        assert sharpness < 0.05 * original
    else:
        assert sharpness > 0.8 * original


def test_sharpening_noise_and_jpeg_each_change_the_image() -> None:
    img = np.full((64, 64, 3), 128, np.uint8)
    img[20:40, 20:40] = 60
    base = phone_camera(img, np.random.default_rng(7), STILL).astype(np.int16)
    for change in ({"p_sharpen": 1.0}, {"noise_sigma": (5.0, 5.0)}, {"jpeg_quality": (10, 10)}):
        cam = PhoneCamera(**{**STILL.__dict__, **change})
        out = phone_camera(img, np.random.default_rng(7), cam).astype(np.int16)
        assert np.abs(out - base).max() > 3, change


def test_training_view_is_a_square_crop_of_the_model_size() -> None:
    rng = np.random.default_rng(8)
    for p_phone in (0.0, 1.0):
        view = training_view(dermoscopy_like(), BOX, rng, 160, p_phone, (0.15, 0.7))
        assert view.shape == (160, 160, 3) and view.dtype == np.uint8

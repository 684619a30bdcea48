"""Decoded lesion crops, cached once, and the augmented training views cut from them.

Decoding a JPEG, finding the lesion and continuing the skin past the frame's edge cost
more than a training step on two CPU cores, and they come out the same every epoch. So
each image is reduced once to a square uint8 crop around its lesion box, wide enough for
every margin and shift the augmentation draws (:data:`CACHE_MARGIN`; real photos: as much
of it as the photo holds), at ``TrainConfig.cache_size`` pixels; an epoch only warps,
recolours and degrades those (:func:`view_from_cache`). The training crops of all three
sources at 224 px are ~1.3 GB as arrays; they live under ``runs/`` (never committed) and
are rebuilt when missing.

Validation and test are not cut from this cache: they use :func:`pipeline_crop`, the
square the shipped pipeline cuts (margin 0.4, shrunk to fit inside the photo).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from inference.preprocess import crop_square, square_crop_box
from inference.types import LesionBox, RGBImage
from training.phone import extend_with_skin, phone_camera, random_skin_tone, retone

log = logging.getLogger(__name__)


class BoxGeometry(NamedTuple):
    """Where the lesion box lies in a cached crop, in the crop's pixels."""

    cx: float
    cy: float
    side: float


# Widest training margin (0.7) plus the largest centre shift (0.15 of the box side):
# every view the augmentation draws lies inside the cached square.
CACHE_MARGIN = 0.85
CENTRE_JITTER = 0.15


def cache_crop(
    img: RGBImage, box: LesionBox, size: int, rng: np.random.Generator, dermoscopy: bool
) -> tuple[RGBImage, BoxGeometry]:
    """The square of ``(1 + 2 * CACHE_MARGIN)`` box sides around the lesion, at ``size``,
    and where the lesion box lies in it.

    Where that square leaves the image, dermoscopy images get skin continued from their
    own border (:func:`training.phone.extend_with_skin`, as training always did). Real
    photos are framed by a person on one lesion that often fills much of the frame:
    continuing them would mostly show mirrored or made-up skin, so their square is shrunk
    and shifted into the frame, as the pipeline's own crop is, and the views are cut from
    what the photo holds (:func:`view_from_cache`).
    """
    h, w = img.shape[:2]
    crop_box = square_crop_box(box, w, h, CACHE_MARGIN, fit_inside=not dermoscopy)
    pad = max(0, -crop_box.x0, -crop_box.y0, crop_box.x1 - w, crop_box.y1 - h)
    if pad:
        img = extend_with_skin(img, box, pad, rng)
        box = LesionBox(box.x0 + pad, box.y0 + pad, box.x1 + pad, box.y1 + pad)
        crop_box = LesionBox(
            crop_box.x0 + pad, crop_box.y0 + pad, crop_box.x1 + pad, crop_box.y1 + pad
        )
    crop = crop_square(img, crop_box)
    k = size / crop.shape[0]
    geometry = BoxGeometry(
        ((box.x0 + box.x1) / 2 - crop_box.x0) * k,
        ((box.y0 + box.y1) / 2 - crop_box.y0) * k,
        max(box.width, box.height) * k,
    )
    interp = cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_CUBIC
    return np.ascontiguousarray(cv2.resize(crop, (size, size), interpolation=interp)), geometry


def pipeline_crop(img: RGBImage, box: LesionBox, margin: float, size: int) -> RGBImage:
    """The crop the shipped pipeline hands the classifier, resized to ``size``."""
    h, w = img.shape[:2]
    crop = crop_square(img, square_crop_box(box, w, h, margin))
    interp = cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(crop, (size, size), interpolation=interp))


@dataclass(frozen=True)
class CropSet:
    """Crops of one source's split, with the ids of the images they came from, in order."""

    ids: list[str]
    crops: np.ndarray  # (N, S, S, 3) uint8
    # (N, 3): the lesion box's centre x, y and longer side in crop pixels (NaN: not known,
    # as for the validation crops, which are the pipeline's square already)
    boxes: np.ndarray


def cached(
    path: Path,
    ids: Sequence[str],
    make: Callable[[int], tuple[RGBImage, BoxGeometry | None]],
) -> CropSet:
    """Load ``path`` if it holds exactly these ids, else build it with ``make(i)`` and save."""
    index, box_file = path.with_suffix(".json"), path.with_suffix(".boxes.npy")
    if (
        path.exists()
        and box_file.exists()
        and index.exists()
        and json.loads(index.read_text()) == list(ids)
    ):
        return CropSet(list(ids), np.load(path), np.load(box_file))
    log.info("building %s (%d crops)", path, len(ids))
    made = [make(i) for i in range(len(ids))]
    crops = np.stack([c for c, _ in made]) if made else np.zeros((0, 1, 1, 3), np.uint8)
    boxes = np.array(
        [g if g is not None else (np.nan, np.nan, np.nan) for _, g in made], np.float64
    ).reshape(-1, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, crops)
    np.save(box_file, boxes)
    index.write_text(json.dumps(list(ids)))
    return CropSet(list(ids), crops, boxes)


def _affine(out_size: int, centre: np.ndarray, side: float, angle: float, flip: bool) -> np.ndarray:
    """The 2x3 map from output pixels to cache pixels: scale, rotate, mirror, shift."""
    k = side / out_size
    c, s = np.cos(angle), np.sin(angle)
    sx = -k if flip else k
    rot = np.array([[c * sx, -s * k], [s * sx, c * k]])
    half = (out_size - 1) / 2.0
    offset = centre - rot @ np.array([half, half])
    return np.hstack([rot, offset[:, None]])


def view_from_cache(
    crop: RGBImage,
    geometry: BoxGeometry,
    rng: np.random.Generator,
    size: int,
    p_phone: float,
    margin: tuple[float, float],
    dermoscopy: bool,
) -> RGBImage:
    """One augmented ``size`` x ``size`` view, as :func:`training.phone.training_view` makes
    it from the full image: margin and centre jittered, any rotation, mirror, slight zoom;
    with probability ``p_phone`` seen through the simulated phone camera at 40-``size`` px
    (dermoscopy half of those first relit to a random skin tone), else mildly recoloured.
    One warp from the cached square does crop, rotation, mirror and resize together. A
    view is never wider than the crop and is shifted back inside it, as the pipeline
    shrinks and shifts its square into the photo.
    """
    n = crop.shape[0]
    cx, cy, box_side = geometry
    phone = rng.random() < p_phone
    if phone and dermoscopy and rng.random() < 0.5:
        half = box_side / 2
        box = LesionBox(round(cx - half), round(cy - half), round(cx + half), round(cy + half))
        crop = retone(crop, box, random_skin_tone(rng))
    side = box_side * (1.0 + 2.0 * float(rng.uniform(*margin)))
    side = min(side, float(n)) / float(rng.uniform(0.9, 1.1))
    centre = np.array([cx, cy]) + rng.uniform(-CENTRE_JITTER, CENTRE_JITTER, 2) * box_side
    lo, hi = side / 2 - 0.5, n - side / 2 - 0.5
    centre = np.clip(centre, lo, hi) if lo <= hi else np.full(2, (n - 1) / 2.0)
    m = _affine(size, centre, side, float(rng.uniform(0, 2 * np.pi)), bool(rng.random() < 0.5))
    view = cv2.warpAffine(
        crop,
        m,
        (size, size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT_101,
    )
    view = np.asarray(view, np.uint8)
    if phone:
        res = int(rng.integers(40, size + 1))
        small = np.asarray(cv2.resize(view, (res, res), interpolation=cv2.INTER_AREA), np.uint8)
        view = phone_camera(small, rng)
        view = np.asarray(cv2.resize(view, (size, size), interpolation=cv2.INTER_LINEAR), np.uint8)
    else:
        gains = 1.0 + rng.uniform(-0.06, 0.06, 3)
        view = np.clip(view.astype(np.float32) * gains, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(view)

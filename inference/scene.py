"""What the scene around the lesion is: skin or not, and print-like specks.

Measurements only, shared by the localiser (which needs the skin mask and the dark
details to find a spot) and the gate (which judges how much of the frame is skin and
whether the marks around the spot look printed). Nothing here finds the lesion or
refuses a photo.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from inference.types import NOT_MEASURED, RGBImage

BoolMap = npt.NDArray[np.bool_]
F32Map = npt.NDArray[np.float32]


def skin_mask(rgb: RGBImage) -> BoolMap:
    """Mark skin-coloured pixels, from pale to very dark skin and dermoscopy casts.

    Skin of every tone has red above luma (Cr > 128) and blue at or below it; tone mostly
    moves luma Y, not chroma. Polarised dermoscopy adds pink-lavender casts with a little
    blue, hence the slack on Cb. Green, blue, grey, black and clipped white are excluded.
    """
    ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
    # 20 <= Y <= 250, 1 <= Cr - 128 <= 60, Cb - 128 >= -60, by OpenCV on the 8-bit codes.
    ranged = cv2.inRange(ycc, (20, 129, 68), (250, 188, 255))
    # Cb <= Cr + 12: the saturating uint8 difference is 0 wherever Cb < Cr.
    _, cr, cb = cv2.split(ycc)
    return np.asarray((ranged > 0) & (cv2.subtract(cb, cr) <= 12), dtype=np.bool_)


def closing_residual(small: RGBImage, closed_lab: F32Map) -> F32Map:
    """How much the hair closing brightened each pixel (L*): dark details narrower than it.

    ``closed_lab`` is CIELAB (float units) of ``small`` after the closing.
    """
    lightness = cv2.cvtColor(small, cv2.COLOR_RGB2LAB)[..., 0].astype(np.float32)
    lightness *= np.float32(100 / 255)
    return np.asarray(np.maximum(closed_lab[..., 0] - lightness, 0.0), np.float32)


def compact_specks(
    mask: BoolMap, hair_kernel: int
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[np.float64], BoolMap]:
    """Label ``mask``; return labels, stats, centroids and which components are specks.

    A speck is small (at most twice the hair kernel), roundish (at most 2:1) and fills
    its box: a distant mole, a letter, a print dot; hair is long and a crease is thin.
    The flags are indexed by component - 1 (component 0 is the background).
    """
    _, labels, stats, centroids = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=8
    )
    area = stats[1:, cv2.CC_STAT_AREA].astype(np.float64)
    bw = stats[1:, cv2.CC_STAT_WIDTH].astype(np.float64)
    bh = stats[1:, cv2.CC_STAT_HEIGHT].astype(np.float64)
    longer, shorter = np.maximum(bw, bh), np.minimum(bw, bh)
    compact = (
        (area >= 3)
        & (longer <= 2 * hair_kernel)
        & (longer <= 2 * shorter)
        & (area / (bw * bh) >= 0.4)
    )
    return (
        np.asarray(labels, np.int32),
        np.asarray(stats, np.int32),
        np.asarray(centroids, np.float64),
        np.asarray(compact, np.bool_),
    )


def specks_around(
    dark: F32Map, lesion: BoolMap, hair_kernel: int, min_darkening: float
) -> tuple[int, float]:
    """Count small, compact, clearly dark marks outside the lesion; and their median darkness.

    Letters, print dots and screen patterns scatter such marks over the whole frame, and
    so do hair follicles, pores and stubble on skin: the count alone cannot tell them
    apart, the darkness can (ink on paper is far darker than a follicle on its skin).
    Marks inside the lesion's box, its dots and globules, do not count.
    """
    labels, stats, centroids, compact = compact_specks(dark > min_darkening, hair_kernel)
    ys, xs = np.nonzero(lesion)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    my, mx = 0.2 * (y1 - y0), 0.2 * (x1 - x0)
    cx, cy = centroids[1:, 0], centroids[1:, 1]
    inside = (cx >= x0 - mx) & (cx <= x1 + mx) & (cy >= y0 - my) & (cy <= y1 + my)
    counted = np.flatnonzero(compact & ~inside) + 1
    if counted.size == 0:
        return 0, 0.0
    # Each counted speck's peak darkening, within its own small box (a speck is at most
    # twice the hair kernel across): far cheaper than a scatter-max over the whole map.
    peak = np.empty(counted.size, np.float32)
    for j, i in enumerate(counted):
        x, y = int(stats[i, cv2.CC_STAT_LEFT]), int(stats[i, cv2.CC_STAT_TOP])
        sl = (
            slice(y, y + int(stats[i, cv2.CC_STAT_HEIGHT])),
            slice(x, x + int(stats[i, cv2.CC_STAT_WIDTH])),
        )
        peak[j] = dark[sl][labels[sl] == i].max()
    return int(counted.size), float(np.median(peak))


@dataclass(frozen=True, eq=False)
class SceneMaps:
    """The localiser's working-size maps that the scene measurements are taken on."""

    skin: BoolMap  # skin-coloured, inside what the camera saw
    valid: BoolMap  # not the dermoscope's dark ring
    dark: F32Map  # dark details narrower than the hair closing (closing_residual)
    hair_kernel: int
    min_darkening: float  # L* darkening a speck needs to count


@dataclass(frozen=True)
class SceneMeasurements:
    skin_fraction: float  # share of the frame (less any dermoscope ring) that is skin
    skin_or_lesion_fraction: float  # ... skin or the lesion (NaN: no lesion found)
    specks_around: float  # print-like specks outside the lesion (NaN: no lesion found)
    speck_darkness: float  # their median darkening, L* (NaN: no lesion found)


def measure_scene(maps: SceneMaps, lesion: BoolMap | None) -> SceneMeasurements:
    """How much of the frame is skin, and the specks around the lesion (when one was found)."""
    n_valid = int(maps.valid.sum())
    skin_fraction = float(maps.skin.sum()) / n_valid if n_valid else 0.0
    if lesion is None or not lesion.any() or n_valid == 0:
        return SceneMeasurements(skin_fraction, NOT_MEASURED, NOT_MEASURED, NOT_MEASURED)
    count, darkness = specks_around(maps.dark, lesion, maps.hair_kernel, maps.min_darkening)
    return SceneMeasurements(
        skin_fraction=skin_fraction,
        skin_or_lesion_fraction=float((maps.skin | lesion).sum()) / n_valid,
        specks_around=float(count),
        speck_darkness=darkness,
    )

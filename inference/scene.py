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


_L_LUT = np.arange(256, dtype=np.float32) * np.float32(100 / 255)


def closing_residual(small: RGBImage, closed_lab: F32Map) -> F32Map:
    """How much the hair closing brightened each pixel (L*): dark details narrower than it.

    ``closed_lab`` is CIELAB (float units) of ``small`` after the closing.
    """
    # 8-bit L* codes to float units by a table (code x 100/255 in float32), and OpenCV's
    # arithmetic on single contiguous channels: the same numbers as numpy on strided
    # views of the three-channel maps, at a third of the cost.
    lightness = cv2.LUT(cv2.extractChannel(cv2.cvtColor(small, cv2.COLOR_RGB2LAB), 0), _L_LUT)
    closed = cv2.extractChannel(closed_lab, 0)
    _, residual = cv2.threshold(cv2.subtract(closed, lightness), 0.0, 0.0, cv2.THRESH_TOZERO)
    return np.asarray(residual, np.float32)


def components(
    mask: BoolMap,
) -> tuple[int, npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[np.float64]]:
    """``cv2.connectedComponentsWithStats`` (8-connected) of ``mask``, on its bounding box.

    OpenCV's statistics pass visits every pixel, the background included: ~0.7 ms on a
    384x288 map of which the spots are a few percent. No component leaves the mask's
    bounding box, and with the box's corner on even coordinates (OpenCV scans in 2x2
    blocks) the labels come out numbered exactly as on the whole map (checked on 3,000
    random masks), so labels, boxes, areas and centroids are those of the whole map.
    Row 0 (the background) has the frame as its box and the background's area; its
    centroid is not measured (NaN).
    """
    h, w = mask.shape
    x, y, bw, bh = cv2.boundingRect(mask.view(np.uint8))
    labels = np.zeros((h, w), np.int32)
    if bw == 0:
        stats = np.asarray([[0, 0, w, h, h * w]], np.int32)
        return 1, labels, stats, np.full((1, 2), np.nan)
    x0, y0 = x - x % 2, y - y % 2
    sub = np.ascontiguousarray(mask[y0 : y + bh, x0 : x + bw]).view(np.uint8)
    n, sub_labels, sub_stats, sub_centroids = cv2.connectedComponentsWithStats(sub, connectivity=8)
    labels[y0 : y + bh, x0 : x + bw] = sub_labels
    stats = np.asarray(sub_stats, np.int32)
    centroids = np.asarray(sub_centroids, np.float64)
    stats[1:, cv2.CC_STAT_LEFT] += x0
    stats[1:, cv2.CC_STAT_TOP] += y0
    centroids[1:] += (x0, y0)
    stats[0] = (0, 0, w, h, h * w - int(stats[1:, cv2.CC_STAT_AREA].sum()))
    centroids[0] = np.nan
    return int(n), labels, stats, centroids


def compact_specks(
    mask: BoolMap, hair_kernel: int
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[np.float64], BoolMap]:
    """Label ``mask``; return labels, stats, centroids and which components are specks.

    A speck is small (at most twice the hair kernel), roundish (at most 2:1) and fills
    its box: a distant mole, a letter, a print dot; hair is long and a crease is thin.
    The flags are indexed by component - 1 (component 0 is the background).
    """
    _, labels, stats, centroids = components(mask)
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
    x0, y0, bw, bh = cv2.boundingRect(lesion.view(np.uint8))  # no scan of every pixel
    y1, x1 = y0 + bh, x0 + bw
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
    n_valid = np.count_nonzero(maps.valid)
    skin_fraction = np.count_nonzero(maps.skin) / n_valid if n_valid else 0.0
    if lesion is None or not lesion.any() or n_valid == 0:
        return SceneMeasurements(skin_fraction, NOT_MEASURED, NOT_MEASURED, NOT_MEASURED)
    count, darkness = specks_around(maps.dark, lesion, maps.hair_kernel, maps.min_darkening)
    return SceneMeasurements(
        skin_fraction=skin_fraction,
        skin_or_lesion_fraction=np.count_nonzero(maps.skin | lesion) / n_valid,
        specks_around=float(count),
        speck_darkness=darkness,
    )

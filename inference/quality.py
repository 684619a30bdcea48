"""Image-level quality measurements: how sharp, exposed, compressed and glaring a photo is.

Each check is a small pure function that returns one measurement, and
:func:`measure_quality` collects them. Nothing here refuses a photo: the thresholds live
in the model's metadata and :mod:`inference.gate` applies them. Exposure runs on the
pipeline's one shared working copy, blur and glare on the lesion's crop at 256 px, and
only JPEG blocking and upscaling look at full resolution (resizing would hide them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import cv2
import numpy as np
import numpy.typing as npt

from inference.preprocess import crop_square
from inference.types import LesionBox, RGBImage

GreyImage = npt.NDArray[np.float32]
Luma = npt.NDArray[np.uint8]
BoolImage = npt.NDArray[np.bool_]


# Blur is measured on the lesion's crop at this many pixels across (about the
# classifier's input): blur that the classifier's own downscaling removes does not matter.
BLUR_SIDE = 256
# Without a lesion box, blur and glare are measured on a central square this share of
# the shorter side: where users centre the mole, and about the size of a lesion crop.
CENTRE_FRACTION = 0.5
# Upscaling is looked for only in photos whose shorter side is under 4x this (the model's
# 160 px input, above any detail threshold the gate uses), so a phone photo costs nothing.
DETAIL_CHECK_SIDE = 160.0
# A shrink-and-enlarge by k that loses less than this share of the image's structure
# means there is no detail finer than k pixels: the image was upscaled by k. Sharp
# JPEGs lose >= 0.30 at k=2, JPEGs upscaled 2-4x lose <= 0.21 (HAM and sample photos).
UPSCALE_RESIDUAL = 0.25
# A specular highlight is clipped (brightest channel >= GLARE_CLIPPED), colourless (every
# channel >= GLARE_MIN_CHANNEL, so near-white, not the bluish-grey of a blue-white veil or
# the pink-white of a scar), and at least GLARE_MIN_RISE brighter than the skin around it
# (a top-hat), so evenly pale skin under a dermoscope is not glare either.
GLARE_CLIPPED = 250
GLARE_MIN_CHANNEL = 230
GLARE_MIN_RISE = 15


def downscale(rgb: RGBImage, long_side: int) -> RGBImage:
    """Shrink so the longer side is at most ``long_side``; never enlarge.

    OpenCV's area averaging is fast only for an exact whole factor (its general path took
    4.5 ms for 1280 -> 384 px on one core). So: drop the last few rows and columns that
    do not fill a k x k cell, average by the whole factor k, and close the remaining
    step of less than 1.5x by bilinear interpolation, which the averaging has already
    anti-aliased (2.5 ms in all). Over a 12 MP photo even that reads every pixel;
    decimating to twice the target first keeps it at ~3 ms.
    """
    h, w = rgb.shape[:2]
    if max(h, w) <= long_side:
        return rgb
    scale = long_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if scale < 0.25:
        mid = (size[0] * 2, size[1] * 2)
        src = np.asarray(cv2.resize(rgb, mid, interpolation=cv2.INTER_NEAREST), np.uint8)
        return np.asarray(cv2.resize(src, size, interpolation=cv2.INTER_AREA), np.uint8)
    k = int(1 / scale)
    if k < 2:
        return np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), np.uint8)
    whole = (w // k, h // k)
    cells = rgb[: whole[1] * k, : whole[0] * k]
    src = np.asarray(cv2.resize(cells, whole, interpolation=cv2.INTER_AREA), np.uint8)
    if whole == size:
        return src
    return np.asarray(cv2.resize(src, size, interpolation=cv2.INTER_LINEAR), np.uint8)


def working_copy(rgb: RGBImage, long_side: int) -> RGBImage:
    """The pipeline's shared copy for the localiser and exposure checks; never enlarged.

    As :func:`downscale`, but a shrink by 3-4x averages by 2 only (OpenCV's vector path:
    0.5 ms on a 1280 px photo against 2 ms averaging by 3) and leaves the step of up to
    2x to the bilinear interpolation. The localiser does not need the extra anti-aliasing
    (on PAD-UFES-20 val: boxes moved by a few pixels on 2 of 120 photos, no gate decision
    changed, gate_rules per-rule counts unchanged); blur is still judged on
    :func:`downscale`'s crop, whose calibration depends on the full averaging.
    """
    h, w = rgb.shape[:2]
    scale = long_side / max(h, w)
    if not 0.25 <= scale <= 1 / 3:
        return downscale(rgb, long_side)  # the same copy as downscale's
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    cells = rgb[: h // 2 * 2, : w // 2 * 2]
    half = np.asarray(cv2.resize(cells, (w // 2, h // 2), interpolation=cv2.INTER_AREA), np.uint8)
    return np.asarray(cv2.resize(half, size, interpolation=cv2.INTER_LINEAR), np.uint8)


def luma(rgb: RGBImage) -> npt.NDArray[np.uint8]:
    """Rec. 601 luma, 0-255."""
    return np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), np.uint8)


def detail_side(
    rgb: RGBImage, min_side: float = DETAIL_CHECK_SIDE, residual: float = UPSCALE_RESIDUAL
) -> float:
    """Estimate the shorter side in pixels of real detail, discounting upscaling.

    Shrinking by k and enlarging back removes all structure finer than k pixels. If that
    removes little compared with the structure a few times coarser, the image holds no
    such fine structure: it was upscaled (or is blurred) by about k. Photos large enough
    to pass even if upscaled 4x are not tested, so a phone photo costs nothing here.
    """
    h, w = rgb.shape[:2]
    side = float(min(h, w))
    if side >= 4 * min_side:
        return side
    grey = luma(rgb).astype(np.float32)
    factor = 1
    for k in (2, 3, 4):
        if min(h, w) < 8 * k:
            break
        small = cv2.resize(grey, (w // k, h // k), interpolation=cv2.INTER_AREA)
        back = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        structure = grey - cv2.GaussianBlur(grey, (0, 0), 2.0 * k)
        ref = float(np.sqrt(np.mean(structure * structure)))
        if ref < 0.5:
            return 0.0  # a flat frame has no detail at all
        lost = float(np.sqrt(np.mean((grey - back) ** 2)))
        if lost >= residual * ref:
            break
        factor = k
    return side / factor


def luma_percentiles(y: npt.NDArray[np.uint8], qs: tuple[float, ...]) -> tuple[float, ...]:
    """Percentiles of luma from one 256-bin histogram (exact for 8-bit, one pass)."""
    hist = cv2.calcHist([y], [0], None, [256], [0, 256]).ravel()
    cdf = np.cumsum(hist) / max(1.0, float(hist.sum()))
    return tuple(float(np.searchsorted(cdf, q / 100.0)) for q in qs)


def clipped_fraction(rgb: RGBImage) -> float:
    """Share of pixels blown out to near white (all channels high, the top one clipped)."""
    r, g, b = cv2.split(rgb)
    hi = cv2.max(cv2.max(r, g), b)
    lo = cv2.min(cv2.min(r, g), b)
    return float(np.count_nonzero((hi >= 250) & (lo >= 200))) / hi.size


NO_DETAIL_BLUR = 99.0  # blur_sigma's answer for a frame with no structure above noise
_DIRECTIONS = tuple(math.radians(d) for d in range(0, 180, 15))


def _gaussian_derivatives(grey: GreyImage, sigma: float) -> tuple[GreyImage, GreyImage]:
    k = 2 * math.ceil(4 * sigma) + 1
    smooth = cv2.GaussianBlur(grey, (k, k), sigma, borderType=cv2.BORDER_REFLECT)
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=1, borderType=cv2.BORDER_REFLECT)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=1, borderType=cv2.BORDER_REFLECT)
    return np.asarray(gx, np.float32), np.asarray(gy, np.float32)


def _noise_gain(sigma: float) -> float:
    """Variance of one derivative of unit white noise after :func:`_gaussian_derivatives`."""
    k = 2 * math.ceil(4 * sigma) + 1
    g = cv2.getGaussianKernel(k, sigma, cv2.CV_64F).ravel()
    d = np.convolve(g, [1.0, 0.0, -1.0])
    return float(np.sum(d * d) * np.sum(g * g))


_IMMERKAER = np.asarray([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


def noise_sigma(grey: GreyImage | Luma) -> float:
    """Estimate white-noise sigma (Immerkaer 1996, with a median for robustness to edges)."""
    response = np.abs(cv2.filter2D(grey, cv2.CV_32F, _IMMERKAER)[1:-1, 1:-1])
    if grey.dtype == np.uint8:
        # On 8-bit levels the response is a whole number below 16 x 256, so its median
        # comes exactly from a histogram: np.median's selection among the crop's 65k
        # floats was half of the blur measurement's time.
        median = _median_of_whole_numbers(response, 16 * 256)
    else:
        median = float(np.median(response))
    # The mask's squared weights sum to 36; 0.6745 turns a median |x| into a sigma.
    return median / (0.6745 * 6.0)


def _median_of_whole_numbers(values: GreyImage, bound: int) -> float:
    """``np.median`` of float32 ``values`` that are whole numbers in [0, bound)."""
    hist = cv2.calcHist([np.ascontiguousarray(values)], [0], None, [bound], [0, bound])
    below = np.cumsum(hist.ravel())  # below[v]: how many values are <= v
    k = values.size // 2
    upper = int(np.searchsorted(below, k, side="right"))  # the k-th smallest (from 0)
    if values.size % 2:
        return float(upper)
    lower = int(np.searchsorted(below, k - 1, side="right"))
    return (lower + upper) / 2.0


def blur_sigma(
    grey: GreyImage | Luma, fine: float = 0.7, coarse: float = 1.5, exclude: BoolImage | None = None
) -> float:
    """Estimate the blur of an image as a Gaussian sigma in pixels (worst direction);
    see :func:`directional_blur`."""
    return directional_blur(grey, fine, coarse, exclude)[0]


def directional_blur(
    grey: GreyImage | Luma, fine: float = 0.7, coarse: float = 1.5, exclude: BoolImage | None = None
) -> tuple[float, float]:
    """The blur as a Gaussian sigma in pixels in the worst and in the best direction.

    Gradient energy measured after smoothing at scale s falls as 1 / (b^2 + s^2) when
    the image itself is blurred by b, so the ratio of the energies at a fine and a
    coarse scale gives b, independently of the scene's contrast. Sensor noise, whose
    energy at each scale is known from its estimated sigma, is subtracted first, or a
    noisy blurred photo would look sharp. Each of 12 directions is solved separately
    (from the gradients' structure tensor) so that motion blur, which smears one
    direction only, is caught at any angle, not only along the image axes. Pixels in
    ``exclude`` (around a highlight, whose soft rim would read as blur) do not count,
    unless that would leave too little of the image to judge.

    The gap between the two is the motion smear (:attr:`PhotoQuality.motion_blur_px`): a
    long straight smear is a box, not a Gaussian, and its sinc side lobes keep fine-scale
    energy, so a 31 px smear on a 300 px PAD-UFES-20 photo reads as a sigma of only
    2.2-3.0 in its worst direction, inside what soft clean photos read in every direction
    (up to 3.0). The smear leaves the across direction as it was, though: worst minus
    best was >= 1.0 px on all but 2 of 119 smeared PAD validation copies and under 0.8 px
    on 99 % of the clean validation photos of every domain (docs/evaluation/motion_blur.md).
    (NO_DETAIL_BLUR, NO_DETAIL_BLUR) when some direction has no structure above noise.
    """
    if min(grey.shape[:2]) < 16:
        return NO_DETAIL_BLUR, NO_DETAIL_BLUR
    # 8-bit rounding adds noise of variance 1/12 even where the median estimate says 0.
    noise_var = max(noise_sigma(grey) ** 2, 1.0 / 12.0)
    grey = np.asarray(grey, np.float32)
    gx1, gy1 = _gaussian_derivatives(grey, fine)
    gx2, gy2 = _gaussian_derivatives(grey, coarse)
    n1, n2 = noise_var * _noise_gain(fine), noise_var * _noise_gain(coarse)
    keep = None if exclude is None or exclude.mean() > 0.7 else ~exclude
    if keep is not None and keep.all():
        keep = None  # nothing excluded: the same means without copying every pixel out

    def tensor(gx: GreyImage, gy: GreyImage) -> tuple[float, float, float]:
        if keep is not None:
            gx, gy = gx[keep], gy[keep]
        return float(np.mean(gx * gx)), float(np.mean(gx * gy)), float(np.mean(gy * gy))

    (a1, b1, c1), (a2, b2, c2) = tensor(gx1, gy1), tensor(gx2, gy2)
    worst, best = 0.0, NO_DETAIL_BLUR
    for angle in _DIRECTIONS:
        c, s = math.cos(angle), math.sin(angle)
        # Gradient energy along this direction; white noise adds the same in every one.
        e1 = c * c * a1 + 2 * c * s * b1 + s * s * c1 - n1
        e2 = c * c * a2 + 2 * c * s * b2 + s * s * c2 - n2
        if e1 <= 1e-6 or e2 <= 1e-6 or e1 <= e2 * 1.0001:
            return NO_DETAIL_BLUR, NO_DETAIL_BLUR
        ratio = e1 / e2
        blur = math.sqrt(max((coarse**2 - ratio * fine**2) / (ratio - 1.0), 0.0))
        worst, best = max(worst, blur), min(best, blur)
    return min(worst, NO_DETAIL_BLUR), best


def motion_smear(worst: float, best: float) -> float:
    """The motion smear from :func:`directional_blur`'s two sigmas: how much blurrier the
    worst direction is than the best; NaN (not measured) where there is no detail to judge,
    which the blur rule refuses on its own."""
    return math.nan if worst >= NO_DETAIL_BLUR else worst - best


def glare_fraction(rgb: RGBImage) -> float:
    """Share of pixels that are specular highlights (see :func:`glare_mask`)."""
    return float(glare_mask(rgb).mean())


def glare_mask(rgb: RGBImage) -> BoolImage:
    """Mark the specular highlights: clipped, colourless and brighter than around them.

    A flash or a wet surface reflects the light source itself: the sensor clips, the
    colour is the light's (near white), and the rim falls off sharply into the skin. A
    blue-white veil or a white scar-like area of a melanoma is bluish-grey or pinkish and
    not clipped, and pale skin under a dermoscope is bright but evenly so: neither is
    glare. The top-hat is taken on the brightest channel with a kernel as wide as the
    region, so the opening estimates the skin under a highlight even when the highlight
    covers much of the lesion (a third of the region, as before, missed the large flash
    reflections that hurt the classifier most; PAD-UFES-20 val, gate_rules.md).
    """
    r, g, b = cv2.split(rgb)  # once: each strided channel view was copied twice
    hi = np.asarray(cv2.max(cv2.max(r, g), b), np.uint8)
    lo = np.asarray(cv2.min(cv2.min(r, g), b), np.uint8)
    k = max(3, max(hi.shape))
    tophat = cv2.morphologyEx(hi, cv2.MORPH_TOPHAT, np.ones((k, k), np.uint8))
    mask = (hi >= GLARE_CLIPPED) & (lo >= GLARE_MIN_CHANNEL) & (tophat >= GLARE_MIN_RISE)
    # Single bright pixels are noise or sheen: only blobs count.
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    opened = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, disk)
    return np.asarray(opened > 0, np.bool_)


def measurement_region(
    rgb: RGBImage, crop_box: LesionBox | None, lesion_box: LesionBox | None
) -> tuple[RGBImage, LesionBox | None]:
    """The part of the photo that blur and glare are judged on, and the lesion within it.

    With a lesion it is the classifier's own square crop (``crop_box``, computed once by
    the pipeline; clipped to the frame) and the lesion box in the crop's pixels; without
    one, a central square, where users put the mole.
    """
    h, w = rgb.shape[:2]
    if crop_box is not None and lesion_box is not None:
        clipped = LesionBox(
            max(0, crop_box.x0), max(0, crop_box.y0), min(w, crop_box.x1), min(h, crop_box.y1)
        )
        if clipped.width >= 8 and clipped.height >= 8:
            inner = LesionBox(
                lesion_box.x0 - clipped.x0,
                lesion_box.y0 - clipped.y0,
                lesion_box.x1 - clipped.x0,
                lesion_box.y1 - clipped.y0,
            )
            return crop_square(rgb, clipped), inner
    side = max(1, round(min(h, w) * CENTRE_FRACTION))
    y0, x0 = (h - side) // 2, (w - side) // 2
    return rgb[y0 : y0 + side, x0 : x0 + side], None


def blockiness(rgb: RGBImage, stride: int = 4) -> float:
    """JPEG blocking: mean step across 8 px block boundaries over the mean step inside blocks.

    Measured at native resolution (resizing would hide the grid), on the green channel of
    a central window of at most 1024 px whose corner sits on the 8 px grid, every
    ``stride``-th row/column: a few ms even on a 12 MP photo.
    """
    h, w = rgb.shape[:2]
    y0, x0 = max(0, (h - 1024) // 2) // 8 * 8, max(0, (w - 1024) // 2) // 8 * 8
    y1, x1 = y0 + 1024, x0 + 1024
    ratios = []
    # Steps between neighbours along rows (every stride-th row), then along columns;
    # only those lines of the green channel are copied out (a quarter of the window),
    # |a - b| of uint8 by OpenCV and exact integer sums: ~4x faster than float numpy.
    rows = np.ascontiguousarray(rgb[y0:y1:stride, x0:x1, 1])
    cols = np.ascontiguousarray(rgb[y0:y1, x0:x1:stride, 1])
    for lines, axis in ((rows, 1), (cols, 0)):
        n = lines.shape[axis]
        if n < 17:
            continue
        if axis == 1:
            a, b = lines[:, 1:], lines[:, :-1]
        else:
            a, b = lines[1:], lines[:-1]
        steps = cv2.absdiff(a, b)
        on = steps[:, 7::8] if axis == 1 else steps[7::8]
        n_on = on.size
        n_off = steps.size - n_on
        sum_on = float(np.sum(on, dtype=np.int64))
        sum_off = float(cv2.sumElems(steps)[0]) - sum_on
        ratios.append((sum_on / n_on) / (sum_off / n_off + 1e-3))
    return max(ratios, default=1.0)


@dataclass(frozen=True)
class PhotoQuality:
    """The photo's own measurements, each named as the gate's evidence names it."""

    detail_side: float  # px of real detail on the shorter side (upscaling discounted)
    luma_p05: float
    luma_p50: float
    luma_p90: float
    clipped_fraction: float  # share blown out to near white
    blockiness: float  # JPEG blocking, ~1 for a natural photo
    blur_px: float  # Gaussian sigma on the lesion's crop at <= BLUR_SIDE px
    # Worst direction's sigma minus the best's, on the same crop: a straight smear.
    motion_blur_px: float
    glare_fraction: float  # specular highlights in the measured region
    lesion_glare_fraction: float  # ... on the lesion's own box

    def as_dict(self) -> dict[str, float]:
        # Flat float fields: no need for asdict's recursive deep copy (~0.2 ms a call).
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}


def measure_quality(
    rgb: RGBImage,
    small: RGBImage,
    crop_box: LesionBox | None,
    lesion_box: LesionBox | None,
    *,
    blocks: float | None = None,
) -> PhotoQuality:
    """Every image-level measurement the gate judges; ``small`` is the shared working copy,
    ``crop_box`` the classifier's square around ``lesion_box`` (both None: no lesion).

    ``blocks`` is :func:`blockiness` of ``rgb`` where the caller measured it already (the
    pipeline does so while the photo is still in the CPU's cache); None: measured here.
    """
    region, inner = measurement_region(rgb, crop_box, lesion_box)
    scale = min(1.0, BLUR_SIDE / max(region.shape[:2]))
    region = downscale(region, BLUR_SIDE)
    glare = glare_mask(region)
    # A highlight's soft rim is smooth, not out of focus: blur is judged around it.
    rim = max(3, round(0.06 * max(region.shape[:2]))) | 1
    near_glare = np.asarray(cv2.dilate(glare.astype(np.uint8), np.ones((rim, rim), np.uint8)) > 0)
    if inner is None:
        on_lesion = glare
    else:
        # The lesion's own box inside its crop: a highlight on the skin beside it hides
        # nothing the classifier needs.
        x0, y0 = max(0, math.floor(inner.x0 * scale)), max(0, math.floor(inner.y0 * scale))
        x1, y1 = math.ceil(inner.x1 * scale), math.ceil(inner.y1 * scale)
        on_lesion = glare[y0:y1, x0:x1]
    p05, p50, p90 = luma_percentiles(luma(small), (5, 50, 90))
    worst, best = directional_blur(luma(region), exclude=near_glare)
    return PhotoQuality(
        detail_side=detail_side(rgb),
        luma_p05=p05,
        luma_p50=p50,
        luma_p90=p90,
        clipped_fraction=clipped_fraction(small),
        blockiness=blockiness(rgb) if blocks is None else blocks,
        blur_px=worst,
        motion_blur_px=motion_smear(worst, best),
        glare_fraction=float(glare.mean()),
        lesion_glare_fraction=float(on_lesion.mean()) if on_lesion.size else 0.0,
    )

"""Image-level quality checks: is this photo good enough to screen at all?

Each check is a small pure function that returns one measurement; :func:`assess_image`
compares them with :class:`QualityThresholds` and returns a
:class:`~inference.types.QualityReport` whose issues are in ``QUALITY_PRIORITY`` order.
All checks run on a downscaled copy (or on the lesion's crop), so a 12 MP phone photo
costs a few milliseconds per check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from inference.preprocess import crop_square, square_crop_box
from inference.types import QUALITY_PRIORITY, LesionBox, QualityIssue, QualityReport, RGBImage

GreyImage = npt.NDArray[np.float32]
BoolImage = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class QualityThresholds:
    """Every quality threshold in one place, each with the reason for its value."""

    # Checks run on a copy whose longer side is this: exposure and glare are properties
    # of areas, not of single pixels, and 512 px keeps each check at a few ms.
    work_side: int = 512
    # The classifier sees a 160 px square (the model's ``input_size``; the pipeline passes
    # 0.75 x that). A photo with fewer real pixels than 120 on its shorter side cannot give
    # the lesion crop enough detail, whatever its pixel count (an upscaled thumbnail has
    # many pixels and little detail). HAM10000's 200x150 dermoscopy images, where the
    # lesion fills the frame, pass; a phone photo shrunk to a thumbnail does not.
    min_detail_side: float = 120.0
    # A shrink-and-enlarge by k that loses less than this share of the image's structure
    # means there is no detail finer than k pixels: the image was upscaled by k. Sharp
    # JPEGs lose >= 0.30 at k=2, JPEGs upscaled 2-4x lose <= 0.21 (HAM and sample photos).
    upscale_residual: float = 0.25
    # TOO_DARK when even the brighter tenth of the frame is below this luma (0-255).
    # Well-exposed very dark skin (luma ~50-60 on its own) still has highlights and a
    # background above it; a photo taken in a dark room does not.
    dark_p90: float = 45.0
    # OVEREXPOSED when more than this share of the frame is blown out to near white:
    # then the skin around the lesion has no colour left to compare against.
    max_clipped_fraction: float = 0.25
    # ... or when even the darkest 5 % of the frame is this bright (luma): washed out,
    # no shadow and no pigment anywhere, as with a flash at close range.
    washed_out_p05: float = 200.0
    # LOW_RESOLUTION too when JPEG blocking is this strong: luma steps across the 8 px
    # block boundaries this many times larger than inside blocks. Measured: natural
    # photos ~1.0, HAM10000 images <= 2.4, clear synthetic phone photos (JPEG q35-92 on
    # very smooth synthetic skin) median 2.4, 99th percentile 9.1; photos recompressed at
    # JPEG quality 4-6 median 44-68, textured skin at quality 5: 11.3. So 8 refuses the
    # badly compressed and ~1-2% of the smoothest q35 synthetic photos. Its advice,
    # "send the photo as a file", is the remedy for heavy compression.
    max_blockiness: float = 8.0
    # BLURRY when the estimated blur (Gaussian sigma, px, at blur_side) exceeds this.
    # Chosen on the validation split (dermoscopy / clear synthetic phone photos, 400
    # lesions each, blurred on purpose by sigma s at the classifier's 160 px scale), with
    # model lite0-160-2026-11-30: malignant AUC 0.885/0.875 sharp, 0.861/0.859 at s=2,
    # 0.842/0.865 at s=3, 0.818/0.850 at s=4. At 2.6 the check flags 2%/3% of the sharp
    # photos, 84%/62% at s=3 and 92%/80% at s=4; 2.2 flagged 7%/5% of the sharp ones.
    # Table: docs/evaluation/blur_study.md, from `python -m training.blur_study`.
    max_blur_px: float = 2.6
    # Blur is measured on this many pixels across (about the classifier's input):
    # blur that the classifier's own downscaling removes does not matter.
    blur_side: int = 256
    # A glare pixel is nearly clipped: value >= this (0-255) ...
    glare_min_value: int = 245
    # ... almost colourless (HSV saturation, 0-255), unlike bright pale skin ...
    glare_max_saturation: int = 40
    # ... and this much brighter than its surroundings: very pale skin under a
    # dermoscope is near white too, but evenly so.
    glare_min_rise: int = 15
    # GLARE when glare pixels cover more than this share of the lesion's crop (or of the
    # central region): a specular patch that size hides the lesion's pattern.
    max_glare_fraction: float = 0.02
    # ... or more than this share of the whole frame: a flash reflection big enough to
    # hide the lesion when it sits on it, and the localiser may then have boxed
    # something else. On the validation split none of 300 clear phone photos and 2.3%
    # of the dermoscopy images (gel bubbles) exceed it; 81% of the gate's glare set does.
    max_frame_glare_fraction: float = 0.005
    # Without a lesion box, blur and glare are measured on a central square this share of
    # the shorter side: where users centre the mole, and about the size of a lesion crop.
    centre_fraction: float = 0.5
    # Lesion crop margin as in the classifier's preprocessing (fraction of the box side);
    # the pipeline passes the model's ``crop_margin``.
    crop_margin: float = 0.4


def downscale(rgb: RGBImage, long_side: int) -> RGBImage:
    """Shrink so the longer side is at most ``long_side``; never enlarge.

    Area averaging over a 12 MP photo reads every pixel and takes ~45 ms; decimating
    to twice the target first and area-averaging from there takes ~3 ms and keeps the
    anti-aliasing of the last 2x step.
    """
    h, w = rgb.shape[:2]
    if max(h, w) <= long_side:
        return rgb
    scale = long_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    src = rgb
    if scale < 0.25:
        mid = (size[0] * 2, size[1] * 2)
        src = np.asarray(cv2.resize(rgb, mid, interpolation=cv2.INTER_NEAREST), np.uint8)
    return np.asarray(cv2.resize(src, size, interpolation=cv2.INTER_AREA), np.uint8)


def luma(rgb: RGBImage) -> npt.NDArray[np.uint8]:
    """Rec. 601 luma, 0-255."""
    return np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), np.uint8)


def detail_side(rgb: RGBImage, min_side: float = 224.0, residual: float = 0.25) -> float:
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


def noise_sigma(grey: GreyImage) -> float:
    """Estimate white-noise sigma (Immerkaer 1996, with a median for robustness to edges)."""
    kernel = np.asarray([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    response = cv2.filter2D(grey, cv2.CV_32F, kernel)[1:-1, 1:-1]
    # The mask's squared weights sum to 36; 0.6745 turns a median |x| into a sigma.
    return float(np.median(np.abs(response))) / (0.6745 * 6.0)


def blur_sigma(
    grey: GreyImage, fine: float = 0.7, coarse: float = 1.5, exclude: BoolImage | None = None
) -> float:
    """Estimate the blur of an image as a Gaussian sigma in pixels (worst direction).

    Gradient energy measured after smoothing at scale s falls as 1 / (b^2 + s^2) when
    the image itself is blurred by b, so the ratio of the energies at a fine and a
    coarse scale gives b, independently of the scene's contrast. Sensor noise, whose
    energy at each scale is known from its estimated sigma, is subtracted first, or a
    noisy blurred photo would look sharp. Each of 12 directions is solved separately
    (from the gradients' structure tensor) so that motion blur, which smears one
    direction only, is caught at any angle, not only along the image axes. Pixels in
    ``exclude`` (around a highlight, whose soft rim would read as blur) do not count,
    unless that would leave too little of the image to judge.
    """
    if min(grey.shape[:2]) < 16:
        return NO_DETAIL_BLUR
    # 8-bit rounding adds noise of variance 1/12 even where the median estimate says 0.
    noise_var = max(noise_sigma(grey) ** 2, 1.0 / 12.0)
    gx1, gy1 = _gaussian_derivatives(grey, fine)
    gx2, gy2 = _gaussian_derivatives(grey, coarse)
    n1, n2 = noise_var * _noise_gain(fine), noise_var * _noise_gain(coarse)
    keep = None if exclude is None or exclude.mean() > 0.7 else ~exclude

    def tensor(gx: GreyImage, gy: GreyImage) -> tuple[float, float, float]:
        if keep is not None:
            gx, gy = gx[keep], gy[keep]
        return float(np.mean(gx * gx)), float(np.mean(gx * gy)), float(np.mean(gy * gy))

    (a1, b1, c1), (a2, b2, c2) = tensor(gx1, gy1), tensor(gx2, gy2)
    worst = 0.0
    for angle in _DIRECTIONS:
        c, s = math.cos(angle), math.sin(angle)
        # Gradient energy along this direction; white noise adds the same in every one.
        e1 = c * c * a1 + 2 * c * s * b1 + s * s * c1 - n1
        e2 = c * c * a2 + 2 * c * s * b2 + s * s * c2 - n2
        if e1 <= 1e-6 or e2 <= 1e-6 or e1 <= e2 * 1.0001:
            return NO_DETAIL_BLUR
        ratio = e1 / e2
        blur2 = (coarse**2 - ratio * fine**2) / (ratio - 1.0)
        worst = max(worst, math.sqrt(max(blur2, 0.0)))
    return min(worst, NO_DETAIL_BLUR)


def glare_fraction(
    rgb: RGBImage, min_value: int = 245, max_saturation: int = 40, min_rise: int = 15
) -> float:
    """Share of pixels that are specular highlights on the skin (see :func:`glare_mask`)."""
    return float(glare_mask(rgb, min_value, max_saturation, min_rise).mean())


def glare_mask(
    rgb: RGBImage, min_value: int = 245, max_saturation: int = 40, min_rise: int = 15
) -> BoolImage:
    """Mark the specular highlights on the skin.

    A highlight is near white, almost colourless, and brighter than what surrounds it
    (a white top-hat: the value minus a greyscale opening wider than any highlight).
    The last condition keeps the uniformly pale skin of many dermoscopy images, and
    a frame blown out everywhere (that is OVEREXPOSED), from counting as glare.
    """
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    value = hsv[..., 2]
    # Wider than any highlight worth reporting (a third of the region), so the opening
    # estimates the skin under a highlight rather than the highlight itself.
    k = max(3, round(0.35 * max(value.shape)))
    tophat = cv2.morphologyEx(value, cv2.MORPH_TOPHAT, np.ones((k, k), np.uint8))
    mask = (value >= min_value) & (hsv[..., 1] <= max_saturation) & (tophat >= min_rise)
    # Single bright pixels are noise or sheen: only blobs count.
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    opened = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, disk)
    return np.asarray(opened > 0, np.bool_)


def measurement_region(
    rgb: RGBImage, lesion_box: LesionBox | None, t: QualityThresholds
) -> RGBImage:
    """The part of the photo that blur and glare are judged on.

    With a lesion box it is the classifier's own square crop (clipped to the frame);
    without one, a central square, where users put the mole.
    """
    h, w = rgb.shape[:2]
    if lesion_box is not None:
        square = square_crop_box(lesion_box, w, h, t.crop_margin)
        clipped = LesionBox(
            max(0, square.x0), max(0, square.y0), min(w, square.x1), min(h, square.y1)
        )
        if clipped.width >= 8 and clipped.height >= 8:
            return crop_square(rgb, clipped)
    side = max(1, round(min(h, w) * t.centre_fraction))
    y0, x0 = (h - side) // 2, (w - side) // 2
    return rgb[y0 : y0 + side, x0 : x0 + side]


def blockiness(rgb: RGBImage, stride: int = 4) -> float:
    """JPEG blocking: mean step across 8 px block boundaries over the mean step inside blocks.

    Measured at native resolution (resizing would hide the grid), on the green channel of
    a central window of at most 1024 px whose corner sits on the 8 px grid, every
    ``stride``-th row/column: a few ms even on a 12 MP photo.
    """
    h, w = rgb.shape[:2]
    y0, x0 = max(0, (h - 1024) // 2) // 8 * 8, max(0, (w - 1024) // 2) // 8 * 8
    g = rgb[y0 : y0 + 1024, x0 : x0 + 1024, 1]
    ratios = []
    for lines in (g[::stride].astype(np.float32), g[:, ::stride].T.astype(np.float32)):
        if lines.shape[1] < 17:
            continue
        steps = np.abs(np.diff(lines, axis=1))
        boundary = (np.arange(steps.shape[1]) % 8) == 7
        ratios.append(float(steps[:, boundary].mean()) / (float(steps[:, ~boundary].mean()) + 1e-3))
    return max(ratios, default=1.0)


def assess_image(
    rgb: RGBImage,
    lesion_box: LesionBox | None = None,
    thresholds: QualityThresholds | None = None,
) -> QualityReport:
    """Run every image-level check and list the problems, most important first."""
    t = thresholds or QualityThresholds()
    small = downscale(rgb, t.work_side)
    y = luma(small)
    region = downscale(measurement_region(rgb, lesion_box, t), t.blur_side)
    region_grey = luma(region).astype(np.float32)
    glare = glare_mask(region, t.glare_min_value, t.glare_max_saturation, t.glare_min_rise)
    # A highlight's soft rim is smooth, not out of focus: blur is judged around it.
    rim = max(3, round(0.06 * max(region.shape[:2]))) | 1
    near_glare = np.asarray(cv2.dilate(glare.astype(np.uint8), np.ones((rim, rim), np.uint8)) > 0)

    p05, p50, p90 = luma_percentiles(y, (5, 50, 90))
    m: dict[str, float] = {
        "detail_side": detail_side(rgb, t.min_detail_side, t.upscale_residual),
        "luma_p05": p05,
        "luma_p50": p50,
        "luma_p90": p90,
        "clipped_fraction": clipped_fraction(small),
        "blockiness": blockiness(rgb),
        "blur_px": blur_sigma(region_grey, exclude=near_glare),
        "glare_fraction": float(glare.mean()),
        "frame_glare_fraction": glare_fraction(
            small, t.glare_min_value, t.glare_max_saturation, t.glare_min_rise
        ),
    }
    found: set[QualityIssue] = set()
    if m["detail_side"] < t.min_detail_side or m["blockiness"] > t.max_blockiness:
        found.add(QualityIssue.LOW_RESOLUTION)
    if m["luma_p90"] < t.dark_p90:
        found.add(QualityIssue.TOO_DARK)
    overexposed = m["clipped_fraction"] > t.max_clipped_fraction or m["luma_p05"] > t.washed_out_p05
    if overexposed:
        found.add(QualityIssue.OVEREXPOSED)
    # A dark or blown-out frame has no edges to judge focus by; say what to fix first.
    if m["blur_px"] > t.max_blur_px and not overexposed and QualityIssue.TOO_DARK not in found:
        found.add(QualityIssue.BLURRY)
    # When the whole frame is blown out, "overexposed" is the advice, not "glare".
    glare_found = (
        m["glare_fraction"] > t.max_glare_fraction
        or m["frame_glare_fraction"] > t.max_frame_glare_fraction
    )
    if glare_found and not overexposed:
        found.add(QualityIssue.GLARE)
    issues = tuple(i for i in QUALITY_PRIORITY if i in found)
    return QualityReport(issues=issues, measurements=m)

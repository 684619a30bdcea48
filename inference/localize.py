"""Find the lesion in a photo: a classical, fast localiser (numpy and OpenCV only).

Users send phone photos in which a mole is a small spot somewhere in a frame of skin,
hair, clothing and uneven light, while the classifier was trained on dermoscopy crops
in which the lesion fills a third of the frame. The localiser closes that gap: it finds
the lesion so that :func:`inference.preprocess.square_crop_box` can cut a
dermoscopy-like square around it from the full-resolution photo.

The approach, on a copy whose longer side is at most :attr:`LocaliserParams.work_side`:

1. Remove hair and the dermoscope's ring: a per-channel greyscale closing erases thin
   dark lines; dark regions joined to a corner of the frame are the dermoscope's vignette.
2. Skin mask from YCrCb chroma, broad enough for pale to very dark skin and for the pink
   and lavender casts of polarised dermoscopy.
3. Lesion evidence = how much darker (CIELAB L*) and how differently coloured (a*b*)
   each pixel is than the skin under it. The skin is estimated twice: first as a
   quadratic surface fitted to the frame's border (follows a light gradient and a
   dermoscope's fall-off; not pulled by a lesion that fills the middle), then by
   normalised convolution over the pixels that first pass did not call lesion.
4. Threshold at the larger of Otsu's level and a minimum contrast, clean with
   morphology, and score each region by its contrast with the ring of skin around it,
   its size, compactness and centrality; long thin regions (creases, words) are never
   candidates. The best is the lesion when it differs from its ring by the spot floor
   (a faint lesion's ring takes in its rim, so the floor is below the pixel threshold).
   Grow the winner to its fainter rim and to nearby pigment islands.
5. Nothing lesion-sized found: look for a compact speck the hair closing erased, so a
   mole photographed from too far gets "move closer" rather than "no lesion".

It returns the box and what it found out about the spot (how many rival spots nearly as
lesion-like, how much of its outline runs along the frame edge, where it sits), and the
working-size maps that :mod:`inference.scene` measures the surroundings on (skin, the
print-like specks around the spot). It refuses nothing: whether the photo is refused is
decided in :mod:`inference.gate` alone, with the model's thresholds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np
import numpy.typing as npt

from inference.quality import working_copy
from inference.scene import SceneMaps, closing_residual, compact_specks, components, skin_mask
from inference.types import NOT_MEASURED, LesionBox, RGBImage

BoolMap = npt.NDArray[np.bool_]
F32Map = npt.NDArray[np.float32]


@dataclass(frozen=True)
class LocaliserParams:
    """Tuning of the localiser; each default says why it is what it is."""

    # At 384 px a mole 3 % of the frame's width (the smallest we must accept) is ~12 px
    # across, well above the hair kernel, and the whole search is ~110k pixels. 512 px
    # was no more accurate on the evaluation sets and took ~2x as long; at 320 px a 9 px
    # crease of a 640 px photo narrows to hair and small print merges into fewer specks.
    work_side: int = 384
    # Hair is 1-3 px wide at the working size; a 5 px closing removes it and keeps any
    # blob wider than 5 px. Narrower specks are looked for separately (_tiny_spot).
    hair_kernel: int = 5
    # Lesion evidence is in CIELAB units (L* 0-100). A just-noticeable difference is ~2;
    # a faint naevus is ~6-10 darker than its skin. Below this nothing counts as lesion.
    min_contrast: float = 5.0
    # Weight of the a*b* colour difference relative to darkening in the evidence map:
    # pigment darkens, but red vascular lesions and pale pink BCCs differ mostly in hue.
    chroma_weight: float = 0.7
    # Moles are seldom more than 3:1 long; words of text, creases and shadow lines are.
    max_aspect: float = 3.0
    # ... and beyond this (length / width of the equivalent ellipse) a region is refused
    # outright: a skin crease, a shadow line or a scratch, not a lesion.
    max_elongation: float = 5.0
    # Smallest component worth scoring, as a fraction of the working image's area
    # (11 px at 384x288: smaller specks are pores, freckles and JPEG noise).
    min_component_fraction: float = 1.0e-4
    # A lesion must sit in skin: this fraction of a ring around it must be skin-coloured.
    min_surround_skin: float = 0.5
    # A region whose pixels passed the evidence threshold is a spot when its mean differs
    # from the ring of skin around it by this much. Lower than ``min_contrast``: the ring
    # takes in the fainter rim, so a faint pink carcinoma or keratosis on reddened skin
    # measures 3.4-4.9 against it (MILK10k and PAD-UFES-20 validation), and with the floor
    # at ``min_contrast`` it was passed over for a distant speck: the user was told to move
    # closer. Whether a spot this faint is answered is the gate's faint-spot rule,
    # calibrated; the localiser only finds. Chosen on validation by
    # training/spot_floor_study.py (docs/evaluation/spot_floor.md): lower floors refuse
    # fewer clean close-ups still, but let through more plain skin and pictures than the
    # non-lesion guard set's budget.
    min_spot_contrast: float = 4.5


@dataclass(frozen=True)
class LocalisationResult:
    """Where the lesion is and what the gate needs to judge it; no verdict."""

    box: LesionBox | None  # in pixels of the image passed to find_lesion; None: no spot
    lesion_fraction: float  # lesion area / image area (NaN: no spot)
    touches_edge: bool  # the lesion reaches the frame edge
    centre_offset: float  # lesion centre to image centre / half-diagonal (NaN: no spot)
    # Other spots at least half as lesion-like as the chosen one: a printed page's dots, a
    # freckle field, sensor noise have many (NaN: no spot). The gate judges the count.
    rivals: float = NOT_MEASURED
    edge_contact: float = NOT_MEASURED  # share of the outline on the frame edge
    # The spot at the working size (None: no spot), and the maps the scene is measured on
    # (None: too little of the frame was seen to search).
    mask: BoolMap | None = None
    scene: SceneMaps | None = None
    # Diagnostics for logs and calibration (contrast, the evidence threshold, ...).
    measurements: dict[str, float] = field(default_factory=dict)


def _odd(n: float) -> int:
    k = max(1, round(n))
    return k if k % 2 else k + 1


def _disk(size: int) -> npt.NDArray[np.uint8]:
    return np.asarray(cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)), np.uint8)


def _vignette_mask(lum: F32Map) -> BoolMap:
    """Mark the dark ring or corners a dermoscope leaves: dark regions joined to a corner."""
    h, w = lum.shape
    corner = min(lum[0, 0], lum[0, -1], lum[-1, 0], lum[-1, -1])
    if corner >= 30.0:  # the level below is at most 30: no need to find it
        return np.zeros((h, w), np.bool_)
    centre = lum[h // 4 : h - h // 4, w // 4 : w - w // 4]
    level = min(30.0, 0.5 * float(np.median(centre[::4, ::4])))
    if corner >= level:
        return np.zeros((h, w), np.bool_)  # no dark corner: no dermoscope ring (most photos)
    dark = (lum < level).astype(np.uint8)
    _, labels = cv2.connectedComponents(dark, connectivity=8)
    corners = {int(labels[0, 0]), int(labels[0, -1]), int(labels[-1, 0]), int(labels[-1, -1])}
    corners.discard(0)
    if not corners:
        return np.zeros((h, w), np.bool_)
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot((xx - (w - 1) / 2) / ((w - 1) / 2), (yy - (h - 1) / 2) / ((h - 1) / 2))
    # Only the outer part of the frame: a large dark lesion reaching a corner stays.
    ring = np.isin(labels, list(corners)) & (r > 0.85)
    # The ring fades into skin over a few pixels; that fade would read as darker skin.
    grow = _odd(0.04 * min(h, w))
    grown = cv2.dilate(ring.astype(np.uint8), _disk(grow))
    return np.asarray(grown > 0, dtype=np.bool_)


def _quadratic_terms(
    ys: npt.NDArray[np.float32], xs: npt.NDArray[np.float32], h: int, w: int
) -> F32Map:
    """The six terms of a quadratic surface at pixel positions, coordinates in [-1, 1]."""
    u = xs * np.float32(2 / max(w - 1, 1)) - 1
    v = ys * np.float32(2 / max(h - 1, 1)) - 1
    return np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=-1)


@lru_cache(maxsize=16)
def _band_indices(h: int, w: int, band: int) -> npt.NDArray[np.intp]:
    """Flat indices, in raster order, of the pixels within ``band`` of the frame's edge.

    The same for every photo of one size, so found once: scanning the whole map for them
    (np.nonzero) was a third of the border fit's time.
    """
    border = np.zeros((h, w), np.bool_)
    border[:band] = border[-band:] = True
    border[:, :band] = border[:, -band:] = True
    idx = np.flatnonzero(border)
    idx.flags.writeable = False
    return idx


def _border_surface(lab: F32Map, valid: BoolMap, band: int) -> F32Map:
    """Fit the skin colour as a quadratic surface to the frame's border band.

    A quadratic follows a light gradient across a phone photo and the radial fall-off
    of a dermoscope, and fitted on the border it is not pulled by a lesion that fills the
    middle. Darker outliers (a lesion or hair reaching the border, a shadow) are dropped
    over three rounds so the surface stays on the skin.
    """
    h, w = valid.shape
    if valid.all():  # most photos: the same samples for every photo of this size
        ys, xs, a = _border_samples(h, w, band)
    else:
        band_idx = _band_indices(h, w, band)
        idx = band_idx[valid.ravel()[band_idx]]  # the band's valid pixels, in raster order
        if idx.size < 30:
            idx = np.flatnonzero(valid)
        ys, xs, a = _samples(idx, h, w)
    y = lab[ys, xs]
    coef = np.zeros((6, 3), np.float32)
    coef[0] = np.median(y, axis=0)
    # The first round fits every sample: the arrays themselves, not copies through an
    # all-true mask (the same numbers: the products and the solve see the same values).
    ak, yk = a, y
    keep: BoolMap | None = None  # None: every sample kept
    for i in range(3):
        if len(ak) < 12:
            break
        # Normal equations: a 6x6 solve, far cheaper than an SVD-based lstsq here.
        gram = ak.T @ ak + _RIDGE
        coef = np.linalg.solve(gram, ak.T @ yk).astype(np.float32)
        if i == 2:
            break  # the last round's outliers would be dropped for a round that never comes
        resid = y[:, 0] - a @ coef[:, 0]
        rk = resid if keep is None else resid[keep]
        spread = 1.4826 * float(_median(np.abs(rk - _median(rk))))
        keep = resid > -max(3.0, 2.5 * spread)
        ak, yk = a[keep], y[keep]
    # Evaluate on a coarse grid: the surface is smooth, and this saves a 6-term product.
    coarse = _coarse_terms(h, w) @ coef
    return np.asarray(cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR), np.float32)


def _samples(
    idx: npt.NDArray[np.intp], h: int, w: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], F32Map]:
    """Every few of the flat indices ``idx`` (2000 samples pin down six coefficients):
    their rows, columns and quadratic terms."""
    step = max(1, idx.size // 2000)
    ys, xs = np.divmod(idx[::step], w)
    return ys, xs, _quadratic_terms(ys.astype(np.float32), xs.astype(np.float32), h, w)


@lru_cache(maxsize=16)
def _border_samples(
    h: int, w: int, band: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], F32Map]:
    """:func:`_samples` of the whole border band, found once per photo size."""
    samples = _samples(_band_indices(h, w, band), h, w)
    for arr in samples:
        arr.flags.writeable = False
    return samples


_RIDGE = np.eye(6, dtype=np.float32) * 1e-3  # keeps the normal equations solvable


def _median(x: F32Map) -> np.float32:
    """``np.median`` of a 1-D float32 array, the same number without its generic overhead."""
    k = x.size // 2
    if x.size % 2:
        return np.float32(np.partition(x, k)[k])
    part = np.partition(x, (k - 1, k))
    return np.float32((part[k - 1] + part[k]) / np.float32(2))


@lru_cache(maxsize=16)
def _coarse_terms(h: int, w: int) -> F32Map:
    """The quadratic's terms on the coarse grid the border surface is evaluated on."""
    gh, gw = max(2, h // 8), max(2, w // 8)
    gy, gx = np.mgrid[0:gh, 0:gw].astype(np.float32)
    terms = _quadratic_terms(
        gy * np.float32((h - 1) / max(gh - 1, 1)),
        gx * np.float32((w - 1) / max(gw - 1, 1)),
        h,
        w,
    )
    terms.flags.writeable = False
    return terms


def _smooth_background(lab: F32Map, keep: BoolMap, fallback: F32Map) -> F32Map:
    """Estimate the skin colour under every pixel by normalised convolution over ``keep``.

    Done on a 32-cell grid: skin colour varies slowly, and this keeps it at ~1 ms. Where
    few kept pixels are near (inside a lesion that fills the frame) the estimate falls
    back to ``fallback``, the surface fitted to the frame's border.
    """
    h, w = keep.shape
    gs = (max(4, round(32 * w / max(h, w))), max(4, round(32 * h / max(h, w))))
    # The weights are 0 or 1, so lab x weight is lab where kept and 0 elsewhere: a masked
    # copy gives the same numbers as the float product at a tenth of its cost.
    keep8 = keep.view(np.uint8)
    kept = np.zeros_like(lab)
    cv2.copyTo(lab, keep8, kept)
    num = cv2.resize(kept, gs, interpolation=cv2.INTER_AREA)
    den = cv2.resize(keep.astype(np.float32), gs, interpolation=cv2.INTER_AREA)
    prior = cv2.resize(fallback, gs, interpolation=cv2.INTER_AREA)
    num = cv2.GaussianBlur(num, (0, 0), 2.0, borderType=cv2.BORDER_REFLECT)
    den = cv2.GaussianBlur(den, (0, 0), 2.0, borderType=cv2.BORDER_REFLECT)
    strength = 0.05  # weight of the fallback, as a share of a fully skin neighbourhood
    bg = (num + strength * prior) / (den[..., None] + strength)
    return np.asarray(cv2.resize(bg, (w, h), interpolation=cv2.INTER_LINEAR), np.float32)


# 8-bit CIELAB codes to float units, one table per channel (cv2.LUT: one pass, the same
# numbers as converting with numpy, ~3x faster).
_LAB_LUT = np.stack(
    [
        np.arange(256, dtype=np.float32) * np.float32(100 / 255),
        np.arange(256, dtype=np.float32) - np.float32(128),
        np.arange(256, dtype=np.float32) - np.float32(128),
    ],
    axis=-1,
).reshape(256, 1, 3)


def _to_lab(rgb: RGBImage) -> F32Map:
    """CIELAB in float units (L* 0-100, a* b* centred on 0) via OpenCV's fast 8-bit path."""
    lab8 = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    return np.asarray(cv2.LUT(lab8, _LAB_LUT), np.float32)


# Colour difference stops counting as lesion evidence over this many L* units brighter
# than the skin: a flash highlight or a white label differs from skin in colour too, but
# moles, BCCs and vascular lesions are not markedly brighter than the skin around them.
BRIGHT_FADE = 10.0


def _evidence(lab: F32Map, bg: F32Map, chroma_weight: float) -> tuple[F32Map, F32Map]:
    """Per pixel: how much darker than the skin (L*), plus weighted a*b* colour distance.

    Also returns the darkening itself (skin L* - pixel L*, negative where brighter).
    """
    # OpenCV's per-channel arithmetic: the same sums as numpy, ~3x faster on one core.
    d_l, d_a, d_b = cv2.split(cv2.subtract(bg, lab))
    _, darker = cv2.threshold(d_l, 0.0, 0.0, cv2.THRESH_TOZERO)  # max(d, 0)
    chroma = cv2.magnitude(d_a, d_b)
    ramp = d_l * np.float32(1.0 / BRIGHT_FADE)
    ramp += np.float32(1.0)  # in place: the same sum, one temporary map fewer
    _, capped = cv2.threshold(ramp, 1.0, 0.0, cv2.THRESH_TRUNC)  # min(ramp, 1)
    _, not_bright = cv2.threshold(capped, 0.0, 0.0, cv2.THRESH_TOZERO)  # max(ramp, 0)
    weighted = cv2.multiply(chroma, not_bright, scale=chroma_weight)
    return np.asarray(cv2.add(darker, weighted), np.float32), np.asarray(d_l, np.float32)


def _otsu(values: F32Map, scale: float) -> float:
    """Otsu's threshold of non-negative ``values`` (quantised at 1/scale)."""
    if values.size == 0:
        return math.inf
    scaled = values * np.float32(scale)
    np.clip(scaled, 0, 255, out=scaled)  # in place: one temporary map fewer
    q = scaled.astype(np.uint8).reshape(-1, 1)
    t, _ = cv2.threshold(q, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return float(t) / scale


def _fill_holes(mask: npt.NDArray[np.uint8]) -> BoolMap:
    h, w = mask.shape
    flood = cv2.copyMakeBorder(mask, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    ffmask = np.zeros((h + 4, w + 4), np.uint8)
    # Mark the background reached from outside as 2: everything else is the mask or a
    # hole in it, which is what filling the holes keeps (mask values are 0 or 1).
    cv2.floodFill(flood, ffmask, (0, 0), 2)
    return np.asarray(flood[1:-1, 1:-1] != 2, np.bool_)


@dataclass(frozen=True)
class _Candidate:
    label: int
    score: float
    contrast: float  # colour difference from the ring of skin around it (CIELAB units)
    surround_skin: float
    edge_contact: float


def _frame_edge(valid: BoolMap) -> BoolMap:
    """Pixels on the edge of what the camera saw: the image border or the vignette's rim."""
    inner = cv2.erode(
        valid.astype(np.uint8), _disk(3), borderType=cv2.BORDER_CONSTANT, borderValue=0
    )
    return np.asarray(valid & (inner == 0), np.bool_)


def _edge_contact(region: BoolMap, frame_edge: BoolMap) -> float:
    """Share of a region's outline that lies on the frame edge."""
    x, y, bw, bh = cv2.boundingRect(region.view(np.uint8))
    if bw == 0:
        return 0.0
    # The outline lies within the region's box, and the erosion counts what is outside
    # the box as not region, as the whole map has it there: the same outline.
    sl = (slice(y, y + bh), slice(x, x + bw))
    region, frame_edge = region[sl], frame_edge[sl]
    inner = cv2.erode(
        region.astype(np.uint8), _disk(3), borderType=cv2.BORDER_CONSTANT, borderValue=0
    )
    outline = region & (inner == 0)
    n = int(outline.sum())
    return float((outline & frame_edge).sum()) / n if n else 0.0


def _ring_stats(
    region: BoolMap,
    others: BoolMap,
    lab: F32Map,
    skin: BoolMap,
    valid: BoolMap,
    chroma_weight: float,
) -> tuple[float, float]:
    """Contrast of a region against the ring of pixels around it, and the ring's skin share.

    The ring is as wide as half the region, and leaves out other suspicious pixels so
    that two pigment islands of one lesion do not hide each other. Contrast against the
    immediate surround is what separates a mole from the darker half of an unevenly lit
    frame, which is darker than the frame but hardly darker than its own neighbourhood.
    """
    ys, xs = np.nonzero(region)
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    reach = max(3, max(y1 - y0, x1 - x0) // 2)
    h, w = region.shape
    sl = (
        slice(max(0, y0 - reach), min(h, y1 + reach)),
        slice(max(0, x0 - reach), min(w, x1 + reach)),
    )
    sub = region[sl]
    dist = cv2.distanceTransform((~sub).astype(np.uint8), cv2.DIST_L2, 3)
    ring = (dist > 0) & (dist <= reach) & valid[sl]
    clean_ring = ring & ~others[sl]
    if clean_ring.sum() >= 0.25 * ring.sum():
        ring = clean_ring
    n = int(ring.sum())
    if n == 0:
        return 0.0, 0.0
    inside = lab[sl][sub].mean(axis=0)
    around = lab[sl][ring].mean(axis=0)
    darker = max(0.0, float(around[0] - inside[0]))
    chroma = math.hypot(float(around[1] - inside[1]), float(around[2] - inside[2]))
    not_bright = min(1.0, max(0.0, 1.0 + float(around[0] - inside[0]) / BRIGHT_FADE))
    return darker + chroma_weight * chroma * not_bright, float((ring & skin[sl]).sum()) / n


def _elongation(region: BoolMap) -> float:
    """Length over width of the ellipse with the region's second moments (1 for a disc)."""
    mom = cv2.moments(region.astype(np.uint8), binaryImage=True)
    if mom["m00"] <= 0:
        return 1.0
    a, b, c = mom["mu20"], mom["mu11"], mom["mu02"]
    root = math.sqrt(4 * b * b + (a - c) ** 2)
    small = max((a + c - root) / 2, 1e-9)
    return math.sqrt(((a + c + root) / 2) / small)


def _candidates(
    mask: BoolMap,
    lab: F32Map,
    skin: BoolMap,
    valid: BoolMap,
    frame_edge: BoolMap,
    p: LocaliserParams,
) -> tuple[npt.NDArray[np.int32], list[_Candidate]]:
    """Label the regions of ``mask`` and score each as the lesion; best first."""
    h, w = mask.shape
    n, labels, stats, centroids = components(mask)
    min_area = max(6.0, p.min_component_fraction * h * w)
    half_diag = math.hypot(w / 2, h / 2)
    ranked: list[tuple[float, int]] = []
    for i in range(1, n):
        area = float(stats[i, cv2.CC_STAT_AREA])
        if area < min_area:
            continue
        bw, bh = float(stats[i, cv2.CC_STAT_WIDTH]), float(stats[i, cv2.CC_STAT_HEIGHT])
        cx, cy = centroids[i]
        offset = math.hypot(cx - w / 2, cy - h / 2) / half_diag
        # Moles are round-ish blobs: a low fill of the bounding box (a curved hair, a
        # crease) or a long thin box (a word of text, a shadow line) is not a lesion.
        extent = area / (bw * bh)
        aspect = max(bw, bh) / min(bw, bh)
        shape = min(1.0, extent / 0.45) * min(1.0, (p.max_aspect / aspect) ** 2)
        ranked.append((math.sqrt(area / (h * w)) * (1.0 - 0.5 * offset**2) * shape, i))
    ranked.sort(reverse=True)
    out: list[_Candidate] = []
    for prior, i in ranked[:8]:
        # Each candidate is judged in a window around it, as wide as the ring that
        # _ring_stats looks at: the same numbers as on the whole map, at a fraction of
        # the cost (eight full-map comparisons, erosions and scans were ~5 ms).
        x, y = int(stats[i, cv2.CC_STAT_LEFT]), int(stats[i, cv2.CC_STAT_TOP])
        bw_i, bh_i = int(stats[i, cv2.CC_STAT_WIDTH]), int(stats[i, cv2.CC_STAT_HEIGHT])
        reach = max(3, max(bw_i, bh_i) // 2) + 1
        sl = (
            slice(max(0, y - reach), min(h, y + bh_i + reach)),
            slice(max(0, x - reach), min(w, x + bw_i + reach)),
        )
        region = labels[sl] == i
        if _elongation(region) > p.max_elongation:
            continue
        contrast, surround = _ring_stats(
            region, mask[sl], lab[sl], skin[sl], valid[sl], p.chroma_weight
        )
        contact = _edge_contact(region, frame_edge[sl])
        skin_ok = min(1.0, surround / p.min_surround_skin)
        score = prior * contrast * (1.0 - 0.6 * contact) * skin_ok
        out.append(_Candidate(i, score, contrast, surround, contact))
    out.sort(key=lambda c: c.score, reverse=True)
    return np.asarray(labels, np.int32), out


def _grow(
    best: BoolMap, loose: BoolMap, labels: npt.NDArray[np.int32], cands: list[_Candidate]
) -> BoolMap:
    """Extend the chosen region to its fainter rim and to pigment islands beside it.

    The rim comes from a looser threshold (hysteresis, at most +50 % area); an island
    joins when it is at least half as contrasted as the winner and closer than a third
    of the winner's size, as the separate lobes of one naevus are (reference boxes span
    all of them).
    """
    # The region of loose | best that holds the winner (a connected region, so all of it
    # lies in one): flood-filled from its first pixel, at the cost of that region only.
    both = np.asarray(loose | best, np.uint8)
    first = int(np.argmax(best))
    seed = (first % best.shape[1], first // best.shape[1])
    cv2.floodFill(both, None, seed, 2, 0, 0, 8)
    grown = np.asarray(both == 2, np.bool_)
    if np.count_nonzero(grown) > 1.5 * np.count_nonzero(best):
        # A rim is a rim: growing by more than half means the loose threshold leaked
        # into unevenly lit or differently coloured skin, so keep the core.
        grown = best
    x0, y0, bw, bh = cv2.boundingRect(grown.view(np.uint8))
    y1, x1 = y0 + bh, x0 + bw
    gap = max(2, round(max(y1 - y0, x1 - x0) / 3))
    strong = [c.label for c in cands[1:] if c.contrast >= 0.5 * cands[0].contrast]
    if not strong:
        return grown
    near = labels[max(0, y0 - gap) : y1 + gap, max(0, x0 - gap) : x1 + gap]
    touching = [i for i in np.unique(near) if i in strong]
    return np.asarray(grown | np.isin(labels, touching), np.bool_)


def _tiny_spot(
    dark: F32Map, skin: BoolMap, p: LocaliserParams
) -> tuple[BoolMap, float, int] | None:
    """Find a compact dark speck that the hair closing erased: a mole seen from afar.

    The closing brightened exactly the dark details narrower than its kernel (``dark``,
    from :func:`inference.scene.closing_residual`); among those, a compact speck well
    inside skin is a distant mole, a long one is hair. Returns the speck, its darkness
    and how many others are at least half as dark: the dots of a printed page or a
    freckle field have many, and the gate refuses on that count (its ``max_rivals``, the
    same rule as for lesion-sized spots), not the localiser.
    """
    speckles = (dark > 2.0 * p.min_contrast) & skin
    labels, stats, _, compact = compact_specks(speckles, p.hair_kernel)
    scored: list[tuple[float, int]] = []
    for i in np.flatnonzero(compact) + 1:
        area = float(stats[i, cv2.CC_STAT_AREA])
        scored.append((float(dark[labels == i].mean()) * math.sqrt(area), int(i)))
    if not scored:
        return None
    scored.sort(reverse=True)
    best = scored[0]
    rivals = sum(sc >= 0.5 * best[0] for sc, _ in scored[1:])
    region = np.asarray(labels == best[1], np.bool_)
    return region, float(dark[region].mean()), rivals


def _no_lesion(scene: SceneMaps | None, measurements: dict[str, float]) -> LocalisationResult:
    return LocalisationResult(
        box=None,
        lesion_fraction=NOT_MEASURED,
        touches_edge=False,
        centre_offset=NOT_MEASURED,
        scene=scene,
        measurements=measurements,
    )


def _clean_mask(mask: BoolMap, valid: BoolMap) -> BoolMap:
    """Open away single pixels, close small gaps, fill holes; on the mask's bounding box.

    Nothing of the result lies outside the mask's bounding box, and with a margin of
    both kernels' widths around it the crop's edge is never within reach of a kernel
    placed on anything the dilation produced, so the crop gives the same pixels as the
    whole map (the image's own edge, where the margin is cut, is the same edge in both).
    """
    h, w = mask.shape
    out = np.zeros((h, w), np.bool_)
    x, y, bw, bh = cv2.boundingRect(mask.view(np.uint8))
    if bw == 0:
        return out
    close = _odd(0.02 * max(h, w))
    margin = close + 3
    sl = (
        slice(max(0, y - margin), min(h, y + bh + margin)),
        slice(max(0, x - margin), min(w, x + bw + margin)),
    )
    m8 = cv2.morphologyEx(mask[sl].view(np.uint8), cv2.MORPH_OPEN, _disk(3))
    m8 = cv2.morphologyEx(m8, cv2.MORPH_CLOSE, _disk(close))
    out[sl] = _fill_holes(np.asarray(m8, np.uint8))
    return out & valid


def find_lesion(
    rgb: RGBImage, params: LocaliserParams | None = None, small: RGBImage | None = None
) -> LocalisationResult:
    """Find the most lesion-like spot on skin: where it is and what it is like, no verdict.

    ``small`` is ``working_copy(rgb, params.work_side)`` when the caller already has it.
    """
    p = params or LocaliserParams()
    oh, ow = rgb.shape[:2]
    # Never upscale: a small image is a tight crop (dermoscopy), whose hair is wide in
    # pixels, so the fixed-size hair closing is then proportionally larger, as it should.
    if small is None:
        small = working_copy(rgb, p.work_side)
    h, w = small.shape[:2]
    clean = np.asarray(cv2.morphologyEx(small, cv2.MORPH_CLOSE, _disk(p.hair_kernel)), np.uint8)
    lab = _to_lab(clean)
    valid = ~_vignette_mask(lab[..., 0])
    skin = skin_mask(clean) & valid
    dark = closing_residual(small, lab)  # for distant moles and for print around a lesion
    # Specks count when clearly darker than a faint naevus is than its skin.
    scene = SceneMaps(skin, valid, dark, p.hair_kernel, 2.0 * p.min_contrast)
    m: dict[str, float] = {}
    if np.count_nonzero(valid) < 0.2 * h * w:
        return _no_lesion(scene, m)

    # Pass 1: skin colour as a smooth surface fitted to the frame's border.
    surface = _border_surface(lab, valid, max(2, round(0.08 * min(h, w))))
    f1, darkening = _evidence(lab, surface, p.chroma_weight)
    # Without a dermoscope ring (most photos) every pixel is valid: no masked copies.
    whole = bool(valid.all())
    first = f1 > max(_otsu(f1 if whole else f1[valid], 4.0), p.min_contrast)
    if not whole:
        first &= valid

    # Pass 2: the local skin colour, interpolated over what pass 1 did not call lesion,
    # nor highlight: a flash reflection averaged in would make the skin around it look
    # darker than "skin", a ring of false lesion evidence. (Brighter than the surface by
    # more than half the fade: the darkening below minus that, the same float32 numbers
    # as pixel minus surface, which is exactly minus the darkening.)
    bright = darkening < np.float32(-0.5 * BRIGHT_FADE)
    keep = cv2.dilate((first | bright).view(np.uint8), _disk(7)) == 0
    if not whole:
        keep &= valid
    if np.count_nonzero(keep) < 0.05 * h * w:
        keep = valid & ~first
    bg = _smooth_background(lab, keep, surface)
    evidence, _ = _evidence(lab, bg, p.chroma_weight)
    otsu = _otsu(evidence if whole else evidence[valid], 4.0)
    # Otsu splits lesion from skin when there is a lesion; on plain skin it splits noise,
    # which the contrast floor and the candidates' ring-contrast test then discard.
    thr = max(otsu, p.min_contrast)
    m.update({"evidence_threshold": thr, "evidence_otsu": otsu})

    mask = _clean_mask(evidence > thr if whole else (evidence > thr) & valid, valid)
    frame_edge = _frame_edge(valid)
    labels, cands = _candidates(mask, lab, skin, valid, frame_edge, p)
    if (
        cands
        and cands[0].surround_skin >= p.min_surround_skin
        and cands[0].contrast >= p.min_spot_contrast
    ):
        best = cands[0]
        # Many spots nearly as lesion-like (text, a pattern): the gate judges the count.
        rivals = sum(c.score >= 0.5 * best.score for c in cands[1:])
        loose_thr = max(p.min_contrast, 0.6 * thr)
        loose = _clean_mask(
            evidence > loose_thr if whole else (evidence > loose_thr) & valid, valid
        )
        lesion = _grow(labels == best.label, loose, labels, cands)
        contrast, surround = best.contrast, best.surround_skin
    else:
        # Nothing lesion-sized: look for a spot too small to survive the hair closing,
        # so that the user hears "move closer" rather than "no lesion".
        speck = _tiny_spot(dark, skin, p)
        if speck is None:
            return _no_lesion(scene, m)
        lesion, contrast, rivals = speck
        surround = 1.0
    bx, by, bw, bh = cv2.boundingRect(lesion.view(np.uint8))
    sx, sy = ow / w, oh / h
    box = LesionBox(
        max(0, math.floor(bx * sx)),
        max(0, math.floor(by * sy)),
        min(ow, math.ceil((bx + bw) * sx)),
        min(oh, math.ceil((by + bh) * sy)),
    )
    # Moments on the lesion's box: the sums of whole pixel coordinates are exact in
    # floating point, so shifting them back gives the whole map's numbers to the bit.
    in_box = (slice(by, by + bh), slice(bx, bx + bw))
    mom = cv2.moments(lesion[in_box].view(np.uint8), binaryImage=True)
    lesion_fraction = mom["m00"] / (h * w)
    contact = _edge_contact(lesion, frame_edge)
    cy = (mom["m01"] + by * mom["m00"]) / mom["m00"]
    cx = (mom["m10"] + bx * mom["m00"]) / mom["m00"]
    offset = math.hypot(cx - (w - 1) / 2, cy - (h - 1) / 2) / math.hypot(w / 2, h / 2)
    m.update(
        {
            "lesion_contrast": contrast,
            "lesion_surround_skin": surround,
            "lesion_side_px": float(max(box.width, box.height)),
        }
    )
    return LocalisationResult(
        box=box,
        lesion_fraction=lesion_fraction,
        touches_edge=bool((lesion[in_box] & frame_edge[in_box]).any()),
        centre_offset=offset,
        rivals=float(rivals),
        edge_contact=contact,
        mask=lesion,
        scene=scene,
        measurements=m,
    )

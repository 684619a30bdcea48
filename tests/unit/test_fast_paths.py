"""The pipeline's fast paths give the same numbers as the straightforward code they replaced.

Each reference below is the earlier implementation, kept here verbatim in spirit: if a
later speed-up changes a single number (a colour-balance level, a component's label, a
mask pixel, a median), the model's inputs or the gate's evidence move, and these fail.
``scripts/compare_pipeline.py`` checks the whole pipeline on the validation photos.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from inference import localize as loc
from inference.classifier import OnnxClassifier, normalise_cam
from inference.preprocess import shades_of_gray, to_model_input
from inference.quality import blockiness, clipped_fraction, noise_sigma
from inference.scene import closing_residual, components, specks_around
from inference.types import RGBImage

DATA = Path(__file__).resolve().parents[1] / "data"
BoolMap = npt.NDArray[np.bool_]


def photos() -> Iterator[RGBImage]:
    for path in sorted(DATA.glob("*.jpg")) + sorted((DATA / "pad").glob("*.jpg")):
        yield np.ascontiguousarray(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))


def blob_masks(n: int, seed: int = 0) -> Iterator[BoolMap]:
    """Masks of a few blobs and specks, some touching the frame's edges."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        h, w = int(rng.integers(20, 300)), int(rng.integers(20, 300))
        mask = np.zeros((h, w), np.uint8)
        for _ in range(int(rng.integers(0, 12))):
            centre = (int(rng.integers(-5, w + 5)), int(rng.integers(-5, h + 5)))
            axes = (int(rng.integers(1, 30)), int(rng.integers(1, 30)))
            cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        noise = rng.random((h, w)) < rng.uniform(0.0, 0.05)
        yield (mask > 0) | noise


# --- references: the code before the speed-up ------------------------------------------


def reference_shades_of_gray(rgb: RGBImage, power: float) -> RGBImage:
    img = rgb.astype(np.float32)
    norm = np.power(np.mean(np.power(img, power), axis=(0, 1)), 1.0 / power)
    norm = np.maximum(norm, 1e-6)
    gain = norm.mean() / norm
    return np.clip(img * gain[None, None, :], 0, 255).astype(np.uint8)


def reference_model_input(rgb: RGBImage) -> npt.NDArray[np.float32]:
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    interp = cv2.INTER_AREA if min(rgb.shape[:2]) > 160 else cv2.INTER_LINEAR
    resized = np.asarray(cv2.resize(rgb, (160, 160), interpolation=interp), np.uint8)
    balanced = reference_shades_of_gray(resized, 6.0)
    levels = np.arange(256, dtype=np.float32)[:, None] / 255.0
    table = (levels - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    x = np.asarray(cv2.LUT(balanced, table.reshape(256, 1, 3)), np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def reference_clean_mask(mask: BoolMap, valid: BoolMap) -> BoolMap:
    h, w = mask.shape
    m8 = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, loc._disk(3))
    m8 = cv2.morphologyEx(m8, cv2.MORPH_CLOSE, loc._disk(loc._odd(0.02 * max(h, w))))
    flood = np.pad(m8, 1).copy()
    cv2.floodFill(flood, np.zeros((h + 4, w + 4), np.uint8), (0, 0), 1)
    out = m8.copy()
    out[flood[1:-1, 1:-1] == 0] = 1
    return (out > 0) & valid


def reference_edge_contact(region: BoolMap, frame_edge: BoolMap) -> float:
    inner = cv2.erode(
        region.astype(np.uint8), loc._disk(3), borderType=cv2.BORDER_CONSTANT, borderValue=0
    )
    outline = region & (inner == 0)
    n = int(outline.sum())
    return float((outline & frame_edge).sum()) / n if n else 0.0


def reference_blockiness(rgb: RGBImage, stride: int = 4) -> float:
    h, w = rgb.shape[:2]
    y0, x0 = max(0, (h - 1024) // 2) // 8 * 8, max(0, (w - 1024) // 2) // 8 * 8
    g = rgb[y0 : y0 + 1024, x0 : x0 + 1024, 1].astype(np.int64)
    ratios = []
    for lines, axis in ((g[::stride], 1), (g[:, ::stride], 0)):
        if lines.shape[axis] < 17:
            continue
        steps = np.abs(np.diff(lines, axis=axis))
        on = steps[:, 7::8] if axis == 1 else steps[7::8]
        sum_on, n_on = float(on.sum()), on.size
        sum_off, n_off = float(steps.sum()) - sum_on, steps.size - n_on
        ratios.append((sum_on / n_on) / (sum_off / n_off + 1e-3))
    return max(ratios, default=1.0)


def reference_border_surface(
    lab: npt.NDArray[np.float32], valid: BoolMap, band: int
) -> npt.NDArray[np.float32]:
    h, w = valid.shape
    border = np.zeros((h, w), np.bool_)
    border[:band] = border[-band:] = True
    border[:, :band] = border[:, -band:] = True
    border &= valid
    if border.sum() < 30:
        border = valid
    step = max(1, int(border.sum()) // 2000)
    ys, xs = np.nonzero(border)
    ys, xs = ys[::step], xs[::step]
    a = loc._quadratic_terms(ys.astype(np.float32), xs.astype(np.float32), h, w)
    y = lab[ys, xs]
    keep = np.ones(len(ys), np.bool_)
    coef = np.zeros((6, 3), np.float32)
    coef[0] = np.median(y, axis=0)
    for _ in range(3):
        if keep.sum() < 12:
            break
        ak = a[keep]
        gram = ak.T @ ak + np.eye(6, dtype=np.float32) * 1e-3
        coef = np.linalg.solve(gram, ak.T @ y[keep]).astype(np.float32)
        resid = y[:, 0] - a @ coef[:, 0]
        spread = 1.4826 * float(np.median(np.abs(resid[keep] - np.median(resid[keep]))))
        keep = resid > -max(3.0, 2.5 * spread)
    gh, gw = max(2, h // 8), max(2, w // 8)
    gy, gx = np.mgrid[0:gh, 0:gw].astype(np.float32)
    terms = loc._quadratic_terms(
        gy * np.float32((h - 1) / max(gh - 1, 1)),
        gx * np.float32((w - 1) / max(gw - 1, 1)),
        h,
        w,
    )
    return np.asarray(cv2.resize(terms @ coef, (w, h), interpolation=cv2.INTER_LINEAR))


def reference_grow(
    best: BoolMap, loose: BoolMap, labels: npt.NDArray[np.int32], cands: list[loc._Candidate]
) -> BoolMap:
    n, grown_labels = cv2.connectedComponents((loose | best).astype(np.uint8), connectivity=8)
    grown = np.isin(grown_labels, np.unique(grown_labels[best])) if n > 1 else best
    if grown.sum() > 1.5 * best.sum():
        grown = best
    x0, y0, bw, bh = cv2.boundingRect(grown.astype(np.uint8))
    y1, x1 = y0 + bh, x0 + bw
    gap = max(2, round(max(y1 - y0, x1 - x0) / 3))
    near = np.zeros_like(best)
    near[max(0, y0 - gap) : y1 + gap, max(0, x0 - gap) : x1 + gap] = True
    strong = [c.label for c in cands[1:] if c.contrast >= 0.5 * cands[0].contrast]
    touching = [i for i in np.unique(labels[near]) if i in strong]
    return np.asarray(grown | np.isin(labels, touching), np.bool_)


# --- the tests ---------------------------------------------------------------------------


def test_colour_balance_is_the_per_pixel_float32_arithmetic_to_the_bit() -> None:
    rng = np.random.default_rng(3)
    images = [cv2.resize(p, (160, 160), interpolation=cv2.INTER_AREA) for p in photos()]
    images += [rng.integers(0, 256, (160, 160, 3), dtype=np.uint8) for _ in range(5)]
    images += [cv2.GaussianBlur(rng.integers(0, 256, (97, 131, 3), np.uint8), (0, 0), 4)]
    for img in images:
        for power in (6.0, 2.5):
            assert np.array_equal(shades_of_gray(img, power), reference_shades_of_gray(img, power))
    for photo in photos():
        x = to_model_input(photo, 160, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 6.0)
        assert x.dtype == np.float32
        assert np.array_equal(x, reference_model_input(photo))


def test_components_on_the_box_are_those_of_the_whole_map() -> None:
    for mask in blob_masks(300):
        n, labels, stats, centroids = cv2.connectedComponentsWithStats(
            mask.astype(np.uint8), connectivity=8
        )
        n2, labels2, stats2, centroids2 = components(mask)
        assert n2 == n
        assert np.array_equal(labels2, labels)  # the same numbering, not only the same regions
        assert np.array_equal(stats2[1:], stats[1:])
        assert stats2[0, cv2.CC_STAT_AREA] == stats[0, cv2.CC_STAT_AREA]  # the background
        assert np.allclose(centroids2[1:], centroids[1:], rtol=0, atol=1e-9)


def test_clean_mask_on_the_box_is_that_of_the_whole_map() -> None:
    rng = np.random.default_rng(1)
    for mask in blob_masks(300, seed=1):
        valid = np.ones_like(mask) if rng.random() < 0.7 else rng.random(mask.shape) < 0.9
        assert np.array_equal(loc._clean_mask(mask, valid), reference_clean_mask(mask, valid))


def test_edge_contact_on_the_box_is_that_of_the_whole_map() -> None:
    for mask in blob_masks(200, seed=2):
        edge = loc._frame_edge(np.ones_like(mask))
        assert loc._edge_contact(mask, edge) == reference_edge_contact(mask, edge)


def test_border_fit_is_the_whole_map_fit() -> None:
    rng = np.random.default_rng(4)
    for photo in photos():
        small = cv2.resize(photo, (384, 288), interpolation=cv2.INTER_AREA)
        lab = loc._to_lab(small)
        h, w = lab.shape[:2]
        band = max(2, round(0.08 * min(h, w)))
        for valid in (
            np.ones((h, w), np.bool_),  # most photos
            rng.random((h, w)) < 0.8,  # a ragged dermoscope ring
            np.pad(np.ones((h - 80, w - 80), np.bool_), 40),  # nothing valid on the border
        ):
            got = loc._border_surface(lab, valid, band)
            assert np.array_equal(got, reference_border_surface(lab, valid, band))


def test_median_is_numpys() -> None:
    rng = np.random.default_rng(5)
    for n in (1, 2, 3, 10, 1999, 2000):
        x = rng.normal(0, 5, n).astype(np.float32)
        got, want = loc._median(x), np.median(x)
        assert got == want
        assert got.dtype == want.dtype


def test_noise_estimate_on_8_bit_luma_is_the_float_one() -> None:
    rng = np.random.default_rng(6)
    greys = [cv2.cvtColor(p, cv2.COLOR_RGB2GRAY) for p in photos()]
    greys += [rng.integers(0, 256, (s, s + 7), dtype=np.uint8) for s in (16, 17, 64, 255)]
    greys += [np.full((40, 40), 128, np.uint8)]
    for grey in greys:
        assert noise_sigma(grey) == noise_sigma(grey.astype(np.float32))


def test_blockiness_is_the_integer_arithmetic() -> None:
    rng = np.random.default_rng(7)
    images = list(photos())
    images += [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((960, 1280), (40, 70))]
    for img in images:
        assert math.isclose(blockiness(img), reference_blockiness(img), rel_tol=1e-12)


@pytest.mark.parametrize("side", [384, 200])
def test_closing_residual_is_the_numpy_arithmetic(side: int) -> None:
    for photo in photos():
        small = cv2.resize(photo, (side, side * 3 // 4), interpolation=cv2.INTER_AREA)
        clean = cv2.morphologyEx(small, cv2.MORPH_CLOSE, loc._disk(5))
        lab = loc._to_lab(clean)
        lightness = cv2.cvtColor(small, cv2.COLOR_RGB2LAB)[..., 0].astype(np.float32)
        lightness *= np.float32(100 / 255)
        want = np.maximum(lab[..., 0] - lightness, 0.0)
        assert np.array_equal(closing_residual(small, lab), want)


def test_grow_is_the_whole_map_growth() -> None:
    rng = np.random.default_rng(8)
    checked = 0
    for mask in blob_masks(300, seed=8):
        n, labels, _, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        if n < 2:
            continue
        order = rng.permutation(np.arange(1, n))
        cands = [loc._Candidate(int(i), 1.0, float(rng.uniform(1, 20)), 1.0, 0.0) for i in order]
        best = labels == cands[0].label
        # The looser threshold: the core grown by a rim, with unrelated specks about.
        rim = cv2.dilate(best.astype(np.uint8), loc._disk(int(rng.integers(1, 4)) * 2 + 1)) > 0
        loose = rim | (rng.random(mask.shape) < 0.02)
        got = loc._grow(best, loose, np.asarray(labels, np.int32), cands)
        assert np.array_equal(got, reference_grow(best, loose, labels, cands))
        checked += 1
    assert checked > 200


def test_background_from_a_masked_copy_is_the_weighted_one() -> None:
    rng = np.random.default_rng(9)
    for photo in photos():
        for side in (384, 250):
            small = cv2.resize(photo, (side, side * 3 // 4), interpolation=cv2.INTER_AREA)
            lab = loc._to_lab(small)
            keep = rng.random(lab.shape[:2]) < 0.7
            fallback = np.full_like(lab, 50.0)
            weight = keep.astype(np.float32)
            h, w = keep.shape
            gs = (max(4, round(32 * w / max(h, w))), max(4, round(32 * h / max(h, w))))
            num = cv2.resize(lab * weight[..., None], gs, interpolation=cv2.INTER_AREA)
            den = cv2.resize(weight, gs, interpolation=cv2.INTER_AREA)
            prior = cv2.resize(fallback, gs, interpolation=cv2.INTER_AREA)
            num = cv2.GaussianBlur(num, (0, 0), 2.0, borderType=cv2.BORDER_REFLECT)
            den = cv2.GaussianBlur(den, (0, 0), 2.0, borderType=cv2.BORDER_REFLECT)
            bg = (num + 0.05 * prior) / (den[..., None] + 0.05)
            want = cv2.resize(bg, (w, h), interpolation=cv2.INTER_LINEAR)
            assert np.array_equal(loc._smooth_background(lab, keep, fallback), want)


def test_clipped_share_is_the_channel_arithmetic() -> None:
    rng = np.random.default_rng(10)
    images = list(photos())
    images += [rng.integers(180, 256, (50, 70, 3), dtype=np.uint8) for _ in range(5)]
    for img in images:
        r, g, b = (img[..., c] for c in range(3))
        hi, lo = np.maximum(np.maximum(r, g), b), np.minimum(np.minimum(r, g), b)
        want = float(np.count_nonzero((hi >= 250) & (lo >= 200))) / hi.size
        assert clipped_fraction(img) == want


def reference_specks_around(
    dark: npt.NDArray[np.float32], lesion: BoolMap, hair_kernel: int, min_darkening: float
) -> tuple[int, float]:
    _, labels, stats, centroids = cv2.connectedComponentsWithStats(
        (dark > min_darkening).astype(np.uint8), connectivity=8
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
    ys, xs = np.nonzero(lesion)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    my, mx = 0.2 * (y1 - y0), 0.2 * (x1 - x0)
    cx, cy = centroids[1:, 0], centroids[1:, 1]
    inside = (cx >= x0 - mx) & (cx <= x1 + mx) & (cy >= y0 - my) & (cy <= y1 + my)
    counted = np.flatnonzero(compact & ~inside) + 1
    if counted.size == 0:
        return 0, 0.0
    peak = [float(dark[labels == i].max()) for i in counted]
    return int(counted.size), float(np.median(np.asarray(peak, np.float32)))


def test_specks_around_are_the_whole_map_count() -> None:
    rng = np.random.default_rng(11)
    checked = 0
    for mask in blob_masks(150, seed=11):
        # Specks: a sparse field of dark dots of 1-6 px, some inside the lesion's box.
        dots = cv2.dilate((rng.random(mask.shape) < 0.01).astype(np.uint8), np.ones((2, 2)))
        dark = (dots * rng.uniform(5, 40, mask.shape)).astype(np.float32)
        lesion = np.zeros_like(mask)
        h, w = mask.shape
        y, x = int(rng.integers(0, h - 5)), int(rng.integers(0, w - 5))
        lesion[y : y + int(rng.integers(3, 40)), x : x + int(rng.integers(3, 40))] = True
        got = specks_around(dark, lesion, 5, 10.0)
        want = reference_specks_around(dark, lesion, 5, 10.0)
        assert got == want
        checked += got[0] > 0
    assert checked > 100


def reference_prediction(
    model: OnnxClassifier, crop: RGBImage
) -> tuple[npt.NDArray[np.float64], float, npt.NDArray[np.float32]]:
    """Every output run and averaged (crop and mirror), then read: the earlier predict."""
    m = model.metadata
    x = to_model_input(crop, m.input_size, m.mean, m.std, m.color_constancy_power)
    batch = np.stack([x, x[:, :, ::-1]]) if model.flip_average else x[None]
    names = [o.name for o in model.session.get_outputs()]
    values = model.session.run(names, {model.session.get_inputs()[0].name: batch})
    out = {}
    for name, v in zip(names, values, strict=True):
        if model.flip_average:
            out[name] = (v[0] + (v[1][..., ::-1] if v.ndim == 4 else v[1])) / 2
        else:
            out[name] = v[0]
    z = out["logits"].astype(np.float64) / m.temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    return p, float(out["ood_distance"]), normalise_cam(out["cam"][int(np.argmax(p))])


@pytest.mark.parametrize("flip", [True, False])
def test_prediction_from_the_outputs_it_needs_is_the_one_from_all(flip: bool) -> None:
    model = OnnxClassifier(flip_average=flip)
    model.second_look_margin = None  # both looks, as one batch (the second look: test_classifier)
    rng = np.random.default_rng(12)
    crops = [np.ascontiguousarray(p[: min(p.shape[:2]), : min(p.shape[:2])]) for p in photos()]
    crops += [rng.integers(0, 256, (s, s, 3), dtype=np.uint8) for s in (40, 115, 300)]
    for crop in crops:
        got = model.predict(crop)
        p, ood, heatmap = reference_prediction(model, crop)
        assert [got.probabilities[c] for c in model.metadata.classes] == p.tolist()
        assert got.ood_score == ood
        assert np.array_equal(got.heatmap, heatmap)
        assert set(model.raw_outputs(crop)) == {o.name for o in model.session.get_outputs()}

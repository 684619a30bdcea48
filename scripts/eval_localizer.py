"""Measure the lesion localiser against HAM10000 boxes, on dermoscopy and phone-like photos.

Usage::

    python scripts/eval_localizer.py --data /work/shared/data/ham10000 --n 300 --seed 0

Sets:
  (a) ``dermoscopy``: random HAM images vs ``lesion_boxes.csv`` (third-party boxes).
  (b) phone composites, the same images each shrunk to 15-40 % of a 1024x768 canvas's
      width at a random position, on skin continued from the image's own border colour
      (a light gradient, blotches, sensor noise), pasted with feathered edges; the box
      moves with it. Two variants:
      ``phone raw paste``: the image goes in as it is, with the dermoscope's bright
      centre and any dark ring fragments (harder than a real phone photo);
      ``phone lit-matched``: the dermoscope's ring and uneven light are removed first,
      so the skin runs on smoothly into the canvas (closer to a phone photo).
  (c) non-lesion photos: scikit-image's sample photos (people, a cat, objects, text,
      micrographs) and lesion-free skin fields; only the NOT_A_LESION rate counts.

OpenCV runs single-threaded here, as in the bot's worker pool, so times are per core.
Prints one Markdown table; ``--save-dir`` writes every miss (IoU < 0.5) with the
reference box in green and the found box in red.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from inference.classifier import SHIPPED_MODEL, load_session, read_metadata
from inference.gate import GateInput, decide
from inference.localize import LocalisationResult, find_lesion
from inference.metadata import GateThresholds
from inference.pipeline import gate_evidence, scene_of
from inference.preprocess import square_crop_box
from inference.types import LesionBox, QualityIssue, RGBImage
from training.data import load_image, read_records

log = logging.getLogger(__name__)

CANVAS_W, CANVAS_H = 1024, 768


@dataclass(frozen=True)
class Sample:
    name: str
    rgb: RGBImage
    truth: LesionBox | None


def border_skin_colour(rgb: RGBImage) -> npt.NDArray[np.float32]:
    """Median colour of the image's outer band, ignoring the dermoscope's dark ring."""
    band = np.ones(rgb.shape[:2], bool)
    band[10:-10, 10:-10] = False
    px = rgb[band].astype(np.float32)
    px = px[px.max(axis=1) > 70]
    if len(px) < 20:
        px = rgb.reshape(-1, 3).astype(np.float32)
    lum = px.mean(axis=1)
    return np.asarray(np.median(px[lum >= np.median(lum)], axis=0), np.float32)


def skin_canvas(colour: npt.NDArray[np.float32], rng: np.random.Generator) -> RGBImage:
    """A phone-like field of skin: light falling off across the frame, blotches, noise."""
    yy, xx = np.mgrid[0:CANVAS_H, 0:CANVAS_W].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * (xx / CANVAS_W - 0.5) + np.sin(angle) * (yy / CANVAS_H - 0.5)
    gain = 1.0 + rng.uniform(0.05, 0.20) * ramp
    blotch = cv2.resize(
        rng.normal(0, 1, (6, 8)).astype(np.float32),
        (CANVAS_W, CANVAS_H),
        interpolation=cv2.INTER_CUBIC,
    )
    gain = gain * (1.0 + 0.03 * blotch)
    img = colour[None, None, :] * gain[..., None]
    img = img + rng.normal(0, 3.0, img.shape).astype(np.float32)
    return np.asarray(np.clip(img, 0, 255), np.uint8)


def feather_alpha(h: int, w: int) -> npt.NDArray[np.float32]:
    """Opaque centre fading to clear at the edges (a squircle, so corners vanish first)."""
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    u = (u - (w - 1) / 2) / (w / 2)
    v = (v - (h - 1) / 2) / (h / 2)
    r = (u**4 + v**4) ** 0.25
    return np.asarray(np.clip((1.0 - r) / 0.15, 0.0, 1.0), np.float32)


def dermoscope_ring(rgb: RGBImage) -> npt.NDArray[np.bool_]:
    """The dark corners a dermoscope leaves: dark pixels joined to a corner, grown a little."""
    dark = (rgb.max(axis=2) < 70).astype(np.uint8)
    _, labels = cv2.connectedComponents(dark, connectivity=8)
    corners = {labels[0, 0], labels[0, -1], labels[-1, 0], labels[-1, -1]} - {0}
    ring = np.isin(labels, list(corners)).astype(np.uint8)
    return cv2.dilate(ring, np.ones((9, 9), np.uint8)) > 0


def flatten_light(
    rgb: RGBImage, box: LesionBox, target: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """Swap a dermoscope's uneven light for the canvas's: divide by the skin's smooth light.

    The skin's light is the normalised-convolution blur of the pixels outside the lesion
    box, so the lesion keeps its contrast while the skin around it matches ``target``.
    """
    img = rgb.astype(np.float32)
    weight = np.ones(rgb.shape[:2], np.float32)
    weight[box.y0 : box.y1, box.x0 : box.x1] = 0
    weight[dermoscope_ring(rgb)] = 0
    sigma = max(rgb.shape[:2]) / 6
    num = cv2.GaussianBlur(img * weight[..., None], (0, 0), sigma)
    den = cv2.GaussianBlur(weight, (0, 0), sigma)[..., None]
    light = num / np.maximum(den, 1e-3)
    skin = img[weight > 0] if (weight > 0).any() else img.reshape(-1, 3)
    light = np.where(den > 0.02, light, np.median(skin, axis=0))
    return np.asarray(img / np.maximum(light, 1.0) * target, np.float32)


def composite(rgb: RGBImage, box: LesionBox, rng: np.random.Generator, match_light: bool) -> Sample:
    """Paste a shrunk dermoscopy image into a skin canvas; return it with the moved box.

    ``match_light=False`` pastes the image as it is (its dermoscope light and dark ring
    stay, feathered into the canvas); ``True`` first removes the ring and the
    dermoscope's light so that the skin continues smoothly into the canvas.
    """
    h, w = rgb.shape[:2]
    pw = round(rng.uniform(0.15, 0.40) * CANVAS_W)
    ph = round(pw * h / w)
    colour = border_skin_colour(rgb)
    canvas = skin_canvas(colour, rng).astype(np.float32)
    x0 = int(rng.integers(0, CANVAS_W - pw + 1))
    y0 = int(rng.integers(0, CANVAS_H - ph + 1))
    alpha = feather_alpha(h, w)
    src = rgb.astype(np.float32)
    if match_light:
        alpha = alpha * (1.0 - dermoscope_ring(rgb))
        alpha = np.asarray(cv2.GaussianBlur(alpha.astype(np.float32), (0, 0), 2.0), np.float32)
        src = flatten_light(rgb, box, colour)
    patch = cv2.resize(src, (pw, ph), interpolation=cv2.INTER_LINEAR)
    a = cv2.resize(alpha.astype(np.float32), (pw, ph), interpolation=cv2.INTER_LINEAR)[..., None]
    region = canvas[y0 : y0 + ph, x0 : x0 + pw]
    if match_light:
        # Carry the canvas's gradient and blotches across the patch too.
        patch = patch * (cv2.GaussianBlur(region, (0, 0), 8.0) / colour[None, None, :])
    canvas[y0 : y0 + ph, x0 : x0 + pw] = a * patch + (1 - a) * region
    s = pw / w
    truth = LesionBox(
        x0 + round(box.x0 * s),
        y0 + round(box.y0 * s),
        x0 + round(box.x1 * s),
        y0 + round(box.y1 * s),
    )
    return Sample("", np.asarray(np.clip(canvas, 0, 255), np.uint8), truth)


def non_lesion_samples(rng: np.random.Generator) -> list[Sample]:
    """Photos with no lesion: scikit-image samples and lesion-free skin fields."""
    out: list[Sample] = []
    try:
        from skimage import data as skdata  # evaluation only, not a runtime dependency
    except ImportError:
        log.warning("scikit-image missing: no sample photos in set (c)")
    else:
        names = [
            "astronaut",
            "coffee",
            "chelsea",
            "rocket",
            "cat",
            "camera",
            "coins",
            "text",
            "page",
            "moon",
            "horse",
            "hubble_deep_field",
            "immunohistochemistry",
            "retina",
            "colorwheel",
            "brick",
            "grass",
            "gravel",
            "logo",
        ]
        for name in names:
            try:
                img = np.asarray(getattr(skdata, name)())
            except (AttributeError, ImportError, OSError, ValueError):
                # Older scikit-image lacks some; others need a download (no network here).
                log.info("sample %s unavailable", name)
                continue
            if img.dtype == np.bool_:
                img = img.astype(np.uint8) * 255
            if img.dtype != np.uint8:
                img = np.clip(img * (255.0 if img.max() <= 1 else 1.0), 0, 255).astype(np.uint8)
            if img.ndim == 2:
                img = np.stack([img] * 3, axis=-1)
            out.append(Sample(name, np.ascontiguousarray(img[..., :3]), None))
    tones = {
        "pale": (236, 200, 180),
        "medium": (198, 140, 105),
        "dark": (110, 72, 52),
        "very dark": (70, 46, 36),
    }
    for tone, colour in tones.items():
        field = skin_canvas(np.asarray(colour, np.float32), rng)
        out.append(Sample(f"plain skin {tone}", field, None))
    return out


def localiser_issues(rgb: RGBImage, r: LocalisationResult) -> tuple[QualityIssue, ...]:
    """The gate's verdict on the localiser's measurements alone (no quality, no model)."""
    h, w = rgb.shape[:2]
    crop = square_crop_box(r.box, w, h, 0.4) if r.box else None
    evidence = gate_evidence(r, scene_of(r))
    return decide(GateInput(w, h, r.box, crop, evidence), _shipped_gate())


@cache
def _shipped_gate() -> GateThresholds:
    """The shipped model's calibrated gate (the code defaults only load old model files)."""
    return read_metadata(load_session(SHIPPED_MODEL, 1)).gate


def summarise(
    name: str, ious: list[float], results: list[tuple[QualityIssue, ...]], times: list[float]
) -> str:
    a = np.asarray(ious)
    n = len(results)
    rate = {
        issue: sum(issue in r for r in results) / n
        for issue in (
            QualityIssue.NOT_A_LESION,
            QualityIssue.LESION_TOO_SMALL,
            QualityIssue.LESION_CUT_OFF,
        )
    }
    return (
        f"| {name:<17} | {n:4d} | {np.mean(a >= 0.5):6.1%} | {np.mean(a):5.3f} | "
        f"{np.median(a):5.3f} | {np.percentile(a, 10):5.3f} | "
        f"{rate[QualityIssue.NOT_A_LESION]:6.1%} | {rate[QualityIssue.LESION_TOO_SMALL]:6.1%} | "
        f"{rate[QualityIssue.LESION_CUT_OFF]:6.1%} | {np.median(times):6.2f} |"
    )


def draw(sample: Sample, result: LocalisationResult, path: Path) -> None:
    bgr = cv2.cvtColor(sample.rgb, cv2.COLOR_RGB2BGR)
    for box, colour in ((sample.truth, (0, 255, 0)), (result.box, (0, 0, 255))):
        if box is not None:
            cv2.rectangle(bgr, (box.x0, box.y0), (box.x1 - 1, box.y1 - 1), colour, 1)
    cv2.imwrite(str(path), bgr)


def run_set(
    samples: list[Sample], save: Path | None, tag: str
) -> tuple[list[float], list[tuple[QualityIssue, ...]], list[float]]:
    ious: list[float] = []
    results: list[tuple[QualityIssue, ...]] = []
    times: list[float] = []
    for s in samples:
        t0 = time.perf_counter()
        r = find_lesion(s.rgb)
        times.append((time.perf_counter() - t0) * 1000)
        results.append(localiser_issues(s.rgb, r))
        score = r.box.iou(s.truth) if (r.box is not None and s.truth is not None) else 0.0
        ious.append(score)
        if save is not None and score < 0.5:
            draw(s, r, save / f"{tag}_{score:.2f}_{s.name}.png")
    return ious, results, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/ham10000"))
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-dir", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    cv2.setNumThreads(1)
    if args.save_dir is not None:
        args.save_dir.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(args.seed)
    boxes = {r.image_id: r.box for r in read_records(args.data) if r.box is not None}
    ids = sorted(boxes)
    chosen = [ids[i] for i in rng.choice(len(ids), size=args.n, replace=False)]
    derm = [Sample(i, load_image(args.data, i), boxes[i]) for i in chosen]
    raw, matched = [], []
    for s in derm:
        assert s.truth is not None
        c = composite(s.rgb, s.truth, rng, match_light=False)
        raw.append(Sample(s.name, c.rgb, c.truth))
        c = composite(s.rgb, s.truth, rng, match_light=True)
        matched.append(Sample(s.name, c.rgb, c.truth))

    header = (
        "| set               |    n | IoU≥.5 |  mean |   med |   p10 | NOT_A_ | SMALL  | CUT_OFF|"
        " ms/img |\n|-------------------|------|--------|-------|-------|-------|--------|--------|"
        "--------|--------|"
    )
    rows = []
    for tag, samples in (
        ("dermoscopy", derm),
        ("phone raw paste", raw),
        ("phone lit-matched", matched),
    ):
        ious, results, times = run_set(samples, args.save_dir, tag.replace(" ", "-"))
        rows.append(summarise(tag, ious, results, times))
    negatives = non_lesion_samples(rng)
    _, neg_results, neg_times = run_set(negatives, None, "neg")
    refused = [QualityIssue.NOT_A_LESION in r for r in neg_results]
    accepted = [s.name for s, bad in zip(negatives, refused, strict=True) if not bad]
    sys.stdout.write(header + "\n" + "\n".join(rows) + "\n")
    sys.stdout.write(
        f"\n(c) non-lesion photos: {sum(refused)}/{len(refused)} refused as NOT_A_LESION "
        f"(median {np.median(neg_times):.2f} ms); accepted: {', '.join(accepted) or 'none'}\n"
    )


if __name__ == "__main__":
    main()

"""Photos for calibration and evaluation, and running them through the real pipeline.

Two domains per split, of the same lesions: the dermoscopy images as they are, and a
synthetic *clear* phone photo of each (the lesion at or below its native resolution,
10-25% of the frame width, off-centre, through a simulated phone camera that keeps the
photo usable: little defocus, rare glare), with a fixed seed so every run sees the same
photos. Clearly degraded photos are the quality gate's test set (``training.gate_eval``).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from inference.gate import GateInput
from inference.pipeline import Screener
from inference.types import LesionBox, RGBImage, ScreeningResult
from training.config import TrainConfig
from training.data import CLASSES, MALIGNANT, Record, default_box
from training.pad import PadPhoto, load_pad_split
from training.phone import PhoneCamera, compose_phone_photo, phone_camera

DOMAINS = ("dermoscopy", "phone")
REAL_DOMAIN = "real_phone"  # PAD-UFES-20 photos, the ruler for every threshold
# A clear phone photo: the training camera's side light, noise and JPEG ranges, but
# metering and white balance that worked (skin neither dim, clipped nor grey), focus at
# most a little off and glare rarer (a strongly blurred, glaring or badly exposed photo
# is a bad photo, which the gate should refuse; those are measured in training.gate_eval).
CLEAR_PHOTO = PhoneCamera(
    defocus_sigma=(0.0, 0.3),
    p_glare=0.1,
    metered=(0.5, 0.7),
    exposure=(0.9, 1.1),
    wb_temperature=0.08,
    wb_tint=0.03,
)


@dataclass(frozen=True)
class Photo:
    rgb: RGBImage
    label: int
    box: LesionBox  # where the lesion truly is, in this photo's pixels


def domain_photos(
    images: list[RGBImage], records: list[Record], domain: str, seed: int
) -> Iterator[Photo]:
    rng = np.random.default_rng(seed)
    for img, rec in zip(images, records, strict=True):
        box = rec.box or default_box(img.shape[1], img.shape[0])
        if domain == "dermoscopy":
            yield Photo(img, rec.label, box)
        else:
            photo, pbox = compose_phone_photo(img, box, rng)
            lesion_px = max(pbox.width, pbox.height)
            yield Photo(phone_camera(photo, rng, CLEAR_PHOTO, lesion_px), rec.label, pbox)


def real_photos(cfg: TrainConfig, split: str) -> tuple[list[Photo], list[PadPhoto]]:
    """PAD-UFES-20 photos of one patient-grouped split, as the bot would receive them.

    The box is the localiser's (or the whole frame): PAD has no lesion outlines, so the
    localiser's IoU is not measured on these photos.
    """
    images, records, meta = load_pad_split(
        Path(cfg.pad_dir), cfg.pad_split, cfg.seed, (split,), cfg.limit_images
    )[split]
    photos = [
        Photo(img, rec.label, rec.box or default_box(img.shape[1], img.shape[0]))
        for img, rec in zip(images, records, strict=True)
    ]
    return photos, meta


@dataclass(frozen=True)
class PipelineRun:
    """The pipeline's outputs for a set of photos, as arrays."""

    labels: npt.NDArray[np.int64]
    log_probs: npt.NDArray[np.float64]  # log of the metadata-temperature probabilities
    classified: npt.NDArray[np.bool_]  # a lesion box was found and the crop classified
    refused: npt.NDArray[np.bool_]  # risk came out unassessable
    ood: npt.NDArray[np.float64]
    issues: list[tuple[str, ...]]
    iou: npt.NDArray[np.float64]  # found box vs true box (0 when none found)
    elapsed_ms: npt.NDArray[np.float64]
    gate_inputs: list[GateInput]  # what the gate judged, to judge it again at other thresholds

    @property
    def malignant(self) -> npt.NDArray[np.bool_]:
        return np.isin(self.labels, [CLASSES.index(c) for c in MALIGNANT])


def run_pipeline(screener: Screener, photos: Iterator[Photo], workers: int = 2) -> PipelineRun:
    classes = screener.metadata.classes

    def one(photo: Photo) -> tuple[Photo, ScreeningResult]:
        return photo, screener.screen(photo.rgb, with_overlay=False)

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(one, photos))
    n = len(results)
    log_probs = np.full((n, len(classes)), np.log(1.0 / len(classes)))
    classified = np.zeros(n, bool)
    ood = np.full(n, np.nan)
    for i, (_, r) in enumerate(results):
        # The pipeline classifies every photo (the centre square when no lesion was
        # found); "classified" keeps meaning a lesion crop was judged.
        classified[i] = r.lesion_box is not None
        if r.prediction is not None:
            p = np.array([r.prediction.probabilities[c] for c in classes])
            log_probs[i] = np.log(np.maximum(p, 1e-12))
            ood[i] = r.prediction.ood_score
    return PipelineRun(
        labels=np.array([p.label for p, _ in results], np.int64),
        log_probs=log_probs,
        classified=classified,
        refused=np.array([r.risk.value == "unassessable" for _, r in results]),
        ood=ood,
        issues=[tuple(i.value for i in r.quality.issues) for _, r in results],
        iou=np.array([p.box.iou(r.lesion_box) if r.lesion_box else 0.0 for p, r in results]),
        elapsed_ms=np.array([r.elapsed_ms for _, r in results]),
        gate_inputs=[gate_input(r) for _, r in results],
    )


def gate_input(r: ScreeningResult) -> GateInput:
    """What the gate saw for one screened photo."""
    return GateInput(r.width, r.height, r.lesion_box, r.crop_box, r.evidence)

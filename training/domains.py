"""The three photo domains as the bot would receive them, one split at a time.

PAD-UFES-20 smartphone photos (patient-grouped), MILK10k clinical close-ups (lesion-
grouped) and HAM10000 dermoscopy (lesion-grouped), each photo with its cancer truth, the
group a bootstrap resamples (patient, or lesion where no patient is known), the lesion
(same-spot comparisons) and the strata the model card reports (Fitzpatrick type, skin
tone). Photos decode whole; the pipeline finds the lesion itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from training.config import TrainConfig
from training.data import CLASSES, MALIGNANT, default_box, load_image, load_rgb, read_records
from training.data import split_by_lesion as split_ham
from training.evalsets import Photo
from training.milk import read_milk, split_milk
from training.pad import PAD_TO_CLASS, read_pad, split_by_patient

PAD, MILK, HAM = "pad", "milk", "ham10000"
DOMAIN_TITLES = {
    PAD: "PAD-UFES-20 smartphone photos",
    MILK: "MILK10k clinical close-ups",
    HAM: "HAM10000 dermoscopy",
}


@dataclass(frozen=True)
class DomainSplit:
    name: str
    photos: list[Photo]  # label -1: no model class (MILK10k INF, BEN_OTH, MAL_OTH)
    cancer: npt.NDArray[np.bool_]
    groups: list[str]  # bootstrap unit: patient (PAD) or lesion
    lesions: list[str]
    files: list[str]
    strata: dict[str, list[str]] = field(default_factory=dict)  # name -> value per photo

    @property
    def labels(self) -> npt.NDArray[np.int64]:
        return np.array([p.label for p in self.photos], np.int64)


def _limit(n: int, limit: int) -> slice:
    return slice(0, limit or n)


def pad_split(cfg: TrainConfig, split: str, limit: int = 0) -> DomainSplit:
    data_dir = Path(cfg.pad_dir)
    photos = split_by_patient(read_pad(data_dir), cfg.pad_split, cfg.seed)[split]
    photos = photos[_limit(len(photos), limit)]
    images = [load_rgb(data_dir / "images" / p.file) for p in photos]
    labels = [CLASSES.index(PAD_TO_CLASS[p.diagnostic]) for p in photos]
    return DomainSplit(
        PAD,
        [
            Photo(img, label, default_box(img.shape[1], img.shape[0]))
            for img, label in zip(images, labels, strict=True)
        ],
        np.array([CLASSES[label] in MALIGNANT for label in labels], bool),
        [p.patient_id for p in photos],
        [p.lesion_id for p in photos],
        [p.file for p in photos],
        {"fitzpatrick": [str(p.fitzpatrick) if p.fitzpatrick else "unknown" for p in photos]},
    )


def milk_split(cfg: TrainConfig, split: str, limit: int = 0) -> DomainSplit:
    data_dir = Path(cfg.milk_dir)
    photos = split_milk(read_milk(data_dir), cfg.milk_split, cfg.seed)[split]
    photos = photos[_limit(len(photos), limit)]
    images = [load_rgb(data_dir / "images" / p.file) for p in photos]
    return DomainSplit(
        MILK,
        [
            Photo(img, -1 if p.label is None else p.label, default_box(img.shape[1], img.shape[0]))
            for img, p in zip(images, photos, strict=True)
        ],
        np.array([p.is_cancer for p in photos], bool),
        [p.lesion_id for p in photos],
        [p.lesion_id for p in photos],
        [p.file for p in photos],
        {
            "skin_tone": [
                str(p.skin_tone) if p.skin_tone is not None else "unknown" for p in photos
            ],
            "diagnosis": [p.diagnosis for p in photos],
        },
    )


def ham_split(cfg: TrainConfig, split: str, limit: int = 0) -> DomainSplit:
    data_dir = Path(cfg.data_dir)
    records = split_ham(read_records(data_dir), cfg.split, cfg.seed)[split]
    records = records[_limit(len(records), limit)]
    images = [load_image(data_dir, r.image_id) for r in records]
    return DomainSplit(
        HAM,
        [
            Photo(img, r.label, r.box or default_box(img.shape[1], img.shape[0]))
            for img, r in zip(images, records, strict=True)
        ],
        np.array([CLASSES[r.label] in MALIGNANT for r in records], bool),
        [r.lesion_id for r in records],
        [r.lesion_id for r in records],
        [r.image_id for r in records],
    )


LOADERS = {PAD: pad_split, MILK: milk_split, HAM: ham_split}


def load_domains(
    cfg: TrainConfig, split: str, names: tuple[str, ...] = (PAD, MILK, HAM), limit: int = 0
) -> dict[str, DomainSplit]:
    return {name: LOADERS[name](cfg, split, limit) for name in names}

"""MILK10k clinical close-ups: loading, class mapping and the lesion-grouped split.

MILK10k gives no patient ids and one close-up per lesion here, so the split is by
``lesion_id``, stratified by diagnosis with a fixed seed (read ``../shared/data/milk10k``'s
README). Three diagnoses have no model class: inflammatory (INF), other benign (BEN_OTH)
and other malignant (MAL_OTH), 81 photos together. They are not trained on (no class
to learn them as, and too few to make one) but stay in validation and test, where the
cancer endpoint counts MAL_OTH as cancer and the other two as not: a user can send them,
and the model's answer on them is part of what it is judged by.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from training.data import CLASSES, SPLITS, Record, stratified_groups

MILK_DOMAIN = "milk"
MILK_TO_CLASS: dict[str, str] = {
    "AKIEC": "akiec",
    "BCC": "bcc",
    "BKL": "bkl",
    "DF": "df",
    "MEL": "mel",
    "NV": "nv",
    "VASC": "vasc",
    "SCCKA": "scc",
}
# Cancer: melanoma, basal and squamous cell carcinoma (with keratoacanthoma, which MILK10k
# files with SCC) and the few other malignancies. AKIEC is a precancer (issue 22).
CANCER_DIAGNOSES = frozenset({"BCC", "MEL", "SCCKA", "MAL_OTH"})


@dataclass(frozen=True)
class MilkPhoto:
    file: str
    lesion_id: str
    diagnosis: str  # MILK10k's own code
    age: int | None
    sex: str
    skin_tone: int | None  # 0-5, lighter to darker
    site: str

    @property
    def is_cancer(self) -> bool:
        return self.diagnosis in CANCER_DIAGNOSES

    @property
    def label(self) -> int | None:
        """The model class, or None for the diagnoses the model has no class for."""
        code = MILK_TO_CLASS.get(self.diagnosis)
        return CLASSES.index(code) if code else None


def _int_or_none(text: str) -> int | None:
    return int(float(text)) if text.strip() else None


def read_milk(data_dir: Path) -> list[MilkPhoto]:
    with (data_dir / "metadata.csv").open() as f:
        photos = [
            MilkPhoto(
                file=row["file"],
                lesion_id=row["lesion_id"],
                diagnosis=row["diagnosis"],
                age=_int_or_none(row.get("age_approx", "")),
                sex=row.get("sex", ""),
                skin_tone=_int_or_none(row.get("skin_tone_class", "")),
                site=row.get("site", ""),
            )
            for row in csv.DictReader(f)
        ]
    return sorted(photos, key=lambda p: p.file)


def split_milk(
    photos: list[MilkPhoto], fractions: tuple[float, float, float], seed: int
) -> dict[str, list[MilkPhoto]]:
    """Assign whole lesions to train/val/test, stratified by diagnosis, reproducibly."""
    by_lesion: dict[str, list[MilkPhoto]] = defaultdict(list)
    for p in photos:
        by_lesion[p.lesion_id].append(p)
    strata: dict[str, list[str]] = defaultdict(list)
    for lesion_id in sorted(by_lesion):
        strata[by_lesion[lesion_id][0].diagnosis].append(lesion_id)
    where = stratified_groups([strata[d] for d in sorted(strata)], fractions, seed)
    out: dict[str, list[MilkPhoto]] = {s: [] for s in SPLITS}
    for p in photos:
        out[where[p.lesion_id]].append(p)
    return out


def to_record(photo: MilkPhoto) -> Record:
    """A training record; only for photos with a model class (see :attr:`MilkPhoto.label`)."""
    label = photo.label
    if label is None:
        raise ValueError(f"{photo.diagnosis} has no model class")
    return Record(
        image_id=photo.file.removesuffix(".jpg"),
        lesion_id=photo.lesion_id,
        label=label,
        box=None,
        domain=MILK_DOMAIN,
    )


def describe(splits: dict[str, list[MilkPhoto]]) -> dict[str, dict[str, int]]:
    """Photos per diagnosis in each split, for the model card."""
    return {
        name: {**dict(sorted(Counter(p.diagnosis for p in photos).items())), "photos": len(photos)}
        for name, photos in splits.items()
    }

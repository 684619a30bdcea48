"""PAD-UFES-20, real smartphone photos: loading, class mapping and the patient-grouped split.

One patient can have several lesions and one lesion several photos; photos of the same
person share skin, light, phone and framing, so anything but a split by patient lets the
model recognise the person instead of the lesion and inflates every validation figure.

Class mapping onto the model's classes: ACK -> akiec, BCC -> bcc, MEL -> mel, NEV -> nv,
SEK -> bkl, SCC -> scc. SCC has its own class since MILK10k brought 356 SCC/keratoacanthoma
close-ups (PAD alone has 16 SCC photos, too few for a class): SCC is a cancer, actinic
keratosis a precancer with its own advice, and one class for both counted the precancer as
cancer (issue 22).
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from inference.localize import find_lesion
from inference.types import LesionBox, RGBImage
from training.data import CLASSES, SPLITS, Record, load_rgb, stratified_groups

PAD_TO_CLASS: dict[str, str] = {
    "ACK": "akiec",
    "BCC": "bcc",
    "MEL": "mel",
    "NEV": "nv",
    "SEK": "bkl",
    "SCC": "scc",
}
# Stratify each patient by their rarest diagnosis, so the 35 melanoma and 16 SCC photos
# reach every split instead of following whichever common lesion a patient also had.
_RARITY = ("SCC", "MEL", "ACK", "SEK", "NEV", "BCC")
PAD_DOMAIN = "pad"


@dataclass(frozen=True)
class PadPhoto:
    file: str
    patient_id: str
    lesion_id: str
    diagnostic: str  # PAD's own code (SCC kept apart here for reporting)
    fitzpatrick: int | None  # 1-6 where the dataset records it
    biopsied: bool


def read_pad(data_dir: Path) -> list[PadPhoto]:
    """Read ``metadata.csv``; photos whose diagnosis has no class mapping are left out."""
    photos = []
    with (data_dir / "metadata.csv").open() as f:
        for row in csv.DictReader(f):
            if row["diagnostic"] not in PAD_TO_CLASS:
                continue
            fitz = row.get("fitspatrick") or ""
            photos.append(
                PadPhoto(
                    file=row["file"],
                    patient_id=row["patient_id"],
                    lesion_id=f"pad-{row['lesion_id']}",
                    diagnostic=row["diagnostic"],
                    fitzpatrick=int(float(fitz)) if fitz else None,
                    biopsied=row.get("biopsed", "") == "True",
                )
            )
    return sorted(photos, key=lambda p: p.file)


def split_by_patient(
    photos: list[PadPhoto], fractions: tuple[float, float, float], seed: int
) -> dict[str, list[PadPhoto]]:
    """Assign whole patients to train/val/test, stratified by their rarest diagnosis."""
    by_patient: dict[str, list[PadPhoto]] = defaultdict(list)
    for p in photos:
        by_patient[p.patient_id].append(p)
    strata: dict[str, list[str]] = defaultdict(list)
    for patient in sorted(by_patient):
        codes = {p.diagnostic for p in by_patient[patient]}
        strata[min(codes, key=_RARITY.index)].append(patient)
    where = stratified_groups([strata.get(code, []) for code in _RARITY], fractions, seed)
    out: dict[str, list[PadPhoto]] = {s: [] for s in SPLITS}
    for p in photos:
        out[where[p.patient_id]].append(p)
    for split in SPLITS:
        out[split].sort(key=lambda p: p.file)
    return out


def lesion_box(rgb: RGBImage) -> LesionBox:
    """Where the localiser puts the lesion, or the whole frame when it finds none.

    PAD photos are framed on one lesion by a clinician, so the whole frame is a fair
    fallback; the box only centres the training crop, whose margin and centre are jittered.
    """
    found = find_lesion(rgb)
    h, w = rgb.shape[:2]
    return found.box if found.box is not None else LesionBox(0, 0, w, h)


def to_record(photo: PadPhoto, box: LesionBox | None) -> Record:
    return Record(
        image_id=photo.file.removesuffix(".jpg"),
        lesion_id=photo.lesion_id,
        label=CLASSES.index(PAD_TO_CLASS[photo.diagnostic]),
        box=box,
        domain=PAD_DOMAIN,
    )


def load_pad_split(
    data_dir: Path,
    fractions: tuple[float, float, float],
    seed: int,
    names: tuple[str, ...] = SPLITS,
    limit: int = 0,
) -> dict[str, tuple[list[RGBImage], list[Record], list[PadPhoto]]]:
    """Decode the named splits with a localiser box per photo (the split covers all data)."""
    splits = split_by_patient(read_pad(data_dir), fractions, seed)
    out = {}
    for name in names:
        photos = splits[name][:limit] if limit else splits[name]
        images = [load_rgb(data_dir / "images" / p.file) for p in photos]
        records = [to_record(p, lesion_box(img)) for p, img in zip(photos, images, strict=True)]
        out[name] = (images, records, photos)
    return out


def describe(splits: dict[str, list[PadPhoto]]) -> dict[str, dict[str, int]]:
    """Photos per diagnosis in each split, and patients, for the model card."""
    table: dict[str, dict[str, int]] = {}
    for name, photos in splits.items():
        counts = Counter(p.diagnostic for p in photos)
        table[name] = {**dict(sorted(counts.items())), "photos": len(photos)}
        table[name]["patients"] = len({p.patient_id for p in photos})
    return table

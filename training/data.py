"""HAM10000 loading and the lesion-grouped split.

Several images can show the same lesion; splitting by image would put near-duplicates in
train and test and inflate every metric, so the split is by ``lesion_id``, stratified by
the lesion's diagnosis, with a fixed seed.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inference.types import LesionBox, RGBImage
from training.config import TrainConfig

# ``scc`` is appended (not sorted in) so the first seven logits keep their meaning and a
# model trained before it existed warm-starts row for row (training/warm_start.py).
CLASSES: tuple[str, ...] = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc", "scc")
CLASS_NAMES: dict[str, str] = {
    "akiec": (
        "actinic keratosis or Bowen's disease (sun-damage patches: a precancer or a "
        "surface-only early form; not urgent, but have it looked at)"
    ),
    "bcc": "basal cell carcinoma (a common, slow-growing skin cancer)",
    "bkl": "benign keratosis (harmless age spot or seborrhoeic keratosis)",
    "df": "dermatofibroma (harmless firm skin bump)",
    "mel": "melanoma (a dangerous skin cancer)",
    "nv": "melanocytic nevus (an ordinary mole)",
    "vasc": "vascular lesion (blood-vessel spot such as a cherry angioma)",
    "scc": "squamous cell carcinoma (a skin cancer)",
}
# The endpoint users need is cancer: melanoma, basal and squamous cell carcinoma. Actinic
# keratosis and Bowen's disease are precancers with their own advice (issue 22), so they
# leave the malignant set; the older definition is still reported beside it.
MALIGNANT: tuple[str, ...] = ("bcc", "mel", "scc")
MALIGNANT_WITH_AKIEC: tuple[str, ...] = ("akiec", "bcc", "mel", "scc")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Record:
    image_id: str
    lesion_id: str
    label: int
    box: LesionBox | None  # third-party box in the 200x150 image, if any
    # "pad": real smartphone photos (training/pad.py); "milk": clinical close-ups (milk.py)
    domain: str = "ham10000"


def read_records(data_dir: Path) -> list[Record]:
    """Read the metadata and the optional lesion boxes."""
    boxes: dict[str, LesionBox] = {}
    box_file = data_dir / "lesion_boxes.csv"
    if box_file.exists():
        with box_file.open() as f:
            for row in csv.DictReader(f):
                b = LesionBox(
                    int(float(row["left"])),
                    int(float(row["top"])),
                    int(float(row["right"])),
                    int(float(row["bottom"])),
                )
                if b.width > 4 and b.height > 4:
                    boxes[row["image_id"]] = b
    records = []
    with (data_dir / "HAM10000_metadata.csv").open() as f:
        for row in csv.DictReader(f):
            records.append(
                Record(
                    image_id=row["image_id"],
                    lesion_id=row["lesion_id"],
                    label=CLASSES.index(row["dx"]),
                    box=boxes.get(row["image_id"]),
                )
            )
    return records


def stratified_groups(
    strata: list[list[str]], fractions: tuple[float, float, float], seed: int
) -> dict[str, str]:
    """Assign every group id (a lesion, a patient) to a split, stratum by stratum, reproducibly."""
    rng = np.random.default_rng(seed)
    where: dict[str, str] = {}
    for ids in strata:
        order = rng.permutation(len(ids))
        n_val = round(len(ids) * fractions[1])
        n_test = round(len(ids) * fractions[2])
        for rank, idx in enumerate(order):
            split = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
            where[ids[idx]] = split
    return where


def split_by_lesion(
    records: list[Record], fractions: tuple[float, float, float], seed: int
) -> dict[str, list[Record]]:
    """Assign whole lesions to train/val/test, stratified by class, reproducibly."""
    by_lesion: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        by_lesion[r.lesion_id].append(r)
    by_class: dict[int, list[str]] = defaultdict(list)
    for lesion_id in sorted(by_lesion):
        by_class[by_lesion[lesion_id][0].label].append(lesion_id)
    where = stratified_groups([by_class[label] for label in sorted(by_class)], fractions, seed)
    out: dict[str, list[Record]] = {s: [] for s in SPLITS}
    for r in records:
        out[where[r.lesion_id]].append(r)
    for split in SPLITS:
        out[split].sort(key=lambda r: r.image_id)
    return out


def load_rgb(path: Path) -> RGBImage:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(path)
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def load_image(data_dir: Path, image_id: str) -> RGBImage:
    return load_rgb(data_dir / "images" / f"{image_id}.jpg")


def default_box(width: int, height: int) -> LesionBox:
    """Where HAM10000 lesions sit when no box is known: centred, most of the frame."""
    return LesionBox(int(width * 0.2), int(height * 0.2), int(width * 0.8), int(height * 0.8))


def load_split(
    cfg: TrainConfig, names: Sequence[str] = SPLITS
) -> dict[str, tuple[list[RGBImage], list[Record]]]:
    """Decode the images of the named splits only (the split itself always covers all data)."""
    data_dir = Path(cfg.data_dir)
    splits = split_by_lesion(read_records(data_dir), cfg.split, cfg.seed)
    out = {}
    for name in names:
        records = splits[name][: cfg.limit_images] if cfg.limit_images else splits[name]
        out[name] = ([load_image(data_dir, r.image_id) for r in records], records)
    return out

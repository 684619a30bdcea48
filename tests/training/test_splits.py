"""What the model learns from and how it is split, without torch: PAD-UFES-20 split by
patient, its diagnoses mapped onto the model's classes, and which classes count as
malignant. The expected values are here, in one place: a change of class definitions
(issue 22) updates them here and nowhere else."""

from __future__ import annotations

import hashlib
from collections import defaultdict

import pytest

from training.data import CLASSES, MALIGNANT
from training.pad import PAD_TO_CLASS, PadPhoto, split_by_patient

# What the shipped class definitions are; change with the model, here only.
# Cancer is the endpoint (issue 22): actinic keratosis and Bowen's disease are precancers
# with their own advice, and SCC has its own class.
EXPECTED_MALIGNANT = {"bcc", "mel", "scc"}
EXPECTED_PAD_TO_CLASS = {
    "ACK": "akiec",
    "BCC": "bcc",
    "MEL": "mel",
    "NEV": "nv",
    "SEK": "bkl",
    "SCC": "scc",
}


def test_malignant_classes_are_the_expected_ones() -> None:
    """Melanoma, basal and squamous cell carcinoma count as cancer; akiec does not."""
    assert set(MALIGNANT) == EXPECTED_MALIGNANT
    assert set(MALIGNANT) <= set(CLASSES)


def test_every_pad_diagnosis_maps_onto_its_class() -> None:
    """ACK is sun damage on the way to SCC: akiec (not a harmless keratosis, bkl, and not
    SCC itself, a cancer with its own class)."""
    assert EXPECTED_PAD_TO_CLASS == PAD_TO_CLASS
    assert set(PAD_TO_CLASS.values()) <= set(CLASSES)


def _photos() -> list[PadPhoto]:
    """60 patients, most with two or three different lesions (as in PAD-UFES-20)."""
    codes = ("BCC", "NEV", "ACK", "SEK", "MEL", "SCC")
    photos = []
    for patient in range(60):
        for lesion in range(1 + patient % 3):
            for shot in range(1 + (lesion == 0)):
                photos.append(
                    PadPhoto(
                        file=f"PAT_{patient}_{lesion}_{shot}.png",
                        patient_id=f"PAT_{patient}",
                        lesion_id=f"pad-{patient}-{lesion}",
                        diagnostic=codes[(patient + lesion) % len(codes)],
                        fitzpatrick=None,
                        biopsied=True,
                    )
                )
    return photos


def test_pad_split_keeps_every_patient_with_all_their_lesions_in_one_split() -> None:
    """A patient's other lesions share their skin, camera and clinic visit: split by
    lesion, validation and test would hold patients the model trained on."""
    photos = _photos()
    splits = split_by_patient(photos, (0.6, 0.2, 0.2), seed=42)
    where: dict[str, set[str]] = defaultdict(set)
    for name, ps in splits.items():
        assert ps, f"{name} split is empty"
        for p in ps:
            where[p.patient_id].add(name)
    assert all(len(s) == 1 for s in where.values()), {k: v for k, v in where.items() if len(v) > 1}
    assert sum(len(v) for v in splits.values()) == len(photos)
    assert split_by_patient(photos, (0.6, 0.2, 0.2), seed=42) == splits  # reproducible


def test_validation_and_test_non_lesion_sets_share_no_image() -> None:
    """Thresholds designed on the validation non-lesion images; the test ones stay unseen."""
    pytest.importorskip("skimage")
    from training.gate_eval import NON_LESION_PHOTOS, not_lesion_set

    assert not set(NON_LESION_PHOTOS["val"]) & set(NON_LESION_PHOTOS["test"])
    digests = {
        split: {hashlib.sha256(img.tobytes()).hexdigest() for _, img in not_lesion_set(split, 42)}
        for split in ("val", "test")
    }
    assert len(digests["val"]) > 100 and len(digests["test"]) > 100
    # Black and white frames are the same everywhere; nothing else may be.
    assert len(digests["val"] & digests["test"]) <= 2

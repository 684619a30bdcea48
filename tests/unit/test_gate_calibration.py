"""Calibration chooses every gate threshold by its rule, from validation photos only."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from inference.gate import GateInput
from inference.metadata import GateThresholds
from inference.types import GateEvidence, LesionBox
from tests.unit.test_gate import photo
from training import calibrate
from training.config import TrainConfig
from training.gate_calibration import (
    THRESHOLD_RULES,
    ThresholdRule,
    allowed,
    calibrate_gate,
    choose,
    ood_cutoff,
    report,
)

BLUR = ThresholdRule("max_blur_px", "blurry", (2.6, 2.7, 2.8, 2.9, 3.0), "test")


def test_the_strictest_candidate_within_the_budget_is_chosen() -> None:
    """200 clean photos may lose 2 to one rule: 2.6 would refuse 3, 2.7 refuses 2."""
    blurs = [2.65, 2.75, 2.95] + [1.0] * 197
    clean = {"real": [photo(blur_px=b) for b in blurs]}
    c = choose(BLUR, clean, GateThresholds())
    assert allowed(200) == 2
    assert (c.value, c.within_budget, c.refused) == (2.7, True, {"real": (2, 200)})
    assert "1%" in c.rule and "validation" in c.rule


def test_every_clean_set_must_be_within_the_budget() -> None:
    """A threshold that spares the phone photos but not the dermoscopy moves on."""
    phone = [photo(blur_px=1.0)] * 100
    derm = [photo(blur_px=2.85)] * 5 + [photo(blur_px=1.0)] * 95
    c = choose(BLUR, {"phone": phone, "dermoscopy": derm}, GateThresholds())
    assert c.value == 2.9


def test_when_no_candidate_is_within_the_budget_the_loosest_is_kept_and_said() -> None:
    clean = {"real": [photo(blur_px=3.5)] * 10 + [photo(blur_px=1.0)] * 90}
    c = choose(BLUR, clean, GateThresholds())
    assert (c.value, c.within_budget) == (3.0, False)
    assert "none did" in c.rule


def test_the_ood_cut_off_is_the_largest_per_set_quantile() -> None:
    c = ood_cutoff({"a": [float(i) for i in range(101)], "b": [1.0] * 100}, quantile=0.99)
    assert c.value == pytest.approx(99.0)
    assert c.refused["a"] == (1, 101)


def test_every_gate_threshold_has_a_rule_and_no_code_default_enters() -> None:
    """Calibration starts from each rule's loosest value, never from GateThresholds()."""
    names = {f.name for f in fields(GateThresholds)} - {"advisory_rules"}
    assert {r.field for r in THRESHOLD_RULES} | {"max_ood_score"} == names
    clean = {"real": [photo()] * 50}
    gate, choices, values = calibrate_gate(clean, {"real": [150.0] * 50}, {"real": [0.1] * 50}, {})
    assert set(choices) == names
    assert gate.advisory_rules == ()
    assert not any(v.advisory for v in values.values())
    for rule in THRESHOLD_RULES:
        # Nothing clean is refused at the strictest value: every rule takes it.
        assert getattr(gate, rule.field) == rule.candidates[0], rule.field


def test_calibration_reads_the_validation_split_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Calibrating on a test split would make every test figure a tuned one."""
    asked: list[tuple[str, Any]] = []

    def load_split(cfg: TrainConfig, splits: tuple[str, ...]) -> dict[str, Any]:
        asked.append(("ham10000", splits))
        return {s: ([], []) for s in splits}

    def real_photos(cfg: TrainConfig, split: str) -> tuple[list[Any], list[Any]]:
        asked.append(("pad_ufes20", split))
        return [], []

    monkeypatch.setattr(calibrate, "load_split", load_split)
    monkeypatch.setattr(calibrate, "real_photos", real_photos)
    calibrate.validation_photos(TrainConfig())
    assert asked == [("ham10000", ("val",)), ("pad_ufes20", "val")]


SHIPPED_EVIDENCE = Path(__file__).resolve().parents[2] / "docs/evaluation/gate_calibration.json"


def test_the_rules_reproduce_the_shipped_gate_from_its_validation_evidence() -> None:
    """The measurements calibration saw (written beside the model card) give the gate the
    shipped model carries: a rule changed in gate_calibration.py fails here."""
    from tests.shipped import shipped_gate

    raw = json.loads(SHIPPED_EVIDENCE.read_text())

    def inputs(photos: list[dict[str, Any]]) -> list[GateInput]:
        return [
            GateInput(
                p["width"],
                p["height"],
                LesionBox(*p["box"]) if p["box"] else None,
                LesionBox(*p["crop_box"]) if p["crop_box"] else None,
                GateEvidence(**p["evidence"]),
            )
            for p in photos
        ]

    clean = {name: inputs(photos) for name, photos in raw["clean"].items()}
    guards = {name: inputs(photos) for name, photos in raw["guards"].items()}
    gate, _, _ = calibrate_gate(clean, raw["ood_scores"], raw["errors"], guards)
    assert gate == shipped_gate()


def test_the_report_lists_every_threshold_and_says_which_are_over_budget() -> None:
    clean = {"real": [photo(blur_px=3.5)] * 10 + [photo()] * 90}
    _, choices, _ = calibrate_gate(clean, {"real": [100.0] * 100}, {"real": [0.1] * 100}, {})
    text = report("v", {name: c.as_json() for name, c in choices.items()})
    for f in fields(GateThresholds):
        if f.name != "advisory_rules":
            assert f"| {f.name} |" in text
    assert "| max_blur_px | 3 | **no** | 10 of 100 (10.0%) |" in text


def test_the_guard_sets_hold_smeared_defocused_and_thumbnail_validation_photos(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What an advisory rule must not let through: besides non-lesion images, validation
    photos smeared, out of focus and as thumbnails. Without the thumbnails the low-detail
    rule turned advisory once the motion rule caught the smears, and 85 % of 96 px
    thumbnails were answered (docs/model_card.md, motion blur)."""
    import numpy as np
    import numpy.typing as npt

    from training.evalsets import Photo

    rgb = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    box = LesionBox(150, 100, 250, 200)
    asked: list[str] = []

    def real_photos(cfg: TrainConfig, split: str) -> tuple[list[Photo], list[Any]]:
        asked.append(split)
        return [Photo(rgb, 0, box)] * 3, []

    monkeypatch.setattr(calibrate, "real_photos", real_photos)
    monkeypatch.setattr(calibrate, "not_lesion_set", lambda split, seed: iter([("x", rgb)]))
    guards = calibrate.guard_photos(TrainConfig())
    assert asked == ["val"]
    assert set(guards) == {"motion_blur", "defocus", "tiny", "not_a_lesion"}
    assert [min(p.rgb.shape[:2]) for p in guards["tiny"]] == [96] * 3
    assert all(not np.array_equal(p.rgb, rgb) for p in guards["motion_blur"])

    # Out of focus: the same photos, evenly softened (far less pixel-to-pixel detail).
    def detail(img: npt.NDArray[np.uint8]) -> float:
        return float(np.abs(np.diff(img.astype(float), axis=1)).mean())

    assert all(detail(p.rgb) < 0.2 * detail(rgb) for p in guards["defocus"])

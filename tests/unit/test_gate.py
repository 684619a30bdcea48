"""The gate: every rule fires on its own measurement just past its threshold and not
before, issues come out in the order users should fix them, and the thresholds travel
in the model's metadata."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import pytest

from inference.gate import RULE_NAMES, RULES, GateInput, decide, fired_rules
from inference.metadata import GateThresholds, ModelMetadata, RiskThresholds
from inference.types import LesionBox
from inference.types import QualityIssue as Q

T = GateThresholds()
W, H = 1280, 960
BOX = LesionBox(580, 430, 700, 530)  # 120 px: well inside, large enough
OOD = 300.0

# A clean photo of a lesion: every measurement comfortably on the answering side.
CLEAN: dict[str, float] = {
    "skin_fraction": 0.95,
    "skin_or_lesion_fraction": 0.97,
    "lesion_fraction": 0.02,
    "rivals": 0.0,
    "specks_around": 3.0,
    "speck_darkness": 14.0,
    "ood_score": 150.0,
    "detail_side": 960.0,
    "blockiness": 1.1,
    "luma_p05": 90.0,
    "luma_p50": 150.0,
    "luma_p90": 190.0,
    "clipped_fraction": 0.0,
    "blur_px": 1.0,
    "lesion_glare_fraction": 0.0,
    "lesion_edge_contact": 0.0,
    "centre_offset": 0.1,
}


def photo(box: LesionBox | None = BOX, **changes: float) -> GateInput:
    return GateInput(W, H, box, {**CLEAN, **changes}, 0.4, OOD)


# rule -> (the measurements that make it fire, the issue users must hear)
FIRING: dict[str, tuple[GateInput, Q]] = {
    "no_lesion_found": (photo(box=None), Q.NOT_A_LESION),
    "little_skin": (photo(skin_or_lesion_fraction=0.1), Q.NOT_A_LESION),
    "scene_not_close_up": (
        photo(lesion_fraction=0.2, skin_or_lesion_fraction=0.75),
        Q.NOT_A_LESION,
    ),
    "many_rivals": (photo(rivals=T.max_rivals + 1), Q.NOT_A_LESION),
    "print_specks": (photo(specks_around=120, speck_darkness=40), Q.NOT_A_LESION),
    "out_of_distribution": (photo(ood_score=OOD + 1), Q.NOT_A_LESION),
    "low_detail": (photo(detail_side=T.min_detail_side - 1), Q.LOW_RESOLUTION),
    "jpeg_blocking": (photo(blockiness=T.max_blockiness + 1), Q.LOW_RESOLUTION),
    "too_dark": (photo(luma_p90=T.dark_p90 - 1), Q.TOO_DARK),
    "blown_out": (photo(clipped_fraction=T.max_clipped_fraction + 0.1), Q.OVEREXPOSED),
    "washed_out": (photo(luma_p05=T.washed_out_p05 + 1), Q.OVEREXPOSED),
    "blurry": (photo(blur_px=T.max_blur_px + 0.5), Q.BLURRY),
    "glare_on_lesion": (
        photo(lesion_glare_fraction=T.max_lesion_glare_fraction + 0.05),
        Q.GLARE,
    ),
    "lesion_too_small": (photo(box=LesionBox(600, 450, 612, 460)), Q.LESION_TOO_SMALL),
    "lesion_cut_off": (photo(lesion_edge_contact=T.max_edge_contact + 0.1), Q.LESION_CUT_OFF),
}


def test_every_rule_has_a_firing_case() -> None:
    """A rule added to the gate without a case here fails this test."""
    assert set(FIRING) == set(RULE_NAMES)


def test_a_clean_photo_passes_every_rule() -> None:
    assert fired_rules(photo(), T) == ()
    assert decide(photo(), T) == ()


@pytest.mark.parametrize("name", RULE_NAMES)
def test_each_rule_refuses_its_own_defect_and_only_it(name: str) -> None:
    """Removing or loosening any rule makes its case answer instead of refuse."""
    gate_input, issue = FIRING[name]
    assert [r.name for r in fired_rules(gate_input, T)] == [name]
    assert decide(gate_input, T) == (issue,)


@pytest.mark.parametrize(
    ("name", "changes"),
    [
        ("many_rivals", {"rivals": T.max_rivals}),
        ("blurry", {"blur_px": T.max_blur_px}),
        ("glare_on_lesion", {"lesion_glare_fraction": T.max_lesion_glare_fraction}),
        # Many specks as faint as hair follicles and pores: skin, not print.
        ("print_specks", {"specks_around": 500, "speck_darkness": 15.0}),
    ],
)
def test_rules_moved_on_real_photos_answer_at_their_threshold(
    name: str, changes: dict[str, float]
) -> None:
    """The values clean PAD-UFES-20 validation photos showed are answered."""
    assert name not in [r.name for r in fired_rules(photo(**changes), T)]


def test_blur_is_not_reported_in_a_dark_photo_nor_glare_in_a_blown_out_one() -> None:
    dark_and_soft = photo(luma_p90=T.dark_p90 - 10, blur_px=T.max_blur_px + 2)
    assert decide(dark_and_soft, T) == (Q.TOO_DARK,)
    blown = photo(clipped_fraction=0.9, lesion_glare_fraction=0.5)
    assert decide(blown, T) == (Q.OVEREXPOSED,)


def test_size_and_place_are_not_reported_for_what_is_no_lesion() -> None:
    spot = photo(box=LesionBox(600, 450, 612, 460), rivals=T.max_rivals + 5)
    assert decide(spot, T) == (Q.NOT_A_LESION,)


def test_a_fixable_defect_comes_before_not_a_lesion() -> None:
    """In a blurred photo of skin, 'not a lesion' may only mean 'cannot see it'."""
    blurred_skin = photo(box=None, blur_px=T.max_blur_px + 2, skin_fraction=0.9)
    assert decide(blurred_skin, T) == (Q.BLURRY, Q.NOT_A_LESION)


def test_issue_order_follows_the_declared_priority() -> None:
    several = photo(
        detail_side=T.min_detail_side - 1,
        lesion_edge_contact=0.5,
        lesion_glare_fraction=0.5,
    )
    assert decide(several, T) == (Q.LOW_RESOLUTION, Q.GLARE, Q.LESION_CUT_OFF)


def _metadata(**extra: object) -> dict[str, object]:
    meta = ModelMetadata(
        version="v",
        classes=("nv", "mel"),
        class_names={"nv": "naevus", "mel": "melanoma"},
        malignant_classes=("mel",),
        input_size=160,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        color_constancy_power=6.0,
        temperature=1.0,
        thresholds=RiskThresholds(0.1, 0.6),
        ood_threshold=300.0,
    )
    raw = json.loads(meta.to_json())
    raw.update(extra)
    return raw


def test_a_model_file_without_a_gate_section_loads_with_the_defaults() -> None:
    raw = _metadata()
    del raw["gate"]
    assert ModelMetadata.from_json(json.dumps(raw)).gate == GateThresholds()


def test_gate_thresholds_travel_with_the_model() -> None:
    """Calibration writes its thresholds into the metadata; the gate reads them back."""
    meta = ModelMetadata.from_json(json.dumps(_metadata())).with_gate(max_blur_px=2.0)
    again = ModelMetadata.from_json(meta.to_json())
    assert again.gate.max_blur_px == 2.0
    soft = photo(blur_px=2.5)
    assert decide(soft, again.gate) == (Q.BLURRY,)
    assert decide(soft, T) == ()


def test_a_partial_gate_section_keeps_the_other_defaults_and_unknown_keys_fail() -> None:
    loaded = ModelMetadata.from_json(json.dumps(_metadata(gate={"max_rivals": 9})))
    assert loaded.gate == replace(T, max_rivals=9)
    with pytest.raises(ValueError, match="unknown gate thresholds"):
        ModelMetadata.from_json(json.dumps(_metadata(gate={**asdict(T), "typo": 1})))


def test_rules_are_named_uniquely() -> None:
    assert len(RULE_NAMES) == len(set(RULE_NAMES)) == len(RULES)

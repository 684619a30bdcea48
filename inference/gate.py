"""The photo gate: every reason to refuse a photo, in one place and in order.

The localiser only finds the lesion, and :mod:`inference.scene` and :mod:`inference.quality`
only measure; this module turns their measurements (one typed
:class:`~inference.types.GateEvidence`) into refusals, each by one named :class:`Rule` with its
threshold from the model's :class:`~inference.metadata.GateThresholds`, which calibration
chose on validation photos (:mod:`training.gate_calibration`). A refusal is not free: a clear
lesion refused leaves a person without an answer, so each threshold refuses at most 1 % of the
clean validation photos where its defect allows, and a rule that still refuses more without
the classifier judging what it refuses worse is *advisory* (``GateThresholds.advisory_rules``,
chosen by :mod:`training.gate_value`): it does not refuse, and its issue goes with the answer
as a retake tip (:func:`tips`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from inference.metadata import GateThresholds
from inference.types import QUALITY_PRIORITY, GateEvidence, LesionBox, QualityIssue

Q = QualityIssue


@dataclass(frozen=True)
class GateInput:
    """What the gate judges: the photo's size, the lesion box, the square the classifier
    saw (computed once, by the pipeline) and every measurement, typed."""

    width: int
    height: int
    box: LesionBox | None
    crop_box: LesionBox | None
    evidence: GateEvidence


@dataclass(frozen=True)
class Rule:
    """One reason to refuse: a name for reports, the issue users hear, when it fires."""

    name: str
    issue: QualityIssue
    fires: Callable[[GateInput, GateThresholds], bool]
    # Not reported when one of these issues already stands (rules run in order): in a
    # dark or blown-out frame there are no edges to judge focus by, a frame blown out
    # everywhere is "overexposed", not "glare". The advice that helps is the first one.
    unless: frozenset[QualityIssue] = frozenset()


def _too_small(g: GateInput, t: GateThresholds) -> bool:
    """Longer side under a share of the frame, or a crop with too few real pixels."""
    if g.box is None:
        return False
    side = max(g.box.width, g.box.height)
    # A 3 mm mole shot from 15 cm is ~1.9 % of a phone photo's shorter side; a crop under
    # min_crop_px real pixels across would be mostly interpolation at the model's input.
    crop_side = min(g.crop_box.width, g.crop_box.height) if g.crop_box else side
    return side < t.min_lesion_side_fraction * min(g.width, g.height) or crop_side < t.min_crop_px


# In priority order within each issue; every comparison is False on a missing (NaN)
# measurement, so a rule whose measurement was not taken does not fire.
RULES: tuple[Rule, ...] = (
    Rule("no_lesion_found", Q.NOT_A_LESION, lambda g, t: g.box is None),
    Rule(
        "little_skin",
        Q.NOT_A_LESION,
        lambda g, t: g.evidence.skin_or_lesion_fraction < t.min_skin_fraction,
    ),
    Rule(
        "scene_not_close_up",
        Q.NOT_A_LESION,
        lambda g, t: (
            g.evidence.lesion_fraction >= t.close_up_lesion_fraction
            and g.evidence.skin_or_lesion_fraction < t.close_up_min_skin
        ),
    ),
    Rule("many_rivals", Q.NOT_A_LESION, lambda g, t: g.evidence.rivals > t.max_rivals),
    Rule(
        "faint_spot",
        Q.NOT_A_LESION,
        lambda g, t: g.evidence.lesion_contrast < t.min_lesion_contrast,
    ),
    Rule(
        "print_specks",
        Q.NOT_A_LESION,
        lambda g, t: (
            g.evidence.specks_around > t.max_specks_around
            and g.evidence.speck_darkness >= t.print_speck_darkness
        ),
    ),
    Rule(
        "out_of_distribution",
        Q.NOT_A_LESION,
        lambda g, t: g.evidence.ood_score > t.max_ood_score,
    ),
    Rule("few_pixels", Q.LOW_RESOLUTION, lambda g, t: min(g.width, g.height) < t.min_photo_side),
    Rule("low_detail", Q.LOW_RESOLUTION, lambda g, t: g.evidence.detail_side < t.min_detail_side),
    Rule("jpeg_blocking", Q.LOW_RESOLUTION, lambda g, t: g.evidence.blockiness > t.max_blockiness),
    Rule("too_dark", Q.TOO_DARK, lambda g, t: g.evidence.luma_p90 < t.dark_p90),
    Rule(
        "blown_out",
        Q.OVEREXPOSED,
        lambda g, t: g.evidence.clipped_fraction > t.max_clipped_fraction,
    ),
    Rule("washed_out", Q.OVEREXPOSED, lambda g, t: g.evidence.luma_p05 > t.washed_out_p05),
    Rule(
        "blurry",
        Q.BLURRY,
        lambda g, t: g.evidence.blur_px > t.max_blur_px,
        unless=frozenset({Q.TOO_DARK, Q.OVEREXPOSED}),
    ),
    Rule(
        "motion_blurred",
        Q.BLURRY,
        lambda g, t: g.evidence.motion_blur_px > t.max_motion_blur_px,
        unless=frozenset({Q.TOO_DARK, Q.OVEREXPOSED}),
    ),
    Rule(
        "glare_on_lesion",
        Q.GLARE,
        lambda g, t: g.evidence.lesion_glare_fraction > t.max_lesion_glare_fraction,
        unless=frozenset({Q.OVEREXPOSED}),
    ),
    # The spot's size and place mean nothing once it is judged no lesion at all.
    Rule("lesion_too_small", Q.LESION_TOO_SMALL, _too_small, frozenset({Q.NOT_A_LESION})),
    Rule(
        "lesion_cut_off",
        Q.LESION_CUT_OFF,
        lambda g, t: (
            g.evidence.lesion_edge_contact > t.max_edge_contact
            or g.evidence.centre_offset > t.max_centre_offset
        ),
        frozenset({Q.NOT_A_LESION}),
    ),
)
RULE_NAMES: tuple[str, ...] = tuple(r.name for r in RULES)
RULES_BY_NAME: dict[str, Rule] = {r.name: r for r in RULES}
# The rules about the photo itself rather than about what is in it.
_ABOUT_CONTENT = (Q.NOT_A_LESION, Q.LESION_TOO_SMALL, Q.LESION_CUT_OFF)
PHOTO_RULES: tuple[Rule, ...] = tuple(r for r in RULES if r.issue not in _ABOUT_CONTENT)


def fired_rules(g: GateInput, t: GateThresholds) -> tuple[Rule, ...]:
    """The rules that refuse this photo, each judged on its own (no ``unless``)."""
    return tuple(r for r in RULES if r.fires(g, t))


# Photo defects that hide the evidence "not a lesion" is judged on: in a dark or blown-out
# frame skin has no colour left, and in a blurred one a mole has no edge and the crop
# looks unlike any training image. Then "not a lesion" may only mean "cannot see it".
_HIDES_COLOUR = (Q.TOO_DARK, Q.OVEREXPOSED)
# A blurred frame that is mostly skin-coloured, or in which a spot was found, is a photo
# of skin: the blur is what to fix. A blurred page or screen stays "not a lesion".
_MOSTLY_SKIN = 0.5


def order_issues(
    issues: tuple[QualityIssue, ...], skin_fraction: float, spot_found: bool
) -> tuple[QualityIssue, ...]:
    """Most important first: the issues' declared order, but a fixable photo defect before
    a "not a lesion" that the defect may have caused.

    Measured on the gate's evaluation sets: with "not a lesion" always first, 90% of
    over-exposed lesion photos were told "this is not a skin lesion" instead of "too
    bright". Both stay listed; only the first piece of advice changes.
    """
    ranked = tuple(i for i in QUALITY_PRIORITY if i in issues)
    if Q.NOT_A_LESION not in ranked:
        return ranked
    first = [i for i in ranked if i in _HIDES_COLOUR]
    if Q.BLURRY in ranked and (spot_found or skin_fraction >= _MOSTLY_SKIN):
        first.append(Q.BLURRY)
    return (*first, *(i for i in ranked if i not in first))


def _found(g: GateInput, t: GateThresholds, rules: tuple[Rule, ...]) -> set[QualityIssue]:
    found: set[QualityIssue] = set()
    for rule in rules:
        if rule.issue not in found and not (rule.unless & found) and rule.fires(g, t):
            found.add(rule.issue)
    return found


def refusing(t: GateThresholds, rules: tuple[Rule, ...] = RULES) -> tuple[Rule, ...]:
    """The rules that refuse: all but the ones calibration made advisory."""
    return tuple(r for r in rules if r.name not in t.advisory_rules)


def decide(
    g: GateInput, t: GateThresholds, rules: tuple[Rule, ...] = RULES
) -> tuple[QualityIssue, ...]:
    """Every issue that refuses this photo, the one to fix first first; () to answer."""
    found = _found(g, t, refusing(t, rules))
    return order_issues(tuple(found), g.evidence.skin_fraction, g.box is not None)


def tips(g: GateInput, t: GateThresholds) -> tuple[QualityIssue, ...]:
    """Retake tips for an answered photo: the issues of the advisory rules that fire.

    "Not a lesion" is never a tip (it would contradict the answer it goes with): an
    advisory not-a-lesion rule is simply one that no longer refuses.
    """
    advisory = tuple(
        r for r in RULES if r.name in t.advisory_rules and r.issue is not Q.NOT_A_LESION
    )
    found = _found(g, t, advisory)
    return tuple(i for i in QUALITY_PRIORITY if i in found)

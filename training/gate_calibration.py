"""Choose every threshold of the photo gate from validation photos, with the rule that chose it.

A refusal is not free: a clear photo refused leaves a person without an answer. So each
threshold starts at the strictest value that its defect argues for and is loosened, one
step at a time, until it refuses at most :data:`CLEAN_BUDGET` of the clean photos of every
validation set (real phone photos of PAD-UFES-20's patient-grouped validation split, and
HAM10000 validation dermoscopy), but never past the loosest value that still refuses the
defect it is there for. When even the loosest value refuses more, the loosest is kept and
the record says so. Each rule is judged on its own, as :func:`inference.gate.fired_rules`
does: whatever the other rules say.

The OOD cut-off has its own rule (a quantile of every validation set's lesion crops). Then
every rule faces the value test of :mod:`training.gate_value`: one over its budget whose
refusals the classifier judges no worse than what it answers becomes advisory, unless that
lets through motion-blurred or non-lesion validation images the gate now stops.

:func:`calibrate_gate` is pure: the same measurements give the same thresholds, whatever
thresholds the model being calibrated carried before, and none comes from a code default
(``training.calibrate`` reproduces its own output to the byte).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

from inference.gate import RULES_BY_NAME, GateInput, Rule
from inference.localize import LocaliserParams
from inference.metadata import GateThresholds
from training.gate_value import CLEAN_BUDGET, RuleValue, allowed, judge_rules

__all__ = ["CLEAN_BUDGET", "allowed", "calibrate_gate", "choose", "ood_cutoff", "report"]
# Share of each validation set's lesion crops allowed above the OOD cut-off: a small
# refusal rate on real lesions for refusing images far from anything seen in training.
OOD_QUANTILE = 0.99


def _steps(first: float, last: float, step: float) -> tuple[float, ...]:
    """``first`` to ``last`` inclusive in ``step``s (either direction), rounded to 4 places."""
    n = round(abs(last - first) / step)
    sign = 1.0 if last >= first else -1.0
    return tuple(round(first + sign * i * step, 4) for i in range(n + 1))


@dataclass(frozen=True)
class ThresholdRule:
    """How one threshold is chosen: candidates from the strictest to the loosest allowed."""

    field: str  # a GateThresholds field
    rule: str  # the inference.gate rule it belongs to
    candidates: tuple[float, ...]  # strictest first; the last is the loosest allowed
    why: str  # where the strictest and the loosest value come from


# In order: a rule with two thresholds is fitted with its partner's value chosen above it.
THRESHOLD_RULES: tuple[ThresholdRule, ...] = (
    ThresholdRule(
        "min_skin_fraction",
        "little_skin",
        (0.15, 0.10),
        "documents, landscapes and screenshots are mostly not skin; a lesion photo is mostly skin",
    ),
    ThresholdRule(
        "close_up_lesion_fraction",
        "scene_not_close_up",
        (0.1, 0.15, 0.2),
        "a 'spot' this large in a frame that is not nearly all skin is a face, an animal "
        "or a stained slide",
    ),
    ThresholdRule(
        "close_up_min_skin",
        "scene_not_close_up",
        (0.9, 0.85, 0.8),
        "a close-up of a large lesion is nearly all skin around it",
    ),
    ThresholdRule(
        "max_rivals",
        "many_rivals",
        (3, 4, 5),
        "text, a pattern or sensor noise has many spots as lesion-like as the best one; "
        "grainy skin without a spot (6 rivals, tests/unit/test_localize.py) must stay refused",
    ),
    ThresholdRule(
        "min_lesion_contrast",
        "faint_spot",
        _steps(6.5, LocaliserParams().min_spot_contrast, 0.25),
        "the best spot on plain skin differs from the skin around it by 5.3-7.0 CIELAB units "
        "(gate_eval's plain skin, validation half); the loosest is the localiser's own floor "
        "for a spot (min_spot_contrast), so it refuses nothing more",
    ),
    ThresholdRule(
        "max_specks_around",
        "print_specks",
        (30,),
        "a printed page scatters hundreds of dark specks; fitted together with "
        "print_speck_darkness, which separates print from hair follicles and pores",
    ),
    ThresholdRule(
        "print_speck_darkness",
        "print_specks",
        _steps(18, 23, 1),
        "follicles and pores darken skin by at most 15.7 L* on clean PAD val photos: the "
        "strictest keeps a just-noticeable difference (2 L*) above them; ink on paper "
        "darkens by 23-58 (gate_eval's rendered documents): the faintest print is the loosest",
    ),
    ThresholdRule(
        "min_photo_side",
        "few_pixels",
        _steps(120, 100, 10),
        "0.75 x the 160 px input is the strictest; a 96 px thumbnail (gate_eval's 'tiny') "
        "must be refused, so 100 is the loosest; unlike low detail this counts pixels, so a "
        "soft photo of full size is not a thumbnail",
    ),
    ThresholdRule(
        "min_detail_side",
        "low_detail",
        _steps(120, 100, 10),
        "0.75 x the 160 px input is the strictest; a 96 px thumbnail (gate_eval's 'tiny') "
        "must be refused, so 100 is the loosest",
    ),
    ThresholdRule(
        "max_blockiness",
        "jpeg_blocking",
        (8.0, 10.0),
        "natural photos measure ~1, JPEG quality 4-6 measures 44-68 (gate_eval's heavy_jpeg)",
    ),
    ThresholdRule(
        "dark_p90",
        "too_dark",
        (45.0, 40.0),
        "well-exposed very dark skin still has highlights above 45 (of 255)",
    ),
    ThresholdRule(
        "max_clipped_fraction",
        "blown_out",
        (0.25, 0.3),
        "a quarter of the frame blown out to white hides the lesion's surroundings",
    ),
    ThresholdRule(
        "washed_out_p05",
        "washed_out",
        (200.0, 210.0),
        "even the darkest twentieth of the frame this bright: no contrast left",
    ),
    ThresholdRule(
        "max_blur_px",
        "blurry",
        _steps(2.6, 3.0, 0.1),
        "HAM10000 blurred on purpose (blur_study.md): AUC 0.885 sharp, 0.861 at sigma 2, "
        "0.842 at 3; 2.6 the strictest, 3.0 the loosest",
    ),
    ThresholdRule(
        "max_motion_blur_px",
        "motion_blurred",
        _steps(0.5, 1.0, 0.05),
        "worst minus best direction's blur (motion_blur.md, PAD val): a straight smear of 2 % "
        "of the shorter side reads 0.71 (median) and already costs cancer AUC 0.911 -> 0.863, "
        "so 0.5 the strictest; one of 10 % (gate_eval's real motion_blur copies, AUC 0.727) "
        "reads >= 1.0 on 97 %, so 1.0 the loosest",
    ),
    ThresholdRule(
        "max_lesion_glare_fraction",
        "glare_on_lesion",
        (0.02, 0.03),
        "flash reflections painted over lesions (gate_eval's glare) cost AUC 0.756 -> "
        "0.530; at 2 % ~88 % of those copies are caught",
    ),
    ThresholdRule(
        "min_lesion_side_fraction",
        "lesion_too_small",
        (0.015, 0.01),
        "a 3 mm mole from 15 cm is ~1.9 % of a phone photo's shorter side",
    ),
    ThresholdRule(
        "min_crop_px",
        "lesion_too_small",
        (64, 48),
        "a crop under 64 real pixels is mostly interpolation at the 160 px input",
    ),
    ThresholdRule(
        "max_edge_contact",
        "lesion_cut_off",
        _steps(0.2, 0.3, 0.05),
        "a lesion cut by the frame edge is judged on part of it; at 0.3 under half of "
        "gate_eval's cut-off copies are caught",
    ),
    ThresholdRule(
        "max_centre_offset",
        "lesion_cut_off",
        (0.75, 0.8),
        "a lesion in the photo's outer corner is usually half out of it",
    ),
)


@dataclass(frozen=True)
class Choice:
    """One threshold as calibration chose it, and what it costs on each clean set."""

    field: str
    value: float
    rule: str  # the rule that chose it, in words
    refused: dict[str, tuple[int, int]]  # clean set -> (refused by this rule, photos)
    within_budget: bool

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def refusals(rule: Rule, photos: Sequence[GateInput], t: GateThresholds) -> int:
    # int(): a rule may answer with a numpy bool, and the count goes into JSON metadata.
    return int(sum(bool(rule.fires(g, t)) for g in photos))


def choose(
    spec: ThresholdRule,
    clean: Mapping[str, Sequence[GateInput]],
    t: GateThresholds,
    budget: float = CLEAN_BUDGET,
) -> Choice:
    """The strictest candidate within the budget on every clean set, else the loosest."""
    rule = RULES_BY_NAME[spec.rule]
    counts: dict[str, tuple[int, int]] = {}
    value = spec.candidates[-1]
    within = False
    for v in spec.candidates:
        trial = _with(t, spec.field, v)
        counts = {k: (refusals(rule, ps, trial), len(ps)) for k, ps in clean.items()}
        if all(k <= allowed(n, budget) for k, n in counts.values()):
            value, within = v, True
            break
    else:
        last = _with(t, spec.field, value)
        counts = {k: (refusals(rule, ps, last), len(ps)) for k, ps in clean.items()}
    sets = ", ".join(f"{k} {r}/{n}" for k, (r, n) in counts.items())
    text = (
        f"strictest of {list(spec.candidates)} refusing at most {budget:.0%} of the clean "
        f"photos of each validation set ({sets} refused by '{spec.rule}'); "
        + ("" if within else "none did, so the loosest allowed; ")
        + spec.why
    )
    return Choice(spec.field, float(value), text, counts, within)


def ood_cutoff(ood_scores: Mapping[str, Sequence[float]], quantile: float = OOD_QUANTILE) -> Choice:
    """At most 1 - ``quantile`` of the lesion crops of EACH validation set beyond the cut-off.

    Pooled, the 2,590 HAM10000 crops set it alone (311 for lite0-pad-160-2026-12-01) and it
    refused 9.2 % of the clean real validation photos, which the classifier judged better
    than the rest; non-lesion images mostly sit *closer* to the training lesions than real
    photos do, so that cut-off added two of 197 non-lesion refusals.
    """
    per_set = {
        k: float(np.quantile(np.asarray(v, np.float64), quantile)) for k, v in ood_scores.items()
    }
    value = max(per_set.values())
    counts = {k: (int(sum(s > value for s in v)), len(v)) for k, v in ood_scores.items()}
    text = (
        f"the largest of each validation set's {quantile:.0%} quantile of the lesion crops' "
        "OOD distance (" + ", ".join(f"{k} {q:.1f}" for k, q in per_set.items()) + ")"
    )
    return Choice("max_ood_score", value, text, counts, True)


def calibrate_gate(
    clean: Mapping[str, Sequence[GateInput]],
    ood_scores: Mapping[str, Sequence[float]],
    errors: Mapping[str, Sequence[float]],
    guards: Mapping[str, Sequence[GateInput]],
) -> tuple[GateThresholds, dict[str, Choice], dict[str, RuleValue]]:
    """Every gate threshold from the clean validation photos' gate inputs and OOD scores,
    and which rules only advise, from the classifier's rank error on each clean photo
    (``errors``, aligned with ``clean``; :func:`training.gate_value.rank_errors`) and the
    guard sets whose refusals advisory rules must keep (``guards``).

    Fitted in :data:`THRESHOLD_RULES`' order from a start with every threshold at its
    loosest allowed value: a rule with two thresholds fits the first with its partner as
    loose as it may be, then the partner with the first as chosen. No code default enters.
    Then each rule's value test at the chosen thresholds (:func:`training.gate_value.
    judge_rules`): a rule over its budget whose refusals the classifier judges no worse
    than the photos it answers becomes advisory.
    """
    covered = {s.field for s in THRESHOLD_RULES} | {"max_ood_score", "advisory_rules"}
    missing = {f.name for f in fields(GateThresholds)} - covered
    if missing:
        raise ValueError(f"gate thresholds without a calibration rule: {sorted(missing)}")
    ood = ood_cutoff(ood_scores)
    choices: dict[str, Choice] = {ood.field: ood}
    loosest: dict[str, Any] = {s.field: _typed(s.field, s.candidates[-1]) for s in THRESHOLD_RULES}
    t = GateThresholds(**loosest, max_ood_score=ood.value)
    for spec in THRESHOLD_RULES:
        c = choose(spec, clean, t)
        choices[spec.field] = c
        t = _with(t, spec.field, c.value)
    values = judge_rules(clean, errors, guards, t)
    t = replace(t, advisory_rules=tuple(name for name, v in values.items() if v.advisory))
    return t, choices, values


_INT_FIELDS = frozenset(f.name for f in fields(GateThresholds) if f.type in ("int", int))


def _typed(field: str, value: float) -> float | int:
    return int(value) if field in _INT_FIELDS else float(value)


def _with(t: GateThresholds, field: str, value: float) -> GateThresholds:
    changes: dict[str, Any] = {field: _typed(field, value)}
    return replace(t, **changes)


def report(version: str, choices: Mapping[str, Mapping[str, Any]]) -> str:
    """The gate's thresholds as calibration chose them, with what each costs (markdown).

    ``choices`` as stored in the model's ``metrics["gate"]`` (each :meth:`Choice.as_json`).
    """
    sets = sorted({s for c in choices.values() for s in c["refused"]})
    lines = [
        "# Gate thresholds as calibration chose them",
        "",
        "Generated by `python -m training.calibrate` (or, from a model file, by",
        "`python -m training.gate_calibration MODEL`); do not edit by hand.",
        f"Model `{version}`. Each threshold is the strictest of its candidates that refuses at",
        f"most {CLEAN_BUDGET:.0%} of the clean photos of each validation set, never past the",
        "loosest (training/gate_calibration.py); 'refused' is what that rule alone refuses of",
        "each set's clean photos (photos, share). Over budget: even the loosest value allowed",
        "refuses more, and the loosest is kept. The OOD cut-off has its own rule.",
        "",
        "| threshold | value | within budget | " + " | ".join(f"{s} refused" for s in sets) + " |",
        "|---|---|---|" + "---|" * len(sets),
    ]
    for name in sorted(choices):
        c = choices[name]
        cells = []
        for s in sets:
            k, n = c["refused"].get(s, (0, 0))
            cells.append(f"{k} of {n} ({k / n:.1%})" if n else "-")
        lines.append(
            f"| {name} | {c['value']:g} | {'yes' if c['within_budget'] else '**no**'} | "
            + " | ".join(cells)
            + " |"
        )
    lines += ["", "The rule behind each, as recorded in the model's metadata:", ""]
    lines += [f"- `{name}`: {choices[name]['rule']}" for name in sorted(choices)]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Print the report of a model file's calibrated gate (its metadata's metrics["gate"])."""
    import sys
    from pathlib import Path

    from inference.classifier import load_session, read_metadata

    meta = read_metadata(load_session(Path(sys.argv[1]), 1))
    print(report(meta.version, meta.metrics["gate"]), end="")


if __name__ == "__main__":
    main()

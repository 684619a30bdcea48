"""Fit temperature, risk thresholds and every gate threshold on validation photos; write the model.

    python -m training.calibrate --config training/configs/lite0.json \
        --model runs/lite0/export/model.onnx --out inference/models/lesion_classifier.onnx \
        --version lite0-pad-160-2026-12-01

Everything is fitted on validation splits only (:data:`SPLIT`; never a test split), run
through the same pipeline the bot uses (localiser, crop, the ONNX model being shipped).
The ruler is the real smartphone photos of PAD-UFES-20's patient-grouped validation split:
the temperature and the risk thresholds are chosen on them, because that is what users
send. The HAM10000 validation split (dermoscopy and a synthetic phone photo of each lesion)
is the second check: its figures at the chosen thresholds are written beside the real ones.
The photo gate's thresholds are chosen first (:mod:`training.gate_calibration`, each with
the rule that chose it, in ``metrics["gate"]``; which rules only advise, by the value test of
:mod:`training.gate_value`, in ``metrics["gate_rules"]`` and ``gate_value.md``), and the risk
thresholds then on the photos that gate answers. Only the weights, the class list and the
preprocessing come from the input model: run on its own output, calibration writes the same
metadata again (``--check`` says whether it does, writing nothing).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from inference.classifier import load_session, read_metadata
from inference.gate import GateInput, decide
from inference.metadata import ModelMetadata, RiskThresholds
from inference.pipeline import Screener
from training.config import TrainConfig
from training.data import default_box, load_split
from training.domains import milk_split
from training.evalsets import (
    DOMAINS,
    REAL_DOMAIN,
    Photo,
    PipelineRun,
    domain_photos,
    real_photos,
    run_pipeline,
)
from training.export import write_metadata
from training.gate_calibration import OOD_QUANTILE, calibrate_gate
from training.gate_calibration import report as gate_report
from training.gate_eval import REAL_DEFECTS, not_lesion_set
from training.gate_value import rank_errors
from training.gate_value import report as value_report
from training.metrics import (
    fit_temperature,
    sensitivity_specificity,
    softmax,
    threshold_for_sensitivity,
    threshold_for_specificity,
)
from training.thresholds import risk_cutoffs

log = logging.getLogger(__name__)

# Medium-or-high must catch this share of malignant lesions on real validation photos.
TARGET_SENSITIVITY = 0.95
# High risk is kept for photos more suspicious than this share of benign real photos.
HIGH_SPECIFICITY = 0.90
# The only split calibration reads. Test splits are scored once per released model by
# training.evaluate; nothing here may look at them (tests/training/test_calibrate.py).
SPLIT = "val"
# MILK10k clinical close-ups (issue 22), when the config names them.
CLINICAL_DOMAIN = "clinical"
# The clean real photo sets each gate threshold may refuse at most 1 % of.
GATE_CLEAN_SETS = (REAL_DOMAIN, "dermoscopy", CLINICAL_DOMAIN)
# The photos the risk cut-offs serve, when close-ups are configured.
RISK_DOMAINS = (REAL_DOMAIN, CLINICAL_DOMAIN)


def malignant_index(meta: ModelMetadata) -> list[int]:
    """The logit positions of the classes that make up p(cancer)."""
    return [meta.classes.index(c) for c in meta.malignant_classes]


def malignant_probability(
    run: PipelineRun, temperature: float, mal_idx: list[int]
) -> npt.NDArray[np.float64]:
    # softmax is float64; numpy's stubs type a reduction along an axis as Any.
    return np.asarray(softmax(run.log_probs, temperature)[:, mal_idx].sum(1), np.float64)


def validation_photos(cfg: TrainConfig, seed_offset: int = 11) -> dict[str, list[Photo]]:
    """The calibration sets, all from the validation split: HAM10000 dermoscopy, a
    synthetic phone photo of each, PAD-UFES-20's real phone photos and, when configured,
    MILK10k's clinical close-ups."""
    images, records = load_split(cfg, (SPLIT,))[SPLIT]
    sets = {d: list(domain_photos(images, records, d, cfg.seed + seed_offset)) for d in DOMAINS}
    sets[REAL_DOMAIN] = real_photos(cfg, SPLIT)[0]
    if cfg.milk_dir:
        sets[CLINICAL_DOMAIN] = milk_split(cfg, SPLIT).photos
    return sets


# Seeds the motion blur of the guard set's copies (gate_eval draws its own, apart).
GUARD_SEED = 71


def guard_photos(cfg: TrainConfig) -> dict[str, list[Photo]]:
    """What an advisory rule must not let through (training.gate_value), validation only:
    PAD-UFES-20's validation photos motion-blurred (a defect the classifier is judged
    clearly worse on, gate_rules.md) and out of focus (gate_eval's 'gaussian_blur'), the
    same photos as 96 px thumbnails (gate_eval's 'tiny', which min_detail_side's rule says
    must be refused), and the validation non-lesion images of gate_eval.

    Defocus is a guard of its own since the spot floor (training/spot_floor_study.py):
    the motion-smear rule reads the difference between directions, which an even blur
    does not have, so with only motion blur guarded the blur rule could become advisory
    on a permutation p-value near 0.05 and out-of-focus photos would be answered.

    The thumbnails are a guard of their own since the motion-smear rule: until then the
    low-detail rule stayed refusing only because as advice it let 2 of 119 motion-blurred
    copies through; with those caught it became advisory, and 85 % of the thumbnails
    were answered (quality_gate_val.md of that calibration).
    """
    rng = np.random.default_rng(cfg.seed + GUARD_SEED)
    blur, _ = REAL_DEFECTS["motion_blur"]
    defocus, _ = REAL_DEFECTS["gaussian_blur"]
    shrink, _ = REAL_DEFECTS["tiny"]
    pad = real_photos(cfg, SPLIT)[0]
    return {
        "motion_blur": [Photo(blur(p.rgb, p.box, rng), p.label, p.box) for p in pad],
        "defocus": [Photo(defocus(p.rgb, p.box, rng), p.label, p.box) for p in pad],
        # The thumbnail's lesion box only enters IoU, which the gate does not judge.
        "tiny": [
            Photo(t, label, default_box(t.shape[1], t.shape[0]))
            for t, label in ((shrink(p.rgb, p.box, rng), p.label) for p in pad)
        ],
        "not_a_lesion": [
            Photo(img, -1, default_box(img.shape[1], img.shape[0]))
            for _, img in not_lesion_set(SPLIT, cfg.seed)
        ],
    }


@dataclass
class Measured:
    """What the gate is calibrated on: the validation sets through the pipeline."""

    runs: dict[str, PipelineRun]  # every validation set
    clean: dict[str, list[GateInput]]  # GATE_CLEAN_SETS' gate inputs
    ood_scores: dict[str, list[float]]
    errors: dict[str, list[float]]  # each clean photo's rank error (training.gate_value)
    guards: dict[str, list[GateInput]]  # what advisory rules must keep refusing


def measure(screener: Screener, cfg: TrainConfig) -> Measured:
    """Screen the validation and guard sets at temperature 1, both looks for every photo.

    The input model's own temperature and thresholds must not enter: probabilities at
    temperature 1 (the logits as they are), so a rerun on the output fits the same. The
    second look's margin is chosen after, against the cut-offs chosen here
    (training.second_look). ``screener`` is changed to match.
    """
    meta = replace(screener.metadata, temperature=1.0, second_look_margin=None)
    screener.classifier.metadata = meta
    screener.classifier.second_look_margin = None
    runs = {d: run_pipeline(screener, iter(ps)) for d, ps in validation_photos(cfg).items()}
    clean = {d: runs[d].gate_inputs for d in GATE_CLEAN_SETS if d in runs}
    mal_idx = malignant_index(meta)
    return Measured(
        runs=runs,
        clean=clean,
        ood_scores={d: [float(v) for v in r.ood[r.classified]] for d, r in runs.items()},
        # Temperature-free: which rules refuse what the classifier judges badly.
        errors={
            d: rank_errors(runs[d].malignant, malignant_probability(runs[d], 1.0, mal_idx)).tolist()
            for d in clean
        },
        guards={
            k: run_pipeline(screener, iter(ps)).gate_inputs for k, ps in guard_photos(cfg).items()
        },
    )


def write_gate_evidence(
    path: Path,
    version: str,
    clean: dict[str, list[GateInput]],
    ood_scores: dict[str, list[float]],
    errors: dict[str, list[float]],
    guards: dict[str, list[GateInput]],
) -> None:
    """The measurements the gate was calibrated on (numbers only, no image), so the rules
    can be rerun and tested without the data sets (tests/unit/test_gate_calibration.py)."""

    def one(g: GateInput) -> dict[str, Any]:
        return {
            "width": g.width,
            "height": g.height,
            "box": g.box.as_list() if g.box else None,
            "crop_box": g.crop_box.as_list() if g.crop_box else None,
            "evidence": g.evidence.as_dict(),
        }

    record = {
        "model": version,
        "split": SPLIT,
        "clean": {d: [one(g) for g in gs] for d, gs in clean.items()},
        "ood_scores": ood_scores,
        # The classifier's rank error on each clean photo (training.gate_value).
        "errors": errors,
        # The guard sets' gate inputs: what advisory rules must keep refusing.
        "guards": {k: [one(g) for g in gs] for k, gs in guards.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, separators=(",", ":")) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description="calibrate and write the shipped model")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument(
        "--flip-average",
        action="store_true",
        help="ship with test-time flip averaging (decide with training.flip_study)",
    )
    parser.add_argument("--limit", type=int, help="smoke tests: only the first N photos per set")
    parser.add_argument(
        "--gate-evidence",
        type=Path,
        default=Path("docs/evaluation/gate_calibration.json"),
        help="where to write the measurements the gate was calibrated on",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 unless --out already carries exactly this metadata",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = TrainConfig.load(args.config, limit_images=args.limit)
    screener = Screener(args.model, flip_average=args.flip_average)
    # The second look's margin is written by training.second_look; the input's own is kept
    # as it is, like same_spot_delta, so that --check on the shipped file compares alike.
    kept_margin = screener.metadata.second_look_margin
    measured = measure(screener, cfg)
    meta, runs = screener.metadata, measured.runs
    clean, ood_scores, errors, guards = (
        measured.clean,
        measured.ood_scores,
        measured.errors,
        measured.guards,
    )
    mal_idx = malignant_index(meta)
    gate, choices, values = calibrate_gate(clean, ood_scores, errors, guards)
    rule_values = {name: v.as_json() for name, v in values.items()}
    # Every photo that decodes is classified (the centre square when no lesion is found),
    # and the bot answers only some; risk thresholds are set on the ones the calibrated
    # gate lets through, since a refused photo never gets a risk level.
    ok = {
        d: r.classified & ~np.array([bool(decide(g, gate)) for g in r.gate_inputs], bool)
        for d, r in runs.items()
    }
    real, real_ok = runs[REAL_DOMAIN], ok[REAL_DOMAIN]

    temperature = fit_temperature(real.log_probs[real_ok], real.labels[real_ok])
    pm = {d: malignant_probability(r, temperature, mal_idx) for d, r in runs.items()}
    if CLINICAL_DOMAIN in runs:
        # Phone photos and clinic close-ups each keep a lower confidence bound of 95%
        # sensitivity (training/thresholds.py; issue 22).
        medium, high, _ = risk_cutoffs(
            {d: (runs[d].malignant[ok[d]], pm[d][ok[d]]) for d in RISK_DOMAINS},
            list(RISK_DOMAINS),
            TARGET_SENSITIVITY,
            HIGH_SPECIFICITY,
        )
    else:
        medium = threshold_for_sensitivity(
            real.malignant[real_ok], pm[REAL_DOMAIN][real_ok], TARGET_SENSITIVITY
        )
        high = max(
            threshold_for_specificity(
                real.malignant[real_ok], pm[REAL_DOMAIN][real_ok], HIGH_SPECIFICITY
            ),
            medium,
        )

    expected: dict[str, dict[str, float]] = {}
    for d, r in runs.items():
        sens, spec = sensitivity_specificity(r.malignant[ok[d]], pm[d][ok[d]], medium)
        sens_h, spec_h = sensitivity_specificity(r.malignant[ok[d]], pm[d][ok[d]], high)
        expected[d] = {
            "sensitivity_medium_or_high": sens,
            "specificity_medium_or_high": spec,
            "sensitivity_high": sens_h,
            "specificity_high": spec_h,
            "answered_fraction": float(ok[d].mean()),
            "photos": float(len(r.labels)),
        }
    metrics = {
        "fitted_on": (
            "PAD-UFES-20 validation split (patient-grouped real phone photos)"
            + (
                " and MILK10k validation (lesion-grouped clinical close-ups; risk cut-offs "
                "at the lower confidence bound of 95% sensitivity in each)"
                if CLINICAL_DOMAIN in runs
                else ""
            )
            + "; HAM10000 validation (dermoscopy, synthetic phone) as a second check"
        ),
        "validation": expected,
        "targets": {
            "sensitivity": TARGET_SENSITIVITY,
            "high_specificity": HIGH_SPECIFICITY,
            "ood_quantile": OOD_QUANTILE,
        },
        "gate": {name: c.as_json() for name, c in choices.items()},
        "gate_rules": rule_values,
    }
    final = replace(
        meta,
        version=args.version,
        flip_average=args.flip_average,
        temperature=temperature,
        thresholds=RiskThresholds(medium=medium, high=high),
        gate=gate,
        metrics=metrics,
        second_look_margin=kept_margin,
    )
    log.info("validation: %s", json.dumps(expected, indent=1))
    log.info("gate: %s", json.dumps(metrics["gate"], indent=1))
    if args.check:
        shipped = read_metadata(load_session(args.out, 1))
        same = shipped.to_json() == final.to_json()
        log.info("%s %s", args.out, "carries this metadata" if same else "DIFFERS")
        if not same:
            print(final.to_json())
        sys.exit(0 if same else 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_metadata(args.model, final, args.out)
    write_gate_evidence(args.gate_evidence, final.version, clean, ood_scores, errors, guards)
    args.gate_evidence.with_suffix(".md").write_text(
        gate_report(final.version, {name: c.as_json() for name, c in choices.items()})
    )
    args.gate_evidence.with_name("gate_value.md").write_text(
        value_report(final.version, rule_values)
    )
    log.info(
        "wrote %s: T=%.3f medium=%.4f high=%.4f ood=%.1f",
        args.out,
        temperature,
        medium,
        high,
        gate.max_ood_score,
    )


if __name__ == "__main__":
    main()

"""Fit temperature, risk thresholds and the OOD cut-off on validation photos; write the model.

    python -m training.calibrate --config training/configs/lite0.json \
        --model runs/lite0/export/model.onnx --out inference/models/lesion_classifier.onnx

Everything is fitted on the validation split only (never the test split), on both the
dermoscopy images and their synthetic phone photos, run through the same pipeline the
bot uses (localiser, crop, the ONNX model being shipped).
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from inference.metadata import RiskThresholds
from inference.pipeline import Screener
from training.config import TrainConfig
from training.data import load_split
from training.evalsets import DOMAINS, PipelineRun, domain_photos, run_pipeline
from training.export import write_metadata
from training.metrics import (
    fit_temperature,
    sensitivity_specificity,
    softmax,
    threshold_for_sensitivity,
    threshold_for_specificity,
)

log = logging.getLogger(__name__)

# Medium-or-high must catch this share of malignant lesions in EVERY domain on validation.
TARGET_SENSITIVITY = 0.95
# High risk is kept for photos more suspicious than this share of benign ones.
HIGH_SPECIFICITY = 0.90
# Share of validation lesion crops allowed above the OOD cut-off. 1% trades a small
# refusal rate on real lesions for refusing images far from anything seen in training.
OOD_QUANTILE = 0.99


def malignant_probability(
    run: PipelineRun, temperature: float, mal_idx: list[int]
) -> npt.NDArray[np.float64]:
    # softmax is float64; numpy's stubs type a reduction along an axis as Any.
    return np.asarray(softmax(run.log_probs, temperature)[:, mal_idx].sum(1), np.float64)


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
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = TrainConfig.load(args.config)
    screener = Screener(args.model, flip_average=args.flip_average)
    meta = screener.metadata
    images, records = load_split(cfg, ("val",))["val"]
    runs = {
        d: run_pipeline(screener, domain_photos(images, records, d, cfg.seed + 11)) for d in DOMAINS
    }
    ok = {d: r.classified for d, r in runs.items()}

    all_logp = np.concatenate([r.log_probs[ok[d]] for d, r in runs.items()])
    all_y = np.concatenate([r.labels[ok[d]] for d, r in runs.items()])
    temperature = fit_temperature(all_logp, all_y)
    mal_idx = [meta.classes.index(c) for c in meta.malignant_classes]
    pm = {d: malignant_probability(r, temperature, mal_idx) for d, r in runs.items()}
    medium = min(
        threshold_for_sensitivity(r.malignant[ok[d]], pm[d][ok[d]], TARGET_SENSITIVITY)
        for d, r in runs.items()
    )
    all_mal = np.concatenate([r.malignant[ok[d]] for d, r in runs.items()])
    all_pm = np.concatenate([pm[d][ok[d]] for d in runs])
    high = max(threshold_for_specificity(all_mal, all_pm, HIGH_SPECIFICITY), medium)
    ood_threshold = float(
        np.quantile(np.concatenate([r.ood[ok[d]] for d, r in runs.items()]), OOD_QUANTILE)
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
            "localised_fraction": float(ok[d].mean()),
        }
    metrics = {
        "fitted_on": "validation split (lesion-grouped), dermoscopy + synthetic phone photos",
        "validation": expected,
        "targets": {
            "sensitivity": TARGET_SENSITIVITY,
            "high_specificity": HIGH_SPECIFICITY,
            "ood_quantile": OOD_QUANTILE,
        },
    }
    final = replace(
        meta,
        version=args.version,
        flip_average=args.flip_average,
        temperature=temperature,
        thresholds=RiskThresholds(medium=medium, high=high),
        ood_threshold=ood_threshold,
        metrics=metrics,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_metadata(args.model, final, args.out)
    log.info(
        "wrote %s: T=%.3f medium=%.4f high=%.4f ood=%.1f",
        args.out,
        temperature,
        medium,
        high,
        ood_threshold,
    )
    log.info("validation: %s", json.dumps(expected, indent=1))


if __name__ == "__main__":
    main()

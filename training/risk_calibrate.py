"""Risk cut-offs per domain and the same-spot variation on validation; write the latter.

    python -m training.risk_calibrate --config training/configs/lite0_milk.json \
        --model inference/models/lesion_classifier.onnx --out docs/evaluation

Runs after ``training.calibrate`` (temperature, gate, OOD cut-off, risk cut-offs) on the
model it wrote, and only on validation splits: PAD-UFES-20 phone photos, MILK10k close-ups
and HAM10000 dermoscopy, each through the real pipeline.

- the cut-offs (chosen by :func:`training.thresholds.risk_cutoffs` in calibration): per
  domain the lower confidence bound for 95% sensitivity; ``medium`` is the lowest bound of
  the domains the bot is for (``--medium-domains``, phone photos and close-ups), so each
  keeps its guarantee; the report shows every domain at every domain's cut-off.
- ``same_spot_delta``: the 95th percentile of |change in p(cancer)| between two photos of
  one spot: between a photo and its mirror image (pooled over those domains) and between
  different photos of one lesion (PAD has a handful in validation, HAM10000 hundreds),
  whichever is larger (:func:`same_spot_threshold`).

Writes ``risk_calibration.{json,md}`` and ``same_spot_delta`` into the model file in place
(or ``--write-to``); run on its own output it writes the same value again.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from inference.pipeline import Screener
from training.config import TrainConfig
from training.domains import DOMAIN_TITLES, MILK, PAD, DomainSplit, load_domains
from training.evalsets import Photo
from training.export import write_metadata
from training.metrics import sensitivity_specificity
from training.risk_eval import Scored, auc, score, spec_at_sens
from training.thresholds import (
    HIGH_SPECIFICITY,
    cross_domain_table,
    risk_cutoffs,
)

log = logging.getLogger(__name__)
SAME_SPOT_QUANTILE = 0.95


def mirrored(split: DomainSplit) -> DomainSplit:
    photos = [
        Photo(
            np.ascontiguousarray(p.rgb[:, ::-1]),
            p.label,
            p.box.__class__(
                p.rgb.shape[1] - p.box.x1, p.box.y0, p.rgb.shape[1] - p.box.x0, p.box.y1
            ),
        )
        for p in split.photos
    ]
    return replace(split, photos=photos)


def same_spot(a: Scored, b: Scored, medium: float, high: float) -> dict[str, Any]:
    """Risk agreement and |delta p| between two scorings of the same photos' lesions."""
    both = a.answered & b.answered
    ra, rb = a.risk(medium, high), b.risk(medium, high)
    delta = np.abs(a.p_cancer - b.p_cancer)[both]
    return {
        "photos": len(ra),
        "answered_both": int(both.sum()),
        "risk_agreement_answered": float((ra[both] == rb[both]).mean()) if both.any() else None,
        "risk_agreement_all": float((ra == rb).mean()),
        "delta_p_median": float(np.median(delta)) if len(delta) else None,
        "delta_p_p90": float(np.quantile(delta, 0.9)) if len(delta) else None,
        "delta_p_p95": float(np.quantile(delta, SAME_SPOT_QUANTILE)) if len(delta) else None,
        "delta_over_0_20": float((delta > 0.2).mean()) if len(delta) else None,
    }


def lesion_pairs(sc: Scored, medium: float, high: float) -> dict[str, Any]:
    """Every pair of different photos of one lesion, both answered."""
    by_lesion: dict[str, list[int]] = {}
    for i, lesion in enumerate(sc.split.lesions):
        by_lesion.setdefault(lesion, []).append(i)
    risk = sc.risk(medium, high)
    pairs = [
        (i, j)
        for members in by_lesion.values()
        for i, j in combinations(members, 2)
        if sc.answered[i] and sc.answered[j]
    ]
    if not pairs:
        return {"pairs": 0}
    delta = np.array([abs(sc.p_cancer[i] - sc.p_cancer[j]) for i, j in pairs])
    return {
        "pairs": len(pairs),
        "risk_agreement": float(np.mean([risk[i] == risk[j] for i, j in pairs])),
        "delta_p_median": float(np.median(delta)),
        "delta_p_max": float(delta.max()),
        "delta_p_p95": float(np.quantile(delta, SAME_SPOT_QUANTILE)),
    }


def per_photo(sc: Scored) -> dict[str, list[Any]]:
    return {
        "files": sc.split.files,
        "groups": sc.split.groups,
        "p_cancer": sc.p_cancer.tolist(),
        "answered": sc.answered.tolist(),
        "cancer": sc.split.cancer.tolist(),
        "labels": sc.split.labels.tolist(),  # class index, -1 none (melanoma's own figure)
    }


def pair_delta(sc: Scored) -> np.ndarray:
    """|delta p| of every pair of different photos of one lesion, both answered."""
    by_lesion: dict[str, list[int]] = {}
    for i, lesion in enumerate(sc.split.lesions):
        if sc.answered[i]:
            by_lesion.setdefault(lesion, []).append(i)
    return np.array(
        [
            abs(sc.p_cancer[i] - sc.p_cancer[j])
            for members in by_lesion.values()
            for i, j in combinations(members, 2)
        ],
        np.float64,
    )


def same_spot_threshold(mirror: np.ndarray, pairs: np.ndarray) -> float | None:
    """The larger 95th percentile of the two comparisons (pairs only when >= 50 of them).

    A later photo of the same spot differs from the first as another photo of one lesion
    does (other light, angle, framing), more than a mirror image does; the mirror is the
    floor. Using the larger keeps "it changed" for changes beyond photo-to-photo noise.
    """
    candidates = [float(np.quantile(d, SAME_SPOT_QUANTILE)) for d in (mirror,) if len(d)]
    if len(pairs) >= 50:
        candidates.append(float(np.quantile(pairs, SAME_SPOT_QUANTILE)))
    return max(candidates) if candidates else None


def fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) and np.isfinite(v) else str(v)


def render(report: dict[str, Any]) -> str:
    t = report["thresholds"]
    lines = [
        "# Risk cut-offs and same-spot variation (validation only)",
        "",
        f"Model `{report['model_version']}` (flip averaging {report['flip_average']}). "
        f"Command: `{report['command']}`.",
        "",
        f"Shipped (written by training.calibrate): medium = {t['medium']:.4f} (lowest "
        f"lower-confidence bound of {', '.join(report['medium_domains'])}), high = "
        f"{t['high']:.4f} ({HIGH_SPECIFICITY:.0%} of their non-cancers below); recomputed "
        f"here on the same photos: {report['recomputed_thresholds']['medium']:.4f} / "
        f"{report['recomputed_thresholds']['high']:.4f}. same_spot_delta = "
        f"{report['same_spot_delta']:.4f} (written by this step).",
        "",
        "Each domain's lower confidence bound for 95% sensitivity (k-th lowest cancer score; "
        "confidence that the true sensitivity there is >= 95%):",
        "",
        "| domain | cancers | k | cut-off | confidence | AUC | best spec. at 95% sens. |",
        "|---|---|---|---|---|---|---|",
    ]
    for d, b in report["cross_domain"]["bounds"].items():
        s = report["domains"][d]
        lines.append(
            f"| {DOMAIN_TITLES[d]} | {b['cancers']} | {b['rank']} | {b['threshold']:.4f} | "
            f"{b['confidence']:.3f} | {fmt(s['auc'])} | {fmt(s['spec_at_95_sens'])} |"
        )
    domains = list(report["cross_domain"]["bounds"])
    lines += [
        "",
        "Does one cut-off serve every domain? Sensitivity / specificity of each domain "
        "(row, answered photos) at each domain's cut-off (column) and at the shipped one:",
        "",
        "| photos \\ cut-off of | "
        + " | ".join(DOMAIN_TITLES[d] for d in domains)
        + " | shipped |",
        "|---|" + "---|" * (len(domains) + 1),
    ]
    table = report["cross_domain"]["at_threshold_of"]
    for d in domains:
        cells = [
            f"{table[d][c]['sensitivity']:.3f} / {table[d][c]['specificity']:.3f}" for c in domains
        ]
        sh = report["domains"][d]["shipped"]
        cells.append(f"{sh['sensitivity']:.3f} / {sh['specificity']:.3f}")
        lines.append(f"| {DOMAIN_TITLES[d]} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Same spot, same answer: a photo against its mirror image (answered both times), "
        "and different photos of one lesion:",
        "",
        "| domain | comparison | n | risk agreement | median \\|dp\\| | 95th pct \\|dp\\| "
        "| \\|dp\\| > 0.20 |",
        "|---|---|---|---|---|---|---|",
    ]
    for d, m in report["mirror"].items():
        lines.append(
            f"| {DOMAIN_TITLES[d]} | mirror | {m['answered_both']} | "
            f"{fmt(m['risk_agreement_answered'])} | {fmt(m['delta_p_median'])} | "
            f"{fmt(m['delta_p_p95'])} | {fmt(m['delta_over_0_20'])} |"
        )
    for d, m in report["lesion_pairs"].items():
        if m.get("pairs"):
            lines.append(
                f"| {DOMAIN_TITLES[d]} | photos of one lesion | {m['pairs']} pairs | "
                f"{fmt(m['risk_agreement'])} | {fmt(m['delta_p_median'])} | "
                f"{fmt(m['delta_p_p95'])} | - |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description="risk cut-offs and same-spot variation")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder for the report")
    parser.add_argument("--write-to", type=Path, help="model file to write (default: --model)")
    parser.add_argument("--medium-domains", default=f"{PAD},{MILK}")
    parser.add_argument("--limit", type=int, default=0, help="smoke tests: N photos per domain")
    parser.add_argument("--no-mirror", action="store_true", help="skip the mirror pass")
    parser.add_argument(
        "--flip-average",
        choices=("model", "on", "off"),
        default="model",
        help="test-time flip averaging as the model says, or on/off (written with the result)",
    )
    parser.add_argument(
        "--scores-out", type=Path, help="per-photo validation scores (for training.fusion)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = TrainConfig.load(args.config)
    flip = {"model": None, "on": True, "off": False}[args.flip_average]
    screener = Screener(args.model, flip_average=flip)
    meta = screener.metadata
    if flip is not None:
        meta = replace(meta, flip_average=flip)
    medium_domains = args.medium_domains.split(",")
    splits = load_domains(cfg, "val", limit=args.limit)
    scored = {d: score(screener, s) for d, s in splits.items()}
    answered = {
        d: (sc.split.cancer[sc.answered], sc.p_cancer[sc.answered]) for d, sc in scored.items()
    }
    cross = cross_domain_table(answered)
    # The cut-offs are training.calibrate's (the same rule, on the same photos: recomputed
    # here as a check and for the table); this step adds only the same-spot variation.
    medium, high = meta.thresholds.medium, meta.thresholds.high
    recomputed = risk_cutoffs(answered, medium_domains)[:2]
    domains: dict[str, Any] = {}
    for d, (y, s) in answered.items():
        sens, spec = sensitivity_specificity(y, s, medium)
        domains[d] = {
            "auc": auc(y, s),
            "spec_at_95_sens": spec_at_sens(y, s),
            "shipped": {"sensitivity": sens, "specificity": spec},
            "refused": float((~scored[d].answered).mean()),
        }
    mirror: dict[str, Any] = {}
    deltas = []
    if not args.no_mirror:
        for d in medium_domains:
            flipped = score(screener, mirrored(splits[d]))
            mirror[d] = same_spot(scored[d], flipped, medium, high)
            both = scored[d].answered & flipped.answered
            deltas.append(np.abs(scored[d].p_cancer - flipped.p_cancer)[both])
    pairs = {d: lesion_pairs(sc, medium, high) for d, sc in scored.items()}
    pair_deltas = [pair_delta(sc) for sc in scored.values()]
    same_spot_delta = same_spot_threshold(
        np.concatenate(deltas) if deltas else np.zeros(0), np.concatenate(pair_deltas)
    )
    report = {
        "model_version": meta.version,
        "flip_average": meta.flip_average,
        "command": (
            f"python -m training.risk_calibrate --config {args.config} --model {args.model} "
            f"--out {args.out}"
        ),
        "medium_domains": medium_domains,
        "thresholds": {"medium": medium, "high": high},
        "recomputed_thresholds": {"medium": recomputed[0], "high": recomputed[1]},
        "same_spot_delta": same_spot_delta if same_spot_delta is not None else float("nan"),
        "cross_domain": cross,
        "domains": domains,
        "mirror": mirror,
        "lesion_pairs": pairs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    if args.scores_out:
        args.scores_out.write_text(json.dumps({d: per_photo(sc) for d, sc in scored.items()}))
    (args.out / "risk_calibration.json").write_text(json.dumps(report, indent=1))
    (args.out / "risk_calibration.md").write_text(render(report))
    final = replace(meta, same_spot_delta=same_spot_delta)
    write_metadata(args.model, final, args.write_to or args.model)
    log.info("medium %.4f high %.4f same_spot_delta %s", medium, high, same_spot_delta)


if __name__ == "__main__":
    main()

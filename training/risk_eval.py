"""Cancer-vs-rest figures per domain with bootstrap intervals, through the real pipeline.

    python -m training.risk_eval --config training/configs/lite0_milk.json \
        --model inference/models/lesion_classifier.onnx --split test --out docs/evaluation

For each domain (PAD-UFES-20 phone photos, MILK10k close-ups, HAM10000 dermoscopy):
cancer AUC, the best specificity any cut-off allows at 95% sensitivity, sensitivity and
specificity of "medium or high" and of "high" on the photos the bot answers, refusals,
melanoma against naevus, the older definition (actinic keratosis counted malignant), the
actinic keratosis row, and the same by skin tone (MILK10k) and Fitzpatrick type (PAD).
Intervals: 95% percentile bootstrap over patients (PAD) or lesions (MILK10k, HAM10000),
so photos of one person or lesion are drawn together.

The test split is scored once per released model: the script refuses to overwrite a test
report of the same model version (``--rescore`` overrides, and the card must then show
both figures).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.stats import rankdata

from inference.pipeline import Screener
from inference.types import Risk
from training.config import TrainConfig
from training.data import CLASSES
from training.domains import DOMAIN_TITLES, DomainSplit, load_domains
from training.evalsets import PipelineRun, run_pipeline
from training.metrics import (
    balanced_accuracy,
    confusion_matrix,
    sensitivity_specificity,
    softmax,
)

log = logging.getLogger(__name__)
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
BOOTSTRAP = 1000


@dataclass(frozen=True)
class Scored:
    """A domain's photos and what the pipeline made of them."""

    split: DomainSplit
    run: PipelineRun
    p_cancer: FloatArray  # the calibrated malignant probability the bot thresholds
    p_akiec: FloatArray
    answered: BoolArray  # not refused

    def risk(self, medium: float, high: float) -> npt.NDArray[np.str_]:
        level = np.where(
            self.p_cancer >= high,
            Risk.HIGH.value,
            np.where(self.p_cancer >= medium, "medium", "low"),
        )
        return np.where(self.answered, level, Risk.UNASSESSABLE.value)


def score(screener: Screener, split: DomainSplit) -> Scored:
    run = run_pipeline(screener, iter(split.photos))
    meta = screener.metadata
    probs = softmax(run.log_probs)  # the pipeline's, temperature already applied
    mal = [meta.classes.index(c) for c in meta.malignant_classes]
    akiec = meta.classes.index("akiec") if "akiec" in meta.classes else None
    p_akiec = probs[:, akiec] if akiec is not None else np.zeros(len(probs))
    return Scored(split, run, probs[:, mal].sum(1), p_akiec, ~run.refused)


def auc(y: BoolArray, s: FloatArray) -> float:
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def spec_at_sens(y: BoolArray, s: FloatArray, target: float = 0.95) -> float:
    """Best specificity any cut-off allows with sensitivity >= ``target``."""
    pos, neg = np.sort(s[y]), s[~y]
    if not len(pos) or not len(neg):
        return float("nan")
    return float((neg < pos[int(np.floor((1 - target) * len(pos)))]).mean())


def point_metrics(
    sc: Scored, idx: npt.NDArray[np.intp], medium: float, high: float
) -> dict[str, float]:
    """The figures on the photos ``idx`` (a bootstrap draw, or all of them)."""
    y, s, ans = sc.split.cancer[idx], sc.p_cancer[idx], sc.answered[idx]
    labels = sc.split.labels[idx]
    sens_m, spec_m = sensitivity_specificity(y[ans], s[ans], medium)
    sens_h, spec_h = sensitivity_specificity(y[ans], s[ans], high)
    mel_nv = np.isin(labels, [CLASSES.index("mel"), CLASSES.index("nv")])
    with_akiec = y | (labels == CLASSES.index("akiec"))
    return {
        "auc": auc(y, s),
        "spec_at_95_sens": spec_at_sens(y, s),
        "sens_medium_or_high": sens_m,
        "spec_medium_or_high": spec_m,
        "sens_high": sens_h,
        "spec_high": spec_h,
        "refused": float((~ans).mean()),
        "mel_vs_nv_auc": auc(labels[mel_nv] == CLASSES.index("mel"), s[mel_nv]),
        "auc_akiec_as_malignant": auc(with_akiec, s + sc.p_akiec[idx]),
    }


def group_bootstrap(
    groups: list[str],
    metric: Callable[[npt.NDArray[np.intp]], dict[str, float]],
    rounds: int = BOOTSTRAP,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """95% percentile intervals, resampling whole groups (patients or lesions)."""
    rng = np.random.default_rng(seed)
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    keys = list(members)
    draws: dict[str, list[float]] = {}
    for _ in range(rounds):
        pick = rng.integers(0, len(keys), len(keys))
        idx = np.fromiter((i for k in pick for i in members[keys[k]]), np.intp)
        for name, v in metric(idx).items():
            draws.setdefault(name, []).append(v)
    out = {}
    for name, values in draws.items():
        arr = np.asarray(values, np.float64)
        arr = arr[np.isfinite(arr)]
        out[name] = (
            (float(np.percentile(arr, 2.5)), float(np.percentile(arr, 97.5)))
            if len(arr)
            else (float("nan"), float("nan"))
        )
    return out


def domain_report(
    sc: Scored, medium: float, high: float, rounds: int = BOOTSTRAP
) -> dict[str, Any]:
    n = len(sc.p_cancer)
    everyone = np.arange(n, dtype=np.intp)
    point = point_metrics(sc, everyone, medium, high)
    ci = group_bootstrap(sc.split.groups, lambda i: point_metrics(sc, i, medium, high), rounds)
    labels = sc.split.labels
    known = labels >= 0
    probs = softmax(sc.run.log_probs)
    cm = confusion_matrix(labels[known], probs[known].argmax(1), max(len(CLASSES), probs.shape[1]))
    akiec = labels == CLASSES.index("akiec")
    risk = sc.risk(medium, high)
    return {
        "photos": n,
        "cancers": int(sc.split.cancer.sum()),
        "groups": len(set(sc.split.groups)),
        "metrics": point,
        "ci95": ci,
        "balanced_accuracy": balanced_accuracy(cm) if known.any() else float("nan"),
        "akiec": {
            "photos": int(akiec.sum()),
            "medium_or_high": float(np.isin(risk[akiec & sc.answered], ["medium", "high"]).mean())
            if (akiec & sc.answered).any()
            else float("nan"),
            "top_class_akiec": float((probs[akiec].argmax(1) == CLASSES.index("akiec")).mean())
            if akiec.any()
            else float("nan"),
        },
        "strata": {
            name: stratum_table(sc, values, medium, high)
            for name, values in sc.split.strata.items()
        },
    }


def stratum_table(sc: Scored, values: list[str], medium: float, high: float) -> dict[str, Any]:
    arr = np.array(values)
    table = {}
    for v in sorted(set(values)):
        idx = np.flatnonzero(arr == v).astype(np.intp)
        m = point_metrics(sc, idx, medium, high)
        table[v] = {
            "photos": len(idx),
            "cancers": int(sc.split.cancer[idx].sum()),
            **{k: m[k] for k in ("auc", "sens_medium_or_high", "spec_medium_or_high", "refused")},
        }
    return table


def fmt(v: float, ci: tuple[float, float] | None = None) -> str:
    if not np.isfinite(v):
        return "-"
    return f"{v:.2f}" + (f" ({ci[0]:.2f}-{ci[1]:.2f})" if ci and np.isfinite(ci[0]) else "")


def render(report: dict[str, Any]) -> str:
    lines = [
        f"# Cancer vs rest, {report['split']} split",
        "",
        f"Model `{report['model_version']}`; cancer = melanoma, basal and squamous cell carcinoma "
        "(and MILK10k's few other malignancies); medium cut-off "
        f"{report['thresholds']['medium']:.4f}, high {report['thresholds']['high']:.4f}. "
        "95% intervals: bootstrap over patients (PAD) or lesions, "
        f"{report['bootstrap_rounds']} rounds. Sensitivity and specificity are on the photos "
        "the bot answers; AUC and the best specificity at 95% sensitivity on every photo. "
        f"Command: `{report['command']}`.",
        "",
        "| domain | photos (cancers) | cancer AUC | best spec. at 95% sens. "
        "| medium or high: sens. | spec. | high: sens. | spec. | refused "
        "| melanoma vs naevus AUC | AUC, actinic keratosis as malignant |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for d, r in report["domains"].items():
        m, ci = r["metrics"], r["ci95"]
        cells = [
            fmt(m[k], ci.get(k))
            for k in (
                "auc",
                "spec_at_95_sens",
                "sens_medium_or_high",
                "spec_medium_or_high",
                "sens_high",
                "spec_high",
                "refused",
                "mel_vs_nv_auc",
                "auc_akiec_as_malignant",
            )
        ]
        lines.append(
            f"| {DOMAIN_TITLES[d]} | {r['photos']} ({r['cancers']}) | " + " | ".join(cells) + " |"
        )
    lines += ["", "Actinic keratosis and Bowen's disease (not cancer; their own advice):", ""]
    lines += [
        "| domain | photos | rated medium or high | top class actinic keratosis |",
        "|---|---|---|---|",
    ]
    for d, r in report["domains"].items():
        a = r["akiec"]
        lines.append(
            f"| {DOMAIN_TITLES[d]} | {a['photos']} | {fmt(a['medium_or_high'])} "
            f"| {fmt(a['top_class_akiec'])} |"
        )
    lines += ["", "Balanced accuracy over the model's classes (photos with a class):", ""]
    for d, r in report["domains"].items():
        lines.append(f"- {DOMAIN_TITLES[d]}: {fmt(r['balanced_accuracy'])}")
    for d, r in report["domains"].items():
        for name, table in r["strata"].items():
            lines += [
                "",
                f"{DOMAIN_TITLES[d]} by {name.replace('_', ' ')}:",
                "",
                "| value | photos (cancers) | AUC | medium or high: sens. | spec. | refused |",
                "|---|---|---|---|---|---|",
            ]
            for v, row in table.items():
                lines.append(
                    f"| {v} | {row['photos']} ({row['cancers']}) | {fmt(row['auc'])} | "
                    f"{fmt(row['sens_medium_or_high'])} | {fmt(row['spec_medium_or_high'])} | "
                    f"{fmt(row['refused'])} |"
                )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description="cancer-vs-rest figures per domain")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--split", choices=("val", "test"), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=BOOTSTRAP)
    parser.add_argument("--limit", type=int, default=0, help="smoke tests: N photos per domain")
    parser.add_argument("--rescore", action="store_true", help="score a test split again")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = TrainConfig.load(args.config)
    screener = Screener(args.model)
    meta = screener.metadata
    json_out = args.out / f"risk_{args.split}.json"
    if args.split == "test" and json_out.exists() and not args.rescore:
        earlier = json.loads(json_out.read_text())
        if earlier.get("model_version") == meta.version:
            raise SystemExit(f"{json_out} already scores {meta.version} on test (--rescore)")
    medium, high = meta.thresholds.medium, meta.thresholds.high
    report: dict[str, Any] = {
        "split": args.split,
        "model_version": meta.version,
        "thresholds": {"medium": medium, "high": high},
        "bootstrap_rounds": args.rounds,
        "command": (
            f"python -m training.risk_eval --config {args.config} --model {args.model} "
            f"--split {args.split} --out {args.out}"
        ),
        "domains": {},
    }
    for name, split in load_domains(cfg, args.split, limit=args.limit).items():
        log.info("scoring %s %s (%d photos)", name, args.split, len(split.photos))
        report["domains"][name] = domain_report(score(screener, split), medium, high, args.rounds)
    args.out.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(report, indent=1))
    (args.out / f"risk_{args.split}.md").write_text(render(report))
    log.info("wrote %s", json_out)


if __name__ == "__main__":
    main()

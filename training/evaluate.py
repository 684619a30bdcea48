"""Evaluate a shipped model on the TEST splits; write tables and figures.

    python -m training.evaluate --config training/configs/lite0.json \
        --model inference/models/lesion_classifier.onnx --out docs/evaluation

Three domains go through the full pipeline the bot uses: the HAM10000 lesion-grouped test
images (dermoscopy), a synthetic phone photo of each of the same lesions, and the real
smartphone photos of PAD-UFES-20's patient-grouped test split, which no threshold was set
on. Writes ``evaluation.md`` (the tables quoted in the model card), ``evaluation.json`` and
PNG figures.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt

from inference.pipeline import Screener
from inference.types import RGBImage
from training.config import TrainConfig
from training.data import load_split
from training.evalsets import (
    DOMAINS,
    REAL_DOMAIN,
    Photo,
    PipelineRun,
    domain_photos,
    real_photos,
    run_pipeline,
)
from training.metrics import (
    balanced_accuracy,
    confusion_matrix,
    expected_calibration_error,
    per_class_prf,
    roc_auc,
    roc_curve,
    sensitivity_specificity,
    softmax,
)
from training.pad import PadPhoto

log = logging.getLogger(__name__)


def degrade(rgb: RGBImage, kind: str) -> RGBImage:
    """Clearly degraded copies, as in the classifier's robustness table."""
    if kind == "blur":
        return np.asarray(cv2.GaussianBlur(rgb, (0, 0), 2.5), np.uint8)
    if kind == "dark":
        return (rgb.astype(np.float32) * 0.35).astype(np.uint8)
    if kind == "jpeg_q15":
        _, enc = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 15])
        bgr = cv2.imdecode(enc, cv2.IMREAD_COLOR)
        if bgr is None:
            raise RuntimeError("OpenCV could not decode its own quality-15 JPEG")
        return np.ascontiguousarray(bgr[..., ::-1], np.uint8)
    if kind == "low_res":
        h, w = rgb.shape[:2]
        small = cv2.resize(rgb, (w // 3, h // 3), interpolation=cv2.INTER_AREA)
        return np.asarray(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR), np.uint8)
    raise ValueError(kind)


def domain_metrics(run: PipelineRun, screener: Screener) -> dict[str, Any]:
    meta = screener.metadata
    classes = list(meta.classes)
    mal_idx = [classes.index(c) for c in meta.malignant_classes]
    ok = run.classified
    probs = softmax(run.log_probs[ok])  # already temperature-scaled by the pipeline
    # Malignant probability of every photo; photos with no box keep the uniform prior.
    p_mal = softmax(run.log_probs)[:, mal_idx].sum(1)
    y = run.labels[ok]
    cm = confusion_matrix(y, probs.argmax(1), len(classes))
    precision, recall, f1 = per_class_prf(cm)
    pm = p_mal[ok]
    is_mal = run.malignant[ok]
    sens, spec = sensitivity_specificity(is_mal, pm, meta.thresholds.medium)
    sens_h, spec_h = sensitivity_specificity(is_mal, pm, meta.thresholds.high)
    answered = ~run.refused
    a_pm = p_mal[answered]
    a_sens, a_spec = sensitivity_specificity(run.malignant[answered], a_pm, meta.thresholds.medium)
    ece, acc_bins, conf_bins, count_bins = expected_calibration_error(probs, y)
    issue_counts = Counter(i for issues in run.issues for i in issues)

    def auc_of(sel: npt.NDArray[np.bool_]) -> float:
        """Malignant AUC on the selected photos; NaN when they lack either class."""
        n_mal = run.malignant[sel].sum()
        return roc_auc(run.malignant[sel], p_mal[sel]) if 0 < n_mal < sel.sum() else float("nan")

    # Does the gate refuse what the classifier cannot judge? AUC on the photos it refused
    # (classified anyway) against those it answered.
    group_auc = {"answered": auc_of(answered & ok), "refused": auc_of(run.refused & ok)}
    # ... and per reason, on photos refused for that reason alone (groups of >= 20 photos).
    only = Counter(issues[0] for issues in run.issues if len(issues) == 1)
    for reason in only:
        sel = np.array([issues == (reason,) for issues in run.issues]) & ok
        if sel.sum() >= 20 and not np.isnan(auc := auc_of(sel)):
            group_auc[f"only {reason} ({int(sel.sum())} photos)"] = auc
    return {
        "n": len(run.labels),
        "localised": float(ok.mean()),
        "refused": float(run.refused.mean()),
        "refusal_reasons": {k: v / len(run.labels) for k, v in issue_counts.most_common()},
        "balanced_accuracy": balanced_accuracy(cm),
        "malignant_auc": roc_auc(is_mal, pm),
        "sensitivity_medium_or_high": sens,
        "specificity_medium_or_high": spec,
        "sensitivity_high": sens_h,
        "specificity_high": spec_h,
        "answered_sensitivity_medium_or_high": a_sens,
        "answered_specificity_medium_or_high": a_spec,
        "answered_malignant_auc": group_auc["answered"],
        "refused_classified": int((run.refused & ok).sum()),
        "refused_malignant_auc": group_auc["refused"],
        "malignant_auc_by_group": group_auc,
        "ece": ece,
        "box_iou_median": float(np.median(run.iou)),
        "box_iou_ge_0_5": float((run.iou >= 0.5).mean()),
        "ms_per_photo_median": float(np.median(run.elapsed_ms)),
        "per_class": {
            c: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(cm[i].sum()),
            }
            for i, c in enumerate(classes)
        },
        "confusion_matrix": cm.tolist(),
        "_roc": [a.tolist() for a in roc_curve(is_mal, pm)],
        "_reliability": [acc_bins.tolist(), conf_bins.tolist(), count_bins.tolist()],
    }


# Fitzpatrick groups with enough PAD test photos to say anything; PAD has very few V-VI.
FITZPATRICK_GROUPS = {"I-II": (1, 2), "III": (3,), "IV-VI": (4, 5, 6)}


def by_fitzpatrick(
    run: PipelineRun, photos: list[PadPhoto], screener: Screener
) -> dict[str, dict[str, float]]:
    """AUC, sensitivity and specificity at medium per skin type, where PAD records it."""
    meta = screener.metadata
    mal_idx = [list(meta.classes).index(c) for c in meta.malignant_classes]
    p_mal = softmax(run.log_probs)[:, mal_idx].sum(1)
    types = np.array([p.fitzpatrick or 0 for p in photos])
    groups = {k: np.isin(types, v) for k, v in FITZPATRICK_GROUPS.items()}
    groups["not recorded"] = types == 0
    out = {}
    for name, sel in groups.items():
        mal = run.malignant[sel]
        n_mal = int(mal.sum())
        sens, spec = sensitivity_specificity(mal, p_mal[sel], meta.thresholds.medium)
        out[name] = {
            "photos": float(sel.sum()),
            "malignant": float(n_mal),
            "refused": float(run.refused[sel].mean()) if sel.any() else float("nan"),
            "malignant_auc": roc_auc(mal, p_mal[sel]) if 0 < n_mal < sel.sum() else float("nan"),
            "sensitivity_medium_or_high": sens if n_mal else float("nan"),
            "specificity_medium_or_high": spec if n_mal < sel.sum() else float("nan"),
        }
    return out


def plot_figures(results: dict[str, dict[str, Any]], classes: list[str], out: Path) -> None:
    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 5))
    for ax, (name, m) in zip(np.atleast_1d(axes), results.items(), strict=True):
        cm = np.array(m["confusion_matrix"], float)
        norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(
                    j,
                    i,
                    int(cm[i, j]),
                    ha="center",
                    va="center",
                    color="white" if norm[i, j] > 0.5 else "black",
                    fontsize=8,
                )
        ax.set_xticks(range(len(classes)), classes)
        ax.set_yticks(range(len(classes)), classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{name}: balanced acc {m['balanced_accuracy']:.3f}")
    fig.tight_layout()
    fig.savefig(out / "confusion_matrix.png", dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, m in results.items():
        fpr, tpr = m["_roc"]
        ax.plot(fpr, tpr, label=f"{name} (AUC {m['malignant_auc']:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title("Malignant vs benign (test split)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "roc_malignant.png", dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, m in results.items():
        acc, conf, count = (np.array(a) for a in m["_reliability"])
        sel = count > 0
        ax.plot(conf[sel], acc[sel], "o-", label=f"{name} (ECE {m['ece']:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability (top class)")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(out / "reliability.png", dpi=90)
    plt.close(fig)


def render_markdown(
    results: dict[str, dict[str, Any]],
    robustness: dict[str, dict[str, float]],
    fitzpatrick: dict[str, dict[str, float]],
    model: str,
) -> str:
    rows = [
        ("photos", "n", "{:d}"),
        ("refused by the gate (unassessable)", "refused", "{:.1%}"),
        ("balanced multi-class accuracy", "balanced_accuracy", "{:.3f}"),
        ("malignant AUC", "malignant_auc", "{:.3f}"),
        ("sensitivity, medium or high", "sensitivity_medium_or_high", "{:.3f}"),
        ("specificity, medium or high", "specificity_medium_or_high", "{:.3f}"),
        ("sensitivity, high", "sensitivity_high", "{:.3f}"),
        ("specificity, high", "specificity_high", "{:.3f}"),
        (
            "sensitivity, medium or high, answered photos only",
            "answered_sensitivity_medium_or_high",
            "{:.3f}",
        ),
        (
            "specificity, medium or high, answered photos only",
            "answered_specificity_medium_or_high",
            "{:.3f}",
        ),
        ("malignant AUC, answered photos", "answered_malignant_auc", "{:.3f}"),
        ("refused photos the classifier still judged", "refused_classified", "{:d}"),
        ("malignant AUC on those refused photos", "refused_malignant_auc", "{:.3f}"),
        ("ECE (15 bins)", "ece", "{:.3f}"),
        ("localiser box IoU >= 0.5 (real photos: vs own box)", "box_iou_ge_0_5", "{:.1%}"),
        ("pipeline ms per photo (median, 2 threads busy)", "ms_per_photo_median", "{:.1f}"),
    ]
    names = list(results)
    lines = [f"# Evaluation of `{model}` on the test splits", ""]
    lines.append("Generated by `python -m training.evaluate`; do not edit by hand.")
    lines.append("")
    lines.append(
        "Columns: `dermoscopy` and `phone` (a synthetic phone photo of each) are the HAM10000"
    )
    lines.append(
        "lesion-grouped test split; `real_phone` is the PAD-UFES-20 patient-grouped test split"
    )
    lines.append("(real smartphone photos of patients no threshold or rule was set on).")
    lines.append("")
    lines.append("| metric | " + " | ".join(names) + " |")
    lines.append("|---|" + "---|" * len(names))
    for label, key, fmt in rows:
        lines.append(
            f"| {label} | " + " | ".join(fmt.format(results[n][key]) for n in names) + " |"
        )
    lines += [
        "",
        "Metrics other than 'refused' are over photos where a lesion was localised and classified,",
        "whether or not the gate refused them, so the classifier and the gate can be judged apart.",
        "",
    ]
    lines.append("## Per class (precision / recall / F1, support)")
    lines.append("")
    lines.append("| class | " + " | ".join(names) + " |")
    lines.append("|---|" + "---|" * len(names))
    for c in results[names[0]]["per_class"]:
        cells = []
        for n in names:
            pc = results[n]["per_class"][c]
            cells.append(
                f"{pc['precision']:.2f} / {pc['recall']:.2f} / {pc['f1']:.2f} ({pc['support']})"
            )
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    lines += ["", "## Refusal reasons (share of photos)", ""]
    for n in names:
        reasons = (
            ", ".join(f"{k} {v:.1%}" for k, v in results[n]["refusal_reasons"].items()) or "none"
        )
        lines.append(f"- {n}: {reasons}")
    lines += ["", "## Malignant AUC by what the gate did (classifier judged apart from it)", ""]
    for n in names:
        groups = ", ".join(f"{k} {v:.3f}" for k, v in results[n]["malignant_auc_by_group"].items())
        lines.append(f"- {n}: {groups}")
    lines += ["", "## Real phone photos by Fitzpatrick skin type (PAD test)", ""]
    lines.append(
        "| skin type | photos | malignant | refused | malignant AUC"
        " | sensitivity, medium or high | specificity, medium or high |"
    )
    lines.append("|---|---|---|---|---|---|---|")
    for name, m in fitzpatrick.items():
        lines.append(
            f"| {name} | {m['photos']:.0f} | {m['malignant']:.0f} | {m['refused']:.1%} | "
            f"{m['malignant_auc']:.3f} | {m['sensitivity_medium_or_high']:.3f} | "
            f"{m['specificity_medium_or_high']:.3f} |"
        )
    lines.append("")
    lines.append("Groups this small give wide intervals; types V-VI are nearly absent from PAD.")
    lines += ["", "## Degraded dermoscopy copies (classifier judged apart from the gate)", ""]
    lines.append(
        "| copy | balanced accuracy | malignant AUC | sensitivity, medium or high"
        " | refused by the gate |"
    )
    lines.append("|---|---|---|---|---|")
    for kind, m in robustness.items():
        lines.append(
            f"| {kind} | {m['balanced_accuracy']:.3f} | {m['malignant_auc']:.3f} | "
            f"{m['sensitivity_medium_or_high']:.3f} | {m['refused']:.1%} |"
        )
    lines += ["", "Figures: `confusion_matrix.png`, `roc_malignant.png`, `reliability.png`.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="evaluate the shipped model on the test split")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=0, help="only the first N test images")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = TrainConfig.load(args.config)
    screener = Screener(args.model)
    images, records = load_split(cfg, ("test",))["test"]
    if args.limit:
        images, records = images[: args.limit], records[: args.limit]
    results = {}
    for d in DOMAINS:
        run = run_pipeline(screener, domain_photos(images, records, d, cfg.seed + 23))
        results[d] = domain_metrics(run, screener)
        log.info(
            "%s: %s",
            d,
            {
                k: v
                for k, v in results[d].items()
                if not k.startswith("_") and k not in ("per_class", "confusion_matrix")
            },
        )
    pad_photos, pad_meta = real_photos(cfg, "test")
    if args.limit:
        pad_photos, pad_meta = pad_photos[: args.limit], pad_meta[: args.limit]
    real_run = run_pipeline(screener, iter(pad_photos))
    results[REAL_DOMAIN] = domain_metrics(real_run, screener)
    fitzpatrick = by_fitzpatrick(real_run, pad_meta, screener)
    log.info("%s: AUC %.3f", REAL_DOMAIN, results[REAL_DOMAIN]["malignant_auc"])
    robustness = {}
    for kind in ("blur", "dark", "jpeg_q15", "low_res"):
        photos = (
            Photo(degrade(p.rgb, kind), p.label, p.box)
            for p in domain_photos(images, records, "dermoscopy", 0)
        )
        robustness[kind] = {
            k: v
            for k, v in domain_metrics(run_pipeline(screener, photos), screener).items()
            if isinstance(v, float)
        }
    args.out.mkdir(parents=True, exist_ok=True)
    plot_figures(results, list(screener.metadata.classes), args.out)
    public = {d: {k: v for k, v in m.items() if not k.startswith("_")} for d, m in results.items()}
    (args.out / "evaluation.json").write_text(
        json.dumps(
            {
                "model": screener.metadata.version,
                "domains": public,
                "real_phone_by_fitzpatrick": fitzpatrick,
                "degraded": robustness,
            },
            indent=1,
        )
    )
    (args.out / "evaluation.md").write_text(
        render_markdown(results, robustness, fitzpatrick, screener.metadata.version)
    )
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()

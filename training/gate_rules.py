"""Justify each gate rule on real photos: what it refuses, and what refusing it buys.

    python -m training.gate_rules --config training/configs/lite0.json --out docs/evaluation

For every rule of :mod:`inference.gate`, on the clean real phone photos of one PAD-UFES-20
split (``--split val``, where thresholds are chosen; the test split is for the lead's
final numbers only), it reports:

1. how many photos the rule refuses (judged on its own, whatever the other rules say):
   these are clinic photos taken for a biopsy or a diagnosis, so nearly all of them are
   photos a user should get an answer for, and each refusal is a cost;
2. how the classifier does on the photos the rule refuses against those it lets through:
   malignant AUC and mean log-loss of the true class. A rule earns its place only if its
   refused photos are measurably harder for the classifier. The classifier runs on every
   photo (the lesion's crop, or the centre square when none was found).

The same counts on HAM10000 dermoscopy images of the same split are a second column
(users also send dermoscopy photos). A second table applies gate_eval's defects to the
same real photos (blur, motion, dark, over-exposed, glare, a thumbnail, heavy JPEG, a cut)
and reports, per defect, the share refused for the right reason and the classifier's
figures on the copies the gate refuses for it against those it lets through: a threshold
is right where what it lets through is still judged about as well as clean photos.
Writes ``gate_rules.md`` and ``gate_rules.json``.

The thresholds themselves are chosen by ``python -m training.calibrate``
(:mod:`training.gate_calibration`); this report shows what they cost and buy.
"""

from __future__ import annotations

import argparse
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from inference.gate import RULES, fired_rules
from inference.pipeline import Screener
from inference.types import ScreeningResult
from training.config import TrainConfig
from training.data import default_box, load_split
from training.evalsets import Photo, gate_input, real_photos
from training.gate_eval import REAL_DEFECTS
from training.metrics import roc_auc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Judged:
    """The screening of a photo set: which rules fired, and how the classifier did."""

    fired: list[set[str]]
    malignant: npt.NDArray[np.bool_]
    p_malignant: npt.NDArray[np.float64]
    log_loss: npt.NDArray[np.float64]  # -log p(true class)
    measurements: list[dict[str, float]]


def judge(screener: Screener, photos: list[Photo]) -> Judged:
    meta = screener.metadata
    malignant_idx = [meta.classes.index(c) for c in meta.malignant_classes]

    def one(photo: Photo) -> ScreeningResult:
        return screener.screen(photo.rgb, with_overlay=False)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(one, photos))
    fired, p_mal, loss = [], [], []
    for photo, r in zip(photos, results, strict=True):
        if r.prediction is None:
            raise RuntimeError("the pipeline must classify every photo")
        fired.append({rule.name for rule in fired_rules(gate_input(r), meta.gate)})
        p_mal.append(r.prediction.malignant_probability)
        p_true = r.prediction.probabilities[meta.classes[photo.label]]
        loss.append(-np.log(max(p_true, 1e-12)))
    return Judged(
        fired=fired,
        malignant=np.isin([p.label for p in photos], malignant_idx),
        p_malignant=np.asarray(p_mal, np.float64),
        log_loss=np.asarray(loss, np.float64),
        measurements=[dict(r.quality.measurements) for r in results],
    )


def figures(j: Judged, sel: npt.NDArray[np.bool_]) -> dict[str, Any]:
    """Photos, malignant ones, malignant AUC (when both kinds are there) and log-loss."""
    n, n_mal = int(sel.sum()), int(j.malignant[sel].sum())
    auc = roc_auc(j.malignant[sel], j.p_malignant[sel]) if 0 < n_mal < n else None
    return {
        "n": n,
        "malignant": n_mal,
        "auc": auc,
        "log_loss": float(j.log_loss[sel].mean()) if n else None,
    }


def table(j: Judged, advisory: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """Each rule on its own, and the gate: any rule that refuses (``advisory`` rules only
    advise, so they refuse nothing)."""
    n = len(j.fired)
    rows: dict[str, dict[str, Any]] = {}
    for name in [r.name for r in RULES] + ["any rule (the gate)"]:
        sel = np.array(
            [bool(f - set(advisory)) if name.startswith("any") else name in f for f in j.fired]
        )
        alone = sum(f == {name} for f in j.fired)
        rows[name] = {
            "refused": int(sel.sum()),
            "rate": float(sel.mean()) if n else 0.0,
            "only_this_rule": int(alone),
            "refused_figures": figures(j, sel),
            "answered_figures": figures(j, ~sel),
        }
    return rows


def _fmt(f: dict[str, Any]) -> str:
    auc = f"{f['auc']:.3f}" if f["auc"] is not None else "-"
    loss = f"{f['log_loss']:.2f}" if f["log_loss"] is not None else "-"
    return f"{f['n']} ({f['malignant']} mal) | {auc} | {loss}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--split", default="val", help="PAD split; thresholds are set on val")
    parser.add_argument("--dermoscopy", type=int, default=300, help="HAM10000 images, same split")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = TrainConfig.load(args.config)
    screener = Screener(args.model)
    meta = screener.metadata

    photos, _ = real_photos(cfg, args.split)
    pad = judge(screener, photos)
    pad_rows = table(pad, meta.gate.advisory_rules)
    derm_rows: dict[str, dict[str, Any]] = {}
    if args.dermoscopy:
        images, records = load_split(replace(cfg, limit_images=args.dermoscopy), (args.split,))[
            args.split
        ]
        derm = [
            Photo(img, rec.label, rec.box or default_box(img.shape[1], img.shape[0]))
            for img, rec in zip(images, records, strict=True)
        ]
        derm_rows = table(judge(screener, derm), meta.gate.advisory_rules)

    rng = np.random.default_rng(cfg.seed + 53)
    rule_issue = {r.name: r.issue for r in RULES}
    defect_rows: dict[str, dict[str, Any]] = {
        "clean": {"all": figures(pad, np.ones(len(photos), bool))}
    }
    for defect, (make, right) in REAL_DEFECTS.items():
        copies = [Photo(make(p.rgb, p.box, rng), p.label, p.box) for p in photos]
        judged = judge(screener, copies)
        refusing = [fs - set(meta.gate.advisory_rules) for fs in judged.fired]
        for_it = np.array([any(rule_issue[f] in right for f in fs) for fs in refusing])
        defect_rows[defect] = {
            "right_reason": float(for_it.mean()),
            "refused_any": float(np.mean([bool(f) for f in refusing])),
            "all": figures(judged, np.ones(len(copies), bool)),
            "refused_for_it": figures(judged, for_it),
            "answered": figures(judged, ~for_it),
        }
        log.info("%s: %s", defect, defect_rows[defect])

    report = {
        "model": meta.version,
        "split": args.split,
        "gate_thresholds": asdict(meta.gate),
        "ood_threshold": meta.ood_threshold,
        "pad": pad_rows,
        "dermoscopy": derm_rows,
        "degraded_pad": defect_rows,
        "pad_photos": [
            {
                "malignant": bool(m),
                "p_malignant": round(float(p), 4),
                "fired": sorted(f),
                "measurements": {k: round(v, 4) for k, v in ms.items()},
            }
            for m, p, f, ms in zip(
                pad.malignant, pad.p_malignant, pad.fired, pad.measurements, strict=True
            )
        ],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gate_rules.json").write_text(json.dumps(report, indent=1))
    n_pad = len(photos)
    lines = [
        f"# Gate rules on real photos (PAD-UFES-20 {args.split})",
        "",
        "Generated by `python -m training.gate_rules`; do not edit by hand.",
        f"Model `{meta.version}`; {n_pad} clean real phone photos of the patient-grouped",
        f"PAD-UFES-20 `{args.split}` split, and HAM10000 dermoscopy images of the same split.",
        "Each rule is judged on its own (whatever the other rules say). 'Refused' and",
        "'answered' are the photos this rule refuses and lets through; the classifier ran",
        "on all of them (lesion crop, or centre square when none was found). AUC: malignant",
        "vs benign; log-loss: mean -log p(true class). A rule that refuses clean photos",
        "without the classifier doing clearly worse on them costs answers and buys nothing.",
        "Rules calibration made advisory (they answer; a retake tip where they have one): "
        + (", ".join(meta.gate.advisory_rules) or "none")
        + "; the gate's row counts the refusing rules only.",
        "Small groups (a handful of photos) give noisy figures: read n first.",
        "",
        "| rule | issue | PAD refused | only this rule | refused: n | AUC | log-loss "
        "| answered: n | AUC | log-loss | dermoscopy refused |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    issue_of = {r.name: r.issue.value for r in RULES}
    for name, row in pad_rows.items():
        derm_row = derm_rows.get(name)
        derm_cell = f"{derm_row['refused']} ({derm_row['rate']:.1%})" if derm_row else "-"
        lines.append(
            f"| {name} | {issue_of.get(name, '-')} | {row['refused']} ({row['rate']:.1%}) | "
            f"{row['only_this_rule']} | {_fmt(row['refused_figures'])} | "
            f"{_fmt(row['answered_figures'])} | {derm_cell} |"
        )
    lines += [
        "",
        f"## The same {n_pad} photos, degraded on purpose",
        "",
        "Defects sized to the photo (training.gate_eval.REAL_DEFECTS). 'For it': refused by",
        "a rule whose issue is the defect's own (e.g. blurry for blur, low_resolution or",
        "lesion_too_small for a thumbnail); the classifier's figures on those copies and on",
        "the copies not refused for it. Clean photos for reference: "
        + _fmt(defect_rows["clean"]["all"]),
        "",
        "| defect | refused for it | refused at all | all copies: n | AUC | log-loss "
        "| refused for it: n | AUC | log-loss | not refused for it: n | AUC | log-loss |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for defect, row in defect_rows.items():
        if defect == "clean":
            continue
        lines.append(
            f"| {defect} | {row['right_reason']:.1%} | {row['refused_any']:.1%} | "
            f"{_fmt(row['all'])} | {_fmt(row['refused_for_it'])} | {_fmt(row['answered'])} |"
        )
    (args.out / "gate_rules.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

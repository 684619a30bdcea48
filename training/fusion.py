"""The questions a doctor asks: do age, body site and the lesion's history add to the photo?

    python -m training.fusion --config training/configs/lite0_milk.json \
        --scores runs/<run>/val_scores.json --out docs/evaluation

On validation photos only (the image model never trained on them), a small logistic
regression on the photo's cancer logit plus the answers is compared with one on the
logit alone, both cross-fitted: five folds grouped by patient (PAD) or lesion (MILK10k),
each photo scored by the fit that did not see it. Reported: AUC and the best specificity
at 95% sensitivity with and without, and a bootstrap interval of the difference.

Leaks removed: PAD-UFES-20 records Fitzpatrick type, diameter and sex only for biopsied
lesions (which is where the cancers are), so those are not used; its history answers
are "UNK" only for biopsied lesions, so UNK is read as "no". MILK10k: age, sex, site.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from training.config import TrainConfig
from training.risk_eval import auc, spec_at_sens

log = logging.getLogger(__name__)
FloatArray = npt.NDArray[np.float64]
PAD_HISTORY = ("itch", "grew", "hurt", "changed", "bleed", "elevation")
SUN_SITES_PAD = {"FACE", "NOSE", "EAR", "LIP", "SCALP", "NECK"}
FOLDS = 5
L2 = 1.0


def fit_logistic(x: FloatArray, y: FloatArray, l2: float = L2, steps: int = 50) -> FloatArray:
    """Newton's method on the L2-penalised log-loss (intercept unpenalised)."""
    xb = np.hstack([np.ones((len(x), 1)), x])
    w = np.zeros(xb.shape[1])
    penalty = np.full(len(w), l2)
    penalty[0] = 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(xb @ w)))
        grad = xb.T @ (p - y) + penalty * w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(penalty) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def cross_fit(x: FloatArray, y: FloatArray, groups: list[str], seed: int) -> FloatArray:
    """Out-of-fold linear scores, folds by group."""
    keys = sorted(set(groups))
    rng = np.random.default_rng(seed)
    fold_of = {k: i % FOLDS for i, k in enumerate(rng.permutation(keys))}
    fold = np.array([fold_of[g] for g in groups])
    out = np.zeros(len(y))
    for f in range(FOLDS):
        test = fold == f
        mu, sd = x[~test].mean(0), x[~test].std(0) + 1e-9
        w = fit_logistic((x[~test] - mu) / sd, y[~test])
        out[test] = w[0] + ((x[test] - mu) / sd) @ w[1:]
    return out


def pad_answers(pad_dir: Path) -> dict[str, list[float]]:
    answers = {}
    with (pad_dir / "metadata.csv").open() as f:
        for row in csv.DictReader(f):
            history = [1.0 if row[k] == "True" else 0.0 for k in PAD_HISTORY]
            age = float(row["age"]) if row["age"] else 60.0
            answers[row["file"]] = [age / 10, float(row["region"] in SUN_SITES_PAD), *history]
    return answers


def milk_answers(milk_dir: Path) -> dict[str, list[float]]:
    answers = {}
    with (milk_dir / "metadata.csv").open() as f:
        for row in csv.DictReader(f):
            age = float(row["age_approx"]) if row["age_approx"] else 60.0
            site = row["site"]
            answers[row["file"]] = [
                age / 10,
                float(row["sex"] == "male"),
                float(site == "head_neck_face"),
                float(site in ("upper_extremity", "lower_extremity", "hand", "foot")),
            ]
    return answers


def study(
    scores: dict[str, list[Any]], answers: dict[str, list[float]], seed: int, rounds: int = 1000
) -> dict[str, Any]:
    answered = np.array(scores["answered"], bool)
    files = [f for f, a in zip(scores["files"], answered, strict=True) if a]
    groups = [g for g, a in zip(scores["groups"], answered, strict=True) if a]
    p = np.clip(np.array(scores["p_cancer"])[answered], 1e-6, 1 - 1e-6)
    y = np.array(scores["cancer"], bool)[answered]
    logit = np.log(p / (1 - p))[:, None]
    extra = np.array([answers[f] for f in files])
    alone = cross_fit(logit, y.astype(float), groups, seed)
    fused = cross_fit(np.hstack([logit, extra]), y.astype(float), groups, seed)

    def figures(idx: npt.NDArray[np.intp]) -> dict[str, float]:
        return {
            "auc_photo": auc(y[idx], alone[idx]),
            "auc_fused": auc(y[idx], fused[idx]),
            "spec95_photo": spec_at_sens(y[idx], alone[idx]),
            "spec95_fused": spec_at_sens(y[idx], fused[idx]),
        }

    point = figures(np.arange(len(y), dtype=np.intp))
    rng = np.random.default_rng(seed)
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    keys = list(members)
    diffs: dict[str, list[float]] = {"auc": [], "spec95": []}
    for _ in range(rounds):
        pick = rng.integers(0, len(keys), len(keys))
        idx = np.fromiter((i for k in pick for i in members[keys[k]]), np.intp)
        f = figures(idx)
        diffs["auc"].append(f["auc_fused"] - f["auc_photo"])
        diffs["spec95"].append(f["spec95_fused"] - f["spec95_photo"])
    ci = {
        k: [float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))]
        for k, v in diffs.items()
    }
    w = fit_logistic(
        (np.hstack([logit, extra]) - np.hstack([logit, extra]).mean(0))
        / (np.hstack([logit, extra]).std(0) + 1e-9),
        y.astype(float),
    )
    return {
        "photos": len(y),
        "cancers": int(y.sum()),
        **point,
        "difference_ci95": ci,
        "weights_standardised": w.tolist(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="photo + answers fusion study (validation)")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--scores", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = TrainConfig.load(args.config)
    scores = json.loads(args.scores.read_text())
    results = {
        "pad": study(scores["pad"], pad_answers(Path(cfg.pad_dir)), cfg.seed),
        "milk": study(scores["milk"], milk_answers(Path(cfg.milk_dir)), cfg.seed),
    }
    features = {
        "pad": ["photo logit", "age/10", "sun-exposed head site", *PAD_HISTORY],
        "milk": ["photo logit", "age/10", "male", "head/neck/face", "limbs"],
    }
    lines = [
        "# The questions a doctor asks (validation, cross-fitted)",
        "",
        f"Command: `python -m training.fusion --config {args.config} --scores {args.scores} "
        f"--out {args.out}`. {FOLDS} folds grouped by patient (PAD) or lesion (MILK10k); "
        "logistic regression, L2 1.0 on standardised inputs; photos the bot answered.",
        "",
        "| domain | photos (cancers) | inputs | AUC photo / with answers | best spec. at 95% "
        "sens. photo / with answers | difference AUC (95% CI) | difference spec. (95% CI) |",
        "|---|---|---|---|---|---|---|",
    ]
    for d, r in results.items():
        ci = r["difference_ci95"]
        lines.append(
            f"| {d} | {r['photos']} ({r['cancers']}) | {', '.join(features[d])} | "
            f"{r['auc_photo']:.3f} / {r['auc_fused']:.3f} | "
            f"{r['spec95_photo']:.3f} / {r['spec95_fused']:.3f} | "
            f"{r['auc_fused'] - r['auc_photo']:+.3f} "
            f"({ci['auc'][0]:+.3f} to {ci['auc'][1]:+.3f}) | "
            f"{r['spec95_fused'] - r['spec95_photo']:+.3f} "
            f"({ci['spec95'][0]:+.3f} to {ci['spec95'][1]:+.3f}) |"
        )
    lines += ["", "Standardised weights of the full-validation fit (intercept first):", ""]
    for d, r in results.items():
        names = ["intercept", *features[d]]
        lines.append(
            f"- {d}: "
            + ", ".join(
                f"{n} {w:+.2f}" for n, w in zip(names, r["weights_standardised"], strict=True)
            )
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fusion.md").write_text("\n".join(lines) + "\n")
    (args.out / "fusion.json").write_text(json.dumps(results, indent=1))
    log.info("wrote %s", args.out / "fusion.md")


if __name__ == "__main__":
    main()

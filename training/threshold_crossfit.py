"""Which rule for the ``medium`` cut-off generalises? Out-of-fold, on validation (issue 22).

    python -m training.threshold_crossfit --scores runs/<run>/val_scores.json \
        --out docs/evaluation

A cut-off read off the photos it is then judged on flatters itself: the lowest cancer
score of 40 always sits on or above the cut-off it set. Here each rule sets its cut-off
on four of five folds of the validation photos (grouped by patient for PAD-UFES-20, by
lesion otherwise) and is judged on the fifth, so every photo is judged by a cut-off that
never saw it; :data:`REPEATS` random fold draws. Scores come from
``training.risk_calibrate --scores-out`` (the shipped model's calibrated p(cancer), the
gate's answer and the class per photo): no model run, so the study is cheap.

Validation photos are the only out-of-sample scores the model has: its weights were fitted
on the training split, so cross-fitting over train + validation would need a model per
fold (not trained: one training run takes a whole 2-core session). What this cross-fits
is the choice of the cut-off, the step that sets the specificity the bot has.

Rules (:func:`training.thresholds.risk_cutoffs`), both over phone photos (PAD-UFES-20) and
close-ups (MILK10k), the photos the bot is for:

- ``lowest_bound``: the lowest of the two domains' lower confidence bounds for 95%
  sensitivity (each domain keeps its own guarantee).
- ``pooled``: one bound over both domains' cancers together (more cancers, a higher bound).

Chosen: the highest mean out-of-fold specificity on the two domains among the rules that
keep 95% out-of-fold cancer sensitivity in each and do not give up melanoma: half of the
cancers in MILK10k are basal cell carcinomas, which score high, so a pooled bound can
catch 95% of "cancer" while missing more melanomas. A rule's melanoma sensitivity may not
fall below the best rule's (or 95%, whichever is lower) by more than :data:`MEL_SLACK`.
HAM10000 dermoscopy is shown as a second check.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from training.data import CLASSES
from training.domains import DOMAIN_TITLES, MILK, PAD
from training.thresholds import risk_cutoffs

log = logging.getLogger(__name__)
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
FOLDS = 5
REPEATS = 50
TARGET = 0.95
MEL_SLACK = 0.005  # rounding: one melanoma in 200 out-of-fold calls
PHOTO_DOMAINS = [PAD, MILK]
MEL = CLASSES.index("mel")
Answered = dict[str, tuple[BoolArray, FloatArray]]

RULES: dict[str, Callable[[Answered], float]] = {
    "lowest_bound": lambda a: risk_cutoffs(a, PHOTO_DOMAINS)[0],
    "pooled": lambda a: risk_cutoffs(a, PHOTO_DOMAINS, pooled=True)[0],
}


def load_scores(path: Path) -> dict[str, dict[str, npt.NDArray[Any]]]:
    raw = json.loads(path.read_text())
    return {
        d: {
            "groups": np.array(v["groups"]),
            "p": np.array(v["p_cancer"], np.float64),
            "answered": np.array(v["answered"], bool),
            "cancer": np.array(v["cancer"], bool),
            "melanoma": np.array(v["labels"]) == MEL,
        }
        for d, v in raw.items()
    }


def fold_of(groups: npt.NDArray[Any], rng: np.random.Generator) -> npt.NDArray[np.intp]:
    keys = rng.permutation(sorted(set(groups.tolist())))
    fold = {k: i % FOLDS for i, k in enumerate(keys)}
    return np.array([fold[g] for g in groups], np.intp)


def out_of_fold(
    scores: dict[str, dict[str, npt.NDArray[Any]]],
    rule: Callable[[Answered], float],
    seed: int,
) -> dict[str, BoolArray]:
    """Each photo's "medium or high" call by a cut-off set on the other folds."""
    rng = np.random.default_rng(seed)
    folds = {d: fold_of(v["groups"], rng) for d, v in scores.items()}
    flagged = {d: np.zeros(len(v["p"]), bool) for d, v in scores.items()}
    for f in range(FOLDS):
        fit = {}
        for d, v in scores.items():
            m = (folds[d] != f) & v["answered"]
            fit[d] = (v["cancer"][m], v["p"][m])
        cut = rule(fit)
        for d, v in scores.items():
            held = folds[d] == f
            flagged[d][held] = v["p"][held] >= cut
    return flagged


def _rate(x: BoolArray) -> float:
    return float(x.mean()) if len(x) else float("nan")


def study(scores: dict[str, dict[str, npt.NDArray[Any]]], repeats: int = REPEATS) -> dict[str, Any]:
    rules: dict[str, Any] = {}
    everything = {d: (v["cancer"][v["answered"]], v["p"][v["answered"]]) for d, v in scores.items()}
    for name, rule in RULES.items():
        draws: dict[str, list[tuple[float, float, float]]] = {d: [] for d in scores}
        for r in range(repeats):
            flagged = out_of_fold(scores, rule, r)
            for d, v in scores.items():
                a, x = v["answered"], flagged[d]
                draws[d].append(
                    (
                        _rate(x[a & v["cancer"]]),
                        _rate(x[a & v["melanoma"]]),
                        _rate(~x[a & ~v["cancer"]]),
                    )
                )
        rules[name] = {
            "medium_on_all_validation": rule(everything),
            "domains": {
                d: {
                    "cancers": int((v["answered"] & v["cancer"]).sum()),
                    "melanomas": int((v["answered"] & v["melanoma"]).sum()),
                    "sensitivity": float(np.mean([s for s, _, _ in draws[d]])),
                    "sensitivity_min": float(np.min([s for s, _, _ in draws[d]])),
                    "melanoma_sensitivity": float(np.mean([m for _, m, _ in draws[d]])),
                    "specificity": float(np.mean([p for _, _, p in draws[d]])),
                }
                for d, v in scores.items()
            },
        }
    return {"repeats": repeats, "folds": FOLDS, "rules": rules, "chosen": choose(rules)}


def choose(rules: dict[str, Any]) -> str | None:
    """See the module docstring; None when no rule keeps the cancer target."""

    def photo(r: dict[str, Any], key: str) -> list[float]:
        return [r["domains"][d][key] for d in PHOTO_DOMAINS]

    mel = np.array([photo(r, "melanoma_sensitivity") for r in rules.values()])
    best_mel = np.nanmax(mel, axis=0) if mel.size else np.zeros(len(PHOTO_DOMAINS))
    floor = [min(b, TARGET) - MEL_SLACK for b in best_mel]
    eligible = [
        n
        for n, r in rules.items()
        if all(s >= TARGET for s in photo(r, "sensitivity"))
        and all(
            not np.isfinite(m) or m >= f
            for m, f in zip(photo(r, "melanoma_sensitivity"), floor, strict=True)
        )
    ]
    if not eligible:
        return None
    return max(eligible, key=lambda n: float(np.mean(photo(rules[n], "specificity"))))


def render(report: dict[str, Any]) -> str:
    domains = report["domains"]
    lines = [
        "# `medium` cut-off rules, cross-fitted on validation",
        "",
        f"Scores: `{report['scores']}` (model `{report['model']}`). Each rule sets `medium` on "
        f"{report['folds'] - 1} of {report['folds']} patient- or lesion-grouped folds of the "
        f"answered validation photos and flags the held-out fold; mean over "
        f"{report['repeats']} fold draws. Cells: cancer sensitivity (lowest draw) / melanoma "
        "sensitivity / specificity. Generated by `python -m training.threshold_crossfit`.",
        "",
        "| rule | `medium` set on all validation | "
        + " | ".join(DOMAIN_TITLES.get(d, d) for d in domains)
        + " |",
        "|---|---|" + "---|" * len(domains),
    ]
    for name, r in report["rules"].items():
        cells = [
            f"{v['sensitivity']:.3f} ({v['sensitivity_min']:.3f}) / "
            f"{v['melanoma_sensitivity']:.3f} / {v['specificity']:.3f}"
            for v in r["domains"].values()
        ]
        mark = " **(chosen)**" if name == report["chosen"] else ""
        lines.append(
            f"| `{name}`{mark} | {r['medium_on_all_validation']:.4f} | " + " | ".join(cells) + " |"
        )
    counts = next(iter(report["rules"].values()))["domains"]
    lines += [
        "",
        "Answered cancers (melanomas): "
        + ", ".join(
            f"{DOMAIN_TITLES.get(d, d)} {v['cancers']} ({v['melanomas']})"
            for d, v in counts.items()
        )
        + ".",
    ]
    if report["chosen"] is None:
        lines += ["", "**No rule keeps 95% out-of-fold cancer sensitivity and melanoma.**"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description="cross-fit the medium cut-off rules")
    parser.add_argument("--scores", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="", help="the model version the scores are of")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    scores = load_scores(args.scores)
    report = {
        "scores": str(args.scores),
        "model": args.model,
        "domains": list(scores),
        **study(scores, args.repeats),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "threshold_crossfit.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "threshold_crossfit.md").write_text(render(report))
    log.info("chosen rule: %s", report["chosen"])


if __name__ == "__main__":
    main()

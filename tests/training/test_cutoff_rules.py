"""Issue 22: the ``medium`` cut-off rules and the out-of-fold study that chose one."""

from __future__ import annotations

import numpy as np
import pytest

from training.data import CLASSES
from training.threshold_crossfit import choose, out_of_fold, study
from training.thresholds import risk_cutoffs, sensitivity_lower_bound_threshold

MEL, BCC, NV = CLASSES.index("mel"), CLASSES.index("bcc"), CLASSES.index("nv")


def _domain(
    rng: np.random.Generator, n: int, prefix: str, mel_mean: float
) -> dict[str, np.ndarray]:
    """Benign spots score low, basal cell carcinomas high, melanomas at ``mel_mean``."""
    labels = rng.choice([NV, BCC, MEL], n, p=[0.5, 0.3, 0.2])
    mean = np.select([labels == NV, labels == BCC], [0.25, 0.7], mel_mean)
    p = np.clip(rng.normal(mean, 0.15), 0.001, 0.999)
    return {
        "groups": np.array([f"{prefix}{i // 2}" for i in range(n)]),
        "p": p,
        "answered": np.ones(n, bool),
        "cancer": labels != NV,
        "melanoma": labels == MEL,
    }


def _scores(mel_mean: float, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {"pad": _domain(rng, 300, "p", mel_mean), "milk": _domain(rng, 900, "m", mel_mean)}


def test_pooled_medium_is_one_bound_over_both_domains() -> None:
    s = _scores(0.4)
    answered = {d: (v["cancer"], v["p"]) for d, v in s.items()}
    medium, _, bounds = risk_cutoffs(answered, ["pad", "milk"], pooled=True)
    both = np.r_[s["pad"]["p"][s["pad"]["cancer"]], s["milk"]["p"][s["milk"]["cancer"]]]
    assert medium == sensitivity_lower_bound_threshold(both).threshold
    lowest, _, _ = risk_cutoffs(answered, ["pad", "milk"])
    assert lowest == min(bounds["pad"].threshold, bounds["milk"].threshold)


def test_out_of_fold_cut_offs_never_see_the_photo_they_judge() -> None:
    """A cancer scored far below the rest: a cut-off set on all photos (PAD's bound is its
    lowest score at this size) flags it; out of fold it cannot."""
    s = _scores(0.4)
    pad = s["pad"]
    pad["cancer"][:] = False
    pad["cancer"][:40] = True
    pad["p"][:40] = np.linspace(0.5, 0.9, 40)
    pad["p"][0] = 0.01
    pad["groups"][0] = "alone"
    answered = {d: (v["cancer"], v["p"]) for d, v in s.items()}
    assert pad["p"][0] >= risk_cutoffs(answered, ["pad", "milk"])[0]
    flagged = out_of_fold(s, lambda a: risk_cutoffs(a, ["pad", "milk"])[0], seed=0)
    assert not flagged["pad"][0]
    assert flagged["pad"][1:40].all()


def test_a_rule_that_trades_melanoma_for_specificity_is_not_chosen() -> None:
    """Melanomas scoring between benign spots and carcinomas: the pooled bound, carried by
    the many high-scoring carcinomas, sits above more melanomas."""
    report = study(_scores(mel_mean=0.3), repeats=3)
    pooled, lowest = report["rules"]["pooled"], report["rules"]["lowest_bound"]
    assert pooled["domains"]["milk"]["specificity"] > lowest["domains"]["milk"]["specificity"]
    assert (
        pooled["domains"]["milk"]["melanoma_sensitivity"]
        < lowest["domains"]["milk"]["melanoma_sensitivity"] - 0.01
    )
    assert report["chosen"] == "lowest_bound"


def test_with_melanomas_scored_like_other_cancers_the_more_specific_rule_is_chosen() -> None:
    report = study(_scores(mel_mean=0.7), repeats=3)
    assert report["chosen"] == "pooled"


def test_choose_names_no_rule_when_none_keeps_the_cancer_target() -> None:
    low = {"sensitivity": 0.9, "melanoma_sensitivity": 0.9, "specificity": 0.9}
    assert choose({"r": {"domains": {"pad": low, "milk": low}}}) is None


@pytest.mark.parametrize("mel", [0.3, 0.7])
def test_the_study_is_reproducible(mel: float) -> None:
    assert study(_scores(mel), repeats=2) == study(_scores(mel), repeats=2)

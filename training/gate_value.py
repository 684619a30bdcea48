"""Does a gate rule refuse what the model judges badly? The value test behind each refusal.

A clear photo of a lesion refused is a person left without an answer. A rule earns that
cost only if the clean photos it refuses are ones the classifier gets wrong more often
than the photos it lets through. The measure, per photo, is its **rank error**: for a
cancer photo, the share of the same set's benign photos the classifier ranks above it;
for a benign photo, the share of cancer photos ranked below it (ties count half). The
set's mean rank error is 1 - AUC, and it does not depend on the temperature, so the gate
can be judged before the temperature is fitted.

A rule's clean refusals are *judged worse* when their rank error, each taken against its
own set's mean (PAD phone photos, MILK10k close-ups and HAM10000 dermoscopy differ in how
hard they are), is higher than chance would make it: a one-sided permutation test that
refuses, in each set, as many photos at random (:data:`ALPHA`, :data:`PERMUTATIONS`, a
fixed seed so calibration reproduces itself).

The decision per rule (:func:`judge_rules`), which calibration records in the model:

- it refuses at most the per-rule budget of every clean set: it refuses (its cost is within
  what the gate allows each rule);
- over the budget somewhere, but its refusals are judged worse: it refuses (it earns it);
- over the budget and not judged worse: it is **advisory** -- the photo is answered, and
  the rule's retake tip goes with the answer (``GateThresholds.advisory_rules``) --
  unless that would let through what the gate is there to stop. The *guard sets* (the
  validation split's real phone photos motion-blurred, out of focus and as 96 px
  thumbnails, and its non-lesion images) must keep
  their refusals: rules are made advisory one at a time, the least evidence of value
  first (highest p), and one that would let through more than the budget of a guard set
  that the gate with every rule refusing catches stays a refusal.

:data:`ALWAYS_REFUSES` are exempt: with no spot found there is nothing to rank.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from inference.gate import RULES, RULES_BY_NAME, GateInput, decide
from inference.metadata import GateThresholds
from inference.types import QualityIssue

# At most this share of the clean photos of each validation set may one rule refuse
# without having to show that what it refuses is judged worse.
CLEAN_BUDGET = 0.01
ALPHA = 0.05
PERMUTATIONS = 2000
SEED = 18
# No lesion found: the classifier judged the centre square, which is no answer about a spot.
ALWAYS_REFUSES = frozenset({"no_lesion_found"})

Bools = npt.NDArray[np.bool_]
Floats = npt.NDArray[np.float64]


def allowed(n: int, budget: float = CLEAN_BUDGET) -> int:
    """How many of ``n`` clean photos one rule may refuse."""
    return math.floor(budget * n + 1e-9)


def rank_errors(cancer: npt.ArrayLike, p: npt.ArrayLike) -> Floats:
    """Each photo's share of opposite-class photos misranked against it (ties half)."""
    y = np.asarray(cancer, bool)
    s = np.asarray(p, np.float64)
    pos, neg = np.sort(s[y]), np.sort(s[~y])
    err = np.zeros(len(s))
    if len(pos) == 0 or len(neg) == 0:
        return err
    # Cancer photo: benign photos above it; benign photo: cancer photos below it.
    above = len(neg) - np.searchsorted(neg, s[y], "right")
    ties = np.searchsorted(neg, s[y], "right") - np.searchsorted(neg, s[y], "left")
    err[y] = (above + 0.5 * ties) / len(neg)
    below = np.searchsorted(pos, s[~y], "left")
    ties = np.searchsorted(pos, s[~y], "right") - below
    err[~y] = (below + 0.5 * ties) / len(pos)
    return err


def excess_error(
    refused: Mapping[str, Bools], errors: Mapping[str, Floats], rng: np.random.Generator
) -> tuple[float, float]:
    """Mean rank error of the refused photos above their own set's mean, and the one-sided
    permutation p-value of a random refusal of as many photos per set doing as badly."""
    centred = {k: errors[k] - errors[k].mean() for k in refused}
    n_refused = sum(int(f.sum()) for f in refused.values())
    if n_refused == 0:
        return 0.0, 1.0
    observed = sum(float(centred[k][f].sum()) for k, f in refused.items()) / n_refused
    hits = 0
    for _ in range(PERMUTATIONS):
        total = 0.0
        for k, f in refused.items():
            total += float(rng.choice(centred[k], int(f.sum()), replace=False).sum())
        hits += total / n_refused >= observed - 1e-12
    return observed, (hits + 1) / (PERMUTATIONS + 1)


@dataclass(frozen=True)
class RuleValue:
    """What one rule refuses of each clean set, how the model judges it, and the decision."""

    rule: str
    refused: dict[str, tuple[int, int]]  # clean set -> (refused by this rule alone, photos)
    error_refused: float  # mean rank error of the refused photos (all sets)
    error_answered: float
    excess: float  # refused photos' rank error above their own set's mean
    p_value: float
    within_budget: bool
    advisory: bool
    decision: str  # in words
    # Guard set -> (photos the gate would let through that it refuses with every rule
    # refusing, photos), with this rule advisory besides those made advisory before it.
    guard_lost: dict[str, tuple[int, int]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def guard_lost(
    guards: Mapping[str, Sequence[GateInput]], t: GateThresholds, advisory: tuple[str, ...]
) -> dict[str, tuple[int, int]]:
    """Per guard set: photos refused with every rule refusing but answered with
    ``advisory`` advising, and the set's size."""
    strict, loose = replace(t, advisory_rules=()), replace(t, advisory_rules=advisory)
    return {
        k: (sum(bool(decide(g, strict)) and not decide(g, loose) for g in gs), len(gs))
        for k, gs in guards.items()
    }


def judge_rules(
    clean: Mapping[str, Sequence[GateInput]],
    errors: Mapping[str, Sequence[float]],
    guards: Mapping[str, Sequence[GateInput]],
    t: GateThresholds,
    budget: float = CLEAN_BUDGET,
) -> dict[str, RuleValue]:
    """The value test of every rule at thresholds ``t`` (each rule on its own), then which
    of the rules that fail it become advisory without costing the guard sets."""
    rng = np.random.default_rng(SEED)
    err = {k: np.asarray(errors[k], np.float64) for k in clean}
    for k in clean:
        if len(err[k]) != len(clean[k]):
            raise ValueError(f"{k}: {len(err[k])} rank errors for {len(clean[k])} photos")
    out: dict[str, RuleValue] = {}
    for rule in RULES:
        fired = {k: np.array([rule.fires(g, t) for g in gs], bool) for k, gs in clean.items()}
        counts = {k: (int(f.sum()), len(f)) for k, f in fired.items()}
        within = all(r <= allowed(n, budget) for r, n in counts.values())
        excess, p = excess_error(fired, err, rng)
        all_err = np.concatenate([err[k] for k in fired])
        all_fired = np.concatenate([fired[k] for k in fired])
        e_ref = float(all_err[all_fired].mean()) if all_fired.any() else float("nan")
        e_ans = float(all_err[~all_fired].mean()) if (~all_fired).any() else float("nan")
        worse = p < ALPHA and excess > 0
        if rule.name in ALWAYS_REFUSES:
            decision = "refuses: no spot found, nothing to rank"
        elif within:
            decision = f"refuses: within the {budget:.0%} budget of every clean set"
        elif worse:
            decision = f"refuses: over budget, but what it refuses is judged worse (p={p:.3f})"
        else:
            decision = "candidate"
        out[rule.name] = RuleValue(
            rule.name, counts, e_ref, e_ans, excess, p, within, False, decision
        )
    # The least evidence of value first; the name breaks ties, so the order is fixed.
    candidates = sorted(
        (v for v in out.values() if v.decision == "candidate"), key=lambda v: (-v.p_value, v.rule)
    )
    advisory: tuple[str, ...] = ()
    for v in candidates:
        lost = guard_lost(guards, t, (*advisory, v.rule))
        keeps = all(k <= allowed(n, budget) for k, n in lost.values())
        lost_text = ", ".join(f"{k} {r}/{n}" for k, (r, n) in lost.items())
        if keeps:
            advisory = (*advisory, v.rule)
            # inference.gate.tips never gives "not a lesion" as a tip (it would contradict
            # the answer): such a rule just stops refusing.
            answered = (
                "answered, with no tip"
                if RULES_BY_NAME[v.rule].issue is QualityIssue.NOT_A_LESION
                else "answered, with its retake tip"
            )
            decision = (
                f"advisory: over budget and what it refuses is judged no worse "
                f"(p={v.p_value:.3f}); guard sets keep their refusals ({lost_text} let "
                f"through); {answered}"
            )
        else:
            decision = (
                f"refuses: over budget and judged no worse (p={v.p_value:.3f}), but as advice "
                f"it would let through {lost_text} of the guard sets"
            )
        out[v.rule] = replace(v, advisory=keeps, decision=decision, guard_lost=lost)
    return out


def report(version: str, values: Mapping[str, Mapping[str, Any]]) -> str:
    """The per-rule value table (markdown), from ``metrics["gate_rules"]`` of the model."""
    sets = sorted({s for v in values.values() for s in v["refused"]})
    lines = [
        "# What each gate rule refuses, and whether the model judges it worse (validation)",
        "",
        "Generated by `python -m training.calibrate` (training/gate_value.py); do not edit by",
        f"hand. Model `{version}`. Clean validation photos of each set; each rule judged on its",
        "own at the calibrated thresholds. Rank error: a cancer photo's share of benign photos",
        "the model ranks above it, a benign photo's share of cancer photos ranked below it",
        "(mean = 1 - AUC of the set). Excess: the refused photos' rank error above their own",
        "set's mean; p: one-sided permutation test (refusing as many photos per set at random).",
        f"A rule over its budget whose refusals are not judged worse (p >= {ALPHA}) is advisory",
        "(the photo is answered and its retake tip goes with the answer) unless that lets",
        "through more than the budget of a guard set (validation phone photos motion-blurred,",
        "out of focus and as 96 px thumbnails; validation non-lesion images) that the gate with",
        "every rule refusing catches.",
        "",
        "| rule | "
        + " | ".join(f"{s} refused" for s in sets)
        + " | rank error refused / answered | excess | p | decision |",
        "|---|" + "---|" * len(sets) + "---|---|---|---|",
    ]
    for name, v in values.items():
        cells = []
        for s in sets:
            k, n = v["refused"][s]
            cells.append(f"{k} of {n} ({k / n:.1%})" if n else "-")
        e = (
            f"{v['error_refused']:.3f} / {v['error_answered']:.3f}"
            if v["error_refused"] == v["error_refused"]  # not NaN
            else "- / -"
        )
        lines.append(
            f"| {name} | "
            + " | ".join(cells)
            + f" | {e} | {v['excess']:+.3f} | {v['p_value']:.3f} | {v['decision']} |"
        )
    return "\n".join(lines) + "\n"

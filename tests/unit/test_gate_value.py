"""The value test: a rule over its budget of clean photos keeps refusing only when the
classifier judges what it refuses worse than what it answers; otherwise it only advises."""

from __future__ import annotations

import numpy as np
import pytest

from inference.gate import RULE_NAMES, GateInput
from tests.unit.test_gate import T, photo
from training.gate_calibration import calibrate_gate
from training.gate_value import ALWAYS_REFUSES, judge_rules, rank_errors, report
from training.metrics import roc_auc

SOFT = T.max_blur_px + 0.5  # a blur the shipped thresholds refuse


def test_rank_errors_average_to_one_minus_the_auc() -> None:
    rng = np.random.default_rng(1)
    cancer = rng.random(300) < 0.3
    p = np.round(rng.random(300) * 0.5 + 0.4 * cancer, 2)  # with ties
    err = rank_errors(cancer, p)
    assert err[cancer].mean() == pytest.approx(1 - roc_auc(cancer, p))
    assert err[~cancer].mean() == pytest.approx(1 - roc_auc(cancer, p))


def test_rank_error_of_one_photo() -> None:
    """A cancer photo below both benign ones, one benign photo above one cancer photo."""
    err = rank_errors([True, True, False, False], [0.2, 0.9, 0.5, 0.3])
    assert list(err) == [1.0, 0.0, 0.5, 0.5]


def _set(
    n: int, refused: int, err_refused: float, seed: int = 0
) -> tuple[list[GateInput], list[float]]:
    """``n`` clean photos of which ``refused`` are blurred; errors around 0.2 for the rest."""
    rng = np.random.default_rng(seed)
    photos = [photo(blur_px=SOFT)] * refused + [photo()] * (n - refused)
    errors = [err_refused] * refused + list(rng.uniform(0.0, 0.4, n - refused))
    return photos, errors


def test_a_rule_over_budget_refusing_photos_judged_as_well_becomes_advisory() -> None:
    photos, errors = _set(200, 10, 0.2)
    v = judge_rules({"real": photos}, {"real": errors}, {}, T)["blurry"]
    assert (v.refused, v.within_budget, v.advisory) == ({"real": (10, 200)}, False, True)
    assert v.p_value >= 0.05
    assert v.decision.startswith("advisory")


def test_an_advisory_decision_says_whether_a_tip_goes_with_the_answer() -> None:
    """A blur rule made advisory gives its retake tip; a "not a lesion" rule made advisory
    gives none (inference.gate.tips), and the recorded decision says so."""
    rivals = [photo(rivals=T.max_rivals + 1)] * 10 + [photo()] * 190
    errors = list(np.random.default_rng(0).uniform(0.0, 0.4, 200))
    v = judge_rules({"real": rivals}, {"real": errors}, {}, T)["many_rivals"]
    assert v.advisory and v.decision.endswith("answered, with no tip")
    photos, errors = _set(200, 10, 0.2)
    v = judge_rules({"real": photos}, {"real": errors}, {}, T)["blurry"]
    assert v.advisory and v.decision.endswith("answered, with its retake tip")


def test_a_rule_over_budget_refusing_photos_judged_worse_keeps_refusing() -> None:
    photos, errors = _set(200, 10, 0.9)
    v = judge_rules({"real": photos}, {"real": errors}, {}, T)["blurry"]
    assert (v.within_budget, v.advisory) == (False, False)
    assert v.p_value < 0.05 and v.excess > 0.5
    assert "judged worse" in v.decision


def test_a_rule_within_budget_refuses_whatever_it_refuses() -> None:
    photos, errors = _set(200, 2, 0.0)
    v = judge_rules({"real": photos}, {"real": errors}, {}, T)["blurry"]
    assert (v.within_budget, v.advisory) == (True, False)


def test_each_set_is_judged_against_its_own_mean() -> None:
    """Refusals from a harder set are not 'worse' just because that set is harder: the
    rule refuses ten photos of the hard set only, each as well judged as the rest of it."""
    easy, _ = _set(200, 0, 0.0)
    hard, _ = _set(200, 10, 0.0)
    errors = {"easy": [0.05] * 200, "hard": [0.6] * 200}
    v = judge_rules({"easy": easy, "hard": hard}, errors, {}, T)["blurry"]
    assert v.refused == {"easy": (0, 200), "hard": (10, 200)}
    assert v.error_refused > v.error_answered  # pooled, they look worse ...
    assert v.excess == pytest.approx(0.0) and v.advisory  # ... but are not


def test_no_lesion_found_always_refuses() -> None:
    photos = [photo(box=None)] * 10 + [photo()] * 190
    errors = [0.0] * 10 + [0.3] * 190
    v = judge_rules({"real": photos}, {"real": errors}, {}, T)["no_lesion_found"]
    assert not v.advisory and "no_lesion_found" in ALWAYS_REFUSES


def test_calibration_writes_the_advisory_rules_into_the_gate() -> None:
    photos, errors = _set(200, 10, 0.2)
    gate, _, values = calibrate_gate(
        {"real": photos}, {"real": [150.0] * 200}, {"real": errors}, {}
    )
    assert gate.advisory_rules == ("blurry",)
    assert set(values) == set(RULE_NAMES)
    text = report("v", {name: v.as_json() for name, v in values.items()})
    assert "| blurry | 10 of 200 (5.0%) |" in text and "advisory" in text


def test_a_rule_stays_a_refusal_when_advice_would_open_a_guard_set() -> None:
    """Blurry refuses clean photos the model judges as well as the rest, but it alone
    catches the motion-blurred ones: as advice it would let 5 of 100 through."""
    photos, errors = _set(200, 10, 0.2)
    smeared = [photo(blur_px=SOFT)] * 5 + [photo(luma_p90=T.dark_p90 - 1)] * 95
    v = judge_rules({"real": photos}, {"real": errors}, {"motion_blur": smeared}, T)["blurry"]
    assert (v.within_budget, v.advisory) == (False, False)
    assert v.guard_lost == {"motion_blur": (5, 100)}
    assert "would let through motion_blur 5/100" in v.decision
    # One blurred copy of 100 let through is within the 1% budget.
    smeared = [photo(blur_px=SOFT)] + [photo(luma_p90=T.dark_p90 - 1)] * 99
    v = judge_rules({"real": photos}, {"real": errors}, {"motion_blur": smeared}, T)["blurry"]
    assert v.advisory and v.guard_lost == {"motion_blur": (1, 100)}


def test_rules_become_advisory_least_evidence_first_while_the_guards_hold() -> None:
    """Two rules fail the value test; together they would open the guard set, each alone
    not: the one with the weaker evidence of value (higher p) goes first."""
    low, high_err = 0.2, 0.25
    photos = [photo(blur_px=SOFT)] * 10 + [photo(lesion_glare_fraction=0.5)] * 10 + [photo()] * 180
    rng = np.random.default_rng(4)
    errors = [low] * 10 + [high_err] * 10 + list(rng.uniform(0.0, 0.4, 180))
    guard = [photo(blur_px=SOFT, lesion_glare_fraction=0.5)] * 2 + [photo(box=None)] * 98
    v = judge_rules({"real": photos}, {"real": errors}, {"g": guard}, T)
    first, second = sorted(("blurry", "glare_on_lesion"), key=lambda n: -v[n].p_value)
    assert v[first].advisory and v[first].guard_lost == {"g": (0, 100)}
    assert not v[second].advisory and v[second].guard_lost == {"g": (2, 100)}

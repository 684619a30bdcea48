"""Choosing when the mirror image is run too (training.second_look), and the shipped model
carrying what that step chose."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from tests.shipped import shipped_metadata
from training.second_look import AGREEMENT, Looks, at_margin, choose_margin

EVALUATION = Path(__file__).resolve().parents[2] / "docs" / "evaluation"


def _p(logit: float) -> float:
    return 1 / (1 + math.exp(-logit))


def _looks(n: int, moved: int, above_medium_by: float) -> Looks:
    """``n`` answered photos far below every cut-off, of which ``moved`` first look just
    above ``medium`` (by ``above_medium_by`` log-odds) while both looks say low."""
    medium = shipped_metadata().thresholds.medium
    z = math.log(medium / (1 - medium))
    one = np.full(n, 1e-4)
    two = one.copy()
    one[:moved] = _p(z + above_medium_by)
    two[:moved] = _p(z - 0.1)
    return Looks(
        one=one, two=two, one_mirror=two.copy(), two_mirror=two.copy(), answered=np.ones(n, bool)
    )


def test_the_margin_is_the_smallest_that_keeps_every_domain_as_two_looks_answer() -> None:
    meta = shipped_metadata()
    # Two of 200 first looks on the wrong side: 99% agreement, under AGREEMENT (99.5%) until
    # the margin reaches them (0.23 log-odds away in one domain, 0.52 in the other).
    near = _looks(200, 2, 0.23)
    far = _looks(200, 2, 0.52)
    assert at_margin(near, meta, 0.0)["agreement_with_two_looks"] < AGREEMENT
    assert choose_margin({"pad": near}, meta) == 0.25
    assert choose_margin({"pad": near, "milk": far}, meta) == 0.55
    chosen = at_margin(far, meta, 0.55)
    assert chosen["agreement_with_two_looks"] == 1.0
    assert chosen["second_look_share"] == 2 / 200
    # One photo in 200 on the wrong side is within what AGREEMENT allows: no second look.
    assert choose_margin({"pad": _looks(200, 1, 0.52)}, meta) == 0.0


def test_the_shipped_margin_is_what_second_look_chose() -> None:
    """Change only by rerunning training.second_look on the calibrated model."""
    report = json.loads((EVALUATION / "second_look.json").read_text())
    meta = shipped_metadata()
    assert report["model_version"] == meta.version
    assert meta.second_look_margin == report["margin"]
    assert meta.thresholds.medium == report["medium"]
    assert meta.thresholds.high == report["high"]

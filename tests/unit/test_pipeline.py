"""The order of refusal reasons: the advice users see first must be the one that helps."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inference.gate import order_issues
from inference.pipeline import Screener
from inference.types import QualityIssue as Q
from tests.unit.test_quality import textured_skin


def test_exposure_problem_comes_before_not_a_lesion() -> None:
    issues = (Q.NOT_A_LESION, Q.OVEREXPOSED)
    assert order_issues(issues, skin_fraction=0.0, spot_found=False) == (
        Q.OVEREXPOSED,
        Q.NOT_A_LESION,
    )


def test_blur_comes_first_only_on_a_photo_of_skin() -> None:
    issues = (Q.NOT_A_LESION, Q.BLURRY, Q.GLARE)
    assert order_issues(issues, skin_fraction=0.9, spot_found=False)[0] == Q.BLURRY
    assert order_issues(issues, skin_fraction=0.1, spot_found=True)[0] == Q.BLURRY
    # A blurred page: no skin, no spot; "not a lesion" is the right first answer.
    assert order_issues(issues, skin_fraction=0.05, spot_found=False) == issues


def test_order_is_unchanged_without_not_a_lesion() -> None:
    issues = (Q.LOW_RESOLUTION, Q.BLURRY)
    assert order_issues(issues, skin_fraction=1.0, spot_found=True) == issues


@pytest.fixture(scope="module")
def screener() -> Screener:
    return Screener()  # the shipped model


def test_blown_out_photo_of_a_mole_is_told_to_retake_with_less_light(screener: Screener) -> None:
    photo = np.clip(textured_skin().astype(np.float32) * 2.6 + 40, 0, 255).astype(np.uint8)
    result = screener.screen(photo, with_overlay=False)
    assert result.risk.value == "unassessable"
    assert result.quality.issues[0] == Q.OVEREXPOSED, result.quality.issues


def test_blurred_printed_page_is_still_not_a_lesion_first(screener: Screener) -> None:
    page = np.full((960, 1280, 3), 245, np.uint8)
    for row in range(80, 900, 40):
        cv2.putText(page, "Lorem ipsum dolor sit amet 123", (60, row), 0, 1.0, (20, 20, 20), 2)
    page = np.asarray(cv2.GaussianBlur(page, (0, 0), 5.0), np.uint8)
    result = screener.screen(page, with_overlay=False)
    assert result.risk.value == "unassessable"
    assert result.quality.issues[0] == Q.NOT_A_LESION, result.quality.issues

"""The order of refusal reasons: the advice users see first must be the one that helps."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inference.gate import order_issues
from inference.pipeline import Screener
from inference.quality import blockiness
from inference.types import DecodeFailure, DecodeRejected, ScreeningResult
from inference.types import QualityIssue as Q
from tests.unit.test_quality import MOTION_LOOSEST, MOTION_STRICTEST, textured_skin
from training.gate_eval import motion_blur


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


def test_blocking_measured_before_the_localiser_is_the_photos_own(screener: Screener) -> None:
    # The pipeline measures JPEG blocking early (while the photo is in the CPU's cache)
    # and hands it on: the gate must judge the full photo's blocking, not a stand-in.
    ok, jpeg = cv2.imencode(".jpg", textured_skin(), [cv2.IMWRITE_JPEG_QUALITY, 15])
    assert ok
    photo = np.ascontiguousarray(cv2.imdecode(jpeg, cv2.IMREAD_COLOR)[..., ::-1])
    result = screener.screen(photo, with_overlay=False)
    assert result.evidence.blockiness == blockiness(photo) > 1.2


def test_the_motion_smear_reaches_the_gate(screener: Screener) -> None:
    """The pipeline hands the crop's motion smear to the gate: a shaken photo of the mole
    carries it, a steady one does not."""
    steady = screener.screen(textured_skin(), with_overlay=False)
    shaken = screener.screen(motion_blur(textured_skin(), 15, 60.0), with_overlay=False)
    assert steady.evidence.motion_blur_px < MOTION_STRICTEST
    assert shaken.evidence.motion_blur_px > MOTION_LOOSEST


def test_blurred_printed_page_is_still_not_a_lesion_first(screener: Screener) -> None:
    page = np.full((960, 1280, 3), 245, np.uint8)
    for row in range(80, 900, 40):
        cv2.putText(page, "Lorem ipsum dolor sit amet 123", (60, row), 0, 1.0, (20, 20, 20), 2)
    page = np.asarray(cv2.GaussianBlur(page, (0, 0), 5.0), np.uint8)
    result = screener.screen(page, with_overlay=False)
    assert result.risk.value == "unassessable"
    assert result.quality.issues[0] == Q.NOT_A_LESION, result.quality.issues


def test_a_photo_past_its_time_budget_is_refused_and_every_stage_is_timed(
    lesion_jpegs: dict[str, bytes],
) -> None:
    """The budget is checked between stages: spent, the photo is refused as too slow
    rather than answered late; with time to spare the same photo is screened. Each stage
    reports its duration to the observer (the bot's latency histogram)."""
    photo = next(iter(lesion_jpegs.values()))
    limits = {"max_bytes": 10 * 2**20, "max_pixels": 10_000_000}
    stages: list[str] = []
    hurried = Screener(time_budget_s=1e-6, on_stage=lambda stage, _: stages.append(stage))
    result = hurried.screen_bytes(photo, **limits)
    assert isinstance(result, DecodeRejected) and result.reason is DecodeFailure.TOO_SLOW
    assert stages == ["decode", "total"]

    stages.clear()
    patient = Screener(time_budget_s=600, on_stage=lambda stage, _: stages.append(stage))
    assert isinstance(patient.screen_bytes(photo, **limits), ScreeningResult)
    assert stages[0] == "decode" and stages[-1] == "total"
    assert {"localise", "quality"} <= set(stages)

"""One photo in, one :class:`ScreeningResult` out: decode, gate, localise, classify, decide.

The classifier always runs when a lesion box was found, even if the gate refuses the
photo, so evaluation can measure the gate and the classifier apart; the risk level is
``unassessable`` whenever any quality issue stands.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import cv2

from inference.classifier import OnnxClassifier, overlay_heatmap, risk_level
from inference.decode import decode_image
from inference.localize import LocaliserParams, find_lesion
from inference.metadata import ModelMetadata
from inference.preprocess import crop_square, square_crop_box
from inference.quality import QualityThresholds, assess_image
from inference.types import (
    QUALITY_PRIORITY,
    DecodeFailure,
    DecodeRejected,
    LesionBox,
    QualityIssue,
    QualityReport,
    RGBImage,
    Risk,
    ScreeningResult,
)


def merge_issues(*groups: tuple[QualityIssue, ...]) -> tuple[QualityIssue, ...]:
    """Union of issues, most important first (the order of :class:`QualityIssue`)."""
    found = {issue for group in groups for issue in group}
    return tuple(issue for issue in QUALITY_PRIORITY if issue in found)


# Photo defects that hide the evidence "not a lesion" is judged on: in a dark or blown-out
# frame skin has no colour left, and in a blurred one a mole has no edge and the crop
# looks unlike any training image. Then "not a lesion" may only mean "cannot see it".
_HIDES_COLOUR = (QualityIssue.TOO_DARK, QualityIssue.OVEREXPOSED)
# A blurred frame that is mostly skin-coloured, or in which a spot was found, is a photo
# of skin: the blur is what to fix. A blurred page or screen stays "not a lesion".
_MOSTLY_SKIN = 0.5


def order_issues(
    issues: tuple[QualityIssue, ...], skin_fraction: float, spot_found: bool
) -> tuple[QualityIssue, ...]:
    """Put a fixable photo defect before a "not a lesion" that the defect may have caused.

    Measured on the gate's evaluation sets: with "not a lesion" always first, 90% of
    over-exposed lesion photos were told "this is not a skin lesion" instead of "too
    bright". Both stay listed; only the first piece of advice changes.
    """
    if QualityIssue.NOT_A_LESION not in issues:
        return issues
    first = [i for i in issues if i in _HIDES_COLOUR]
    if QualityIssue.BLURRY in issues and (spot_found or skin_fraction >= _MOSTLY_SKIN):
        first.append(QualityIssue.BLURRY)
    if not first:
        return issues
    return (*first, *(i for i in issues if i not in first))


# The largest photo Telegram sends (a "photo", not a file) is 2560 px on its long side;
# uploads larger than that are screened at this size. The gate and the classifier need
# far less (a 224 px crop with ~170 px of real detail), and every full-size array after
# decoding (grey float maps, the heatmap overlay) would otherwise scale with the upload.
WORK_MAX_SIDE = 2560
# Memory one photo needs beyond its decoded image: the arrays of the gate, the localiser,
# the classifier and the heatmap at WORK_MAX_SIDE (measured ~50 MB; tests/unit/test_decode.py
# holds two 50 MP PNGs screened at once to this budget).
WORKING_MEMORY_BYTES = 64 * 2**20

# Called with a stage name and its seconds (decode, localise, quality, classify, heatmap,
# total); the bot turns these into a latency histogram. No Telegram or metrics here.
StageObserver = Callable[[str, float], None]


class _OverBudgetError(Exception):
    """The photo's time budget ran out between two stages."""


def _no_observer(stage: str, seconds: float) -> None:
    del stage, seconds


class Screener:
    """The whole screening pipeline around one onnxruntime session; safe to share across threads."""

    def __init__(
        self,
        model_path: Path | None = None,
        threads: int = 1,
        flip_average: bool | None = None,
        *,
        work_side: int | None = WORK_MAX_SIDE,
        max_decode_bytes: int | None = None,
        time_budget_s: float | None = None,
        on_stage: StageObserver | None = None,
    ) -> None:
        self.work_side = work_side
        self.max_decode_bytes = max_decode_bytes
        # Checked between stages: a stage already running is not interrupted (a thread
        # cannot be), but no photo starts another stage once its budget is spent.
        self.time_budget_s = time_budget_s
        self._observe = on_stage or _no_observer
        self.classifier = OnnxClassifier(model_path, threads, flip_average)
        meta = self.classifier.metadata
        # The gate judges the crop the model will actually see: its margin and input size.
        self.localiser_params = LocaliserParams(crop_margin=meta.crop_margin)
        self.quality_thresholds = QualityThresholds(
            crop_margin=meta.crop_margin, min_detail_side=0.75 * meta.input_size
        )
        # Photos are screened in parallel by a pool; OpenCV's own threads on top of that
        # only contend for the same cores (3x slower colour conversion measured on 2).
        cv2.setNumThreads(1)

    @property
    def metadata(self) -> ModelMetadata:
        return self.classifier.metadata

    def screen_bytes(
        self, data: bytes, *, max_bytes: int, max_pixels: int
    ) -> ScreeningResult | DecodeRejected:
        """Decode and screen one upload; sizes and the box are in the upload's own pixels.

        Past the time budget the photo is refused as ``TOO_SLOW`` rather than answered late.
        """
        started = time.perf_counter()
        deadline = None if self.time_budget_s is None else started + self.time_budget_s
        decoded = decode_image(
            data,
            max_bytes=max_bytes,
            max_pixels=max_pixels,
            max_side=self.work_side,
            max_decode_bytes=self.max_decode_bytes,
        )
        self._observe("decode", time.perf_counter() - started)
        if isinstance(decoded, DecodeRejected):
            return decoded
        try:
            _check(deadline)
            result = self.screen(decoded.rgb, deadline=deadline)
        except _OverBudgetError:
            return DecodeRejected(DecodeFailure.TOO_SLOW)
        finally:
            self._observe("total", time.perf_counter() - started)
        return _in_original_pixels(result, decoded.original_width, decoded.original_height)

    def screen(
        self, rgb: RGBImage, *, with_overlay: bool = True, deadline: float | None = None
    ) -> ScreeningResult:
        started = time.perf_counter()
        meta = self.metadata
        h, w = rgb.shape[:2]
        found = find_lesion(rgb, self.localiser_params)
        lap = self._lap("localise", started, deadline)
        image_quality = assess_image(rgb, found.box, self.quality_thresholds)
        lap = self._lap("quality", lap, deadline)
        issues = merge_issues(image_quality.issues, found.issues)
        measurements = {**image_quality.measurements, **found.measurements}
        prediction, overlay = None, None
        if found.box is not None:
            crop_box = square_crop_box(found.box, w, h, meta.crop_margin)
            prediction = self.classifier.predict(crop_square(rgb, crop_box))
            lap = self._lap("classify", lap, deadline)
            measurements["ood_score"] = prediction.ood_score
            # Out of distribution: the crop looks like nothing the model was trained on.
            if prediction.ood_score > meta.ood_threshold:
                issues = merge_issues(issues, (QualityIssue.NOT_A_LESION,))
            if with_overlay:
                overlay = overlay_heatmap(rgb, prediction.heatmap, crop_box.as_tuple())
                self._lap("heatmap", lap, None)
        issues = order_issues(issues, found.skin_fraction, found.box is not None)
        if issues or prediction is None:
            risk = Risk.UNASSESSABLE
            if not issues:  # no box and no reason given: never guess
                issues = (QualityIssue.NOT_A_LESION,)
        else:
            risk = risk_level(prediction.malignant_probability, meta)
        return ScreeningResult(
            width=w,
            height=h,
            quality=QualityReport(issues=issues, measurements=measurements),
            lesion_box=found.box,
            prediction=prediction,
            risk=risk,
            model_version=meta.version,
            heatmap_overlay=overlay,
            elapsed_ms=(time.perf_counter() - started) * 1000.0,
        )

    def _lap(self, stage: str, since: float, deadline: float | None) -> float:
        now = time.perf_counter()
        self._observe(stage, now - since)
        _check(deadline, now)
        return now


def _check(deadline: float | None, now: float | None = None) -> None:
    if deadline is not None and (now or time.perf_counter()) > deadline:
        raise _OverBudgetError


def _in_original_pixels(result: ScreeningResult, width: int, height: int) -> ScreeningResult:
    """Report a result found on a reduced photo in the pixels of the photo as sent."""
    if (result.width, result.height) == (width, height):
        return result
    sx, sy = width / result.width, height / result.height
    box = result.lesion_box
    if box is not None:
        box = LesionBox(
            x0=round(box.x0 * sx),
            y0=round(box.y0 * sy),
            x1=min(width, round(box.x1 * sx)),
            y1=min(height, round(box.y1 * sy)),
        )
    return replace(result, width=width, height=height, lesion_box=box)

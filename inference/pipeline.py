"""One photo in, one :class:`ScreeningResult` out: decode, localise, measure, classify, gate.

The classifier always runs, on the lesion's crop or, when no lesion was found, on the
photo's centre square, so evaluation can judge the gate and the classifier apart; the
risk level is ``unassessable`` whenever :mod:`inference.gate` refuses the photo.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import cv2

from inference.classifier import OnnxClassifier, overlay_heatmap, risk_level
from inference.decode import DEFAULT_MAX_DECODE_BYTES, decode_image
from inference.gate import GateInput, decide, tips
from inference.localize import LocalisationResult, LocaliserParams, find_lesion
from inference.metadata import ModelMetadata
from inference.preprocess import crop_square, square_crop_box
from inference.quality import PhotoQuality, blockiness, measure_quality, working_copy
from inference.scene import SceneMeasurements, measure_scene
from inference.types import (
    DecodeFailure,
    DecodeRejected,
    GateEvidence,
    LesionBox,
    QualityReport,
    RGBImage,
    Risk,
    ScreeningResult,
)


def centre_square(width: int, height: int) -> LesionBox:
    """The largest centred square: what is classified when no lesion was found."""
    side = min(width, height)
    x0, y0 = (width - side) // 2, (height - side) // 2
    return LesionBox(x0, y0, x0 + side, y0 + side)


# The largest photo Telegram sends (a "photo", not a file) is 2560 px on its long side;
# uploads larger than that are screened at this size. The gate and the classifier need
# far less (a 224 px crop with ~170 px of real detail), and every full-size array after
# decoding (grey float maps, the heatmap overlay) would otherwise scale with the upload.
WORK_MAX_SIDE = 2560
# The smallest shorter side screened. Below the decoder's default (64 px) the gate refuses
# the photo as low resolution, but it is still classified (its probabilities reported, as
# for every decoded image); under this there is too little to look for a lesion in at all
# (the localiser's hair closing alone is 5 px), and decoding refuses it as too small.
DECODE_MIN_SIDE = 32
# Memory one photo needs beyond its decoded image: the arrays of the gate, the localiser,
# the classifier and the heatmap at WORK_MAX_SIDE (measured ~50 MB; tests/unit/test_decode.py
# holds two 50 MP PNGs screened at once to this budget).
WORKING_MEMORY_BYTES = 64 * 2**20

# A photo still being screened after this long is refused (TOO_SLOW) when the caller sets
# no budget (the offline CLI, scripts): what the bot's SCREENING_TIME_BUDGET_S defaults to.
DEFAULT_TIME_BUDGET_S = 30.0

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
        max_decode_bytes: int | None = DEFAULT_MAX_DECODE_BYTES,
        time_budget_s: float | None = DEFAULT_TIME_BUDGET_S,
        on_stage: StageObserver | None = None,
    ) -> None:
        self.work_side = work_side
        self.max_decode_bytes = max_decode_bytes
        # Checked between stages: a stage already running is not interrupted (a thread
        # cannot be), but no photo starts another stage once its budget is spent.
        self.time_budget_s = time_budget_s
        self._observe = on_stage or _no_observer
        self.classifier = OnnxClassifier(model_path, threads, flip_average)
        self.localiser_params = LocaliserParams()
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
            min_side=DECODE_MIN_SIDE,
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
        # One working copy for the localiser and the exposure checks; only the crop
        # (classifier, blur, glare), blocking and upscaling look at full resolution.
        small = working_copy(rgb, self.localiser_params.work_side)
        # JPEG blocking is read off the full photo, which the working copy has just read:
        # measured now, most of those pixels are still in the CPU's cache; after the
        # localiser's maps they are not (about 0.15 ms more on a 1280x960 photo, one core).
        blocks = blockiness(rgb)
        found = find_lesion(rgb, self.localiser_params, small)
        lap = self._lap("localise", started, deadline)
        scene = scene_of(found)
        # The square the classifier sees, computed once: blur and glare are measured on
        # it, the gate judges its size, the heatmap is drawn back onto it.
        crop_box = (
            square_crop_box(found.box, w, h, meta.crop_margin)
            if found.box is not None
            else centre_square(w, h)
        )
        quality = measure_quality(
            rgb, small, crop_box if found.box else None, found.box, blocks=blocks
        )
        lap = self._lap("quality", lap, deadline)
        prediction = self.classifier.predict(crop_square(rgb, crop_box))
        evidence = gate_evidence(found, scene, quality, prediction.ood_score)
        judged = GateInput(w, h, found.box, crop_box, evidence)
        issues = decide(judged, meta.gate)
        retake_tips = () if issues else tips(judged, meta.gate)
        risk = Risk.UNASSESSABLE if issues else risk_level(prediction.malignant_probability, meta)
        lap = self._lap("classify", lap, deadline)
        overlay = None
        if with_overlay:
            overlay = overlay_heatmap(rgb, prediction.heatmap, crop_box.as_tuple())
            self._lap("heatmap", lap, None)
        # Everything measured, for logs: the diagnostics the gate does not judge (contrast,
        # median luma, glare anywhere) and the gate's evidence (NaN where not measured).
        measurements = {
            **found.measurements,
            **quality.as_dict(),
            **evidence.as_dict(),
        }
        return ScreeningResult(
            width=w,
            height=h,
            quality=QualityReport(issues=issues, tips=retake_tips, measurements=measurements),
            lesion_box=found.box,
            prediction=prediction,
            risk=risk,
            model_version=meta.version,
            heatmap_overlay=overlay,
            elapsed_ms=(time.perf_counter() - started) * 1000.0,
            evidence=evidence,
            crop_box=crop_box,
        )

    def _lap(self, stage: str, since: float, deadline: float | None) -> float:
        now = time.perf_counter()
        self._observe(stage, now - since)
        _check(deadline, now)
        return now


def scene_of(found: LocalisationResult) -> SceneMeasurements:
    """The scene around what the localiser found (skin, specks around the spot)."""
    if found.scene is None:
        return SceneMeasurements(0.0, math.nan, math.nan, math.nan)
    return measure_scene(found.scene, found.mask)


def gate_evidence(
    found: LocalisationResult,
    scene: SceneMeasurements,
    quality: PhotoQuality | None = None,
    ood_score: float = math.nan,
) -> GateEvidence:
    """The gate's evidence, field by field from each stage's typed result.

    Without ``quality`` (or an OOD score) those rules have nothing to judge and do not
    fire: the localiser's own studies judge its measurements alone.
    """
    if quality is None:
        nan = math.nan
        quality = PhotoQuality(nan, nan, nan, nan, nan, nan, nan, nan, nan, nan)
    return GateEvidence(
        skin_fraction=scene.skin_fraction,
        skin_or_lesion_fraction=scene.skin_or_lesion_fraction,
        specks_around=scene.specks_around,
        speck_darkness=scene.speck_darkness,
        lesion_fraction=found.lesion_fraction,
        rivals=found.rivals,
        lesion_edge_contact=found.edge_contact,
        centre_offset=found.centre_offset,
        lesion_contrast=found.measurements.get("lesion_contrast", math.nan),
        detail_side=quality.detail_side,
        blockiness=quality.blockiness,
        luma_p05=quality.luma_p05,
        luma_p90=quality.luma_p90,
        clipped_fraction=quality.clipped_fraction,
        blur_px=quality.blur_px,
        motion_blur_px=quality.motion_blur_px,
        lesion_glare_fraction=quality.lesion_glare_fraction,
        ood_score=ood_score,
    )


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
    return replace(
        result,
        width=width,
        height=height,
        lesion_box=box,
        crop_box=_scaled(result.crop_box, sx, sy),
    )


def _scaled(box: LesionBox | None, sx: float, sy: float) -> LesionBox | None:
    if box is None:
        return None
    return LesionBox(round(box.x0 * sx), round(box.y0 * sy), round(box.x1 * sx), round(box.y1 * sy))

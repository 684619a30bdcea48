"""One photo in, one :class:`ScreeningResult` out: decode, localise, measure, classify, gate.

The classifier always runs, on the lesion's crop or, when no lesion was found, on the
photo's centre square, so evaluation can judge the gate and the classifier apart; the
risk level is ``unassessable`` whenever :mod:`inference.gate` refuses the photo.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2

from inference.classifier import OnnxClassifier, overlay_heatmap, risk_level
from inference.decode import decode_image
from inference.gate import GateInput, decide
from inference.localize import LocaliserParams, find_lesion
from inference.metadata import ModelMetadata
from inference.preprocess import crop_square, square_crop_box
from inference.quality import measure_quality, working_copy
from inference.types import (
    DecodeRejected,
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


class Screener:
    """The whole screening pipeline around one onnxruntime session; safe to share across threads."""

    def __init__(
        self, model_path: Path | None = None, threads: int = 1, flip_average: bool | None = None
    ) -> None:
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
        decoded = decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
        if isinstance(decoded, DecodeRejected):
            return decoded
        return self.screen(decoded.rgb)

    def screen(self, rgb: RGBImage, *, with_overlay: bool = True) -> ScreeningResult:
        started = time.perf_counter()
        meta = self.metadata
        h, w = rgb.shape[:2]
        # One working copy for the localiser and the exposure checks; only the crop
        # (classifier, blur, glare), blocking and upscaling look at full resolution.
        small = working_copy(rgb, self.localiser_params.work_side)
        found = find_lesion(rgb, self.localiser_params, small)
        measurements = {
            **measure_quality(rgb, small, found.box, meta.crop_margin),
            **found.measurements,
        }
        crop_box = (
            square_crop_box(found.box, w, h, meta.crop_margin)
            if found.box is not None
            else centre_square(w, h)
        )
        prediction = self.classifier.predict(crop_square(rgb, crop_box))
        measurements["ood_score"] = prediction.ood_score
        issues = decide(
            GateInput(w, h, found.box, measurements, meta.crop_margin, meta.ood_threshold),
            meta.gate,
        )
        risk = Risk.UNASSESSABLE if issues else risk_level(prediction.malignant_probability, meta)
        overlay = (
            overlay_heatmap(rgb, prediction.heatmap, crop_box.as_tuple()) if with_overlay else None
        )
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

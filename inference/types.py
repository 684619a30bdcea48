"""Value types shared by the inference pipeline, the offline CLI and the bot.

Everything here is a frozen dataclass or an enum: expected failures (a bad upload, a
blurry photo) are values, not exceptions, so callers can render them without try/except.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from enum import StrEnum

import numpy as np
import numpy.typing as npt

RGBImage = npt.NDArray[np.uint8]  # H x W x 3, RGB order
FloatMap = npt.NDArray[np.float32]


class DecodeFailure(StrEnum):
    """Why uploaded bytes could not be turned into a still RGB photo."""

    EMPTY = "empty"
    TOO_MANY_BYTES = "too_many_bytes"
    NOT_AN_IMAGE = "not_an_image"
    CORRUPT = "corrupt"
    TOO_MANY_PIXELS = "too_many_pixels"
    TOO_SMALL = "too_small"
    ANIMATED = "animated"
    # Decoding and screening ran past the per-photo time budget (a hostile or huge file).
    TOO_SLOW = "too_slow"
    # Its decoder would need more memory or time than allowed, though the picture itself
    # fits (a progressive JPEG of many scans, a large WebP, a run-length BMP).
    TOO_COMPLEX = "too_complex"


@dataclass(frozen=True)
class DecodeRejected:
    reason: DecodeFailure


@dataclass(frozen=True)
class DecodedImage:
    rgb: RGBImage  # EXIF orientation already applied
    source_format: str  # "JPEG", "PNG", ...
    original_width: int
    original_height: int


class QualityIssue(StrEnum):
    """A reason to refuse a photo, each with its own retake advice in the bot.

    Declared in priority order: when several apply, the first one is what the user
    must fix first (an unrecognisable photo before a slightly dark one).
    """

    NOT_A_LESION = "not_a_lesion"  # not skin, or no lesion found, or out of distribution
    LOW_RESOLUTION = "low_resolution"
    TOO_DARK = "too_dark"
    OVEREXPOSED = "overexposed"
    BLURRY = "blurry"
    GLARE = "glare"
    LESION_TOO_SMALL = "lesion_too_small"
    LESION_CUT_OFF = "lesion_cut_off"  # touches the frame edge or far from the centre


QUALITY_PRIORITY: tuple[QualityIssue, ...] = tuple(QualityIssue)


NOT_MEASURED = math.nan  # a measurement not taken (no lesion found): no rule fires on it


@dataclass(frozen=True)
class GateEvidence:
    """Every measurement the gate judges, by name, typed: a renamed field fails to build.

    Filled by the pipeline from the localiser's, the scene's, the photo quality's and
    the classifier's own typed results. A field left ``NOT_MEASURED`` (NaN) makes every
    comparison false, so a rule whose measurement was not taken does not fire (the lesion
    measurements when no lesion was found).
    """

    # The scene (inference.scene): how much of the frame is skin, print-like specks.
    skin_fraction: float = 0.0
    skin_or_lesion_fraction: float = NOT_MEASURED
    specks_around: float = NOT_MEASURED
    speck_darkness: float = NOT_MEASURED
    # The localiser's spot: its size, its rivals, where it sits.
    lesion_fraction: float = NOT_MEASURED
    rivals: float = NOT_MEASURED
    lesion_edge_contact: float = NOT_MEASURED
    centre_offset: float = NOT_MEASURED
    # How much the spot differs from the skin around it (CIELAB units; the localiser's own
    # floor is 5): plain skin's pores and shading barely pass that floor.
    lesion_contrast: float = NOT_MEASURED
    # The photo (inference.quality).
    detail_side: float = NOT_MEASURED
    blockiness: float = NOT_MEASURED
    luma_p05: float = NOT_MEASURED
    luma_p90: float = NOT_MEASURED
    clipped_fraction: float = NOT_MEASURED
    blur_px: float = NOT_MEASURED
    motion_blur_px: float = NOT_MEASURED
    lesion_glare_fraction: float = NOT_MEASURED
    # The classifier: distance of the crop's features from the training lesions.
    ood_score: float = NOT_MEASURED

    def as_dict(self) -> dict[str, float]:
        # Flat float fields: no need for asdict's recursive deep copy (~0.2 ms a call).
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class QualityReport:
    issues: tuple[QualityIssue, ...] = ()
    # Retake tips that go WITH an answer (advisory rules that fired on an answered photo,
    # inference.gate.tips); empty when the photo is refused.
    tips: tuple[QualityIssue, ...] = ()
    # Raw measurements behind the verdict, for logging and threshold calibration.
    measurements: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.issues


@dataclass(frozen=True)
class LesionBox:
    """Lesion bounding box in pixels of the image it was found in (x1, y1 exclusive)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def as_list(self) -> list[int]:
        return [self.x0, self.y0, self.x1, self.y1]

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.x0, self.y0, self.x1, self.y1)

    def iou(self, other: LesionBox) -> float:
        """Intersection over union with ``other`` (0 when they do not overlap)."""
        ix = max(0, min(self.x1, other.x1) - max(self.x0, other.x0))
        iy = max(0, min(self.y1, other.y1) - max(self.y0, other.y0))
        inter = ix * iy
        union = self.width * self.height + other.width * other.height - inter
        return inter / union if union > 0 else 0.0


class Risk(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    UNASSESSABLE = "unassessable"


@dataclass(frozen=True)
class Prediction:
    probabilities: dict[str, float]  # calibrated, one per class code, sums to 1
    malignant_probability: float
    top_class: str
    ood_score: float  # higher means less like the training data
    heatmap: FloatMap  # class-activation map on the classifier input, values in [0, 1]
    looks: int = 1  # network passes: 2 when the crop's mirror image was averaged in


@dataclass(frozen=True)
class ScreeningResult:
    """Everything the pipeline learnt about one photo."""

    width: int
    height: int
    quality: QualityReport
    lesion_box: LesionBox | None
    # The Screener always classifies: the lesion's crop, or the centre square when no
    # lesion was found (lesion_box None), so refusal and ranking can be judged apart.
    prediction: Prediction | None
    risk: Risk
    model_version: str
    heatmap_overlay: RGBImage | None = None  # heatmap drawn on the full photo
    elapsed_ms: float = 0.0
    # What the gate judged: the measurements and the square the classifier saw (the
    # lesion's crop, or the centre square), in the pixels of ``width`` x ``height``.
    evidence: GateEvidence = field(default_factory=GateEvidence)
    crop_box: LesionBox | None = None

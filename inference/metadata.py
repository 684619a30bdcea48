"""The model's own description of itself, stored inside the ONNX file.

Preprocessing values, class names, risk thresholds and every threshold of the photo gate
(the out-of-distribution cut-off among them) travel with the weights (ONNX
``metadata_props`` key :data:`METADATA_KEY`), so a retrained model can never be run with
stale constants from code.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

METADATA_KEY = "skin_screening"


@dataclass(frozen=True)
class RiskThresholds:
    """Cut-offs on the calibrated malignant probability (p_mel + p_bcc + p_akiec)."""

    medium: float
    high: float


@dataclass(frozen=True)
class GateThresholds:
    """Where :mod:`inference.gate` refuses a photo.

    These travel with the model because they are judged by what the model can still
    classify: a blur or glare the classifier shrugs off must not refuse a photo.
    ``python -m training.calibrate`` writes every one of them from validation photos,
    with the rule that chose each (``metrics["gate"]`` in the metadata; the rules are in
    :mod:`training.gate_calibration`). The defaults here only load model files written
    before calibration wrote the gate (they are the values lite0-pad-160-2026-12-01 was
    shipped with, set by hand); no code path chooses a threshold from them.
    """

    # LOW_RESOLUTION when the photo's shorter side has fewer pixels than this (a
    # thumbnail: nothing to see at the classifier's input) ... Old model files judge
    # this through min_detail_side alone.
    min_photo_side: float = 0.0
    # ... or under this many pixels of real detail on the shorter side (an upscaled or
    # soft photo: calibration may make this one advice, the thumbnail rule above stays) ...
    min_detail_side: float = 100.0
    # ... or when JPEG blocking is this strong (boundary steps / in-block steps).
    max_blockiness: float = 8.0
    # TOO_DARK when even the brighter tenth of the frame is below this luma (0-255).
    dark_p90: float = 45.0
    # OVEREXPOSED when more than this share of the frame is blown out to near white ...
    max_clipped_fraction: float = 0.25
    # ... or even the darkest 5 % of the frame is this bright (washed out).
    washed_out_p05: float = 200.0
    # BLURRY when the estimated blur (Gaussian sigma, px, on the lesion's crop at <= 256
    # px) exceeds this.
    max_blur_px: float = 3.0
    # ... or when its worst direction is this much blurrier than its best (px): a straight
    # motion smear, which the Gaussian sigma above reads too low. Infinite (off) for model
    # files calibrated before the measure existed.
    max_motion_blur_px: float = math.inf
    # GLARE when specular highlights cover more than this share of the lesion's own box.
    max_lesion_glare_fraction: float = 0.02
    # NOT_A_LESION when the frame (less any dermoscope ring) is less than this share
    # skin or lesion: documents, landscapes, screenshots ...
    min_skin_fraction: float = 0.15
    # ... or when a large "spot" (this share of the frame) sits in a frame that is not
    # nearly all skin: a face, an animal, a stained slide ...
    close_up_lesion_fraction: float = 0.1
    close_up_min_skin: float = 0.9
    # ... or when more than this many other spots are half as lesion-like as the best
    # one: text, a pattern, sensor noise ...
    max_rivals: int = 5
    # ... or when the spot differs from the skin around it by less than this (CIELAB
    # units): plain skin's faintest shading passes the localiser's floor of 5. Old model
    # files keep the floor alone.
    min_lesion_contrast: float = 0.0
    # ... or when more than this many small dark marks lie outside the lesion AND they
    # are print-dark (median darkening at least ``print_speck_darkness`` CIELAB L*) ...
    max_specks_around: int = 30
    print_speck_darkness: float = 20.0
    # ... or when the crop's features are further than this (squared Mahalanobis
    # distance to the nearest training class centre, the graph's ``ood_distance``) from
    # any lesion the model was trained on. Old files carry it as ``ood_threshold`` at
    # the top level of the metadata; loading moves it here.
    max_ood_score: float = math.inf
    # LESION_TOO_SMALL when the lesion's longer side is under this share of the photo's
    # shorter side (a 3 mm mole from 15 cm is ~1.9 %) ...
    min_lesion_side_fraction: float = 0.015
    # ... or the square crop around it would hold under this many real pixels.
    min_crop_px: int = 64
    # LESION_CUT_OFF when more than this share of the lesion's outline runs along the
    # frame edge, or its centre is further than ``max_centre_offset`` half-diagonals
    # from the image centre.
    max_edge_contact: float = 0.25
    max_centre_offset: float = 0.75
    # Rules (inference.gate rule names) that advise instead of refusing: the photo is
    # answered and the rule's retake tip goes with the answer. Calibration makes a rule
    # advisory when its refusals cost clean photos the classifier judges no worse than
    # the rest and, as advice, it lets through no motion-blurred or non-lesion validation
    # images (training.gate_value); old model files refuse with every rule.
    advisory_rules: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> GateThresholds:
        """Read a saved section; keys it lacks keep their defaults, unknown ones fail."""
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown gate thresholds: {sorted(unknown)}")
        raw = dict(raw)
        if "advisory_rules" in raw:  # a JSON list
            raw["advisory_rules"] = tuple(raw["advisory_rules"])
        return cls(**raw)


@dataclass(frozen=True)
class ModelMetadata:
    version: str
    classes: tuple[str, ...]  # class codes in logit order
    class_names: dict[str, str]  # code -> plain English words
    malignant_classes: tuple[str, ...]
    input_size: int  # square side in pixels
    mean: tuple[float, float, float]  # on [0, 1] RGB
    std: tuple[float, float, float]
    color_constancy_power: float  # Shades of Gray Minkowski norm p; 0 disables it
    temperature: float  # logits are divided by this before the softmax
    thresholds: RiskThresholds
    crop_margin: float = 0.4  # lesion-box margin, as a fraction of the box side, on each side
    # Average the crop and its mirror image (logits, heatmap, OOD distance). Lesions have no
    # handedness, so the mirror is an equally valid view; calibration is fitted with the
    # same setting, so it belongs to the model, not to the deployment.
    flip_average: bool = False
    # Change in malignant probability below which two photos of the same spot count as the
    # same: the 95th percentile of |delta p| between photos of one lesion on validation
    # (see the model card). None for models calibrated before it was measured.
    same_spot_delta: float | None = None
    # With flip averaging: the mirror is only run when the first look's p(cancer) lies within
    # this many log-odds of a risk cut-off (further away, the average lands on the same side);
    # chosen on validation by training.second_look. None: both looks for every photo.
    second_look_margin: float | None = None
    training_data: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    # Where the photo gate refuses; models exported before it existed get the defaults.
    gate: GateThresholds = field(default_factory=GateThresholds)

    @property
    def ood_threshold(self) -> float:
        """The out-of-distribution cut-off (a gate threshold, kept here by its old name)."""
        return self.gate.max_ood_score

    def with_gate(self, **changes: Any) -> ModelMetadata:
        """A copy with some gate thresholds changed (calibration writes it back)."""
        return replace(self, gate=replace(self.gate, **changes))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelMetadata:
        raw = json.loads(text)
        raw["classes"] = tuple(raw["classes"])
        raw["malignant_classes"] = tuple(raw["malignant_classes"])
        raw["mean"] = tuple(raw["mean"])
        raw["std"] = tuple(raw["std"])
        raw["thresholds"] = RiskThresholds(**raw["thresholds"])
        gate = dict(raw.get("gate", {}))
        # Files written before the OOD cut-off joined the gate carry it at the top level.
        old_ood = raw.pop("ood_threshold", None)
        if old_ood is not None:
            gate.setdefault("max_ood_score", old_ood)
        raw["gate"] = GateThresholds.from_dict(gate)
        return cls(**raw)

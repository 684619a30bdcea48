"""The model's own description of itself, stored inside the ONNX file.

Preprocessing values, class names, risk thresholds and the out-of-distribution cut-off
travel with the weights (ONNX ``metadata_props`` key :data:`METADATA_KEY`), so a retrained
model can never be run with stale constants from code.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

METADATA_KEY = "skin_screening"


@dataclass(frozen=True)
class RiskThresholds:
    """Cut-offs on the calibrated malignant probability (p_mel + p_bcc + p_akiec)."""

    medium: float
    high: float


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
    # Squared Mahalanobis distance of the pooled features to the nearest training class
    # centre (the graph's ``ood_distance`` output) above which the crop is not like any
    # lesion the model was trained on. Calibrated on held-out photos; see the model card.
    ood_threshold: float
    crop_margin: float = 0.4  # lesion-box margin, as a fraction of the box side, on each side
    # Average the crop and its mirror image (logits, heatmap, OOD distance). Lesions have no
    # handedness, so the mirror is an equally valid view; calibration is fitted with the
    # same setting, so it belongs to the model, not to the deployment.
    flip_average: bool = False
    training_data: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)

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
        return cls(**raw)

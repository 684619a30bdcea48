"""The model's own description of itself, stored inside the ONNX file.

Preprocessing values, class names, risk thresholds and the out-of-distribution cut-off
travel with the weights (ONNX ``metadata_props`` key :data:`METADATA_KEY`), so a retrained
model can never be run with stale constants from code.
"""

from __future__ import annotations

import json
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
    """Where :mod:`inference.gate` refuses a photo; each default says which set chose it.

    These travel with the model because they are judged by what the model can still
    classify: a blur or glare the classifier shrugs off must not refuse a photo. A model
    file written before this section existed loads with these defaults. PAD val is the
    patient-grouped PAD-UFES-20 validation split (119 real phone photos, config
    ``lite0.json``); the figures behind each are in docs/evaluation/gate_rules.md.
    """

    # LOW_RESOLUTION under this many pixels of real detail on the shorter side (0.75 x
    # the model's 160 px input). PAD val: 6 clean photos carry only 75-150 px of real
    # detail (upscaled by a third party), and the classifier does worse on them.
    min_detail_side: float = 120.0
    # ... or when JPEG blocking is this strong (boundary steps / in-block steps). PAD val:
    # every clean photo <= 1.5; PAD photos recompressed at quality 5: median >> 8.
    max_blockiness: float = 8.0
    # TOO_DARK when even the brighter tenth of the frame is below this luma (0-255).
    # PAD val: no clean photo under 90; the gate set's dark copies (x0.18) all are.
    dark_p90: float = 45.0
    # OVEREXPOSED when more than this share of the frame is blown out to near white ...
    max_clipped_fraction: float = 0.25
    # ... or even the darkest 5 % of the frame is this bright (washed out). PAD val:
    # no clean photo near either; over-exposed copies (x2.6 + 40) all are.
    washed_out_p05: float = 200.0
    # BLURRY when the estimated blur (Gaussian sigma, px, on the lesion's crop at 256 px)
    # exceeds this. Chosen on HAM10000 validation blurred on purpose (blur_study.md);
    # PAD val: see gate_rules.md for what it refuses among clean photos.
    max_blur_px: float = 2.6
    # GLARE when specular highlights (clipped, colourless, brighter than around them)
    # cover more than this share of the lesion's own box. PAD val: the largest share on
    # a clean photo is under 1 %; highlights painted over PAD lesions reach 10-60 %.
    max_lesion_glare_fraction: float = 0.05
    # NOT_A_LESION when the frame (less any dermoscope ring) is less than this share
    # skin or lesion: documents, landscapes, screenshots.
    min_skin_fraction: float = 0.15
    # ... or when a large "spot" (this share of the frame) sits in a frame that is not
    # nearly all skin: a face, an animal, a stained slide. HAM10000 validation: refuses
    # 0 phone photos and 2 of 300 dermoscopy images.
    close_up_lesion_fraction: float = 0.1
    close_up_min_skin: float = 0.9
    # ... or when more than this many other spots are half as lesion-like as the best
    # one: text, a pattern. PAD val: see gate_rules.md.
    max_rivals: int = 3
    # ... or when more than this many small dark marks lie outside the lesion AND they
    # are print-dark (median darkening at least ``print_speck_darkness`` CIELAB L*).
    # PAD val: hair, follicles and pores give up to 644 specks but a median darkening of
    # at most 17; printed pages (gate_eval's documents, skimage's page) 23-58.
    max_specks_around: int = 30
    print_speck_darkness: float = 20.0
    # LESION_TOO_SMALL when the lesion's longer side is under this share of the photo's
    # shorter side (a 3 mm mole from 15 cm is ~1.9 %) ...
    min_lesion_side_fraction: float = 0.015
    # ... or the square crop around it would hold under this many real pixels.
    min_crop_px: int = 64
    # LESION_CUT_OFF when more than this share of the lesion's outline runs along the
    # frame edge, or its centre is further than ``max_centre_offset`` half-diagonals
    # from the image centre.
    max_edge_contact: float = 0.2
    max_centre_offset: float = 0.75

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> GateThresholds:
        """Read a saved section; keys it lacks keep their defaults, unknown ones fail."""
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown gate thresholds: {sorted(unknown)}")
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
    # Where the photo gate refuses; models exported before it existed get the defaults.
    gate: GateThresholds = field(default_factory=GateThresholds)

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
        raw["gate"] = GateThresholds.from_dict(raw.get("gate", {}))
        return cls(**raw)

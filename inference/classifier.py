"""The ONNX lesion classifier: one onnxruntime session, calibrated probabilities, heatmap, OOD.

The exported graph has four outputs (see training/export.py):
``logits`` (N, C), ``features`` (N, K, h, w), ``cam`` (N, C, h, w) = classifier weights x
features, so the class-activation map is exact and needs no gradients, and
``ood_distance`` (N,) = squared Mahalanobis distance of the pooled features to the
nearest class centre of the training data.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from inference.metadata import METADATA_KEY, ModelMetadata
from inference.preprocess import to_model_input
from inference.types import FloatMap, Prediction, RGBImage, Risk

SHIPPED_MODEL = Path(__file__).resolve().parent / "models" / "lesion_classifier.onnx"


class ModelLoadError(RuntimeError):
    """The model file is missing or carries no usable metadata."""


def load_session(path: Path, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Fold the int8 weights' DequantizeLinear nodes into float weights once, at load.
    opts.add_session_config_entry("session.disable_quant_qdq", "1")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def read_metadata(session: ort.InferenceSession) -> ModelMetadata:
    props = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in props:
        raise ModelLoadError(f"model has no '{METADATA_KEY}' metadata")
    return ModelMetadata.from_json(props[METADATA_KEY])


def risk_level(malignant_probability: float, metadata: ModelMetadata) -> Risk:
    if malignant_probability >= metadata.thresholds.high:
        return Risk.HIGH
    if malignant_probability >= metadata.thresholds.medium:
        return Risk.MEDIUM
    return Risk.LOW


class OnnxClassifier:
    """Classify lesion crops; thread-safe (onnxruntime sessions allow concurrent ``run``)."""

    def __init__(
        self, path: Path | None = None, threads: int = 1, flip_average: bool | None = None
    ) -> None:
        path = path or SHIPPED_MODEL
        if not path.is_file():
            raise ModelLoadError(f"model file not found: {path}")
        self.session = load_session(path, threads)
        self.metadata = read_metadata(self.session)
        # None: as the model's metadata says; True or False: studies comparing the two.
        self.flip_average = self.metadata.flip_average if flip_average is None else flip_average
        # With flip averaging, how far (in log-odds of p(cancer)) a first look must land from
        # every risk cut-off to be answered without the mirror (None: always both looks).
        # Calibration sets it so the answer is the two-look one (training.second_look);
        # studies set it to None to compare.
        self.second_look_margin = self.metadata.second_look_margin
        self._input = self.session.get_inputs()[0].name
        self._outputs = [o.name for o in self.session.get_outputs()]

    def raw_outputs(
        self, crop: RGBImage, names: tuple[str, ...] | None = None
    ) -> dict[str, npt.NDArray[np.float32]]:
        """Run the network on one lesion crop; outputs for the single image, batch axis dropped.

        With flip averaging the crop and its mirror run as one batch of two; the mirror's
        maps are flipped back before averaging, so the heatmap stays on the lesion.
        ``names``: only these outputs (default: all of them).
        """
        values = self._run(crop, names or tuple(self._outputs))
        return {name: self._merge(v) for name, v in values.items()}

    def _input_of(self, crop: RGBImage) -> npt.NDArray[np.float32]:
        m = self.metadata
        return to_model_input(crop, m.input_size, m.mean, m.std, m.color_constancy_power)

    def _run(self, crop: RGBImage, names: tuple[str, ...]) -> dict[str, npt.NDArray[np.float32]]:
        """The named outputs for the crop (and its mirror, as a batch of two), batch axis kept."""
        x = self._input_of(crop)
        if self.flip_average:
            # Written straight into one batch: np.stack would copy the mirror view first.
            batch = np.empty((2, *x.shape), np.float32)
            batch[0] = x
            batch[1] = x[:, :, ::-1]
        else:
            batch = x[None]
        return self._session_run(batch, names)

    def _session_run(
        self, batch: npt.NDArray[np.float32], names: tuple[str, ...]
    ) -> dict[str, npt.NDArray[np.float32]]:
        values = self.session.run(list(names), {self._input: batch})
        return {n: np.asarray(v, np.float32) for n, v in zip(names, values, strict=True)}

    def _merge(self, v: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """One image's output: the first of the batch, or the crop's and mirror's average."""
        if not self.flip_average:
            return np.asarray(v[0], np.float32)
        mirror = v[1][..., ::-1] if v.ndim >= 3 else v[1]  # maps (C, h, w) flip back
        return np.asarray((v[0] + mirror) / 2, np.float32)

    def _looks(self, crop: RGBImage) -> tuple[dict[str, npt.NDArray[np.float32]], int]:
        """The prediction's outputs (batch axis kept, as ``_merge`` reads them) and how many
        looks they took: the mirror is only run when the first look lands near a cut-off."""
        margin = self.second_look_margin
        if not self.flip_average or margin is None:
            return self._run(crop, _PREDICT_OUTPUTS), 2 if self.flip_average else 1
        x = self._input_of(crop)
        first = self._session_run(x[None], _PREDICT_OUTPUTS)
        p = self._malignant(first["logits"][0])
        if not near_cutoff(p, self.metadata, margin):
            # Far from every cut-off the first look is the answer (its level is the one both
            # looks would give): put in both slots, the mirror's flipped as _merge expects,
            # so that their average is the first look itself.
            return {k: np.concatenate([v, _mirrored(v)]) for k, v in first.items()}, 1
        second = self._session_run(np.ascontiguousarray(x[None, :, :, ::-1]), _PREDICT_OUTPUTS)
        return {k: np.concatenate([first[k], second[k]]) for k in first}, 2

    def _malignant(self, logits: npt.NDArray[np.float32]) -> float:
        m = self.metadata
        p = calibrated_softmax(logits, m.temperature)
        return float(sum(p[m.classes.index(c)] for c in m.malignant_classes))

    def predict(self, crop: RGBImage) -> Prediction:
        m = self.metadata
        # Only what the prediction reads: the pooled features stay inside the network,
        # and of the class-activation maps only the top class's is flipped and averaged.
        out, looks = self._looks(crop)
        p = calibrated_softmax(self._merge(out["logits"]), m.temperature)
        probs = {c: float(v) for c, v in zip(m.classes, p, strict=True)}
        top = int(np.argmax(p))
        mal = float(sum(probs[c] for c in m.malignant_classes))
        ood = float(self._merge(out["ood_distance"]))
        return Prediction(
            probabilities=probs,
            malignant_probability=mal,
            top_class=m.classes[top],
            ood_score=ood,
            heatmap=normalise_cam(self._merge(out["cam"][:, top])),
            looks=looks,
        )


def calibrated_softmax(
    logits: npt.NDArray[np.float32], temperature: float
) -> npt.NDArray[np.float64]:
    """Class probabilities from one image's logits at the model's temperature (float64)."""
    z = logits.astype(np.float64) / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    return np.asarray(p, np.float64)


# The outputs a prediction needs (training/export.py names them).
_PREDICT_OUTPUTS = ("logits", "cam", "ood_distance")


def _mirrored(v: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """A first look as the mirror's slot of a batch: ``_merge`` flips maps back, so a map
    is stored flipped and the average of the two slots is the first look itself."""
    return v[..., ::-1] if v.ndim >= 3 else v


def near_cutoff(p: float, metadata: ModelMetadata, margin: float) -> bool:
    """Whether ``p`` lies within ``margin`` log-odds of a risk cut-off.

    Further away, the mirror cannot move the averaged probability across the cut-off unless
    the two looks differ by more than twice the margin, which calibration measured to be
    rare (training.second_look); nearer, both looks are needed for the answer to be the
    same for a photo and its mirror image.
    """
    q = min(max(p, 1e-9), 1 - 1e-9)
    z = math.log(q / (1 - q))
    for cut in (metadata.thresholds.medium, metadata.thresholds.high):
        c = min(max(cut, 1e-9), 1 - 1e-9)
        if abs(z - math.log(c / (1 - c))) <= margin:
            return True
    return False


def normalise_cam(cam: npt.NDArray[np.float32]) -> FloatMap:
    """Scale a class-activation map to [0, 1]; only positive evidence is shown."""
    pos = np.maximum(cam, 0.0)
    peak = float(pos.max())
    if peak <= 0:
        return np.zeros_like(cam, dtype=np.float32)
    return (pos / peak).astype(np.float32)


# OpenCV's JET colour map as an RGB table for applyColorMap (which otherwise gives BGR).
_JET_RGB = np.ascontiguousarray(
    cv2.cvtColor(
        cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(256, 1), cv2.COLORMAP_JET),
        cv2.COLOR_BGR2RGB,
    )
)


def overlay_heatmap(
    rgb: RGBImage, heatmap: FloatMap, box: tuple[int, int, int, int], alpha: float = 0.45
) -> RGBImage:
    """Draw ``heatmap`` (on the classifier crop) back onto the full photo at ``box``.

    The crop box may reach past the photo's edge; only the visible part is drawn. The
    rest of the photo stays as it was, with the crop outlined so the user sees what was
    judged.
    """
    out = rgb.copy()
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = box
    side_w, side_h = x1 - x0, y1 - y0
    if side_w <= 0 or side_h <= 0:
        return out
    vx0, vy0, vx1, vy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if vx1 <= vx0 or vy1 <= vy0:
        return out
    cam = cv2.resize(heatmap, (side_w, side_h), interpolation=cv2.INTER_CUBIC)
    # Only the visible part is coloured and blended, in uint8 with per-pixel weights by
    # OpenCV (blendLinear): ~2x faster than the float numpy blend, same picture to 1 level.
    cam = np.clip(cam[vy0 - y0 : vy1 - y0, vx0 - x0 : vx1 - x0], 0.0, 1.0)
    colour = cv2.applyColorMap((cam * 255).astype(np.uint8), _JET_RGB)
    a = np.ascontiguousarray(alpha * cam, dtype=np.float32)
    region = np.ascontiguousarray(out[vy0:vy1, vx0:vx1])
    out[vy0:vy1, vx0:vx1] = cv2.blendLinear(region, colour, 1.0 - a, a)
    thickness = max(2, min(h, w) // 250)
    cv2.rectangle(out, (vx0, vy0), (vx1 - 1, vy1 - 1), (255, 255, 255), thickness)
    return out

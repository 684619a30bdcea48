"""Export a checkpoint to ONNX (float and static int8), check parity, embed metadata.

    python -m training.export --checkpoint runs/lite0/best.pt --out runs/lite0/export

Writes ``model_fp32.onnx`` and three compressed candidates (static int8, int8 weights,
float16 weights) with provisional metadata (temperature 1, thresholds unset), compares
each with float on held-back views, and copies the smallest one that keeps accuracy to
``model.onnx`` (report in ``export_report.json``). ``training.calibrate`` then fits the
thresholds on validation photos run through the real inference pipeline and writes the
shipped model.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)
from torch import nn

from inference.metadata import METADATA_KEY, ModelMetadata, RiskThresholds
from inference.preprocess import to_model_input
from training.config import TrainConfig
from training.data import CLASS_NAMES, CLASSES, MALIGNANT, default_box, load_rgb, load_split
from training.metrics import softmax
from training.milk import MILK_DOMAIN, read_milk, split_milk
from training.milk import to_record as milk_record
from training.model import LesionNet
from training.pad import PAD_DOMAIN, lesion_box, load_pad_split
from training.phone import training_view

log = logging.getLogger(__name__)
OUTPUTS = ["logits", "features", "cam", "ood_distance"]
OOD_COMPONENTS = 128  # leading within-class principal axes kept for the Mahalanobis score


class ExportModule(nn.Module):
    """The network plus the exact class-activation maps and a feature-space OOD distance."""

    # Registered buffers, declared so they type as tensors rather than Tensor | Module.
    feat_mean: torch.Tensor
    whiten: torch.Tensor
    centres: torch.Tensor

    def __init__(
        self, net: LesionNet, mean: torch.Tensor, whiten: torch.Tensor, centres: torch.Tensor
    ) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("feat_mean", mean)  # (K,)
        self.register_buffer("whiten", whiten)  # (K, D)
        self.register_buffer("centres", centres)  # (C, D)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        fmap = self.net.features(x)
        pooled = fmap.mean(dim=(2, 3))
        logits = self.net._fc(pooled)
        cam = torch.einsum("ck,nkhw->nchw", self.net._fc.weight, fmap)
        z = (pooled - self.feat_mean) @ self.whiten
        d = ((z[:, None, :] - self.centres[None]) ** 2).sum(-1).min(dim=1).values
        return logits, fmap, cam, d


def load_checkpoint(path: Path) -> tuple[LesionNet, TrainConfig]:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    cfg = TrainConfig(
        **{
            **ckpt["config"],
            **{k: tuple(v) for k, v in ckpt["config"].items() if isinstance(v, list)},
        }
    )
    net = LesionNet(len(CLASSES))
    net.load_state_dict(ckpt["model"])
    net.eval()
    return net, cfg


def training_inputs(cfg: TrainConfig, limit: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs from the training splits: HAM10000 (half phone-like), every PAD photo
    and every MILK10k close-up with a class.

    The OOD distance must call a real phone photo or a clinic's close-up of a lesion "seen
    before", so the class centres and covariance are fitted on real photos' features as
    well as dermoscopy's.
    """
    images, records = load_split(cfg, ("train",))["train"]
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(len(records))[:limit])
    if cfg.pad_dir:
        pad_images, pad_records, _ = load_pad_split(
            Path(cfg.pad_dir), cfg.pad_split, cfg.seed, ("train",), cfg.limit_images
        )["train"]
        order += list(range(len(records), len(records) + len(pad_records)))
        images, records = images + pad_images, records + pad_records
    if cfg.milk_dir:
        milk_dir = Path(cfg.milk_dir)
        milk = split_milk(read_milk(milk_dir), cfg.milk_split, cfg.seed)["train"]
        milk = [m for m in milk if m.label is not None]
        milk = milk[: cfg.limit_images] if cfg.limit_images else milk
        milk_images = [load_rgb(milk_dir / "images" / m.file) for m in milk]
        milk_records = [
            replace(milk_record(m), box=lesion_box(img))
            for m, img in zip(milk, milk_images, strict=True)
        ]
        order += list(range(len(records), len(records) + len(milk_records)))
        images, records = images + milk_images, records + milk_records
    xs, ys = [], []
    for i in order:
        img, rec = images[i], records[i]
        box = rec.box or default_box(img.shape[1], img.shape[0])
        p_phone = 0.0 if rec.domain in (PAD_DOMAIN, MILK_DOMAIN) else 0.5
        view = training_view(
            img, box, rng, cfg.input_size, p_phone, (cfg.inference_margin, cfg.inference_margin)
        )
        xs.append(
            to_model_input(view, cfg.input_size, cfg.mean, cfg.std, cfg.color_constancy_power)
        )
        ys.append(rec.label)
    return np.stack(xs), np.array(ys)


@torch.no_grad()
def fit_ood(net: LesionNet, x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, ...]:
    """Tied-covariance Gaussian class model of pooled features (Lee et al. 2018), whitened."""
    feats = []
    for i in range(0, len(x), 128):
        feats.append(net.features(torch.from_numpy(x[i : i + 128])).mean(dim=(2, 3)))
    f = torch.cat(feats).double()
    mean = f.mean(0)
    centred_by_class = torch.cat(
        [f[torch.from_numpy(y == c)] - f[torch.from_numpy(y == c)].mean(0) for c in np.unique(y)]
    )
    cov = centred_by_class.T @ centred_by_class / len(f) + 1e-4 * torch.eye(
        f.shape[1], dtype=torch.float64
    )
    evals, evecs = torch.linalg.eigh(cov)
    top = torch.argsort(evals, descending=True)[:OOD_COMPONENTS]
    whiten = evecs[:, top] / torch.sqrt(evals[top])
    centres = torch.stack(
        [
            ((f[torch.from_numpy(y == c)] - mean) @ whiten).mean(0)
            for c in range(len(CLASSES))
            if (y == c).any()
        ]
    )
    return mean.float(), whiten.float(), centres.float()


def provisional_metadata(cfg: TrainConfig, version: str) -> ModelMetadata:
    return ModelMetadata(
        version=version,
        classes=CLASSES,
        class_names=CLASS_NAMES,
        malignant_classes=MALIGNANT,
        input_size=cfg.input_size,
        mean=cfg.mean,
        std=cfg.std,
        color_constancy_power=cfg.color_constancy_power,
        temperature=1.0,
        thresholds=RiskThresholds(medium=0.0, high=1.0),
        crop_margin=cfg.inference_margin,
        training_data=(
            "HAM10000 (Tschandl et al. 2018, CC BY-NC 4.0), lesion-grouped train split; "
            "PAD-UFES-20 (Pacheco et al. 2020, CC BY 4.0, resized), patient-grouped train split; "
            "MILK10k clinical close-ups (MILK study team, ISIC Archive, CC BY-NC 4.0, resized), "
            "lesion-grouped train split"
        ),
    )


def write_metadata(path: Path, metadata: ModelMetadata, out: Path | None = None) -> None:
    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    onnx.helper.set_model_props(
        model, {**{p.key: p.value for p in kept}, METADATA_KEY: metadata.to_json()}
    )
    onnx.save(model, str(out or path))


def export_onnx(module: ExportModule, size: int, path: Path) -> None:
    dummy = torch.zeros(1, 3, size, size)
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated but handles this static graph exactly.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (dummy,),
            str(path),
            dynamo=False,
            input_names=["input"],
            output_names=OUTPUTS,
            dynamic_axes={"input": {0: "batch"}, **{o: {0: "batch"} for o in OUTPUTS}},
            opset_version=17,
        )
    onnx.checker.check_model(onnx.load(str(path)))


def run_onnx(path: Path, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outs: list[list[np.ndarray]] = [[] for _ in OUTPUTS]
    for i in range(0, len(x), 64):
        for k, v in enumerate(session.run(OUTPUTS, {"input": x[i : i + 64]})):
            outs[k].append(np.asarray(v))
    return [np.concatenate(o) for o in outs]


@torch.no_grad()
def parity(module: ExportModule, path: Path, x: np.ndarray) -> dict[str, float]:
    """Largest absolute difference between torch and onnxruntime for each output."""
    ref = [t.numpy() for t in module(torch.from_numpy(x))]
    got = run_onnx(path, x)
    return {name: float(np.abs(r - g).max()) for name, r, g in zip(OUTPUTS, ref, got, strict=True)}


class ArrayReader(CalibrationDataReader):  # type: ignore[misc]  # onnxruntime is untyped: Any
    def __init__(self, x: np.ndarray) -> None:
        self._it: Iterator[dict[str, np.ndarray]] = iter(
            {"input": x[i : i + 1]} for i in range(len(x))
        )

    def get_next(self) -> dict[str, Any] | None:
        return next(self._it, None)


def quantize(fp32: Path, int8: Path, calib: np.ndarray) -> None:
    """Static per-channel int8 (QDQ) of the convolutions; the small heads stay float."""
    prep = fp32.with_suffix(".prep.onnx")
    quant_pre_process(str(fp32), str(prep), skip_symbolic_shape=True)
    quantize_static(
        str(prep),
        str(int8),
        ArrayReader(calib),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["Conv"],
        calibrate_method=CalibrationMethod.Percentile,
        extra_options={"CalibPercentile": 99.99},
    )
    prep.unlink()


def compress_weights(src: Path, dst: Path, mode: str) -> None:
    """Store large float weights compactly; activations and arithmetic stay float32.

    ``int8``: every Conv weight as symmetric per-output-channel int8 behind a
    DequantizeLinear. ``fp16``: every float initializer over 1024 values as float16 behind
    a Cast. Either way onnxruntime folds the constant nodes into float32 weights once, at
    load (``session.disable_quant_qdq`` in ``inference.classifier.load_session``), so the
    file shrinks and inference runs at float speed. Static activation quantisation was
    measured and rejected (see the model card).
    """
    model = onnx.load(str(src))
    graph = model.graph
    conv_weights = {n.input[1] for n in graph.node if n.op_type == "Conv" and len(n.input) > 1}
    decode_nodes, new_inits, replaced = [], [], set()
    for init in graph.initializer:
        name = init.name
        w = onnx.numpy_helper.to_array(init)
        if w.dtype != np.float32 or w.size <= 1024:
            continue
        if mode == "int8" and name in conv_weights:
            scale = np.abs(w.reshape(w.shape[0], -1)).max(axis=1) / 127.0
            scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
            q = np.clip(np.round(w / scale.reshape(-1, *([1] * (w.ndim - 1)))), -127, 127)
            new_inits += [
                onnx.numpy_helper.from_array(q.astype(np.int8), f"{name}_q"),
                onnx.numpy_helper.from_array(scale, f"{name}_scale"),
                onnx.numpy_helper.from_array(np.zeros_like(scale, np.int8), f"{name}_zp"),
            ]
            decode_nodes.append(
                onnx.helper.make_node(
                    "DequantizeLinear", [f"{name}_q", f"{name}_scale", f"{name}_zp"], [name], axis=0
                )
            )
        elif mode == "fp16":
            new_inits.append(onnx.numpy_helper.from_array(w.astype(np.float16), f"{name}_fp16"))
            decode_nodes.append(
                onnx.helper.make_node("Cast", [f"{name}_fp16"], [name], to=onnx.TensorProto.FLOAT)
            )
        else:
            continue
        replaced.add(name)
    kept = [i for i in graph.initializer if i.name not in replaced]
    del graph.initializer[:]
    graph.initializer.extend(kept + new_inits)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(decode_nodes + nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


# A compressed model ships only if it agrees with float this closely on held-back views.
MIN_TOP1_AGREEMENT = 0.99
MAX_MEAN_MALIGNANT_SHIFT = 0.01


def compare(reference: Path, candidate: Path, x: np.ndarray) -> dict[str, float]:
    """Size, top-1 agreement and mean |change| of p(malignant) of a candidate against float."""
    ref, got = run_onnx(reference, x)[0], run_onnx(candidate, x)[0]
    mal = [CLASSES.index(c) for c in MALIGNANT]
    shift = np.abs(softmax(got)[:, mal].sum(1) - softmax(ref)[:, mal].sum(1))
    return {
        "size_mb": candidate.stat().st_size / 2**20,
        "top1_agreement": float((ref.argmax(1) == got.argmax(1)).mean()),
        "mean_malignant_shift": float(shift.mean()),
        "max_logit_diff": float(np.abs(ref - got).max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="export a checkpoint to ONNX")
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--version", default="lite0-160")
    parser.add_argument("--ood-images", type=int, default=3000)
    parser.add_argument("--calib-images", type=int, default=256)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    net, cfg = load_checkpoint(args.checkpoint)
    x, y = training_inputs(cfg, args.ood_images, cfg.seed + 7)
    module = ExportModule(net, *fit_ood(net, x, y)).eval()
    fp32 = args.out / "model_fp32.onnx"
    export_onnx(module, cfg.input_size, fp32)
    diffs = parity(module, fp32, x[:64])
    log.info("torch vs onnxruntime max abs diff: %s", diffs)
    if diffs["logits"] > 1e-3:
        raise SystemExit(f"parity check failed: {diffs}")
    meta = provisional_metadata(cfg, args.version)
    write_metadata(fp32, meta)
    candidates = {
        "static_int8": args.out / "model_static_int8.onnx",
        "int8_weights": args.out / "model_int8_weights.onnx",
        "fp16_weights": args.out / "model_fp16_weights.onnx",
    }
    quantize(fp32, candidates["static_int8"], x[: args.calib_images])
    compress_weights(fp32, candidates["int8_weights"], "int8")
    compress_weights(fp32, candidates["fp16_weights"], "fp16")
    held_back = x[-500:]  # not used for calibration or the OOD fit's first images
    report = {"float32": {"size_mb": fp32.stat().st_size / 2**20}}
    for name, path in candidates.items():
        write_metadata(path, meta)
        report[name] = compare(fp32, path, held_back)
        log.info("%s: %s", name, report[name])
    good = [
        name
        for name in candidates
        if report[name]["top1_agreement"] >= MIN_TOP1_AGREEMENT
        and report[name]["mean_malignant_shift"] <= MAX_MEAN_MALIGNANT_SHIFT
    ]
    chosen = min(good, key=lambda n: report[n]["size_mb"]) if good else "float32"
    shutil.copy(candidates.get(chosen, fp32), args.out / "model.onnx")
    summary = {"candidates": report, "chosen": chosen}
    (args.out / "export_report.json").write_text(json.dumps(summary, indent=1))
    log.info("chose %s -> %s", chosen, args.out / "model.onnx")


if __name__ == "__main__":
    main()

"""Training, export and the shipped model's metadata (CI never trains the real model)."""

import csv
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

# Skipped where torch is not installed, unless REQUIRE_TORCH=1 (CI): there a missing
# torch must fail, not quietly skip every training test.
torch = pytest.importorskip("torch") if not os.environ.get("REQUIRE_TORCH") else __import__("torch")

from inference.classifier import SHIPPED_MODEL, load_session, read_metadata  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.data import CLASSES, read_records, split_by_lesion  # noqa: E402
from training.export import (  # noqa: E402
    ExportModule,
    compress_weights,
    export_onnx,
    fit_ood,
    parity,
    quantize,
)
from training.model import LesionNet, load_imagenet_backbone  # noqa: E402
from training.pad import PAD_DOMAIN, PAD_TO_CLASS, read_pad, split_by_patient  # noqa: E402
from training.train import effective_class_counts, train  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """A HAM10000-shaped folder: the four sample images, each copied as several lesions."""
    images = tmp_path / "images"
    images.mkdir()
    rows = []
    for i, src in enumerate(sorted(DATA.glob("ISIC_*.jpg")) * 3):
        image_id = f"ISIC_9{i:06d}"
        shutil.copy(src, images / f"{image_id}.jpg")
        rows.append(
            {
                "lesion_id": f"HAM_9{i:06d}",
                "image_id": image_id,
                "dx": src.stem.split("_")[-1],
                "dx_type": "histo",
                "age": "50",
                "sex": "male",
                "localization": "back",
            }
        )
    with (tmp_path / "HAM10000_metadata.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return tmp_path


@pytest.fixture
def tiny_pad(tmp_path: Path) -> Path:
    """A PAD-UFES-20-shaped folder: the real sample photos, as twelve patients."""
    root = tmp_path / "pad"
    (root / "images").mkdir(parents=True)
    sources = sorted((DATA / "pad").glob("PAT_*.jpg"))
    # tests/data/README.md gives each sample's diagnosis; one stands in for ACK as well.
    codes = {
        "PAT_145": "BCC",
        "PAT_233": "MEL",
        "PAT_1364": "NEV",
        "PAT_1653": "SEK",
        "PAT_625": "SEK",
    }
    rows = []
    for i in range(12):
        src = sources[i % len(sources)]
        diagnostic = "ACK" if i == 11 else codes["_".join(src.stem.split("_")[:2])]
        # Patient i has one lesion; every third patient a second photo of it.
        for k in range(1 + (i % 3 == 0)):
            name = f"PAT_{900 + i}_{i}_{k}.jpg"
            shutil.copy(src, root / "images" / name)
            rows.append(
                {
                    "file": name,
                    "img_id": name.replace(".jpg", ".png"),
                    "patient_id": f"PAT_{900 + i}",
                    "lesion_id": str(i),
                    "diagnostic": diagnostic,
                    "biopsed": "True",
                    "fitspatrick": "2.0" if i % 2 else "",
                }
            )
    with (root / "metadata.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_pad_split_keeps_every_patient_in_one_split(tiny_pad: Path) -> None:
    photos = read_pad(tiny_pad)
    splits = split_by_patient(photos, (0.5, 0.25, 0.25), seed=3)
    where = {p.patient_id: name for name, ps in splits.items() for p in ps}
    for name, ps in splits.items():
        assert ps, f"{name} split is empty"
        assert all(where[p.patient_id] == name for p in ps)
    assert sum(len(v) for v in splits.values()) == len(photos)
    assert split_by_patient(photos, (0.5, 0.25, 0.25), seed=3) == splits  # reproducible
    # Every PAD diagnosis maps onto a model class; SCC (a cancer) has its own, apart from
    # actinic keratosis (a precancer).
    assert set(PAD_TO_CLASS.values()) <= set(CLASSES)
    assert PAD_TO_CLASS["SCC"] == "scc"
    assert PAD_TO_CLASS["ACK"] == "akiec"


def test_split_keeps_every_lesion_in_one_split(tiny_dataset: Path) -> None:
    records = read_records(tiny_dataset)
    # Two images of one lesion must land together.
    records[1] = records[1].__class__(
        records[1].image_id, records[0].lesion_id, records[0].label, None
    )
    splits = split_by_lesion(records, (0.5, 0.25, 0.25), seed=1)
    where = {r.lesion_id: name for name, rs in splits.items() for r in rs}
    for name, rs in splits.items():
        assert all(where[r.lesion_id] == name for r in rs)
    assert sum(len(v) for v in splits.values()) == len(records)
    assert split_by_lesion(records, (0.5, 0.25, 0.25), seed=1) == splits  # reproducible


def test_imagenet_weights_load_into_our_network() -> None:
    model = LesionNet(len(CLASSES))
    load_imagenet_backbone(model)  # raises on any key or shape mismatch
    assert float(model._conv_stem.weight.detach().abs().sum()) > 0


def test_one_training_step_on_ham_and_pad_writes_a_checkpoint_with_its_config(
    tiny_dataset: Path, tiny_pad: Path, tmp_path: Path
) -> None:
    cfg = TrainConfig(
        data_dir=str(tiny_dataset),
        pad_dir=str(tiny_pad),
        pad_split=(0.5, 0.25, 0.25),
        out_dir=str(tmp_path / "run"),
        epochs=1,
        batch_size=4,
        warmup_steps=1,
        num_workers=0,
        split=(0.5, 0.25, 0.25),
    )
    best = train(cfg, pretrained=False)
    ckpt = torch.load(best, map_location="cpu", weights_only=False)
    assert ckpt["config"]["data_dir"] == str(tiny_dataset)
    assert ckpt["epoch"] == 1
    assert np.isfinite(ckpt["metrics"]["train_loss"])
    # Real photos are validated on their own and weigh in the choice of epoch.
    assert "val_pad_balanced_accuracy" in ckpt["metrics"]
    assert np.isfinite(ckpt["metrics"]["selection_score"])


def test_onnx_export_matches_torch_and_int8_stays_close(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = LesionNet(len(CLASSES)).eval()
    x = np.random.default_rng(0).normal(0, 1, (24, 3, 64, 64)).astype(np.float32)
    y = np.arange(24) % len(CLASSES)
    module = ExportModule(net, *fit_ood(net, x, y)).eval()
    path = tmp_path / "m.onnx"
    export_onnx(module, 64, path)
    diffs = parity(module, path, x[:4])
    assert diffs["logits"] < 1e-4
    assert diffs["cam"] < 1e-3
    # The class-activation maps average (plus the bias) to exactly the logits.
    logits, _, cam, _ = ort.InferenceSession(str(path)).run(None, {"input": x[:2]})
    bias = net._fc.bias.detach().numpy()
    np.testing.assert_allclose(cam.mean(axis=(2, 3)) + bias, logits, atol=1e-4)
    int8 = tmp_path / "m8.onnx"
    quantize(path, int8, x[:8])
    assert int8.stat().st_size < path.stat().st_size / 2
    # Compressed weights load through the runtime's own session settings and stay close.
    for mode, tol in (("fp16", 1e-2), ("int8", 0.2)):
        small = tmp_path / f"m_{mode}.onnx"
        compress_weights(path, small, mode)
        assert small.stat().st_size < path.stat().st_size * 0.6
        got = load_session(small, 1).run(["logits"], {"input": x[:4]})[0]
        ref = load_session(path, 1).run(["logits"], {"input": x[:4]})[0]
        np.testing.assert_allclose(got, ref, atol=tol)


def test_shipped_model_metadata_matches_the_graph() -> None:
    session = ort.InferenceSession(str(SHIPPED_MODEL))
    meta = read_metadata(session)
    inp = session.get_inputs()[0]
    assert inp.shape[1:] == [3, meta.input_size, meta.input_size]
    outputs = {o.name: o.shape for o in session.get_outputs()}
    assert set(outputs) == {"logits", "features", "cam", "ood_distance"}
    assert outputs["logits"][1] == len(meta.classes) == outputs["cam"][1]
    assert set(meta.malignant_classes) <= set(meta.classes)
    assert set(meta.class_names) == set(meta.classes)
    assert 0.0 < meta.thresholds.medium <= meta.thresholds.high < 1.0
    assert meta.temperature > 0 and np.isfinite(meta.ood_threshold)
    # Every retrain stays in git history: the shipped file must stay a few MB.
    assert SHIPPED_MODEL.stat().st_size < 8 * 1024 * 1024


@pytest.fixture
def spied_run(
    tiny_dataset: Path, tiny_pad: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """Two epochs of train() on the tiny sets, recording what it built: the loader's
    sampler, the loss's class weights, and which checkpoint it calls best. The second
    epoch is made to score worse on validation than the first."""
    import training.train as tr

    seen: dict[str, Any] = {}
    out_dir = tmp_path / "run"
    real_loader, real_loss, real_summarise = tr.DataLoader, tr.nn.CrossEntropyLoss, tr.summarise

    def loader(dataset: Any, **kwargs: Any) -> Any:
        seen["dataset"], seen["sampler"] = dataset, kwargs.get("sampler")
        return real_loader(dataset, **kwargs)

    def loss(*args: Any, **kwargs: Any) -> Any:
        seen["class_weight"] = kwargs.get("weight")
        return real_loss(*args, **kwargs)

    def summarise(logits: np.ndarray, labels: np.ndarray, cancer: np.ndarray) -> dict[str, float]:
        real_summarise(logits, labels, cancer)
        # Epoch 1 scores 0.9 on every validation set, any later epoch 0.5.
        score = 0.5 if (out_dir / "epoch_01.pt").exists() else 0.9
        return {"balanced_accuracy": score, "malignant_auc": score, "specificity_at_95": score}

    monkeypatch.setattr(tr, "DataLoader", loader)
    monkeypatch.setattr(tr.nn, "CrossEntropyLoss", loss)
    monkeypatch.setattr(tr, "summarise", summarise)
    cfg = TrainConfig(
        data_dir=str(tiny_dataset),
        pad_dir=str(tiny_pad),
        pad_split=(0.5, 0.25, 0.25),
        out_dir=str(out_dir),
        epochs=2,
        batch_size=4,
        warmup_steps=1,
        num_workers=0,
        split=(0.5, 0.25, 0.25),
        pad_share=0.25,
    )
    seen["cfg"] = cfg
    seen["best"] = train(cfg, pretrained=False)
    return seen


def test_training_draws_real_photos_at_their_share_and_weights_rare_classes(
    spied_run: dict[str, Any],
) -> None:
    """The ~370 PAD photos would be 6% of the draws without the domain sampler; without
    class weights the rare classes (akiec, df, vasc) would hardly move the loss."""
    cfg, records = spied_run["cfg"], spied_run["dataset"].records
    sampler = spied_run["sampler"]
    assert sampler is not None, "training must draw through the domain sampler"
    weights = np.asarray(sampler.weights, np.float64)
    is_pad = np.array([r.domain == PAD_DOMAIN for r in records])
    assert is_pad.any() and (~is_pad).any()
    assert weights[is_pad].sum() / weights.sum() == pytest.approx(cfg.pad_share)

    class_weight = spied_run["class_weight"]
    assert class_weight is not None, "the loss must weight classes by their rarity"
    w = class_weight.numpy()
    counts = effective_class_counts(records, cfg)
    assert w[np.argmin(counts)] > w[np.argmax(counts)]
    # Mean weight per drawn sample is 1: the weights rebalance, they do not rescale.
    assert float((w * counts).sum() / counts.sum()) == pytest.approx(1.0, rel=1e-5)


def test_training_keeps_the_epoch_validation_scores_best(spied_run: dict[str, Any]) -> None:
    """The last epoch is not the model: validation chooses (here epoch 1 of 2)."""
    best = torch.load(spied_run["best"], map_location="cpu", weights_only=False)
    assert best["epoch"] == 1
    assert best["metrics"]["selection_score"] == pytest.approx(0.9)

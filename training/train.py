"""Fine-tune EfficientNet-Lite0 on HAM10000 dermoscopy (and simulated phone views of it)
together with PAD-UFES-20 real smartphone photos, drawn in a fixed share per epoch.

    python -m training.train --config training/configs/lite0.json

Reads top to bottom: load data once into memory, build the model, train with per-epoch
validation on both domains, write ``epoch_NN.pt`` and ``best.pt`` (each with its config).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from inference.preprocess import crop_square, square_crop_box, to_model_input
from inference.types import RGBImage
from training.config import TrainConfig
from training.data import (
    CLASSES,
    MALIGNANT,
    Record,
    default_box,
    load_split,
)
from training.metrics import balanced_accuracy, confusion_matrix, roc_auc, softmax
from training.model import (
    LesionNet,
    freeze_early_layers,
    load_imagenet_backbone,
    set_frozen_bn_eval,
)
from training.pad import PAD_DOMAIN, load_pad_split
from training.phone import compose_phone_photo, phone_camera, training_view

log = logging.getLogger(__name__)


class LesionViews(Dataset[tuple[torch.Tensor, int]]):
    """Augmented training views of in-memory images; each worker has its own RNG stream."""

    def __init__(self, images: list[RGBImage], records: list[Record], cfg: TrainConfig) -> None:
        self.images, self.records, self.cfg = images, records, cfg
        self.rng = np.random.default_rng(cfg.seed)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img, rec = self.images[i], self.records[i]
        box = rec.box or default_box(img.shape[1], img.shape[0])
        p_phone = self.cfg.pad_p_phone if rec.domain == PAD_DOMAIN else self.cfg.p_phone
        view = training_view(img, box, self.rng, self.cfg.input_size, p_phone, self.cfg.crop_margin)
        x = to_model_input(
            view, self.cfg.input_size, self.cfg.mean, self.cfg.std, self.cfg.color_constancy_power
        )
        return torch.from_numpy(x), rec.label


def seed_worker(worker_id: int) -> None:
    info = torch.utils.data.get_worker_info()
    assert info is not None
    info.dataset.rng = np.random.default_rng(info.seed % 2**32)  # type: ignore[attr-defined]


def validation_inputs(
    images: list[RGBImage], records: list[Record], cfg: TrainConfig
) -> dict[str, np.ndarray]:
    """Fixed validation inputs: the dermoscopy crop and one simulated phone photo per image."""
    rng = np.random.default_rng(cfg.seed + 1)
    clean, phone = [], []
    for img, rec in zip(images, records, strict=True):
        box = rec.box or default_box(img.shape[1], img.shape[0])
        h, w = img.shape[:2]
        clean.append(crop_square(img, square_crop_box(box, w, h, cfg.inference_margin)))
        photo, pbox = compose_phone_photo(img, box, rng)
        photo = phone_camera(photo, rng)
        ph, pw = photo.shape[:2]
        phone.append(crop_square(photo, square_crop_box(pbox, pw, ph, cfg.inference_margin)))

    def batch(crops: list[RGBImage]) -> np.ndarray:
        return np.stack(
            [
                to_model_input(c, cfg.input_size, cfg.mean, cfg.std, cfg.color_constancy_power)
                for c in crops
            ]
        )

    return {"dermoscopy": batch(clean), "phone": batch(phone)}


def real_photo_inputs(
    images: list[RGBImage], records: list[Record], cfg: TrainConfig
) -> np.ndarray:
    """Real phone photos cropped as the pipeline does: the localiser's box, its margin."""
    crops = []
    for img, rec in zip(images, records, strict=True):
        h, w = img.shape[:2]
        box = rec.box or default_box(w, h)
        crops.append(crop_square(img, square_crop_box(box, w, h, cfg.inference_margin)))
    return np.stack(
        [
            to_model_input(c, cfg.input_size, cfg.mean, cfg.std, cfg.color_constancy_power)
            for c in crops
        ]
    )


def domain_sampler(records: list[Record], cfg: TrainConfig) -> WeightedRandomSampler | None:
    """Draw PAD photos as ``pad_share`` of each epoch, the rest HAM10000, with replacement.

    An epoch stays as long as the HAM10000 split (not longer by the PAD share): on two CPU
    cores the whole run has to fit in about an hour of one session.
    """
    is_pad = np.array([r.domain == PAD_DOMAIN for r in records])
    n_pad, n_ham = int(is_pad.sum()), int((~is_pad).sum())
    if not n_pad or not n_ham:
        return None
    weights = np.where(is_pad, cfg.pad_share / n_pad, (1 - cfg.pad_share) / n_ham)
    return WeightedRandomSampler(
        weights.tolist(),
        num_samples=n_ham,
        replacement=True,
        generator=torch.Generator().manual_seed(cfg.seed),
    )


def effective_class_counts(records: list[Record], cfg: TrainConfig) -> np.ndarray:
    """Class counts as the sampler draws them: each PAD photo is drawn as often as
    ``pad_share / (1 - pad_share) * n_ham / n_pad`` HAM10000 images."""
    labels = np.array([r.label for r in records])
    is_pad = np.array([r.domain == PAD_DOMAIN for r in records])
    n_pad, n_ham = int(is_pad.sum()), int((~is_pad).sum())
    weight = np.ones(len(records))
    if n_pad and n_ham:
        weight[is_pad] = cfg.pad_share / (1 - cfg.pad_share) * n_ham / n_pad
    return np.bincount(labels, weights=weight, minlength=len(CLASSES))


# Model selection: real photos are what users send, so PAD validation counts for half;
# the rest keeps the dermoscopy and synthetic-phone skills from being traded away.
SELECTION_WEIGHTS = {"pad": 0.5, "dermoscopy": 0.3, "phone": 0.2}


@torch.no_grad()
def predict_logits(model: LesionNet, x: np.ndarray, batch_size: int = 128) -> np.ndarray:
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        t = torch.from_numpy(x[i : i + batch_size]).contiguous(memory_format=torch.channels_last)
        out.append(model(t)[0].numpy())
    return np.concatenate(out)


def summarise(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    probs = softmax(logits)
    cm = confusion_matrix(labels, probs.argmax(1), len(CLASSES))
    mal_idx = [CLASSES.index(c) for c in MALIGNANT]
    is_mal = np.isin(labels, mal_idx)
    return {
        "balanced_accuracy": balanced_accuracy(cm),
        "malignant_auc": roc_auc(is_mal, probs[:, mal_idx].sum(1)),
    }


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 2% of the peak."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def train(cfg: TrainConfig, pretrained: bool = True, resume: Path | None = None) -> Path:
    torch.manual_seed(cfg.seed)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    data = load_split(cfg, ("train", "val"))
    train_images, train_records = data["train"]
    val_images, val_records = data["val"]
    log.info(
        "loaded %d train / %d val images in %.0f s",
        len(train_records),
        len(val_records),
        time.monotonic() - started,
    )
    val_x = validation_inputs(val_images, val_records, cfg)
    val_y = {domain: np.array([r.label for r in val_records]) for domain in val_x}
    if cfg.pad_dir:
        pad = load_pad_split(
            Path(cfg.pad_dir), cfg.pad_split, cfg.seed, ("train", "val"), cfg.limit_images
        )
        train_images = train_images + pad["train"][0]
        train_records = train_records + pad["train"][1]
        val_x["pad"] = real_photo_inputs(pad["val"][0], pad["val"][1], cfg)
        val_y["pad"] = np.array([r.label for r in pad["val"][1]])
        log.info("PAD: %d train / %d val photos", len(pad["train"][1]), len(pad["val"][1]))

    model = LesionNet(len(CLASSES))
    if pretrained:
        load_imagenet_backbone(model)
    freeze_early_layers(model, cfg.trainable_from_block)
    # Module.to(memory_format=...) works at runtime; torch's stubs leave it out of the overloads.
    model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    counts = effective_class_counts(train_records, cfg)
    weights = (counts.max() / np.maximum(counts, 1)) ** cfg.class_weight_power
    weights = weights / (weights * counts).sum() * counts.sum()  # mean weight per sample = 1
    loss_fn = nn.CrossEntropyLoss(
        weight=torch.tensor(weights, dtype=torch.float32), label_smoothing=cfg.label_smoothing
    )
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    sampler = domain_sampler(train_records, cfg)
    loader = DataLoader(
        LesionViews(train_images, train_records, cfg),
        batch_size=cfg.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        drop_last=len(train_records) > cfg.batch_size,
        num_workers=cfg.num_workers,
        worker_init_fn=seed_worker if cfg.num_workers else None,
        persistent_workers=cfg.num_workers > 0,
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    total_steps = cfg.epochs * len(loader)
    step, best_score, first_epoch = 0, -1.0, 1
    history: list[dict[str, Any]] = []
    if resume is not None:
        ckpt = torch.load(resume, map_location="cpu", weights_only=False)
        model.load_state_dict(ckpt["model"])
        if "optimizer" in ckpt:
            opt.load_state_dict(ckpt["optimizer"])
        first_epoch = ckpt["epoch"] + 1
        step = ckpt["epoch"] * len(loader)
        history_file = out_dir / "history.json"
        history = (
            json.loads(history_file.read_text())[: ckpt["epoch"]] if history_file.exists() else []
        )
        best_score = max((h["selection_score"] for h in history), default=-1.0)
        log.info("resumed from %s at epoch %d", resume, first_epoch)
    for epoch in range(first_epoch, cfg.epochs + 1):
        model.train()
        set_frozen_bn_eval(model, cfg.trainable_from_block)
        t0, seen, running = time.monotonic(), 0, 0.0
        for i, (x, y) in enumerate(loader):
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total_steps, cfg)
            logits, _ = model(x.contiguous(memory_format=torch.channels_last))
            loss = loss_fn(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            seen += len(y)
            running = 0.98 * running + 0.02 * loss.item() if i else loss.item()
            if i % 20 == 0:
                log.info(
                    "epoch %d step %d/%d loss %.3f %.1f img/s",
                    epoch,
                    i,
                    len(loader),
                    running,
                    seen / (time.monotonic() - t0),
                )
        metrics: dict[str, Any] = {"epoch": epoch, "train_loss": running}
        score, total_weight = 0.0, 0.0
        for domain, x_val in val_x.items():
            for k, v in summarise(predict_logits(model, x_val), val_y[domain]).items():
                metrics[f"val_{domain}_{k}"] = v
                if np.isfinite(v):  # an AUC is undefined on a split with one class
                    score += SELECTION_WEIGHTS[domain] * v
                    total_weight += SELECTION_WEIGHTS[domain]
        score = score / total_weight if total_weight else 0.0
        metrics["selection_score"] = score
        history.append(metrics)
        log.info("epoch %d done in %.0f s: %s", epoch, time.monotonic() - t0, json.dumps(metrics))
        ckpt = {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "config": cfg.to_dict(),
            "epoch": epoch,
            "metrics": metrics,
        }
        torch.save(ckpt, out_dir / f"epoch_{epoch:02d}.pt")
        if score > best_score:
            best_score = score
            torch.save(ckpt, out_dir / "best.pt")
        (out_dir / "history.json").write_text(json.dumps(history, indent=1))
        if cfg.max_minutes and (time.monotonic() - started) / 60 > cfg.max_minutes:
            log.warning("time budget of %.0f min reached after epoch %d", cfg.max_minutes, epoch)
            break
    return out_dir / "best.pt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--out-dir")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--limit-images", type=int)
    parser.add_argument("--no-pretrained", action="store_true", help="random init (smoke tests)")
    parser.add_argument("--resume", type=Path, help="continue from this epoch checkpoint")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = TrainConfig.load(
        args.config, out_dir=args.out_dir, epochs=args.epochs, limit_images=args.limit_images
    )
    best = train(cfg, pretrained=not args.no_pretrained, resume=args.resume)
    log.info("best checkpoint: %s", best)


if __name__ == "__main__":
    main()

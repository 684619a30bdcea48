"""Fine-tune EfficientNet-Lite0 on HAM10000 dermoscopy (and simulated phone views of it),
PAD-UFES-20 real smartphone photos and MILK10k clinical close-ups, each source drawn in a
fixed share per epoch.

    python -m training.train --config training/configs/lite0_milk.json

Reads top to bottom: cache each source's lesion crops once (training/crops.py), build the
model (ImageNet or a shipped model's weights), train with per-epoch validation on every
source, write ``epoch_NN.pt`` and ``best.pt`` (each with its config); ``--resume`` goes on
from an epoch checkpoint, with the time already spent counted against ``max_minutes``.
The same code runs on a GPU when torch sees one.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from inference.preprocess import to_model_input
from inference.types import RGBImage
from training.config import TrainConfig
from training.crops import BoxGeometry, CropSet, cache_crop, cached, pipeline_crop, view_from_cache
from training.data import (
    CLASSES,
    MALIGNANT,
    Record,
    default_box,
    load_image,
    load_rgb,
    read_records,
    split_by_lesion,
)
from training.metrics import balanced_accuracy, confusion_matrix, roc_auc, softmax
from training.milk import MILK_DOMAIN, read_milk, split_milk
from training.model import (
    LesionNet,
    freeze_early_layers,
    load_imagenet_backbone,
    set_frozen_bn_eval,
)
from training.pad import PAD_DOMAIN, lesion_box, read_pad, split_by_patient
from training.pad import to_record as pad_record
from training.warm_start import init_class_from, load_onnx_weights

log = logging.getLogger(__name__)
HAM_DOMAIN = "ham10000"


@dataclass(frozen=True)
class Source:
    """One data source's split: records and crops in the same order, and the cancer truth
    (which also covers photos without a model class, e.g. MILK10k's inflammatory ones)."""

    records: list[Record]
    crops: CropSet
    cancer: np.ndarray  # bool per record


def _cache_dir(cfg: TrainConfig) -> Path:
    return Path(cfg.cache_dir) if cfg.cache_dir else Path(cfg.out_dir) / "cache"


def _limit(items: list[Any], cfg: TrainConfig) -> list[Any]:
    return items[: cfg.limit_images] if cfg.limit_images else items


def _crop_maker(
    cfg: TrainConfig, load: Any, box_of: Any, dermoscopy: bool, train_crop: bool
) -> Any:
    """``make(i)`` for :func:`training.crops.cached`: decode image i, find its box, crop."""

    def make(i: int) -> tuple[RGBImage, BoxGeometry | None]:
        img = load(i)
        box = box_of(i, img)
        if train_crop:
            rng = np.random.default_rng([cfg.seed, i])
            return cache_crop(img, box, cfg.cache_size, rng, dermoscopy)
        return pipeline_crop(img, box, cfg.inference_margin, cfg.input_size), None

    return make


def _photo_source(
    cfg: TrainConfig,
    domain: str,
    kind: str,
    folder: Path,
    files: list[str],
    records: list[Record],
    cancer: list[bool],
    train_crop: bool,
) -> Source:
    """Real photos in ``folder/images``, cropped around the box the bot's localiser finds."""
    return Source(
        records,
        cached(
            _cache_dir(cfg) / f"{domain}_{kind}.npy",
            files,
            _crop_maker(
                cfg,
                lambda i: load_rgb(folder / "images" / files[i]),
                lambda i, img: lesion_box(img),
                False,
                train_crop,
            ),
        ),
        np.array(cancer, bool),
    )


def load_sources(cfg: TrainConfig, split: str) -> dict[str, Source]:
    """Every configured source's ``split``: training crops for "train", the pipeline's
    square for the others."""
    train_crop = split == "train"
    kind = f"{split}_{cfg.cache_size if train_crop else cfg.input_size}"
    out: dict[str, Source] = {}
    ham_dir = Path(cfg.data_dir)
    ham = _limit(split_by_lesion(read_records(ham_dir), cfg.split, cfg.seed)[split], cfg)
    out[HAM_DOMAIN] = Source(
        ham,
        cached(
            _cache_dir(cfg) / f"{HAM_DOMAIN}_{kind}.npy",
            [r.image_id for r in ham],
            _crop_maker(
                cfg,
                lambda i: load_image(ham_dir, ham[i].image_id),
                lambda i, img: ham[i].box or default_box(img.shape[1], img.shape[0]),
                True,
                train_crop,
            ),
        ),
        np.array([CLASSES[r.label] in MALIGNANT for r in ham], bool),
    )
    if cfg.pad_dir:
        pad_dir = Path(cfg.pad_dir)
        photos = _limit(split_by_patient(read_pad(pad_dir), cfg.pad_split, cfg.seed)[split], cfg)
        records = [pad_record(p, None) for p in photos]
        out[PAD_DOMAIN] = _photo_source(
            cfg,
            PAD_DOMAIN,
            kind,
            pad_dir,
            [p.file for p in photos],
            records,
            [CLASSES[r.label] in MALIGNANT for r in records],
            train_crop,
        )
    if cfg.milk_dir:
        milk_dir = Path(cfg.milk_dir)
        milk = split_milk(read_milk(milk_dir), cfg.milk_split, cfg.seed)[split]
        # Training needs a class; validation keeps every photo for the cancer endpoint.
        milk = _limit([m for m in milk if m.label is not None] if train_crop else milk, cfg)
        # -1: a diagnosis without a class (validation only, see above).
        records = [
            Record(
                m.file.removesuffix(".jpg"),
                m.lesion_id,
                -1 if m.label is None else m.label,
                None,
                MILK_DOMAIN,
            )
            for m in milk
        ]
        out[MILK_DOMAIN] = _photo_source(
            cfg,
            MILK_DOMAIN,
            kind,
            milk_dir,
            [m.file for m in milk],
            records,
            [m.is_cancer for m in milk],
            train_crop,
        )
    return out


class CachedViews(Dataset[tuple[torch.Tensor, int]]):
    """Augmented training views of the cached crops; each worker has its own RNG stream."""

    def __init__(self, sources: list[Source], cfg: TrainConfig) -> None:
        self.sources, self.cfg = sources, cfg
        self.index = [(s, i) for s, src in enumerate(sources) for i in range(len(src.records))]
        self.rng = np.random.default_rng(cfg.seed)

    @property
    def records(self) -> list[Record]:
        """Every record, in the order the sampler's weights and indices refer to."""
        return [self.sources[s].records[i] for s, i in self.index]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, int]:
        s, i = self.index[k]
        src, cfg = self.sources[s], self.cfg
        rec = src.records[i]
        p_phone = {PAD_DOMAIN: cfg.pad_p_phone, MILK_DOMAIN: cfg.milk_p_phone}.get(
            rec.domain, cfg.p_phone
        )
        view = view_from_cache(
            src.crops.crops[i],
            BoxGeometry(*src.crops.boxes[i]),
            self.rng,
            cfg.input_size,
            p_phone,
            cfg.crop_margin,
            dermoscopy=rec.domain == HAM_DOMAIN,
        )
        x = to_model_input(view, cfg.input_size, cfg.mean, cfg.std, cfg.color_constancy_power)
        return torch.from_numpy(x), rec.label


def seed_worker(worker_id: int) -> None:
    info = torch.utils.data.get_worker_info()
    assert info is not None
    info.dataset.rng = np.random.default_rng(info.seed % 2**32)  # type: ignore[attr-defined]


def model_inputs(crops: np.ndarray, cfg: TrainConfig) -> np.ndarray:
    """Pipeline crops (already at the input size) as the network's input batch."""
    if not len(crops):
        return np.zeros((0, 3, cfg.input_size, cfg.input_size), np.float32)
    return np.stack(
        [
            to_model_input(c, cfg.input_size, cfg.mean, cfg.std, cfg.color_constancy_power)
            for c in crops
        ]
    )


def domain_shares(cfg: TrainConfig) -> dict[str, float]:
    return {
        HAM_DOMAIN: 1.0 - cfg.pad_share - cfg.milk_share,
        PAD_DOMAIN: cfg.pad_share,
        MILK_DOMAIN: cfg.milk_share,
    }


def draw_weights(records: list[Record], cfg: TrainConfig) -> np.ndarray:
    """Each record's chance of being drawn: each source its share of draws, spread over its
    records (MILK10k melanoma and naevus ``milk_mel_nv_weight`` times as likely)."""
    domains = np.array([r.domain for r in records])
    labels = np.array([r.label for r in records])
    within = np.ones(len(records))
    mel_nv = np.isin(labels, [CLASSES.index("mel"), CLASSES.index("nv")])
    within[(domains == MILK_DOMAIN) & mel_nv] = cfg.milk_mel_nv_weight
    weights = np.zeros(len(records))
    present = {d: s for d, s in domain_shares(cfg).items() if (domains == d).any()}
    total = sum(present.values())
    for domain, share in present.items():
        sel = domains == domain
        weights[sel] = share / total * within[sel] / within[sel].sum()
    return weights


def domain_sampler(records: list[Record], cfg: TrainConfig) -> WeightedRandomSampler | None:
    """Draw each source as its share of each epoch, with replacement; None for one source.

    An epoch is ``epoch_samples`` draws, or as many as HAM10000 training images: on two
    CPU cores the whole run has to fit in about an hour of one session.
    """
    domains = {r.domain for r in records}
    if len(domains) < 2:
        return None
    n_ham = sum(r.domain == HAM_DOMAIN for r in records)
    return WeightedRandomSampler(
        draw_weights(records, cfg).tolist(),
        num_samples=cfg.epoch_samples or n_ham or len(records),
        replacement=True,
        generator=torch.Generator().manual_seed(cfg.seed),
    )


def effective_class_counts(records: list[Record], cfg: TrainConfig) -> np.ndarray:
    """Class counts as the sampler draws them, on the scale of the HAM10000 split (each
    HAM10000 image counts 1, a PAD photo ``pad_share / ham_share * n_ham / n_pad``)."""
    labels = np.array([r.label for r in records])
    n_ham = sum(r.domain == HAM_DOMAIN for r in records)
    weights = draw_weights(records, cfg)
    ham_share = float(weights[[r.domain == HAM_DOMAIN for r in records]].sum())
    scale = n_ham / ham_share if n_ham and ham_share > 0 else len(records)
    return np.bincount(labels, weights=weights * scale, minlength=len(CLASSES))


# Model selection: what users send are phone photos and clinical close-ups, so PAD and
# MILK10k validation count most; dermoscopy keeps the HAM10000 skills from being traded
# away. Each source scores the mean of its cancer AUC and its specificity at 95%
# sensitivity (the operating point the bot uses).
SELECTION_WEIGHTS = {PAD_DOMAIN: 0.35, MILK_DOMAIN: 0.4, HAM_DOMAIN: 0.25}


@torch.no_grad()
def predict_logits(
    model: LesionNet, x: np.ndarray, batch_size: int = 128, device: str = "cpu"
) -> np.ndarray:
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        t = torch.from_numpy(x[i : i + batch_size]).to(device)
        out.append(model(t.contiguous(memory_format=torch.channels_last))[0].float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(CLASSES)), np.float32)


def specificity_at_sensitivity(is_pos: np.ndarray, score: np.ndarray, target: float) -> float:
    """Best specificity any threshold allows with sensitivity >= ``target``."""
    pos, neg = np.sort(score[is_pos]), score[~is_pos]
    if not len(pos) or not len(neg):
        return float("nan")
    cut = pos[int(np.floor((1 - target) * len(pos)))]
    return float((neg < cut).mean())


def summarise(logits: np.ndarray, labels: np.ndarray, cancer: np.ndarray) -> dict[str, float]:
    probs = softmax(logits)
    known = labels >= 0
    cm = confusion_matrix(labels[known], probs[known].argmax(1), len(CLASSES))
    mal_idx = [CLASSES.index(c) for c in MALIGNANT]
    p_cancer = probs[:, mal_idx].sum(1)
    return {
        "balanced_accuracy": balanced_accuracy(cm) if known.any() else float("nan"),
        "malignant_auc": roc_auc(cancer, p_cancer),
        "specificity_at_95": specificity_at_sensitivity(cancer, p_cancer, 0.95),
    }


def lr_at(step: int, total: int, cfg: TrainConfig, elapsed_s: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to 2% of the peak; with ``max_minutes`` the decay
    follows whichever of steps and time runs out first, so a slower machine still ends
    the run at a low rate instead of being cut off at the peak."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    if cfg.max_minutes:
        progress = max(progress, elapsed_s / (cfg.max_minutes * 60))
    return cfg.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def cancer_loss(logits: torch.Tensor, y: torch.Tensor, pos_weight: float) -> torch.Tensor:
    """Balanced log-loss of p(cancer) = the malignant classes' summed softmax."""
    logp = torch.log_softmax(logits, dim=1)
    mal = torch.zeros(logits.shape[1], dtype=torch.bool, device=logits.device)
    mal[[CLASSES.index(c) for c in MALIGNANT]] = True
    lp_cancer = torch.logsumexp(logp[:, mal], dim=1)
    lp_rest = torch.logsumexp(logp[:, ~mal], dim=1)
    is_cancer = mal[y]
    w = torch.where(is_cancer, pos_weight, 1.0)
    nll = torch.where(is_cancer, -lp_cancer, -lp_rest)
    return (w * nll).sum() / w.sum()


def build_model(cfg: TrainConfig, pretrained: bool) -> LesionNet:
    model = LesionNet(len(CLASSES))
    if cfg.init_onnx:
        for new in load_onnx_weights(model, Path(cfg.init_onnx)):
            # The only class added since the shipped model: scc, once part of akiec.
            init_class_from(model, int(new), CLASSES.index("akiec"))
    elif pretrained:
        load_imagenet_backbone(model)
    freeze_early_layers(model, cfg.trainable_from_block)
    return model


def set_train_mode(model: LesionNet, cfg: TrainConfig) -> None:
    model.train()
    set_frozen_bn_eval(model, cfg.trainable_from_block)
    if cfg.freeze_bn:
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()


def train(cfg: TrainConfig, pretrained: bool = True, resume: Path | None = None) -> Path:
    torch.manual_seed(cfg.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    train_sources = load_sources(cfg, "train")
    val_sources = load_sources(cfg, "val")
    log.info(
        "crops ready in %.0f s: train %s, val %s",
        time.monotonic() - started,
        {d: len(s.records) for d, s in train_sources.items()},
        {d: len(s.records) for d, s in val_sources.items()},
    )
    val_x = {d: model_inputs(s.crops.crops, cfg) for d, s in val_sources.items()}
    train_records = [r for s in train_sources.values() for r in s.records]

    model = build_model(cfg, pretrained)
    # Module.to(memory_format=...) works at runtime; torch's stubs leave it out of the overloads.
    model = model.to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]

    counts = effective_class_counts(train_records, cfg)
    weights = (counts.max() / np.maximum(counts, 1)) ** cfg.class_weight_power
    weights = weights / (weights * counts).sum() * counts.sum()  # mean weight per sample = 1
    loss_fn = nn.CrossEntropyLoss(
        weight=torch.tensor(weights, dtype=torch.float32, device=device),
        label_smoothing=cfg.label_smoothing,
    )
    mal_idx = [CLASSES.index(c) for c in MALIGNANT]
    cancer_share = float(counts[mal_idx].sum() / max(counts.sum(), 1))
    pos_weight = (1 - cancer_share) / max(cancer_share, 1e-6)  # cancer and rest weigh equal
    head = [p for p in model._fc.parameters() if p.requires_grad]
    backbone = [
        p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("_fc.")
    ]
    opt = torch.optim.AdamW(
        [
            {"params": backbone, "lr_scale": cfg.backbone_lr_scale},
            {"params": head, "lr_scale": 1.0},
        ],
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
    )

    sampler = domain_sampler(train_records, cfg)
    loader = DataLoader(
        CachedViews(list(train_sources.values()), cfg),
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
    step, best_score, first_epoch, train_s = 0, -1.0, 1, 0.0
    history: list[dict[str, Any]] = []
    if resume is not None:
        ckpt = torch.load(resume, map_location="cpu", weights_only=False)
        model.load_state_dict(ckpt["model"])
        if "optimizer" in ckpt:
            opt.load_state_dict(ckpt["optimizer"])
        first_epoch = ckpt["epoch"] + 1
        step = ckpt.get("step", ckpt["epoch"] * len(loader))
        train_s = ckpt.get("train_seconds", 0.0)
        history_file = out_dir / "history.json"
        history = (
            json.loads(history_file.read_text())[: ckpt["epoch"]] if history_file.exists() else []
        )
        best_score = max((h["selection_score"] for h in history), default=-1.0)
        log.info("resumed from %s at epoch %d", resume, first_epoch)
    for epoch in range(first_epoch, cfg.epochs + 1):
        set_train_mode(model, cfg)
        t0, seen, running = time.monotonic(), 0, 0.0
        for i, (x, y) in enumerate(loader):
            lr = lr_at(step, total_steps, cfg, train_s + time.monotonic() - t0)
            for group in opt.param_groups:
                group["lr"] = lr * group["lr_scale"]
            x, y = x.to(device), y.to(device)
            logits, _ = model(x.contiguous(memory_format=torch.channels_last))
            loss = loss_fn(logits, y)
            if cfg.cancer_loss_weight:
                loss = loss + cfg.cancer_loss_weight * cancer_loss(logits, y, pos_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            seen += len(y)
            running = 0.98 * running + 0.02 * loss.item() if i else loss.item()
            if i % 20 == 0:
                log.info(
                    "epoch %d step %d/%d loss %.3f %.1f img/s lr %.2e",
                    epoch,
                    i,
                    len(loader),
                    running,
                    seen / (time.monotonic() - t0),
                    lr,
                )
        metrics: dict[str, Any] = {"epoch": epoch, "train_loss": running}
        score, total_weight = 0.0, 0.0
        for domain, x_val in val_x.items():
            src = val_sources[domain]
            labels = np.array([r.label for r in src.records])
            summary = summarise(predict_logits(model, x_val, device=device), labels, src.cancer)
            for k, v in summary.items():
                metrics[f"val_{domain}_{k}"] = v
            parts = [summary["malignant_auc"], summary["specificity_at_95"]]
            if all(np.isfinite(parts)):  # undefined on a split with one class
                score += SELECTION_WEIGHTS[domain] * float(np.mean(parts))
                total_weight += SELECTION_WEIGHTS[domain]
            elif np.isfinite(summary["balanced_accuracy"]):
                score += SELECTION_WEIGHTS[domain] * summary["balanced_accuracy"]
                total_weight += SELECTION_WEIGHTS[domain]
        score = score / total_weight if total_weight else 0.0
        metrics["selection_score"] = score
        train_s += time.monotonic() - t0
        metrics["train_minutes"] = train_s / 60
        history.append(metrics)
        log.info("epoch %d done in %.0f s: %s", epoch, time.monotonic() - t0, json.dumps(metrics))
        ckpt = {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "config": cfg.to_dict(),
            "epoch": epoch,
            "step": step,
            "train_seconds": train_s,
            "metrics": metrics,
        }
        torch.save(ckpt, out_dir / f"epoch_{epoch:02d}.pt")
        if score > best_score:
            best_score = score
            torch.save(ckpt, out_dir / "best.pt")
        (out_dir / "history.json").write_text(json.dumps(history, indent=1))
        if cfg.max_minutes and train_s / 60 > cfg.max_minutes:
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

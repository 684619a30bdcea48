"""Motion blur on validation photos: what the blur rules refuse, and what the smear costs the model.

    python -m training.motion_blur_study --config training/configs/lite0_milk.json \
        --model inference/models/lesion_classifier.onnx --out docs/evaluation

Validation only (the gate's thresholds are chosen there; never a test split). The sets:
the clean photos calibration holds each rule to 1 % of (PAD-UFES-20 phone photos,
MILK10k close-ups, HAM10000 dermoscopy), PAD's photos smeared as ``training.gate_eval``
smears them (a straight line kernel of max(9, shorter side / 10) px at a random angle), the
same on clear synthetic phone photos of HAM10000 lesions (31 px on 1024x768), and PAD's
photos under a Gaussian blur. For each: the Gaussian sigma (``blur_px``) and the motion
smear (``motion_blur_px``, worst direction minus best) the pipeline measured, what the
``blurry`` and ``motion_blurred`` rules each refuse, and what the model's whole gate
refuses without the ``motion_blurred`` rule and with it. Then the model's own judgement of
the smeared copies (run on the crop whatever the gate says): cancer AUC and the change in
malignant probability against the clean photo. Writes ``motion_blur.md``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from inference.gate import RULES_BY_NAME, decide
from inference.metadata import GateThresholds
from inference.pipeline import Screener
from training.calibrate import malignant_index, malignant_probability
from training.config import TrainConfig
from training.data import default_box, load_split
from training.domains import milk_split
from training.evalsets import Photo, PipelineRun, real_photos, run_pipeline
from training.gate_eval import MILD, motion_blur
from training.metrics import roc_auc
from training.phone import compose_phone_photo, phone_camera

log = logging.getLogger(__name__)
SPLIT = "val"
SEED = 57  # the smears' own draws, apart from gate_eval's and calibration's guard set
ANGLE_BINS = ((0, 45), (45, 90), (90, 135), (135, 180))
# Smear lengths as shares of the shorter side, for the threshold's candidates: where does
# the classifier start to suffer, and what does the measure read there?
LENGTHS = (0.02, 0.03, 0.04, 0.06, 0.08, 0.10)
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Smeared:
    photos: list[Photo]
    clean: list[Photo]  # the same photos unsmeared
    angles: list[float]


def smear_pad(pad: Sequence[Photo], rng: np.random.Generator) -> Smeared:
    """gate_eval's REAL_DEFECTS["motion_blur"] recipe, with each angle kept."""
    angles, out = [], []
    for p in pad:
        length = max(9, min(p.rgb.shape[:2]) // 10) | 1
        angle = float(rng.uniform(0, 180))
        angles.append(angle)
        out.append(Photo(motion_blur(p.rgb, length, angle), p.label, p.box))
    return Smeared(out, list(pad), angles)


def synthetic_phone(cfg: TrainConfig, n: int, rng: np.random.Generator) -> Smeared:
    """gate_eval's synthetic phone photos (1024x768, a mild camera) smeared by its DEFECTS
    recipe: 31 px at a random angle."""
    images, records = load_split(cfg, (SPLIT,))[SPLIT]
    clean, out, angles = [], [], []
    for i in rng.permutation(len(records))[:n]:
        img, rec = images[i], records[i]
        photo, box = compose_phone_photo(
            img, rec.box or default_box(img.shape[1], img.shape[0]), rng
        )
        rgb = phone_camera(photo, rng, MILD, max(box.width, box.height))
        angle = float(rng.uniform(0, 180))
        clean.append(Photo(rgb, rec.label, box))
        out.append(Photo(motion_blur(rgb, 31, angle), rec.label, box))
        angles.append(angle)
    return Smeared(out, clean, angles)


def refused(run: PipelineRun, t: GateThresholds) -> Floats:
    return np.array([bool(decide(g, t)) for g in run.gate_inputs], np.float64)


def fired(run: PipelineRun, name: str, t: GateThresholds) -> Floats:
    rule = RULES_BY_NAME[name]
    return np.array([bool(rule.fires(g, t)) for g in run.gate_inputs], np.float64)


def malignant_p(run: PipelineRun, screener: Screener) -> Floats:
    # The run's log-probabilities are at the model's own temperature already.
    return malignant_probability(run, 1.0, malignant_index(screener.metadata))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--lesions", type=int, default=200, help="synthetic phone photos")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = TrainConfig.load(args.config)
    screener = Screener(args.model)
    gate = screener.metadata.gate
    without = replace(gate, max_motion_blur_px=float("inf"))
    rng = np.random.default_rng(cfg.seed + SEED)

    pad = real_photos(cfg, SPLIT)[0]
    pad_motion = smear_pad(pad, rng)
    phone = synthetic_phone(cfg, args.lesions, rng)
    sets: dict[str, list[Photo]] = {
        "clean: PAD-UFES-20 phone photos": pad,
        "clean: MILK10k close-ups": milk_split(cfg, SPLIT).photos if cfg.milk_dir else [],
        "clean: HAM10000 dermoscopy": [
            Photo(img, rec.label, rec.box or default_box(img.shape[1], img.shape[0]))
            for img, rec in zip(*load_split(cfg, (SPLIT,))[SPLIT], strict=True)
        ],
        "motion blur: PAD (gate_eval's real copies)": pad_motion.photos,
        "motion blur: synthetic phone (31 px)": phone.photos,
        "Gaussian blur: PAD (2 % of the side)": [
            Photo(
                np.asarray(
                    cv2.GaussianBlur(p.rgb, (0, 0), max(2.0, 0.02 * min(p.rgb.shape[:2]))),
                    np.uint8,
                ),
                p.label,
                p.box,
            )
            for p in pad
        ],
    }
    runs = {k: run_pipeline(screener, iter(v)) for k, v in sets.items() if v}
    phone_clean = run_pipeline(screener, iter(phone.clean))

    def pct(x: Floats) -> str:
        return f"{x.mean():.1%} ({int(x.sum())})"

    lines = [
        "# Motion blur on validation photos",
        "",
        "Generated by `python -m training.motion_blur_study` (validation split only); do not",
        f"edit by hand. Model `{screener.metadata.version}`: `max_blur_px` {gate.max_blur_px:g}, "
        f"`max_motion_blur_px` {gate.max_motion_blur_px:g}.",
        "`blur_px`: the Gaussian sigma of the lesion's crop in its worst direction;",
        "`motion_blur_px`: the worst direction's sigma minus the best's (a straight smear).",
        "'Gate' columns: every rule of the model's gate, without the `motion_blurred` rule and",
        "with it (refused for any reason; share and count).",
        "",
        "| set | photos | median blur_px | median motion_blur_px | 'blurry' fires | "
        "'motion_blurred' fires | gate without the rule | gate with it |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, run in runs.items():
        blur = np.array([g.evidence.blur_px for g in run.gate_inputs])
        motion = np.array([g.evidence.motion_blur_px for g in run.gate_inputs])
        lines.append(
            f"| {name} | {len(blur)} | {np.nanmedian(blur):.2f} | {np.nanmedian(motion):.2f} | "
            f"{pct(fired(run, 'blurry', gate))} | {pct(fired(run, 'motion_blurred', gate))} | "
            f"{pct(refused(run, without))} | {pct(refused(run, gate))} |"
        )

    pad_run = runs["motion blur: PAD (gate_eval's real copies)"]
    angles = np.array(pad_motion.angles)
    lines += [
        "",
        "PAD copies by the smear's angle (degrees from the x axis): refused by the gate.",
        "",
        "| angle | copies | without the rule | with it |",
        "|---|---|---|---|",
    ]
    for lo, hi in ANGLE_BINS:
        m = (angles >= lo) & (angles < hi)
        lines.append(
            f"| {lo}-{hi} | {int(m.sum())} | {pct(refused(pad_run, without)[m])} | "
            f"{pct(refused(pad_run, gate)[m])} |"
        )

    lines += [
        "",
        "What the smear costs the model (run on the crop whatever the gate says): cancer AUC",
        "clean and smeared, and |change| in malignant probability from the clean photo.",
        "",
        "| photos | n (cancer) | AUC clean | AUC smeared | median abs change | 90th pct |"
        " median abs change where the gate without the rule answers (n) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, clean_run, smeared_run in (
        ("PAD-UFES-20 phone photos", runs["clean: PAD-UFES-20 phone photos"], pad_run),
        ("synthetic phone photos", phone_clean, runs["motion blur: synthetic phone (31 px)"]),
    ):
        p0, p1 = malignant_p(clean_run, screener), malignant_p(smeared_run, screener)
        y = clean_run.malignant
        d = np.abs(p1 - p0)
        answered = refused(smeared_run, without) == 0
        lines.append(
            f"| {name} | {len(y)} ({int(y.sum())}) | {roc_auc(y, p0):.3f} | "
            f"{roc_auc(y, p1):.3f} | {np.median(d):.3f} | {np.quantile(d, 0.9):.3f} | "
            + (f"{np.median(d[answered]):.3f} ({int(answered.sum())})" if answered.any() else "-")
            + " |"
        )
    clean_pad = runs["clean: PAD-UFES-20 phone photos"]
    p0, y = malignant_p(clean_pad, screener), clean_pad.malignant
    lines += [
        "",
        "PAD-UFES-20 photos smeared by a share of the shorter side (odd px, at least 3; a",
        "random angle): what the classifier loses, what the measure reads, and the share above",
        "the candidate thresholds of the motion rule (training/gate_calibration.py).",
        "",
        "| smear | AUC | median abs change in p | median motion_blur_px | 10th pct | "
        "> 0.5 | > 0.85 | > 1.0 |",
        "|---|---|---|---|---|---|---|---|",
        f"| none | {roc_auc(y, p0):.3f} | 0 | "
        f"{np.nanmedian([g.evidence.motion_blur_px for g in clean_pad.gate_inputs]):.2f} | | | | |",
    ]
    for i, frac in enumerate(LENGTHS):
        r = np.random.default_rng(cfg.seed + SEED + 1 + i)
        photos = [
            Photo(
                motion_blur(
                    p.rgb, max(3, round(frac * min(p.rgb.shape[:2]))) | 1, float(r.uniform(0, 180))
                ),
                p.label,
                p.box,
            )
            for p in pad
        ]
        run = run_pipeline(screener, iter(photos))
        p1 = malignant_p(run, screener)
        m = np.array([g.evidence.motion_blur_px for g in run.gate_inputs])
        lines.append(
            f"| {frac:.0%} | {roc_auc(y, p1):.3f} | {np.median(np.abs(p1 - p0)):.3f} | "
            f"{np.nanmedian(m):.2f} | {np.nanquantile(m, 0.1):.2f} | "
            + " | ".join(f"{np.mean(m > t):.0%}" for t in (0.5, 0.85, 1.0))
            + " |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "motion_blur.md").write_text("\n".join(lines) + "\n")
    log.info("wrote %s", args.out / "motion_blur.md")


if __name__ == "__main__":
    main()

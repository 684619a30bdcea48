"""Render what the bot replies to one photo: the heatmap image and the message text.

    python scripts/example_reply.py tests/data/ISIC_0024313_mel.jpg docs/figures/example --phone

With ``--phone`` the dermoscopy sample is first set, small and off-centre, into a
synthetic phone photo (training/phone.py), as the README example shows. Writes
``<out>_photo.jpg`` (what was sent), ``<out>_heatmap.jpg`` (what the bot sends back) and
prints the message texts in English, Russian and Kazakh.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from bot.replies import for_language
from bot.screening import Assessed, Unassessable, encode_jpeg
from inference.pipeline import Screener
from inference.types import LesionBox, Risk
from training.evalsets import CLEAR_PHOTO
from training.phone import compose_phone_photo, phone_camera


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("photo", type=Path)
    parser.add_argument("out", type=Path, help="output prefix")
    parser.add_argument("--phone", action="store_true", help="render as a phone photo first")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    rgb = np.ascontiguousarray(cv2.imread(str(args.photo))[..., ::-1])
    if args.phone:
        rng = np.random.default_rng(args.seed)
        h, w = rgb.shape[:2]
        box = LesionBox(w // 5, h // 5, w - w // 5, h - h // 5)
        photo, pbox = compose_phone_photo(rgb, box, rng)
        rgb = phone_camera(photo, rng, CLEAR_PHOTO, max(pbox.width, pbox.height))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}_photo.jpg").write_bytes(encode_jpeg(rgb))
    screener = Screener()
    result = screener.screen(rgb)
    print(f"risk={result.risk} box={result.lesion_box} issues={result.quality.issues}")
    if result.risk is Risk.UNASSESSABLE or result.prediction is None:
        outcome: Assessed | Unassessable = Unassessable(result.quality.issues)
    else:
        top = result.prediction.top_class
        outcome = Assessed(result.risk, top, screener.metadata.class_names[top], None)
        if result.heatmap_overlay is not None:
            Path(f"{args.out}_heatmap.jpg").write_bytes(encode_jpeg(result.heatmap_overlay))
    for language in ("en", "ru", "kk"):
        print(f"--- {language}\n{for_language(language).outcome(outcome)}\n")


if __name__ == "__main__":
    main()

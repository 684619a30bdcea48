"""Draw every clean validation photo the shipped gate refuses, to see why it refuses it.

    PYTHONPATH=. python scripts/refused_sheet.py --config training/configs/lite0_milk.json \
        --out /tmp/refused

PAD-UFES-20's phone photos and MILK10k's close-ups (validation split only): each refused
photo with the localiser's box (green) and the classifier's crop (blue), its index and the
rules that refused it, 20 to a contact sheet (PNG). Prints one line per refused photo.
The sheets hold data-set images: look at them, do not commit them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from inference.gate import RULES
from inference.pipeline import Screener
from inference.types import LesionBox, RGBImage
from training.config import TrainConfig
from training.domains import milk_split
from training.evalsets import gate_input, real_photos

TILE = 300
PER_ROW, ROWS = 5, 4


def tile(rgb: RGBImage, box: LesionBox | None, crop: LesionBox | None, text: str) -> RGBImage:
    img = np.ascontiguousarray(rgb[..., ::-1])
    for b, colour in ((crop, (255, 0, 0)), (box, (0, 255, 0))):
        if b is not None:
            x0, y0, x1, y1 = b.as_tuple()
            cv2.rectangle(img, (x0, y0), (x1, y1), colour, max(2, min(img.shape[:2]) // 150))
    out = np.asarray(cv2.resize(img, (TILE, TILE)), np.uint8)
    cv2.putText(out, text[:48], (3, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 255, 255), 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    cfg = TrainConfig.load(args.config)
    screener = Screener()
    gate = screener.metadata.gate
    sets = {"pad": real_photos(cfg, "val")[0], "milk": milk_split(cfg, "val").photos}
    args.out.mkdir(parents=True, exist_ok=True)
    for name, photos in sets.items():
        tiles = []
        for i, photo in enumerate(photos):
            r = screener.screen(photo.rgb, with_overlay=False)
            if not r.quality.issues:
                continue
            g = gate_input(r)
            rules = [
                rule.name
                for rule in RULES
                if rule.name not in gate.advisory_rules and rule.fires(g, gate)
            ]
            print(name, i, photo.label, " ".join(rules))
            tiles.append(tile(photo.rgb, r.lesion_box, r.crop_box, f"{i} {' '.join(rules)}"))
        while len(tiles) % PER_ROW:
            tiles.append(np.zeros((TILE, TILE, 3), np.uint8))
        rows = [np.hstack(tiles[j : j + PER_ROW]) for j in range(0, len(tiles), PER_ROW)]
        for k in range(0, len(rows), ROWS):
            sheet = np.vstack(rows[k : k + ROWS])
            cv2.imwrite(str(args.out / f"{name}_{k // ROWS}.png"), sheet)


if __name__ == "__main__":
    main()

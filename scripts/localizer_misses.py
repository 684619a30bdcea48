"""Sort the localiser's misses on the synthetic phone photos by kind, and draw some.

    python scripts/localizer_misses.py --config training/configs/lite0.json --n 400 \
        [--save-dir /tmp/misses]

On the first N validation lesions as clear synthetic phone photos (the evaluation split's
construction), a miss is IoU < 0.5 against the true box. Kinds: ``none`` (no box),
``too_big`` (the found box holds the true one, mostly), ``too_small`` (the true box holds
the found one, mostly), ``elsewhere``. With ``--save-dir``, the first 12 are drawn around
the lesion: true box blue, found box green.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import cv2
import numpy as np

from inference.localize import find_lesion
from inference.types import LesionBox
from training.config import TrainConfig
from training.data import load_split
from training.evalsets import domain_photos


def overlap(a: LesionBox, b: LesionBox) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return float(max(0, w) * max(0, h))


def kind_of(truth: LesionBox, found: LesionBox | None) -> str:
    if found is None:
        return "none"
    inter = overlap(truth, found)
    if inter >= 0.7 * truth.width * truth.height:
        return "too_big"
    if inter >= 0.7 * found.width * found.height:
        return "too_small"
    return "elsewhere"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--save-dir", type=Path, default=None)
    args = parser.parse_args()
    cfg = TrainConfig.load(args.config, limit_images=args.n)
    images, records = load_split(cfg, ("val",))["val"]
    kinds: collections.Counter[str] = collections.Counter()
    drawn = 0
    for photo in domain_photos(images, records, "phone", cfg.seed + 11):
        found = find_lesion(photo.rgb).box
        if found is not None and photo.box.iou(found) >= 0.5:
            continue
        kind = kind_of(photo.box, found)
        kinds[kind] += 1
        if args.save_dir is not None and drawn < 12:
            args.save_dir.mkdir(parents=True, exist_ok=True)
            im = np.ascontiguousarray(photo.rgb[..., ::-1])
            for box, colour in ((photo.box, (255, 0, 0)), (found, (0, 255, 0))):
                if box is not None:
                    cv2.rectangle(im, (box.x0, box.y0), (box.x1, box.y1), colour, 2)
            cv2.imwrite(str(args.save_dir / f"{drawn:02d}_{kind}.png"), im)
            drawn += 1
    total = sum(kinds.values())
    print(
        f"misses (IoU < 0.5): {total} of {len(records)}; "
        + ", ".join(f"{k} {v}" for k, v in kinds.most_common())
    )


if __name__ == "__main__":
    main()

"""Render the example sheet of the phone-photo synthesis for docs/phone_synthesis.md.

    python scripts/phone_examples.py ../shared/data/ham10000 \
        docs/figures/phone_synthesis_examples.jpg

Each row is one training-split lesion: the dermoscopy image, four training views (crops
as the localiser would hand them over, through the simulated camera), and one full
clear synthetic phone photo as in the evaluation split with the lesion's true box in green.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from training.data import CLASSES, load_image, read_records, split_by_lesion
from training.evalsets import CLEAR_PHOTO
from training.phone import compose_phone_photo, phone_camera, training_view

TILE = 150


def tile(img: np.ndarray, width: int = TILE) -> np.ndarray:
    h, w = img.shape[:2]
    out = cv2.resize(img, (width, round(h * width / w)), interpolation=cv2.INTER_AREA)
    return np.pad(out, ((0, TILE - out.shape[0]), (0, 0), (0, 0)), constant_values=255)


def main() -> None:
    data_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
    train = split_by_lesion(read_records(data_dir), (0.7, 0.15, 0.15), 42)["train"]
    rng = np.random.default_rng(5)
    rows = []
    for label in range(len(CLASSES)):
        rec = next(r for r in train[::7] if r.label == label and r.box)
        img = load_image(data_dir, rec.image_id)
        assert rec.box is not None
        views = [tile(img)]
        views += [tile(training_view(img, rec.box, rng, 160, 1.0, (0.15, 0.7))) for _ in range(4)]
        photo, box = compose_phone_photo(img, rec.box, rng)
        photo = phone_camera(photo, rng, CLEAR_PHOTO, max(box.width, box.height))
        cv2.rectangle(photo, (box.x0, box.y0), (box.x1, box.y1), (0, 255, 0), 4)
        views.append(tile(photo, 200))
        row = np.concatenate(
            [np.pad(v, ((2, 2), (2, 2), (0, 0)), constant_values=255) for v in views], 1
        )
        cv2.putText(row, CLASSES[label], (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 2)
        rows.append(row)
    sheet = np.concatenate(rows, 0)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))


if __name__ == "__main__":
    main()

"""Screen images offline: ``python -m inference [--json] PATH...`` (files or folders).

For health workers without connectivity and for evaluation. With ``--json`` it prints
one JSON object per image, one per line. Every image that decodes gets ``probabilities``
and ``malignant_probability``, even when the gate refuses it and even when no lesion was
found (then the photo's centre square is classified and ``lesion_box`` is null), so the
gate and the classifier can be judged apart; ``risk`` stays ``unassessable`` when refused.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from inference.classifier import ModelLoadError
from inference.decode import ACCEPTED_SUFFIXES
from inference.pipeline import Screener
from inference.types import DecodeRejected, ScreeningResult

IMAGE_SUFFIXES = ACCEPTED_SUFFIXES  # only formats that decode (no HEIC, no TIFF)
MAX_BYTES = 40 * 1024 * 1024
MAX_PIXELS = 50_000_000


def iter_images(paths: Iterable[Path]) -> Iterator[Path]:
    """Files as given, and image files found below folders, in a stable order."""
    for path in paths:
        if path.is_dir():
            yield from sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
        else:
            yield path


def to_record(
    path: Path, outcome: ScreeningResult | DecodeRejected | OSError, model: str
) -> dict[str, Any]:
    record: dict[str, Any] = {"image": str(path), "model": model}
    if isinstance(outcome, OSError):
        record.update(
            quality={"ok": False, "issues": ["unreadable"]},
            probabilities=None,
            malignant_probability=None,
            risk="unassessable",
            lesion_box=None,
        )
    elif isinstance(outcome, DecodeRejected):
        record.update(
            quality={"ok": False, "issues": [outcome.reason.value]},
            probabilities=None,
            malignant_probability=None,
            risk="unassessable",
            lesion_box=None,
        )
    else:
        pred = outcome.prediction
        record.update(
            quality={"ok": outcome.quality.ok, "issues": [i.value for i in outcome.quality.issues]},
            probabilities={k: round(v, 5) for k, v in pred.probabilities.items()} if pred else None,
            malignant_probability=round(pred.malignant_probability, 5) if pred else None,
            top_class=pred.top_class if pred else None,
            risk=outcome.risk.value,
            lesion_box=outcome.lesion_box.as_list() if outcome.lesion_box else None,
            ood_score=round(pred.ood_score, 2) if pred else None,
            width=outcome.width,
            height=outcome.height,
            elapsed_ms=round(outcome.elapsed_ms, 1),
        )
    return record


def describe(record: dict[str, Any], class_names: dict[str, str]) -> str:
    """One human-readable line per image for the plain (non-JSON) output."""
    risk = record["risk"]
    if risk == "unassessable":
        return f"{record['image']}: cannot assess ({', '.join(record['quality']['issues'])})"
    top = record["top_class"]
    return (
        f"{record['image']}: {risk} risk, most like {class_names.get(top, top)}; "
        f"p(malignant)={record['malignant_probability']:.2f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference", description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, help="image files or folders")
    parser.add_argument("--json", action="store_true", help="one JSON object per image per line")
    parser.add_argument(
        "--model", type=Path, default=None, help="ONNX model (default: the shipped one)"
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    try:
        screener = Screener(args.model, threads=1)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    meta = screener.metadata
    missing = [p for p in args.paths if not p.exists()]
    if missing:
        print(f"error: no such file or folder: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2

    def screen(path: Path) -> tuple[Path, ScreeningResult | DecodeRejected | OSError]:
        try:
            data = path.read_bytes()
        except OSError as exc:
            return path, exc
        return path, screener.screen_bytes(data, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS)

    # Threads, not processes: onnxruntime, OpenCV and numpy release the GIL for the heavy work.
    with ThreadPoolExecutor(max(1, args.workers)) as pool:
        for path, outcome in pool.map(screen, iter_images(args.paths)):
            record = to_record(path, outcome, meta.version)
            line = (
                json.dumps(record, ensure_ascii=False)
                if args.json
                else describe(record, meta.class_names)
            )
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

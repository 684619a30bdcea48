"""Where a photo's CPU time goes inside ``Screener.screen()``: each stage timed in place.

    PYTHONPATH=. python scripts/stage_costs.py [--photos 80]

``scripts/benchmark.py`` times each stage on its own, again and again on the same input, so
its caches stay warm; this script times the stages inside whole ``screen()`` calls on the
benchmark's 1280x960 photo, one photo after another as the bot runs them, and a raw model
pass after each photo, so both see the same load. Each stage's function is wrapped in a
CPU-time stopwatch (this process, one thread). Rows starting "- " are parts of the next
row without one.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import cv2
import onnxruntime as ort

import inference.classifier as classifier
import inference.localize as localize
import inference.pipeline as pipeline
import inference.quality as quality
from inference.decode import decode_image
from inference.types import DecodeRejected
from scripts.benchmark import phone_photo, raw_model_run

SPENT: dict[str, list[float]] = defaultdict(list)

# (module, function, row label), in the order the table lists them.
STAGES: tuple[tuple[Any, str, str], ...] = (
    (pipeline, "working_copy", "working copy (1280x960 to 384x288)"),
    (pipeline, "blockiness", "JPEG blocking (full photo)"),
    (localize, "_to_lab", "- CIELAB of the cleaned copy"),
    (localize, "closing_residual", "- dark details (a second CIELAB)"),
    (localize, "skin_mask", "- skin mask"),
    (localize, "_border_surface", "- border surface fit"),
    (localize, "_evidence", "- lesion evidence (twice)"),
    (localize, "_otsu", "- Otsu thresholds (twice)"),
    (localize, "_smooth_background", "- local skin colour"),
    (localize, "_clean_mask", "- mask cleaning (twice)"),
    (localize, "_candidates", "- candidates"),
    (localize, "_grow", "- growth"),
    (pipeline, "find_lesion", "localiser"),
    (pipeline, "scene_of", "scene (skin share, specks)"),
    (quality, "glare_mask", "- glare"),
    (quality, "directional_blur", "- blur (Gaussian sigma and motion smear)"),
    (quality, "luma_percentiles", "- exposure percentiles"),
    (quality, "clipped_fraction", "- clipped share"),
    (pipeline, "measure_quality", "photo quality"),
    (pipeline, "decide", "gate"),
    (pipeline, "overlay_heatmap", "heatmap overlay"),
)
MODEL_INPUT = "- model input (resize, colour balance, normalise)"
MODEL_PASSES = "- model passes (session.run, batch of two)"
CLASSIFY = "classify"


def stopwatch(fn: Callable[..., Any], label: str) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            SPENT[label].append(time.process_time() - started)

    return timed


class TimedSession:
    """An onnxruntime session whose ``run`` is timed; everything else passes through."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self._session = session
        self.run = stopwatch(session.run, MODEL_PASSES)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=80)
    args = parser.parse_args()
    cv2.setNumThreads(1)

    for module, name, label in STAGES:
        setattr(module, name, stopwatch(getattr(module, name), label))
    classifier.to_model_input = stopwatch(classifier.to_model_input, MODEL_INPUT)
    screener = pipeline.Screener(threads=1)
    screener.classifier.session = TimedSession(screener.classifier.session)
    screener.classifier.predict = stopwatch(screener.classifier.predict, CLASSIFY)

    raw = raw_model_run()

    decoded = decode_image(phone_photo(1280, 960), max_bytes=40 * 2**20, max_pixels=50_000_000)
    if isinstance(decoded, DecodeRejected):
        raise SystemExit(f"sample photo rejected: {decoded.reason}")
    rgb = decoded.rgb
    for _ in range(5):  # warm-up
        screener.screen(rgb)
        raw()
    SPENT.clear()
    whole, raw_ms = [], []
    for _ in range(args.photos):
        started = time.process_time()
        screener.screen(rgb)
        whole.append((time.process_time() - started) * 1000)
        started = time.process_time()
        raw()
        raw_ms.append((time.process_time() - started) * 1000)

    total = statistics.mean(whole)
    order = [label for _, _, label in STAGES]
    order.insert(order.index("gate"), MODEL_INPUT)
    order.insert(order.index("gate"), MODEL_PASSES)
    order.insert(order.index("gate"), CLASSIFY)
    print(f"Clock: cpu time. Mean of {args.photos} photos, each stage timed inside screen().\n")
    print("| stage | ms per photo | share of screen() |")
    print("|---|---|---|")
    for label in order:
        ms = sum(SPENT[label]) / args.photos * 1000
        print(f"| {label} | {ms:.2f} | {ms / total:.0%} |")
    print(f"| **whole screen()** | **{total:.2f}** | 100% |")
    print(f"| raw model, one pass (after each photo) | {statistics.mean(raw_ms):.2f} | |")
    print(
        f"\nWhole pipeline / raw model (means): {total / statistics.mean(raw_ms):.2f}x; "
        f"medians {statistics.median(whole):.2f} / {statistics.median(raw_ms):.2f} ms = "
        f"{statistics.median(whole) / statistics.median(raw_ms):.2f}x (budget: at most 3x)."
    )


if __name__ == "__main__":
    main()

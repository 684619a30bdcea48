"""Print a table of inference speed on one core: model variants and each pipeline stage.

    python scripts/benchmark.py [--model-dir runs/lite0/export]

Speed lives here, not in timed tests. Numbers depend on the machine; by default they are
CPU time of this process (everything runs on one thread), which is what a photo costs and
does not grow when other work shares the cores; ``--clock wall`` times by the wall clock.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
from PIL import Image

from inference.classifier import SHIPPED_MODEL, OnnxClassifier, overlay_heatmap
from inference.decode import decode_image
from inference.localize import LocaliserParams, find_lesion
from inference.pipeline import WORK_MAX_SIDE, Screener
from inference.preprocess import crop_square, square_crop_box
from inference.quality import measure_quality, working_copy
from inference.types import DecodeRejected, LesionBox

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "ISIC_0024313_mel.jpg"


CLOCK: Callable[[], float] = time.process_time


def timeit(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median and 90th-percentile milliseconds over ``repeat`` runs after a warm-up."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeat):
        t = CLOCK()
        fn()
        times.append((CLOCK() - t) * 1000)
    return statistics.median(times), float(np.percentile(times, 90))


def interleaved_ratio(
    whole: Callable[[], object], raw: Callable[[], object], repeat: int
) -> tuple[float, float, float]:
    """Median ms of ``whole`` and ``raw`` timed in alternation, and the median of their
    per-round ratio: load that comes and goes on a shared machine then moves both sides of
    each round alike, where two separate timing runs minutes apart moved the ratio by
    +-0.5x."""
    for _ in range(3):
        whole()
        raw()
    w_ms, r_ms = [], []
    for _ in range(repeat):
        t = CLOCK()
        whole()
        w_ms.append((CLOCK() - t) * 1000)
        t = CLOCK()
        raw()
        r_ms.append((CLOCK() - t) * 1000)
    ratio = statistics.median(a / b for a, b in zip(w_ms, r_ms, strict=True))
    return statistics.median(w_ms), statistics.median(r_ms), ratio


def raw_model_run(path: Path = SHIPPED_MODEL) -> Callable[[], object]:
    """One pass of the network alone (session.run on a prepared input), one thread."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    size = session.get_inputs()[0].shape[2]
    x = np.random.default_rng(0).normal(0, 1, (1, 3, size, size)).astype(np.float32)
    return partial(session.run, None, {"input": x})


def phone_photo(width: int, height: int) -> bytes:
    """A sample lesion pasted small and off-centre into a skin-coloured photo, as JPEG."""
    lesion = cv2.cvtColor(cv2.imread(str(SAMPLE)), cv2.COLOR_BGR2RGB)
    canvas = np.full((height, width, 3), (205, 160, 140), np.uint8)
    side = width // 6
    small = cv2.resize(lesion, (side, side * 3 // 4))
    y, x = height // 3, width // 2
    canvas[y : y + small.shape[0], x : x + small.shape[1]] = small
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def model_rows(model_dir: Path | None, repeat: int) -> list[tuple[str, float, float, float]]:
    paths = [SHIPPED_MODEL]
    if model_dir:
        paths += sorted(model_dir.glob("*.onnx"))
    rows = []
    for path in paths:
        med, p90 = timeit(raw_model_run(path), repeat)
        rows.append(
            (
                f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}",
                path.stat().st_size / 2**20,
                med,
                p90,
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, default=None, help="also time every .onnx here")
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    cv2.setNumThreads(1)
    print(f"Clock: {args.clock} time.\n")

    print("## Classifier, one image, one thread\n")
    print("| model | size MB | median ms | p90 ms |")
    print("|---|---|---|---|")
    rows = model_rows(args.model_dir, args.repeat)
    for name, mb, med, p90 in rows:
        print(f"| {name} | {mb:.1f} | {med:.2f} | {p90:.2f} |")
    raw_model_ms = rows[0][2]  # the shipped model's session.run alone

    classifier = OnnxClassifier(threads=1)
    screener = Screener(threads=1)
    margin = classifier.metadata.crop_margin
    work_side = LocaliserParams().work_side
    print("\n## Pipeline stages on phone photos, one thread\n")
    print(
        "| photo | decode | downscale | localise | quality | classify | heatmap overlay "
        "| whole screen() | screen() / classify | screen() / raw model |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    # Decoded as the bot decodes an upload (Screener.screen_bytes): a JPEG larger than the
    # working size comes out of libjpeg already reduced (draft mode), and every stage after
    # works on that.
    decode = partial(
        decode_image, max_bytes=40 * 2**20, max_pixels=50_000_000, max_side=WORK_MAX_SIDE
    )
    for sent_w, sent_h in ((1280, 960), (4000, 3000)):
        data = phone_photo(sent_w, sent_h)
        decoded = decode(data)
        if isinstance(decoded, DecodeRejected):
            raise SystemExit(f"sample photo rejected: {decoded.reason}")
        rgb = decoded.rgb
        h, w = rgb.shape[:2]
        label = f"{sent_w}x{sent_h}" + ("" if (w, h) == (sent_w, sent_h) else f" (at {w}x{h})")
        small = working_copy(rgb, work_side)
        found = find_lesion(rgb, small=small)
        # Time the classifier even if the localiser misses the synthetic spot.
        box = found.box or LesionBox(w // 2, h // 3, w // 2 + w // 6, h // 3 + w // 8)
        crop_box = square_crop_box(box, w, h, margin)
        crop = crop_square(rgb, crop_box)
        pred = classifier.predict(crop)
        decode_ms = timeit(partial(decode, data), 10)[0]
        classify_ms = timeit(partial(classifier.predict, crop), args.repeat)[0]
        stages = [
            timeit(partial(working_copy, rgb, work_side), 10)[0],
            timeit(partial(find_lesion, rgb, small=small), 10)[0],
            timeit(partial(measure_quality, rgb, small, crop_box, box), 10)[0],
            classify_ms,
            timeit(partial(overlay_heatmap, rgb, pred.heatmap, crop_box.as_tuple()), 10)[0],
        ]
        # The ratio that matters: the whole pipeline on a decoded photo (everything but
        # decoding, which is the same for any pipeline) against the raw model alone.
        whole_ms = timeit(partial(screener.screen, rgb), args.repeat)[0]
        print(
            f"| {label} | {decode_ms:.1f} ms | "
            + " | ".join(f"{s:.1f} ms" for s in stages)
            + f" | {whole_ms:.1f} ms | {whole_ms / classify_ms:.1f}x "
            + f"| {whole_ms / raw_model_ms:.1f}x |"
        )
    rgb = decode_image(phone_photo(1280, 960), max_bytes=40 * 2**20, max_pixels=50_000_000)
    assert not isinstance(rgb, DecodeRejected)
    print(budget_line(rgb.rgb, args.repeat))


def budget_line(rgb: np.ndarray, repeat: int) -> str:
    """The whole pipeline against the raw model, each timed in alternation with it, with one
    look and with two (the mirror too), and what a photo costs on average where the shipped
    model takes the second look only near a cut-off (the share measured on validation)."""
    ratios = {}
    for looks, margin in ((1, 0.0), (2, None)):
        screener = Screener(threads=1)
        if screener.metadata.flip_average:
            # Margin 0: the mirror never runs; None: it always does.
            screener.classifier.second_look_margin = margin
        elif looks == 2:
            break
        ratios[looks] = interleaved_ratio(partial(screener.screen, rgb), raw_model_run(), repeat)
    text = "\nWhole pipeline / raw model on a 1280x960 photo, timed in alternation: " + ", ".join(
        f"{'one look' if k == 1 else 'two looks (with the mirror)'} {r:.1f}x "
        f"({w:.1f} ms / {m:.2f} ms)"
        for k, (w, m, r) in ratios.items()
    )
    shipped = Screener(threads=1)
    margin = shipped.metadata.second_look_margin
    if 2 in ratios and margin is not None:
        share = second_look_share(margin)
        mean = (1 - share) * ratios[1][2] + share * ratios[2][2]
        looks = shipped.screen(rgb).prediction
        text += (
            f". The shipped model takes the second look only within {margin:.2f} log-odds of a "
            f"cut-off: for {share:.1%} of validation photos in the domain that needs it most "
            f"(second_look.md), so a photo costs on average **{mean:.1f}x** the raw model "
            f"(budget: at most 3x); this sample photo took {looks.looks if looks else 0}."
        )
    elif 2 in ratios:
        text += ". The shipped model takes both looks for every photo (budget: at most 3x)."
    return text + " The table's ratios come from separate timing runs and move with the load."


def second_look_share(margin: float) -> float:
    """The largest share of photos given a second look in any validation domain, at the
    shipped margin (written by training.second_look)."""
    report = json.loads((ROOT / "docs" / "evaluation" / "second_look.json").read_text())
    rows = [r for rows in report["domains"].values() for r in rows if r["margin"] == margin]
    if not rows:
        raise SystemExit("second_look.json does not hold the shipped margin: rerun it")
    return max(r["second_look_share"] for r in rows)


if __name__ == "__main__":
    main()

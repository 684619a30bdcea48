"""Print a table: decoding large phone JPEGs as screening does (reduced to the working size,
JPEG draft scaling first) against decoding them whole, CPU milliseconds on one thread.

    python scripts/bench_decode.py

Speed lives here, not in timed tests. The photos are made here: skin tones with sensor-like
noise, JPEG quality 90 (about the size a phone camera writes).
"""

from __future__ import annotations

import io
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.decode import decode_image  # the repo root is on the path now
from inference.pipeline import WORK_MAX_SIDE
from inference.types import DecodedImage

SIZES = ((3000, 2250), (4000, 3000), (6000, 4500), (8000, 6000))
LIMITS = {"max_bytes": 40 * 2**20, "max_pixels": 50_000_000}


def phone_jpeg(width: int, height: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(120, 200, (height // 16, width // 16, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC))
    noisy = np.clip(base.astype(np.int16) + rng.integers(-6, 7, base.shape), 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(noisy.astype(np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def cpu_ms(fn: Callable[[], object], repeat: int = 7) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        started = time.process_time()
        fn()
        times.append((time.process_time() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    print(f"| photo | MB | as screened (max side {WORK_MAX_SIDE}) | size | whole | size |")
    print("|---|---|---|---|---|---|")
    for width, height in SIZES:
        data = phone_jpeg(width, height)
        screened = partial(decode_image, data, **LIMITS, max_side=WORK_MAX_SIDE)
        whole = partial(decode_image, data, **LIMITS)
        small, full = screened(), whole()
        assert isinstance(small, DecodedImage) and isinstance(full, DecodedImage)
        print(
            f"| {width}x{height} | {len(data) / 1e6:.1f} | {cpu_ms(screened):.0f} ms "
            f"| {small.rgb.shape[1]}x{small.rgb.shape[0]} | {cpu_ms(whole):.0f} ms "
            f"| {full.rgb.shape[1]}x{full.rgb.shape[0]} |"
        )


if __name__ == "__main__":
    main()

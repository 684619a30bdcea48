"""Child process for test_decode_memory: screen two 50 MP PNGs at once, print peak growth.

Run as ``python -m tests.unit.decode_memory_probe``; a process of its own, so the peak
resident memory it reports is this screening's alone (the kernel's high-water mark,
reset just before, via /proc/self/clear_refs).
"""

from __future__ import annotations

import gc
import json
import struct
import sys
import threading
import zlib
from pathlib import Path

import numpy as np

from inference.pipeline import Screener
from inference.types import DecodeRejected

WIDTH, HEIGHT = 8165, 6124  # 50.0 MP


def _chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def skin_spot_png(bit_depth: int, colour_type: int, skin: bytes, spot: bytes) -> bytes:
    """A PNG of skin with a dark oval spot, written row by row (never a full-size array)."""
    yy = np.arange(HEIGHT)[:, None]
    xx = np.arange(WIDTH)[None, :]
    compressor = zlib.compressobj(1)
    parts = []
    pixel = len(skin)
    for top in range(0, HEIGHT, 256):
        rows = yy[top : top + 256]
        inside = ((xx - WIDTH / 2) / (0.06 * WIDTH)) ** 2 + (
            (rows - HEIGHT / 2) / (0.08 * HEIGHT)
        ) ** 2 < 1
        block = np.where(
            inside[..., None],
            np.frombuffer(spot, np.uint8),
            np.frombuffer(skin, np.uint8),
        ).astype(np.uint8)
        raw = np.zeros((block.shape[0], 1 + WIDTH * pixel), np.uint8)  # filter byte 0
        raw[:, 1:] = block.reshape(block.shape[0], -1)
        parts.append(compressor.compress(raw.tobytes()))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", WIDTH, HEIGHT, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", b"".join(parts))
        + _chunk(b"IEND", b"")
    )


def _kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def main() -> None:
    max_decode_bytes = int(sys.argv[1])
    photos = [
        # 16-bit grey (big-endian samples) and 8-bit RGBA.
        skin_spot_png(16, 0, struct.pack(">H", 48000), struct.pack(">H", 12000)),
        skin_spot_png(8, 6, bytes((224, 172, 150, 255)), bytes((90, 60, 50, 255))),
    ]
    screener = Screener(max_decode_bytes=max_decode_bytes)
    limits = {"max_bytes": 20 * 2**20, "max_pixels": 60_000_000}
    screener.screen(np.full((600, 800, 3), 200, np.uint8))  # first inference allocates
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak to what is resident now
    before = _kib("VmRSS:")
    results: list[object] = [None, None]

    def screen(i: int) -> None:
        results[i] = screener.screen_bytes(photos[i], **limits)

    threads = [threading.Thread(target=screen, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    growth = _kib("VmHWM:") - before
    outcomes = [r.reason.value if isinstance(r, DecodeRejected) else "screened" for r in results]
    print(json.dumps({"growth_bytes": growth, "outcomes": outcomes}))


if __name__ == "__main__":
    main()

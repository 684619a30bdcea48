"""Hostile images for the decoding limits (tests and benchmarks/hostile_decode.py).

Each is small on the wire and expensive to decode without limits (measured on main,
issue 20): a progressive JPEG whose last scan is repeated (time linear in the repeats),
a large WebP (libwebp's working canvases), and a large progressive 4:4:4 JPEG (libjpeg
keeps every DCT coefficient of a progressive image until the last scan).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def smooth(width: int, height: int) -> Image.Image:
    """A gradient built band by band from a small one (no full-size float arrays)."""
    small = np.zeros((64, 64, 3), np.uint8)
    small[..., 0] = np.linspace(60, 220, 64, dtype=np.uint8)[None, :]
    small[..., 1] = np.linspace(40, 180, 64, dtype=np.uint8)[:, None]
    small[..., 2] = 120
    return Image.fromarray(small).resize((width, height), Image.Resampling.BILINEAR)


def scan_repeat_jpeg(repeats: int = 200, width: int = 6000, height: int = 4500) -> bytes:
    """A progressive JPEG whose last scan follows ``repeats`` more times before EOI: 180 KB
    that took 11 s to decode on main (each repeat is another pass over every block)."""
    buffer = io.BytesIO()
    smooth(width, height).save(buffer, "JPEG", quality=30, progressive=True)
    data = buffer.getvalue()
    # An unstuffed FF DA never occurs inside entropy-coded data: the last one is the last
    # scan's start marker, and the file ends with EOI (FF D9).
    last_scan = data.rindex(b"\xff\xda")
    assert data.endswith(b"\xff\xd9")
    scan = data[last_scan:-2]
    return data[:-2] + scan * repeats + b"\xff\xd9"


def large_webp(width: int = 8000, height: int = 6200) -> bytes:
    """A flat 8000x6200 WebP: about a hundred KB that libwebp decodes into canvases."""
    buffer = io.BytesIO()
    smooth(width, height).save(buffer, "WEBP", quality=10, method=0)
    return buffer.getvalue()


def progressive_444_jpeg(width: int = 8000, height: int = 6200) -> bytes:
    """A progressive JPEG without chroma subsampling: three full-size coefficient planes."""
    buffer = io.BytesIO()
    smooth(width, height).save(buffer, "JPEG", quality=75, progressive=True, subsampling=0)
    return buffer.getvalue()


def all_hostile() -> dict[str, bytes]:
    return {
        "scan_repeat.jpg": scan_repeat_jpeg(),
        "large.webp": large_webp(),
        "progressive_444.jpg": progressive_444_jpeg(),
    }


# ``python -m inference`` with its arguments, then its own peak resident memory (VmHWM)
# on stderr. Read in the process itself: a forked child's rusage would also count the
# pages it shared with this test process before exec.
CLI_WITH_PEAK = """
import runpy, sys
sys.argv[0] = "inference"
code = 0
try:
    runpy.run_module("inference", run_name="__main__", alter_sys=True)
except SystemExit as stop:
    code = stop.code
status = open("/proc/self/status").read().splitlines()
print([line for line in status if line.startswith("VmHWM:")][0], file=sys.stderr)
sys.exit(code)
"""

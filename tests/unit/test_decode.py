"""Decoding untrusted uploads: every bad input is a rejection value, good ones come out RGB."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from inference.decode import decode_image
from inference.pipeline import WORKING_MEMORY_BYTES
from inference.types import DecodedImage, DecodeFailure, DecodeRejected
from tests.conftest import REPO_ROOT

MAX_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 40_000_000


def _decode(data: bytes, **kwargs: int) -> DecodedImage | DecodeRejected:
    limits = {"max_bytes": MAX_BYTES, "max_pixels": MAX_PIXELS} | kwargs
    return decode_image(data, **limits)


def _reason(result: DecodedImage | DecodeRejected) -> DecodeFailure | None:
    return result.reason if isinstance(result, DecodeRejected) else None


def _encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def _photo(width: int = 160, height: int = 120) -> Image.Image:
    """A smooth colour gradient, so JPEG round trips keep recognisable colours."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, axis=0)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None].repeat(width, axis=1)
    rgb = np.stack([x, y, np.full_like(x, 128)], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny, valid-looking PNG whose header claims ``width`` x ``height`` pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def test_a_plain_jpeg_decodes_to_rgb_uint8() -> None:
    """The happy path: a JPEG becomes an H x W x 3 uint8 array with its format recorded."""
    result = _decode(_encode(_photo(), "JPEG", quality=95))
    assert isinstance(result, DecodedImage)
    assert result.rgb.shape == (120, 160, 3)
    assert result.rgb.dtype == np.uint8
    assert result.source_format == "JPEG"
    assert (result.original_width, result.original_height) == (160, 120)


def test_empty_bytes_are_rejected_as_empty() -> None:
    """An empty upload gets its own reason (a client bug, not a bad photo)."""
    assert _reason(_decode(b"")) is DecodeFailure.EMPTY


def test_byte_limit_is_checked_before_decoding() -> None:
    """Oversized uploads are refused by length alone: garbage over the limit is not parsed."""
    assert _reason(_decode(b"\x00" * 2048, max_bytes=1024)) is DecodeFailure.TOO_MANY_BYTES


def test_random_bytes_are_not_an_image() -> None:
    """Bytes no decoder recognises (a PDF, a zip, noise) are NOT_AN_IMAGE."""
    noise = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    assert _reason(_decode(noise)) is DecodeFailure.NOT_AN_IMAGE


def test_formats_outside_the_allow_list_are_not_an_image() -> None:
    """A TIFF is a real image, but its decoder is not exposed to untrusted uploads."""
    assert _reason(_decode(_encode(_photo(), "TIFF"))) is DecodeFailure.NOT_AN_IMAGE


def test_truncated_jpeg_is_corrupt() -> None:
    """A cut-off upload must fail loudly, not decode into a half-grey photo."""
    data = _encode(_photo(400, 300), "JPEG", quality=90)
    assert _reason(_decode(data[: len(data) // 2])) is DecodeFailure.CORRUPT
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # the decoder did not flip the global


def test_truncated_png_is_corrupt() -> None:
    """Same for PNG, whose decoder fails differently from JPEG's."""
    data = _encode(_photo(400, 300), "PNG")
    assert _reason(_decode(data[: len(data) - 200])) is DecodeFailure.CORRUPT


def test_header_claiming_100k_by_100k_is_refused_before_decoding() -> None:
    """A decompression bomb is refused from its header, without Pillow's global limit."""
    before = Image.MAX_IMAGE_PIXELS
    result = _decode(_png_claiming(100_000, 100_000))
    assert _reason(result) is DecodeFailure.TOO_MANY_PIXELS
    assert before == Image.MAX_IMAGE_PIXELS


def test_header_between_pillows_warning_and_error_limits_is_refused() -> None:
    """10k x 10k: Pillow only warns here; we refuse it without touching warning filters."""
    result = _decode(_png_claiming(10_000, 10_000))
    assert _reason(result) is DecodeFailure.TOO_MANY_PIXELS


def test_our_pixel_limit_applies_below_pillows_own() -> None:
    """``max_pixels`` is enforced even where Pillow would happily decode (8000 x 6000)."""
    result = _decode(_png_claiming(8000, 6000), max_pixels=12_000_000)
    assert _reason(result) is DecodeFailure.TOO_MANY_PIXELS


def test_image_just_inside_the_pixel_limit_decodes() -> None:
    """The limit is not off by one in the refusing direction."""
    result = _decode(_encode(_photo(100, 80), "PNG"), max_pixels=8000)
    assert isinstance(result, DecodedImage)


def test_two_frame_gif_is_animated() -> None:
    """Animations are refused: which frame would be the photo?"""
    frames = [
        _photo().convert("P"),
        _photo().transpose(Image.Transpose.FLIP_LEFT_RIGHT).convert("P"),
    ]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    assert _reason(_decode(buf.getvalue())) is DecodeFailure.ANIMATED


def test_animated_png_is_animated() -> None:
    """APNG is a PNG on the outside; its frame count still gives it away."""
    frames = [_photo(), _photo().transpose(Image.Transpose.FLIP_TOP_BOTTOM)]
    buf = io.BytesIO()
    frames[0].save(buf, format="PNG", save_all=True, append_images=frames[1:])
    assert _reason(_decode(buf.getvalue())) is DecodeFailure.ANIMATED


def test_animated_webp_is_animated() -> None:
    """Animated WebP (stickers, messenger GIFs) is refused like GIF."""
    frames = [_photo(), _photo().transpose(Image.Transpose.FLIP_TOP_BOTTOM)]
    buf = io.BytesIO()
    frames[0].save(buf, format="WEBP", save_all=True, append_images=frames[1:], duration=100)
    assert _reason(_decode(buf.getvalue())) is DecodeFailure.ANIMATED


def test_single_frame_gif_is_accepted() -> None:
    """A still GIF is not an animation."""
    result = _decode(_encode(_photo().convert("P"), "GIF"))
    assert isinstance(result, DecodedImage)
    assert result.rgb.shape == (120, 160, 3)


def test_tiny_image_is_too_small() -> None:
    """A thumbnail under ``min_side`` cannot hold a lesion worth screening."""
    assert _reason(_decode(_encode(_photo(200, 40), "PNG"))) is DecodeFailure.TOO_SMALL
    assert isinstance(_decode(_encode(_photo(200, 64), "PNG")), DecodedImage)


def test_exif_rotated_jpeg_comes_back_upright() -> None:
    """A phone stores portrait photos sideways plus an EXIF tag; we must apply the tag."""
    stored = _photo(160, 120)  # landscape pixels, left edge black-ish, right edge red
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    result = _decode(_encode(stored, "JPEG", quality=95, exif=exif.tobytes()))
    assert isinstance(result, DecodedImage)
    assert result.rgb.shape == (160, 120, 3)  # now portrait
    assert (result.original_width, result.original_height) == (120, 160)
    # After a clockwise turn the stored left column (red = 0) is the top row.
    top, bottom = result.rgb[:8].astype(int), result.rgb[-8:].astype(int)
    assert top[..., 0].mean() < 40 < 215 < bottom[..., 0].mean()


def test_rgba_png_is_composited_on_white() -> None:
    """Transparent pixels become white, not black (black would look like a lesion)."""
    rgba = np.zeros((80, 80, 4), np.uint8)
    rgba[..., 0] = 200  # red, fully transparent on the left half
    rgba[:, 40:, 3] = 255
    result = _decode(_encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert isinstance(result, DecodedImage)
    assert result.rgb[:, :40].min() == 255
    np.testing.assert_array_equal(result.rgb[0, 60], [200, 0, 0])


def test_palette_png_with_transparency_is_composited_on_white() -> None:
    """Palette images carry transparency in the palette; that must not turn black."""
    rgba = np.zeros((80, 80, 4), np.uint8)
    rgba[:, 40:] = (10, 20, 30, 255)
    img = Image.fromarray(rgba, "RGBA").convert("P")
    img.info["transparency"] = img.getpixel((0, 0))
    result = _decode(_encode(img, "PNG", transparency=img.getpixel((0, 0))))
    assert isinstance(result, DecodedImage)
    assert result.rgb[:, :40].min() == 255


def test_16_bit_greyscale_png_is_scaled_not_clipped() -> None:
    """16-bit values are scaled into 8 bits: mid-grey stays mid-grey instead of white."""
    values = np.full((80, 80), 32768, np.uint16)
    values[:, 40:] = 65535
    result = _decode(_encode(Image.fromarray(values), "PNG"))
    assert isinstance(result, DecodedImage)
    assert result.rgb.shape == (80, 80, 3)
    assert 120 <= int(result.rgb[0, 0, 0]) <= 135
    assert int(result.rgb[0, 60, 0]) == 255


def test_greyscale_jpeg_becomes_three_channels() -> None:
    """A greyscale photo still reaches the pipeline as RGB."""
    result = _decode(_encode(_photo().convert("L"), "JPEG"))
    assert isinstance(result, DecodedImage)
    assert result.rgb.shape == (120, 160, 3)


def test_cmyk_jpeg_is_converted_to_rgb() -> None:
    """Print-workflow CMYK JPEGs decode to the right colours, not inverted ones."""
    red = Image.new("RGB", (96, 96), (220, 30, 30)).convert("CMYK")
    result = _decode(_encode(red, "JPEG", quality=95))
    assert isinstance(result, DecodedImage)
    r, g, b = (int(v) for v in result.rgb[48, 48])
    assert r > 180 and g < 80 and b < 80


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "BMP"])
def test_other_still_formats_decode(fmt: str) -> None:
    """Every allowed still format yields the same RGB array contract."""
    result = _decode(_encode(_photo(), fmt, **({"lossless": True} if fmt == "WEBP" else {})))
    assert isinstance(result, DecodedImage)
    assert result.rgb.shape == (120, 160, 3)
    assert result.rgb.dtype == np.uint8


def test_16_bit_colour_png_keeps_its_colours() -> None:
    """A 16-bit RGB PNG (as cameras' raw converters write) scales to the same colours."""
    cv2 = pytest.importorskip("cv2")
    bgr = np.zeros((80, 80, 3), np.uint16)
    bgr[..., 2] = 50000  # red at ~76 % of full scale
    ok, buf = cv2.imencode(".png", bgr)
    assert ok
    result = _decode(buf.tobytes())
    assert isinstance(result, DecodedImage)
    np.testing.assert_allclose(result.rgb[0, 0].astype(int), [195, 0, 0], atol=2)


def _gif_with_frames(frames: int, side: int = 100) -> bytes:
    """A GIF of ``frames`` one-pixel frames on a ``side`` x ``side`` screen (15 bytes each)."""
    screen = b"GIF89a" + struct.pack("<HH", side, side) + b"\x80\x00\x00"
    palette = b"\x00\x00\x00\xff\xff\xff"
    # Image descriptor at (0, 0), 1 x 1, then LZW code size 2 and one block: clear, 0, end.
    frame = b"\x2c" + struct.pack("<HHHH", 0, 0, 1, 1) + b"\x00" + b"\x02\x02\x44\x01\x00"
    return screen + palette + frame * frames + b"\x3b"


def test_a_gif_of_800000_frames_is_refused_at_once() -> None:
    """Frames are not counted (that takes time linear in their number): a second frame is
    enough to refuse an animation, well under half a second."""
    gif = _gif_with_frames(800_000)
    started = time.perf_counter()
    result = decode_image(gif, max_bytes=20 * 2**20, max_pixels=50_000_000)
    elapsed = time.perf_counter() - started
    assert _reason(result) is DecodeFailure.ANIMATED
    assert elapsed < 0.5


def test_a_large_photo_is_screened_reduced_and_reported_at_its_own_size() -> None:
    """Larger than max_side: decoded smaller (a JPEG while decoding), sizes as sent, upright."""
    photo = _photo(3000, 2000)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    for data in (_encode(photo, "JPEG", exif=exif.tobytes()), _encode(photo, "PNG", exif=exif)):
        result = _decode(data, max_pixels=10_000_000, max_side=1000)
        assert isinstance(result, DecodedImage)
        assert (result.original_width, result.original_height) == (2000, 3000)
        assert max(result.rgb.shape[:2]) <= 1000
        assert result.rgb.shape[0] > result.rgb.shape[1]  # upright: portrait


def test_decoded_size_beyond_the_memory_budget_is_refused_before_decoding() -> None:
    """An RGBA PNG costs 4 bytes a pixel once decoded: over the budget, refused from its header."""
    rgba = _encode(_photo(400, 300).convert("RGBA"), "PNG")
    assert (
        _reason(_decode(rgba, max_decode_bytes=400 * 300 * 4 - 1)) is DecodeFailure.TOO_MANY_PIXELS
    )
    assert _reason(_decode(rgba, max_decode_bytes=400 * 300 * 4)) is None


def test_two_50_megapixel_pngs_at_once_stay_within_the_memory_budget() -> None:
    """A 16-bit grey and an RGBA PNG of 50 MP, screened at once by two threads: the peak
    memory growth stays within two photos' stated budget (MAX_DECODE_MB, 200 MB, plus the
    working memory), where decoding them as before took 10-26 bytes a pixel (1-2.6 GB)."""
    max_decode_bytes = 200 * 2**20
    result = subprocess.run(
        [sys.executable, "-m", "tests.unit.decode_memory_probe", str(max_decode_bytes)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["outcomes"] == ["screened", "screened"]
    assert measured["growth_bytes"] <= 2 * (max_decode_bytes + WORKING_MEMORY_BYTES)


@pytest.mark.parametrize(
    ("size", "screened"),
    [((4000, 3000), (2000, 1500)), ((6000, 4500), (1500, 1125)), ((3000, 2250), (1500, 1125))],
)
def test_a_large_jpeg_is_decoded_at_the_size_it_is_screened_at(
    size: tuple[int, int], screened: tuple[int, int]
) -> None:
    """libjpeg's draft scaling does the whole reduction: the decoder's image is no larger
    than what screening works on, so a budget of exactly that admits it (decoding whole
    and then reducing needed 2-4 times a side more)."""
    data = _encode(_photo(*size), "JPEG", quality=80)
    budget = screened[0] * screened[1] * 4  # RGB is held as RGBX
    result = _decode(data, max_side=2560, max_decode_bytes=budget)
    assert isinstance(result, DecodedImage)
    assert (result.rgb.shape[1], result.rgb.shape[0]) == screened
    assert (result.original_width, result.original_height) == size

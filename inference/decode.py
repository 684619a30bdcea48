"""Turn uploaded bytes into an upright RGB photo, or say why not.

Uploads are untrusted: they may be empty, huge, not images, truncated, decompression
bombs or animations. Every such case is a :class:`~inference.types.DecodeRejected`
value, never an exception, and nothing here touches Pillow's global settings
(``Image.MAX_IMAGE_PIXELS``, ``ImageFile.LOAD_TRUNCATED_IMAGES``) or the process's
warning filters (``warnings.catch_warnings`` is not thread-safe, and decoding runs in a
worker pool): ``max_pixels`` is checked against the header, before any pixel is
decoded. Keep ``max_pixels`` under Pillow's own limit (~89 MP), which Image.open
enforces first.

Memory: a JPEG is decoded already reduced towards ``max_side`` (``Image.draft``: the
decoder skips DCT detail, 1/2 to 1/8 per side); other formats are decoded whole and then
reduced at once, so everything after decoding works on at most ``max_side`` pixels a side.
``max_decode_bytes`` caps what decoding allocates, from the header, before decoding: the
image Pillow holds (4 bytes per pixel, as RGB is stored as RGBX; 2 for 16-bit grey, 1 for
grey and palette images) plus the decoder's own working buffers, which can be larger
(:func:`decoder_working_bytes`): libjpeg keeps every DCT coefficient of a progressive or
multi-scan JPEG until its last scan, whatever the draft size, and libwebp decodes into
full-size canvases of its own.

Time: a progressive JPEG's decoding time grows with its number of scans, and the format
allows any number (a 180 KB file repeating its last scan 200 times took 11 s). Scans are
counted before decoding and more than :data:`MAX_JPEG_SCANS` are refused, as are
run-length-compressed BMPs (Pillow decodes those in Python, a pair of bytes at a time).
Every other accepted decoder runs in C in time linear in the (capped) pixels.
"""

from __future__ import annotations

import io
import logging
import re
import struct
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from inference.types import DecodedImage, DecodeFailure, DecodeRejected

log = logging.getLogger(__name__)

# Formats a phone, a messenger or a screenshot tool produce (Pillow's JPEG opener also
# returns multi-picture MPO phone files). Restricting the plugins Pillow may try keeps
# exotic, less-audited decoders (TIFF, PSD, ...) away from untrusted input. HEIC is not
# readable by Pillow alone and not accepted; Telegram converts photos to JPEG anyway.
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
# File name endings of those formats (what the offline CLI picks up in a folder).
ACCEPTED_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp"})

# The memory budget of one image's decoding when the caller sets none (the offline CLI,
# scripts): what the bot's MAX_DECODE_MB defaults to.
DEFAULT_MAX_DECODE_BYTES = 200 * 2**20
# libjpeg's own progressive scripts use 10 scans for colour, 6 for grey, 18 for CMYK;
# each further scan is another pass over every block (~50 ms for 27 MP here).
MAX_JPEG_SCANS = 24
# libwebp decodes into full-size RGBA canvases of its own before Pillow copies the
# picture out: measured 12-14 bytes a pixel on top of Pillow's 4 (Pillow 13, libwebp 1.5).
_WEBP_WORKING_BYTES_PER_PIXEL = 13
# libjpeg's coefficient buffer: one 16-bit value per pixel of each component (at its own
# sampling), in whole 8x8 blocks.
_JPEG_COEFFICIENT_BYTES = 2

# What Pillow's plugins raise on malformed data: OSError for decoder errors and
# truncation, the others from header parsing of hostile or damaged files.
_MALFORMED = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
)


def decode_image(
    data: bytes,
    *,
    max_bytes: int,
    max_pixels: int,
    min_side: int = 64,
    max_side: int | None = None,
    max_decode_bytes: int | None = None,
    max_jpeg_scans: int = MAX_JPEG_SCANS,
) -> DecodedImage | DecodeRejected:
    """Decode ``data`` into an upright RGB uint8 array, or return why it cannot be.

    With ``max_side``, a larger image comes back reduced to fit it (the original size is
    still reported); with ``max_decode_bytes``, one whose decoded image alone would be
    larger is refused as too many pixels, and one whose decoder would need more on top
    of it as too complex (as is a JPEG of more than ``max_jpeg_scans`` scans).
    """
    if not data:
        return DecodeRejected(DecodeFailure.EMPTY)
    if len(data) > max_bytes:
        return DecodeRejected(DecodeFailure.TOO_MANY_BYTES)
    try:
        img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        return DecodeRejected(DecodeFailure.NOT_AN_IMAGE)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own header check: above 2x its global limit it raises; above the limit
        # it warns, which is an exception only where warnings are errors (the tests).
        # Either way the image is far beyond any sane ``max_pixels``.
        return DecodeRejected(DecodeFailure.TOO_MANY_PIXELS)
    except _MALFORMED as exc:
        log.info("image header unreadable: %s", type(exc).__name__)
        return DecodeRejected(DecodeFailure.CORRUPT)
    with img:
        return _decode_opened(
            img,
            data,
            max_pixels=max_pixels,
            min_side=min_side,
            max_side=max_side,
            max_decode_bytes=max_decode_bytes,
            max_jpeg_scans=max_jpeg_scans,
        )


def decoded_bytes_per_pixel(mode: str) -> int:
    """Bytes Pillow holds per pixel of an image in ``mode``."""
    if mode in ("1", "L", "P"):
        return 1
    if mode.startswith("I;16"):
        return 2
    return 4


def _decode_opened(
    img: Image.Image,
    data: bytes,
    *,
    max_pixels: int,
    min_side: int,
    max_side: int | None,
    max_decode_bytes: int | None,
    max_jpeg_scans: int,
) -> DecodedImage | DecodeRejected:
    width, height = img.size
    if width <= 0 or height <= 0:
        return DecodeRejected(DecodeFailure.CORRUPT)
    if width * height > max_pixels:
        return DecodeRejected(DecodeFailure.TOO_MANY_PIXELS)
    if min(width, height) < min_side:  # rotation does not change the shorter side
        return DecodeRejected(DecodeFailure.TOO_SMALL)
    # is_animated looks for a second frame only; n_frames would walk all of them (time
    # linear in the frame count: minutes for a GIF of 800,000 one-pixel frames).
    if getattr(img, "is_animated", False) and img.format != "MPO":
        # MPO is a phone JPEG with a second, depth or preview frame: the first is the photo.
        return DecodeRejected(DecodeFailure.ANIMATED)
    source_format = img.format or "unknown"
    layout = jpeg_layout(data, max_jpeg_scans) if img.format in ("JPEG", "MPO") else None
    if layout is not None and layout.scans > max_jpeg_scans:
        return DecodeRejected(DecodeFailure.TOO_COMPLEX)
    if img.format == "BMP" and img.info.get("compression") in _BMP_RLE:
        return DecodeRejected(DecodeFailure.TOO_COMPLEX)
    if max_side is not None and max(width, height) > max_side:
        # JPEG only (a no-op elsewhere): libjpeg decodes at 1/2, 1/4 or 1/8 scale for a
        # fraction of the work, so as much of the reduction as it can do is done there:
        # a 4000x3000 JPEG is decoded straight to 2000x1500, a 6000x4500 one to 1500x1125,
        # the sizes they are reduced to anyway (the box reduction below does the rest).
        scale = _draft_scale(max(width, height), max_side)
        if scale > 1:
            img.draft(None, (width // scale, height // scale))
    if max_decode_bytes is not None:
        decoded_bytes = img.width * img.height * decoded_bytes_per_pixel(img.mode)
        if decoded_bytes > max_decode_bytes:
            return DecodeRejected(DecodeFailure.TOO_MANY_PIXELS)
        if decoded_bytes + decoder_working_bytes(img, layout) > max_decode_bytes:
            return DecodeRejected(DecodeFailure.TOO_COMPLEX)
    try:
        # load() decodes every pixel: a truncated file fails here, because
        # ImageFile.LOAD_TRUNCATED_IMAGES is left at its default, False.
        img.load()
        if max_side is not None and max(img.size) > max_side:
            orientation = _orientation(img)
            rgb = _transpose(_reduced_rgb(img, -(-max(img.size) // max_side)), orientation)
            turned = orientation in _QUARTER_TURNS
        else:
            upright = _upright(img)
            turned = upright.size != img.size  # a quarter turn swaps the sides
            rgb = _to_rgb(upright)
    except _MALFORMED as exc:
        log.info("image data unreadable: %s", type(exc).__name__)
        return DecodeRejected(DecodeFailure.CORRUPT)
    array = np.asarray(rgb, dtype=np.uint8)
    if array.ndim != 3 or array.shape[2] != 3:
        return DecodeRejected(DecodeFailure.CORRUPT)
    # Upright, as ``rgb`` is: a portrait phone photo is reported as portrait.
    return DecodedImage(
        rgb=np.ascontiguousarray(array),
        source_format=source_format,
        original_width=height if turned else width,
        original_height=width if turned else height,
    )


# BMP compression 1 and 2: RLE8 and RLE4, decoded by Pillow in Python.
_BMP_RLE = (1, 2)


@dataclass(frozen=True)
class JpegLayout:
    """What a JPEG's markers say about the work of decoding it."""

    progressive: bool
    scans: int
    # (blocks across, blocks down) of each component, at its own sampling.
    component_blocks: tuple[tuple[int, int], ...]

    @property
    def coefficient_bytes(self) -> int:
        """The coefficient buffer libjpeg allocates for a progressive or multi-scan file."""
        if not self.progressive and self.scans <= 1:
            return 0  # one interleaved scan: decoded a row of blocks at a time
        blocks = sum(across * down for across, down in self.component_blocks)
        return blocks * 64 * _JPEG_COEFFICIENT_BYTES


# Start-of-frame markers (all but DHT C4, JPG C8, DAC CC); progressive: C2, C6, CA, CE.
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_PROGRESSIVE_SOF = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
# The next marker after entropy-coded data: FF, then neither a stuffed 00, RST0-7 nor a
# fill byte (FF FF D9 matches at the second FF). One FF only: "FF+" would backtrack, and
# a run of FF bytes then takes quadratic time (a minute for 64 KB, measured).
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
# Marker segments walked at most: real files have a few dozen; past this, too complex.
_MAX_SEGMENTS = 4096


def jpeg_layout(data: bytes, max_scans: int = MAX_JPEG_SCANS) -> JpegLayout | None:
    """Walk the first image's markers up to EOI: its frame and how many scans it has.

    Linear in the file size, the entropy-coded data skipped in C by a regular expression
    (at worst 0.4 s for 20 MB of FF bytes). The walk stops once there are more than
    ``max_scans`` scans or :data:`_MAX_SEGMENTS` segments, reported as that many scans.
    None when no frame header is found (Pillow's own parsing then decides).
    """
    pos, scans, segments = 2, 0, 0
    frame: tuple[bool, tuple[tuple[int, int], ...]] | None = None
    size = len(data)
    while pos + 4 <= size and scans <= max_scans:
        segments += 1
        if segments > _MAX_SEGMENTS:
            scans = max(scans, max_scans + 1)
            break
        if data[pos] != 0xFF:
            break  # not a marker where one must be: damaged, Pillow decides
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:  # EOI: an MPO's second picture is never decoded
            break
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # no length field
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker in _SOF and frame is None:
            frame = _frame(marker, data[pos + 4 : pos + 2 + length])
        pos += 2 + max(length, 2)
        if marker == 0xDA:  # SOS: skip the entropy-coded data to the next marker
            scans += 1
            found = _NEXT_MARKER.search(data, pos)
            if found is None:
                break
            pos = found.start()
    return _layout(frame, scans)


def _layout(
    frame: tuple[bool, tuple[tuple[int, int], ...]] | None, scans: int
) -> JpegLayout | None:
    return None if frame is None else JpegLayout(frame[0], scans, frame[1])


def _frame(marker: int, segment: bytes) -> tuple[bool, tuple[tuple[int, int], ...]] | None:
    if len(segment) < 6:
        return None
    height = int.from_bytes(segment[1:3], "big")
    width = int.from_bytes(segment[3:5], "big")
    count = segment[5]
    sampling = [
        (segment[7 + 3 * i] >> 4, segment[7 + 3 * i] & 0x0F)
        for i in range(count)
        if 8 + 3 * i < len(segment)
    ]
    if not sampling or any(h == 0 or v == 0 for h, v in sampling):
        return None
    h_max = max(h for h, _ in sampling)
    v_max = max(v for _, v in sampling)
    # libjpeg pads each component to whole MCUs: blocks rounded up to its sampling factor.
    mcus_across = -(-width // (8 * h_max))
    mcus_down = -(-height // (8 * v_max))
    blocks = tuple((mcus_across * h, mcus_down * v) for h, v in sampling)
    return marker in _PROGRESSIVE_SOF, blocks


def decoder_working_bytes(img: Image.Image, layout: JpegLayout | None) -> int:
    """What the decoder allocates beyond the image Pillow holds, from the headers."""
    if img.format in ("JPEG", "MPO") and layout is not None:
        return layout.coefficient_bytes
    if img.format == "WEBP":
        return img.width * img.height * _WEBP_WORKING_BYTES_PER_PIXEL
    return 0  # PNG, GIF and raw BMP decode straight into Pillow's image, a row at a time


def _power_of_two_at_most(value: int) -> int:
    """The largest of 1, 2, 4 and 8 not above ``value`` (libjpeg's scales)."""
    return 1 << min(3, max(1, value).bit_length() - 1)


def _draft_scale(side: int, max_side: int) -> int:
    """The JPEG decoding scale for a photo whose longer side is ``side``.

    The photo ends up reduced by the smallest power of two that fits ``max_side``, times
    a whole box factor for what is left (as before decoding at scale, so sizes, and so
    results, are unchanged); libjpeg does as much of that total as it can (at most 1/8).
    """
    first = _power_of_two_at_most(_ceil_div(side, max_side))
    total = first * _ceil_div(_ceil_div(side, first), max_side)
    return _power_of_two_at_most(total)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# Rows converted and reduced at a time, in units of the reduction factor: a few MB each.
_BAND_ROWS = 64


def _reduced_rgb(img: Image.Image, factor: int) -> Image.Image:
    """Return ``img`` as RGB, ``factor`` times smaller a side (each pixel its box's mean).

    Band by band, so the only full-size buffer is the decoded image itself: Pillow's own
    resize of an RGBA image first makes a premultiplied full-size copy, and a 16-bit one
    would need a full-size array to be scaled. Transparency is composited on white per
    band, before averaging, which is what averaging premultiplied colours gives.
    """
    width, height = img.size
    rows = factor * _BAND_ROWS
    top = _grey_top(img) if img.mode == "I" else None
    out: Image.Image | None = None
    y_out = 0
    for y in range(0, height, rows):
        band = _to_rgb(img.crop((0, y, width, min(height, y + rows))), top)
        small = band.reduce(factor)
        if out is None:
            out = Image.new("RGB", (small.width, -(-height // factor)))
        out.paste(small, (0, y_out))
        y_out += small.height
    assert out is not None  # height > 0 was checked
    return out


# EXIF orientation -> the transpose that makes the photo upright (as ImageOps applies it).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_QUARTER_TURNS = frozenset({5, 6, 7, 8})


def _orientation(img: Image.Image) -> int:
    """Return the EXIF orientation (1 when absent or unreadable, as in :func:`_upright`)."""
    try:
        value = img.getexif().get(0x0112, 1)
    except _MALFORMED as exc:
        log.info("EXIF orientation unreadable, ignored: %s", type(exc).__name__)
        return 1
    return value if isinstance(value, int) and value in _TRANSPOSE else 1


def _transpose(img: Image.Image, orientation: int) -> Image.Image:
    method = _TRANSPOSE.get(orientation)
    return img if method is None else img.transpose(method)


def _grey_top(img: Image.Image) -> int:
    """The full-scale value of a 32-bit grey image: 16-bit data, or 8-bit stored wide."""
    _, high = img.getextrema()
    return 65535 if float(high) > 255 else 255  # type: ignore[arg-type]


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a damaged EXIF block leaves the pixels as stored.

    The pixels decoded fine, so a sideways photo is better than a refusal.
    """
    try:
        return ImageOps.exif_transpose(img)
    except _MALFORMED as exc:
        log.info("EXIF orientation unreadable, ignored: %s", type(exc).__name__)
        return img


def _to_rgb(img: Image.Image, grey_top: int | None = None) -> Image.Image:
    """Convert any mode to 8-bit RGB; transparency is composited on white.

    White, not black: a transparent sticker or screenshot on black would look like a
    large dark blob, exactly what the lesion finder looks for.
    """
    if img.mode.startswith("I;16"):
        # 16-bit greyscale: Pillow's convert("L") clips instead of scaling. The top byte
        # is the scaled value; integer arithmetic, so no float copy of the whole image.
        values = np.asarray(img)
        grey = (values.astype(np.uint16, copy=False) >> 8).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if img.mode == "I":
        values = np.asarray(img)
        top = grey_top or (65535 if int(values.max()) > 255 else 255)
        grey = (np.clip(values, 0, top).astype(np.int64) * 255 // top).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if img.mode == "F":
        grey = np.clip(np.asarray(img, dtype=np.float64), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        img.mode == "P" and "transparency" in img.info
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        # Pasting through the alpha band composites in place: no second RGBA buffer.
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if img.mode == "RGB":
        return img
    return img.convert("RGB")

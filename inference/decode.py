"""Turn uploaded bytes into an upright RGB photo, or say why not.

Uploads are untrusted: they may be empty, huge, not images, truncated, decompression
bombs or animations. Every such case is a :class:`~inference.types.DecodeRejected`
value, never an exception, and nothing here touches Pillow's global settings
(``Image.MAX_IMAGE_PIXELS``, ``ImageFile.LOAD_TRUNCATED_IMAGES``) or the process's
warning filters (``warnings.catch_warnings`` is not thread-safe, and decoding runs in a
worker pool): ``max_pixels`` is checked against the header, before any pixel is
decoded. Keep ``max_pixels`` under Pillow's own limit (~89 MP), which Image.open
enforces first.
"""

from __future__ import annotations

import io
import logging
import struct

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from inference.types import DecodedImage, DecodeFailure, DecodeRejected

log = logging.getLogger(__name__)

# Formats a phone, a messenger or a screenshot tool produce (Pillow's JPEG opener also
# returns multi-picture MPO phone files). Restricting the plugins Pillow may try keeps
# exotic, less-audited decoders (TIFF, PSD, ...) away from untrusted input. HEIC is not
# readable by Pillow alone; Telegram converts photos to JPEG, so HEIC is NOT_AN_IMAGE.
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP")

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
    data: bytes, *, max_bytes: int, max_pixels: int, min_side: int = 64
) -> DecodedImage | DecodeRejected:
    """Decode ``data`` into an upright RGB uint8 array, or return why it cannot be."""
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
        return _decode_opened(img, max_pixels=max_pixels, min_side=min_side)


def _decode_opened(
    img: Image.Image, *, max_pixels: int, min_side: int
) -> DecodedImage | DecodeRejected:
    width, height = img.size
    if width <= 0 or height <= 0:
        return DecodeRejected(DecodeFailure.CORRUPT)
    if width * height > max_pixels:
        return DecodeRejected(DecodeFailure.TOO_MANY_PIXELS)
    if min(width, height) < min_side:  # rotation does not change the shorter side
        return DecodeRejected(DecodeFailure.TOO_SMALL)
    if getattr(img, "n_frames", 1) > 1 and img.format != "MPO":
        # MPO is a phone JPEG with a second, depth or preview frame: the first is the photo.
        return DecodeRejected(DecodeFailure.ANIMATED)
    source_format = img.format or "unknown"
    try:
        # load() decodes every pixel: a truncated file fails here, because
        # ImageFile.LOAD_TRUNCATED_IMAGES is left at its default, False.
        img.load()
        rgb = _to_rgb(_upright(img))
    except _MALFORMED as exc:
        log.info("image data unreadable: %s", type(exc).__name__)
        return DecodeRejected(DecodeFailure.CORRUPT)
    array = np.asarray(rgb, dtype=np.uint8)
    if array.ndim != 3 or array.shape[2] != 3:
        return DecodeRejected(DecodeFailure.CORRUPT)
    return DecodedImage(
        rgb=np.ascontiguousarray(array),
        source_format=source_format,
        # Upright, as ``rgb`` is: a portrait phone photo is reported as portrait.
        original_width=int(array.shape[1]),
        original_height=int(array.shape[0]),
    )


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a damaged EXIF block leaves the pixels as stored.

    The pixels decoded fine, so a sideways photo is better than a refusal.
    """
    try:
        return ImageOps.exif_transpose(img)
    except _MALFORMED as exc:
        log.info("EXIF orientation unreadable, ignored: %s", type(exc).__name__)
        return img


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any mode to 8-bit RGB; transparency is composited on white.

    White, not black: a transparent sticker or screenshot on black would look like a
    large dark blob, exactly what the lesion finder looks for.
    """
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16/32-bit greyscale: Pillow's convert("L") clips instead of scaling.
        values = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or values.max() > 255 else 255.0
        grey = np.clip(values * (255.0 / top), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if img.mode == "F":
        grey = np.clip(np.asarray(img, dtype=np.float64), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        img.mode == "P" and "transparency" in img.info
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode == "RGB":
        return img
    return img.convert("RGB")

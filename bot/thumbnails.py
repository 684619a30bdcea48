"""Opt-in thumbnails of a named spot, and the side-by-side picture of two of them (pure).

Off by default (``/thumbnails``, bot.handlers.thumbnails). For someone who opted in, each
screened photo of a named spot keeps a small JPEG (:func:`thumbnail`), sealed with AES-GCM
(bot.privacy.ThumbnailSealer) before it reaches the database; when the same spot's next
photo is screened, the reply that compares the two results also shows both photos side
by side with their dates (:func:`side_by_side`). Small on purpose: enough to see that it
is the same spot and how it looks, not a copy of the photo. The photo itself is still
never stored.
"""

from __future__ import annotations

import io

from PIL import Image, ImageDraw

from bot.doctor_report import face
from inference.decode import decode_image
from inference.types import DecodeRejected

THUMBNAIL_SIDE = 192  # px, the longer side
THUMBNAIL_QUALITY = 70  # JPEG quality: a few kB each
# Decoded no larger than this before shrinking: the pipeline already refused oversized
# images, and a smaller decode is faster.
_DECODE_SIDE = 4 * THUMBNAIL_SIDE
_GAP, _LABEL_HEIGHT, _LABEL_SIZE = 12, 36, 20
_BACKGROUND, _INK = (255, 255, 255), (30, 30, 30)


def thumbnail(data: bytes, *, max_bytes: int, max_pixels: int) -> bytes | None:
    """A small upright JPEG of the photo ``data``; None if it does not decode."""
    decoded = decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels, max_side=_DECODE_SIDE)
    if isinstance(decoded, DecodeRejected):
        return None
    image = Image.fromarray(decoded.rgb)
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=THUMBNAIL_QUALITY)
    return buffer.getvalue()


def side_by_side(earlier: bytes, earlier_label: str, latest: bytes, latest_label: str) -> bytes:
    """The earlier and the latest thumbnail next to each other, each with its label (the
    date) under it, as one JPEG."""
    left, right = (Image.open(io.BytesIO(jpeg)).convert("RGB") for jpeg in (earlier, latest))
    height = max(left.height, right.height)
    width = left.width + right.width + 3 * _GAP
    canvas = Image.new("RGB", (width, height + _LABEL_HEIGHT + 2 * _GAP), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    label_font = face("DejaVuSans.ttf", _LABEL_SIZE)
    x = _GAP
    for image, label in ((left, earlier_label), (right, latest_label)):
        canvas.paste(image, (x, _GAP + (height - image.height) // 2))
        text_x = x + max(0, (image.width - int(label_font.getlength(label))) // 2)
        draw.text((text_x, height + 2 * _GAP), label, font=label_font, fill=_INK)
        x += image.width + _GAP
    buffer = io.BytesIO()
    canvas.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()

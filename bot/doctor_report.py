"""The report a person shows their doctor, drawn as a PNG from lines of text (pure).

``bot.replies`` decides what the report says, in the person's language; this module only
lays the lines out. The fonts are the DejaVu faces matplotlib ships (already a dependency
for the admin chart), which cover Cyrillic and every Kazakh letter. Drawing is
deterministic: the same lines give the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

WIDTH = 1080  # a phone screen's width: readable when shown on the person's phone
MARGIN = 64
BACKGROUND = "#ffffff"


class Style(StrEnum):
    TITLE = "title"
    HEADING = "heading"
    BODY = "body"
    NOTE = "note"  # the disclaimer and the small print


@dataclass(frozen=True)
class ReportLine:
    text: str
    style: Style = Style.BODY


# style: (font file, size in px, colour, space before in px)
_LOOK: dict[Style, tuple[str, int, str, int]] = {
    Style.TITLE: ("DejaVuSans-Bold.ttf", 46, "#1d3557", 0),
    Style.HEADING: ("DejaVuSans-Bold.ttf", 34, "#1d3557", 36),
    Style.BODY: ("DejaVuSans.ttf", 30, "#222222", 12),
    Style.NOTE: ("DejaVuSans.ttf", 26, "#555555", 28),
}


@cache
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    import matplotlib  # only for the path of the fonts it ships

    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name), size)


def face(name: str, size: int) -> ImageFont.FreeTypeFont:
    """A DejaVu face at ``size`` px, for the other pictures the bot draws (bot.thumbnails)."""
    return _font(name, size)


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if line and font.getlength(candidate) > width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return lines


def render_png(lines: Sequence[ReportLine]) -> bytes:
    """Lay the lines out on a white page as wide as a phone screen; return PNG bytes."""
    laid_out: list[tuple[int, str, ImageFont.FreeTypeFont, str]] = []  # y, text, font, colour
    y = MARGIN
    for line in lines:
        name, size, colour, before = _LOOK[line.style]
        font = _font(name, size)
        y += before if laid_out else 0
        for piece in _wrap(line.text, font, WIDTH - 2 * MARGIN):
            laid_out.append((y, piece, font, colour))
            y += round(size * 1.35)
    image = Image.new("RGB", (WIDTH, y + MARGIN), BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, WIDTH, 12), fill="#1d3557")
    for top, text, font, colour in laid_out:
        draw.text((MARGIN, top), text, font=font, fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()

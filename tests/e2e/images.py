"""Pictures for the end-to-end tests, built with Pillow from the sample lesion photos."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter


def encode(image: Image.Image, fmt: str = "JPEG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def resized_jpeg(jpeg: bytes, max_side: int) -> tuple[bytes, int, int]:
    """Shrink a JPEG as Telegram does for a photo's smaller sizes."""
    image = Image.open(io.BytesIO(jpeg)).convert("RGB")
    image.thumbnail((max_side, max_side))
    return encode(image, quality=80), image.width, image.height


def size_of(jpeg: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(jpeg)) as image:
        return image.width, image.height


def phone_like_photo(lesion_jpeg: bytes, seed: int = 0) -> bytes:
    """Compose a phone-style photo: the lesion, at its own resolution, amid warm skin.

    Phone photos differ from dermoscopy: more surrounding skin, light from one side,
    sensor noise. The lesion is not enlarged: upscaling would (rightly) fail the blur
    and resolution checks.
    """
    rng = np.random.default_rng(seed)
    lesion = Image.open(io.BytesIO(lesion_jpeg)).convert("RGB")
    width, height = 2 * lesion.width, 2 * lesion.height
    light = 0.85 + 0.15 * np.linspace(0, 1, width, dtype=np.float32)  # window to one side
    skin = np.array([214, 170, 140], np.float32) * light[None, :, None]
    skin = np.broadcast_to(skin, (height, width, 3))
    canvas = Image.fromarray(np.clip(skin, 0, 255).astype(np.uint8))
    mask = Image.new("L", lesion.size, 0)
    inset = min(lesion.size) // 10
    mask.paste(255, (inset, inset, lesion.width - inset, lesion.height - inset))
    mask = mask.filter(ImageFilter.GaussianBlur(inset / 2))
    canvas.paste(lesion, ((width - lesion.width) // 2, (height - lesion.height) // 2), mask)
    noisy = np.asarray(canvas, np.float32) + rng.normal(0, 4, (height, width, 3))
    photo = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    return encode(photo, quality=90)


def large_photo_with_lesion_at(
    lesion_jpeg: bytes, centre: tuple[int, int], size: tuple[int, int] = (1280, 960), seed: int = 0
) -> tuple[bytes, tuple[int, int, int, int]]:
    """A Telegram-sized photo of skin with the lesion, at its own resolution, at ``centre``.

    Returns the JPEG and the pasted patch's box: the lesion lies inside it.
    """
    rng = np.random.default_rng(seed)
    width, height = size
    light = 0.8 + 0.2 * np.linspace(0, 1, height, dtype=np.float32)  # light from below
    skin = np.array([205, 160, 130], np.float32)[None, None, :] * light[:, None, None]
    skin = skin + rng.normal(0, 4, (height, width, 3)).astype(np.float32)
    canvas = Image.fromarray(np.clip(skin, 0, 255).astype(np.uint8))
    lesion = Image.open(io.BytesIO(lesion_jpeg)).convert("RGB")
    mask = Image.new("L", lesion.size, 0)
    inset = min(lesion.size) // 10
    mask.paste(255, (inset, inset, lesion.width - inset, lesion.height - inset))
    mask = mask.filter(ImageFilter.GaussianBlur(inset / 2))
    x0, y0 = centre[0] - lesion.width // 2, centre[1] - lesion.height // 2
    canvas.paste(lesion, (x0, y0), mask)
    return encode(canvas, quality=90), (x0, y0, x0 + lesion.width, y0 + lesion.height)


def flat_photo(width: int = 800, height: int = 600, grey: int = 128) -> bytes:
    """A featureless grey photo: a picture, but not of a skin lesion."""
    return encode(Image.new("RGB", (width, height), (grey, grey, grey)), quality=90)


def animated_gif(size: int = 96) -> bytes:
    frames = [Image.new("RGB", (size, size), colour) for colour in ("red", "blue", "green")]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def huge_png(width: int, height: int) -> bytes:
    """Many pixels in few bytes: a flat PNG compresses to almost nothing."""
    return encode(Image.new("RGB", (width, height), (200, 160, 140)), "PNG")


def tiny_png(side: int = 16) -> bytes:
    return encode(Image.new("RGB", (side, side), (120, 80, 60)), "PNG")

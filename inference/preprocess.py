"""Pure image preprocessing shared by inference and training (numpy and OpenCV only)."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
import numpy.typing as npt

from inference.types import LesionBox, RGBImage


def shades_of_gray(rgb: RGBImage, power: float) -> RGBImage:
    """Normalise the illuminant colour with the Shades of Gray estimate (Finlayson 2004).

    Phone photos come under window light, tungsten or flash; dermoscopes have their own
    light. Dividing out the estimated illuminant in both training and inference narrows
    that gap, which is what skin-lesion domain-shift studies found helps most cheaply.
    """
    if power <= 0:
        return rgb
    return np.asarray(cv2.LUT(rgb, shades_of_gray_table(rgb, power)), np.uint8)


def shades_of_gray_table(rgb: RGBImage, power: float) -> npt.NDArray[np.uint8]:
    """The per-channel 8-bit table that :func:`shades_of_gray` applies, as (256, 1, 3).

    The same float32 numbers, to the bit, as raising every pixel to the power, averaging
    each channel with ``np.mean(..., axis=(0, 1))`` and scaling every pixel by the gain
    (the model was trained on those numbers; a more exact float64 estimate moved one
    level on a few pixels of one crop in ten, and a probability by up to 0.01). That
    mean adds a channel's pixels one after another in float32, so the sum is taken the
    same way (a running sum over each contiguous channel); the power of each of the 256
    levels is taken once and looked up, and the gain is applied once per level.
    """
    table = _power_table(power)
    sums = [np.cumsum(cv2.LUT(plane, table).ravel())[-1] for plane in cv2.split(rgb)]
    mean = np.asarray(sums, np.float32) / np.float32(rgb.shape[0] * rgb.shape[1])
    norm = np.maximum(np.power(mean, 1.0 / power), 1e-6)
    gain = norm.mean() / norm
    levels = np.arange(256, dtype=np.float32)[:, None] * gain[None, :]
    return np.asarray(np.clip(levels, 0, 255).astype(np.uint8).reshape(256, 1, 3), np.uint8)


@lru_cache(maxsize=4)
def _power_table(power: float) -> npt.NDArray[np.float32]:
    table = np.power(np.arange(256, dtype=np.float32), power)
    table.flags.writeable = False
    return table


def square_crop_box(
    box: LesionBox, width: int, height: int, margin: float, *, fit_inside: bool = True
) -> LesionBox:
    """Grow a lesion box by ``margin`` of its longer side on each side, make it square.

    With ``fit_inside`` the square is shrunk to the image's shorter side and shifted into
    the frame, so the classifier sees real pixels rather than padding (a lesion that fills
    the photo simply gets a tighter margin). Without it the square may extend past the
    image, as training wants when it continues the skin synthetically.
    """
    side = max(box.width, box.height)
    side = max(round(side * (1.0 + 2.0 * margin)), 8)
    if fit_inside:
        side = min(side, width, height)
    cx = (box.x0 + box.x1) / 2.0
    cy = (box.y0 + box.y1) / 2.0
    x0 = round(cx - side / 2.0)
    y0 = round(cy - side / 2.0)
    if fit_inside:
        x0 = min(max(x0, 0), width - side)
        y0 = min(max(y0, 0), height - side)
    return LesionBox(x0, y0, x0 + side, y0 + side)


def crop_square(rgb: RGBImage, box: LesionBox) -> RGBImage:
    """Cut ``box`` out of ``rgb``, replicating edge pixels where it reaches outside."""
    h, w = rgb.shape[:2]
    pad_l, pad_t = max(0, -box.x0), max(0, -box.y0)
    pad_r, pad_b = max(0, box.x1 - w), max(0, box.y1 - h)
    inner = rgb[max(0, box.y0) : min(h, box.y1), max(0, box.x0) : min(w, box.x1)]
    if pad_l or pad_t or pad_r or pad_b:
        inner = np.asarray(
            cv2.copyMakeBorder(inner, pad_t, pad_b, pad_l, pad_r, cv2.BORDER_REPLICATE), np.uint8
        )
    return np.ascontiguousarray(inner)


def to_model_input(
    rgb: RGBImage,
    size: int,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    color_constancy_power: float,
) -> npt.NDArray[np.float32]:
    """Resize a lesion crop to the network's input: float32 CHW, normalised."""
    interp = cv2.INTER_AREA if min(rgb.shape[:2]) > size else cv2.INTER_LINEAR
    resized = np.asarray(cv2.resize(rgb, (size, size), interpolation=interp), np.uint8)
    # (v / 255 - mean) / std for each 8-bit level and channel, composed with the colour
    # balance's own level table and applied as one lookup: the same float32 numbers as
    # balancing and normalising pixel by pixel, at a fraction of the cost.
    levels = np.arange(256, dtype=np.float32)[:, None] / 255.0
    # Named operands: written inline, numpy's stubs infer the quotient as complex128.
    mean_a, std_a = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    table: npt.NDArray[np.float32] = (levels - mean_a) / std_a
    if color_constancy_power > 0:
        balance = shades_of_gray_table(resized, color_constancy_power).reshape(256, 3)
        table = np.take_along_axis(table, balance.astype(np.intp), axis=0)
    x = np.asarray(cv2.LUT(resized, table.reshape(256, 1, 3)), np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))

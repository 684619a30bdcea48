"""Render dermoscopy images as a phone camera would show the same lesion.

No phone-photo training set can be had offline, so the camera domain is synthesised:
the lesion is set into a larger field of skin continued from its own border (the
dermoscope's dark ring is faded out), then the photo gets what phones and rooms do to it.
Every transform and its parameter range is listed in docs/phone_synthesis.md.

Used twice: as training augmentation (:func:`training_view`) and to build the
synthetic-phone evaluation split (:func:`compose_phone_photo` + :func:`phone_camera`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from inference.preprocess import crop_square, square_crop_box
from inference.types import LesionBox, RGBImage

F32 = npt.NDArray[np.float32]


def _luma(img: RGBImage) -> F32:
    return np.asarray(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), np.float32)


def skin_colour(img: RGBImage, box: LesionBox) -> F32:
    """Median colour of the skin at the photo's outer band, ignoring the dermoscope ring.

    The outer band is what the pasted patch meets at its edge, so taking the field's
    colour from there keeps the seam between patch and synthetic skin faint.
    """
    h, w = img.shape[:2]
    band = np.zeros((h, w), bool)
    bh, bw = max(2, h // 8), max(2, w // 8)
    band[:bh], band[-bh:], band[:, :bw], band[:, -bw:] = True, True, True, True
    band[max(box.y0, 0) : box.y1, max(box.x0, 0) : box.x1] = False
    lum = _luma(img)
    bright_enough = lum > 0.7 * np.median(lum)
    for sel in (band & bright_enough, bright_enough, np.ones((h, w), bool)):
        if sel.sum() >= 50:
            break
    return np.median(img[sel].astype(np.float32), axis=0)


def dermoscope_mask(img: RGBImage, skin: F32, box: LesionBox) -> F32:
    """Soft mask that is 1 on the photo and fades out the dark vignette and the frame edge.

    Pixels inside the lesion box are never taken for the vignette, however dark.
    """
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.sqrt(((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2)
    lum = _luma(img)
    skin_lum = float(skin @ np.array([0.299, 0.587, 0.114], np.float32))
    ring = (lum < 0.6 * skin_lum) & (r > 0.7)
    ring[max(box.y0, 0) : box.y1, max(box.x0, 0) : box.x1] = False
    ring = cv2.dilate(ring.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    mask = np.where(ring, 0.0, 1.0).astype(np.float32)
    # A wide feather: a hard or narrow edge would leave a visible rectangle, a cue that
    # neither the classifier nor the localiser should learn.
    feather = max(3, min(h, w) // 5)
    edge = np.minimum.reduce([xx, yy, w - 1 - xx, h - 1 - yy]) / feather
    mask *= np.clip(edge, 0.0, 1.0) ** 1.5
    k = (feather // 2) | 1
    return np.asarray(cv2.GaussianBlur(mask, (k, k), 0), np.float32)


def skin_field(height: int, width: int, colour: F32, rng: np.random.Generator) -> F32:
    """A field of skin of one tone with low-frequency shading and pore-scale texture.

    Without texture at the scale of a few pixels the field would be smoother than any
    real skin, and the quality gate would rightly read the photo as an upscaled one.
    """
    low = rng.normal(0.0, 0.05, (4, 4, 1)).astype(np.float32)
    low = np.asarray(cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC), np.float32)
    pores = rng.standard_normal((height, width), dtype=np.float32) * np.float32(0.05)
    pores = np.asarray(cv2.GaussianBlur(pores, (0, 0), 1.0), np.float32)
    fine = rng.standard_normal((height, width), dtype=np.float32) * np.float32(0.015)
    shading = 1.0 + low[..., None] + pores[..., None] + fine[..., None]
    return np.asarray(colour[None, None, :] * shading, np.float32)


# Skin as phone photos show it, sRGB, pale to brown (about Fitzpatrick I-V). Darker skin
# is left out of lesion synthesis: HAM10000 has almost no lesions on dark skin, and a
# light-skin lesion darkened to match would be a made-up image, not a measurement.
SKIN_TONES = np.array(
    [(236, 200, 180), (224, 172, 140), (198, 134, 96), (160, 105, 70), (120, 76, 50)],
    np.float32,
)


def random_skin_tone(rng: np.random.Generator) -> F32:
    """A skin colour between two neighbouring tones of :data:`SKIN_TONES`, uniformly."""
    t = rng.uniform(0, len(SKIN_TONES) - 1)
    i = min(int(t), len(SKIN_TONES) - 2)
    return np.asarray(SKIN_TONES[i] + (t - i) * (SKIN_TONES[i + 1] - SKIN_TONES[i]), np.float32)


def skin_illumination(img: RGBImage, box: LesionBox) -> F32:
    """Smooth per-pixel colour of the skin under the light, the lesion and ring left out.

    A normalised convolution: skin pixels are averaged with a wide Gaussian and the holes
    (lesion, dermoscope ring) are filled from around them, so a lesion keeps its contrast
    against the skin next to it when the photo is later divided by this map.
    """
    h, w = img.shape[:2]
    colour = skin_colour(img, box)
    lum = _luma(img)
    skin_lum = float(colour @ np.array([0.299, 0.587, 0.114], np.float32))
    valid = lum > 0.6 * skin_lum
    side = max(box.width, box.height)
    m = int(0.1 * side)
    valid[max(box.y0 - m, 0) : box.y1 + m, max(box.x0 - m, 0) : box.x1 + m] = False
    if valid.sum() < 50:
        return np.broadcast_to(colour, (h, w, 3)).astype(np.float32)
    # At a quarter of the size: the map is smooth, and this runs per training view.
    sw, sh = max(4, w // 4), max(4, h // 4)
    small = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA).astype(np.float32)
    weight = cv2.resize(valid.astype(np.float32), (sw, sh), interpolation=cv2.INTER_AREA)
    sigma = max(2.0, min(sw, sh) / 4)
    num = cv2.GaussianBlur(small * weight[..., None], (0, 0), sigma)
    den = cv2.GaussianBlur(weight, (0, 0), sigma)[..., None]
    local = np.where(den > 1e-3, num / np.maximum(den, 1e-3), colour[None, None, :])
    return np.asarray(cv2.resize(local, (w, h), interpolation=cv2.INTER_LINEAR), np.float32)


def retone(img: RGBImage, box: LesionBox, tone: F32) -> RGBImage:
    """Relight the photo so its skin is evenly ``tone``: white balance and flat field in one.

    Dermoscopes add colour casts (blue-grey, lavender, green) and a bright centre; a phone
    photo of the same skin, once its camera has balanced it, shows skin in skin colours
    and no lens vignette. Per-pixel gains map the measured skin onto ``tone``; the lesion,
    relit by the same gains as the skin around it, keeps its contrast and colour relations.
    The light map is smoothed over about a quarter of the frame, so the cast goes but a
    lens's bright centre is only reduced (by about a third on a 30% fall-off).
    """
    gains = tone[None, None, :] / np.maximum(skin_illumination(img, box), 1.0)
    out = img.astype(np.float32) * np.clip(gains, 0.25, 4.0)
    return np.clip(out, 0, 255).astype(np.uint8)


def paste(canvas: F32, img: RGBImage, mask: F32, x0: int, y0: int) -> None:
    """Alpha-blend ``img`` into ``canvas`` at (x0, y0), clipping at the canvas edge."""
    h, w = img.shape[:2]
    ch, cw = canvas.shape[:2]
    sx0, sy0 = max(0, -x0), max(0, -y0)
    dx0, dy0 = max(0, x0), max(0, y0)
    dx1, dy1 = min(cw, x0 + w), min(ch, y0 + h)
    if dx1 <= dx0 or dy1 <= dy0:
        return
    src = img[sy0 : sy0 + dy1 - dy0, sx0 : sx0 + dx1 - dx0].astype(np.float32)
    m = mask[sy0 : sy0 + dy1 - dy0, sx0 : sx0 + dx1 - dx0, None]
    region = canvas[dy0:dy1, dx0:dx1]
    canvas[dy0:dy1, dx0:dx1] = m * src + (1.0 - m) * region


def extend_with_skin(img: RGBImage, box: LesionBox, pad: int, rng: np.random.Generator) -> RGBImage:
    """Return ``img`` centred in a field ``pad`` pixels wider on each side, skin continued."""
    colour = skin_colour(img, box)
    img = retone(img, box, colour)  # flat-fielded, or the bright centre leaves a pale square
    h, w = img.shape[:2]
    canvas = skin_field(h + 2 * pad, w + 2 * pad, colour, rng)
    paste(canvas, img, dermoscope_mask(img, colour, box), pad, pad)
    return np.clip(canvas, 0, 255).astype(np.uint8)


def gaussian_blur(x: npt.NDArray[np.floating[Any]], sigma: float) -> F32:
    """Gaussian blur; wide ones run at reduced resolution (same look, a fraction of the time)."""
    if sigma <= 2.0:
        return np.asarray(cv2.GaussianBlur(x, (0, 0), sigma), np.float32)
    factor = sigma / 1.5
    h, w = x.shape[:2]
    small = cv2.resize(
        x, (max(1, int(w / factor)), max(1, int(h / factor))), interpolation=cv2.INTER_AREA
    )
    small = cv2.GaussianBlur(small, (0, 0), 1.5)
    return np.asarray(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR), np.float32)


@dataclass(frozen=True)
class PhoneCamera:
    """Parameter ranges of the simulated camera and room (see docs/phone_synthesis.md)."""

    # White balance errors run along the warm-cool axis (tungsten to shade: red up, blue
    # down or the reverse) with a little green-magenta tint, not per channel at random.
    wb_temperature: float = 0.18
    wb_tint: float = 0.05
    exposure: tuple[float, float] = (0.75, 1.3)  # gain, after metering if any
    # Auto-exposure: scale so the median luma lands in this range (0-1) before the gain
    # above, as a phone's metering does. None: the gain acts on the source's brightness.
    metered: tuple[float, float] | None = (0.4, 0.75)
    gamma: tuple[float, float] = (0.8, 1.25)
    side_light: float = 0.45  # darkest side of a linear light falloff, as a fraction lost
    p_glare: float = 0.25
    defocus_sigma: tuple[float, float] = (0.0, 1.2)  # in pixels at 160 px lesion scale
    p_sharpen: float = 0.5
    noise_sigma: tuple[float, float] = (0.0, 5.0)  # sensor noise, 8-bit levels
    jpeg_quality: tuple[int, int] = (35, 92)


def phone_camera(
    img: RGBImage,
    rng: np.random.Generator,
    cam: PhoneCamera | None = None,
    lesion_px: int | None = None,
) -> RGBImage:
    """Apply white balance, exposure, side light, glare, defocus, sharpening, noise, JPEG.

    Defocus and sharpening are set at the lesion's scale: ``lesion_px`` is the lesion's
    size in this image (a full photo), or None when the image is a lesion crop. Scaled
    by the whole frame instead, a "clear" 1024 px photo of a 60 px mole would get a blur
    of several of the mole's pixels.
    """
    cam = cam or PhoneCamera()
    h, w = img.shape[:2]
    x = img.astype(np.float32) / 255.0
    warm = rng.uniform(-cam.wb_temperature, cam.wb_temperature)
    gains = np.array([1 + warm, 1 + rng.uniform(-cam.wb_tint, cam.wb_tint), 1 - warm], np.float32)
    x = x * gains[None, None, :]
    gain = rng.uniform(*cam.exposure)
    if cam.metered is not None:
        luma = float(np.median(x[::4, ::4] @ np.array([0.299, 0.587, 0.114], np.float32)))
        gain *= rng.uniform(*cam.metered) / max(luma, 1e-3)
    x = x * np.float32(gain)
    # Side light: a linear falloff across the frame in a random direction.
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = (np.cos(angle) * (xx / w - 0.5) + np.sin(angle) * (yy / h - 0.5)) + 0.5
    x = x * (1.0 - rng.uniform(0, cam.side_light) * np.clip(ramp, 0, 1))[..., None]
    x = np.power(np.clip(x, 0, 1), np.float32(rng.uniform(*cam.gamma)))
    if rng.random() < cam.p_glare:
        glare = np.zeros((h, w), np.float32)
        for _ in range(rng.integers(1, 4)):
            c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            axes = (
                max(1, int(w * rng.uniform(0.01, 0.05))),
                max(1, int(h * rng.uniform(0.01, 0.04))),
            )
            cv2.ellipse(glare, c, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        k = max(3, (min(h, w) // 40) | 1)
        glare = np.asarray(cv2.GaussianBlur(glare, (k, k), 0), np.float32)[..., None]
        x = x + glare * (1.0 - x) * 0.9
    scale = (lesion_px if lesion_px is not None else min(h, w)) / 160.0
    sigma = rng.uniform(*cam.defocus_sigma) * scale
    if sigma > 0.3:
        x = gaussian_blur(x, sigma)
    if rng.random() < cam.p_sharpen:
        blurred = gaussian_blur(x, max(0.8, scale))
        x = x + np.float32(rng.uniform(0.3, 1.0)) * (x - blurred)
    noise = np.float32(rng.uniform(*cam.noise_sigma) / 255.0)
    x = x + rng.standard_normal(x.shape, dtype=np.float32) * noise
    # x is float32 or float64 depending on the path (the side-light ramp is float64), so
    # numpy's stubs type the clip as Any; astype pins the dtype.
    out: RGBImage = np.clip(x * 255.0, 0, 255).astype(np.uint8)
    quality = int(rng.integers(cam.jpeg_quality[0], cam.jpeg_quality[1] + 1))
    ok, enc = cv2.imencode(
        ".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        return out
    dec = cv2.imdecode(enc, cv2.IMREAD_COLOR)
    if dec is None:
        raise RuntimeError("OpenCV could not decode the JPEG it had just encoded")
    return np.ascontiguousarray(cv2.cvtColor(dec, cv2.COLOR_BGR2RGB), np.uint8)


def compose_phone_photo(
    img: RGBImage,
    box: LesionBox,
    rng: np.random.Generator,
    max_width: int = 1280,
    min_width: int = 480,
    lesion_fraction: tuple[float, float] = (0.10, 0.25),
    native_scale: tuple[float, float] = (0.6, 1.0),
    tone: F32 | None = None,
) -> tuple[RGBImage, LesionBox]:
    """Set the lesion into a larger 4:3 skin photo; return it and the lesion's box.

    The source is never enlarged (``native_scale`` <= 1): a 200x150 dermoscopy image blown
    up would have no real detail, and the quality gate would rightly call it blurry. The
    canvas is sized so the lesion box's longer side is ``lesion_fraction`` of its width
    (at most ``max_width``, Telegram's photo size, and at least ``min_width``: no phone
    sends a thumbnail, so a small lesion then takes less of the frame); the lesion centre
    lands anywhere in the middle 60% of the frame (off-centre).
    """
    side = max(box.width, box.height)
    s = rng.uniform(*native_scale)
    cw = round(side * s / rng.uniform(*lesion_fraction))
    if cw > max_width:
        s *= max_width / cw
        cw = max_width
    cw = max(cw, min_width)
    ch = round(cw * 0.75)
    h, w = img.shape[:2]
    sw, sh = max(8, round(w * s)), max(8, round(h * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
    colour = random_skin_tone(rng) if tone is None else tone
    img = retone(img, box, colour)
    small = np.asarray(cv2.resize(img, (sw, sh), interpolation=interp), np.uint8)
    field = skin_field(ch, cw, colour, rng)
    cx = rng.uniform(0.2, 0.8) * cw
    cy = rng.uniform(0.2, 0.8) * ch
    bcx, bcy = (box.x0 + box.x1) / 2 * s, (box.y0 + box.y1) / 2 * s
    x0, y0 = round(cx - bcx), round(cy - bcy)
    small_box = LesionBox(
        int(box.x0 * s), int(box.y0 * s), int(np.ceil(box.x1 * s)), int(np.ceil(box.y1 * s))
    )
    paste(field, small, dermoscope_mask(small, colour, small_box), x0, y0)
    photo = np.clip(field, 0, 255).astype(np.uint8)
    new_box = LesionBox(
        max(0, round(box.x0 * s) + x0),
        max(0, round(box.y0 * s) + y0),
        min(cw, round(box.x1 * s) + x0),
        min(ch, round(box.y1 * s) + y0),
    )
    return photo, new_box


def training_view(
    img: RGBImage,
    box: LesionBox,
    rng: np.random.Generator,
    size: int,
    p_phone: float,
    margin: tuple[float, float],
) -> RGBImage:
    """One augmented ``size`` x ``size`` lesion crop, as the localiser would hand it over.

    The crop margin and centre are jittered (the localiser is not exact); with probability
    ``p_phone`` the crop is then seen through a simulated phone camera at a random
    resolution (a mole 40-160 px across in a phone photo), half of those first relit to a
    random skin tone as :func:`compose_phone_photo` does; else only mildly recoloured.
    """
    phone = rng.random() < p_phone
    if phone and rng.random() < 0.5:
        img = retone(img, box, random_skin_tone(rng))
    side = max(box.width, box.height)
    jitter = rng.uniform(-0.15, 0.15, 2) * side
    jittered = LesionBox(
        int(box.x0 + jitter[0]),
        int(box.y0 + jitter[1]),
        int(box.x1 + jitter[0]),
        int(box.y1 + jitter[1]),
    )
    crop_box = square_crop_box(
        jittered, img.shape[1], img.shape[0], float(rng.uniform(*margin)), fit_inside=False
    )
    h, w = img.shape[:2]
    pad = max(0, -crop_box.x0, -crop_box.y0, crop_box.x1 - w, crop_box.y1 - h)
    if pad:
        img = extend_with_skin(img, box, pad, rng)
        crop_box = LesionBox(
            crop_box.x0 + pad, crop_box.y0 + pad, crop_box.x1 + pad, crop_box.y1 + pad
        )
    crop = crop_square(img, crop_box)
    # Rotation by any angle: lesions have no up; reflect so no black corners appear.
    angle = rng.uniform(0, 360)
    c = crop.shape[0] / 2
    rot = cv2.getRotationMatrix2D((c, c), angle, float(rng.uniform(0.9, 1.1)))
    crop = np.asarray(
        cv2.warpAffine(crop, rot, crop.shape[1::-1], borderMode=cv2.BORDER_REFLECT_101), np.uint8
    )
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    if phone:
        res = int(rng.integers(40, size + 1))
        small = np.asarray(cv2.resize(crop, (res, res), interpolation=cv2.INTER_AREA), np.uint8)
        crop = phone_camera(small, rng)
    else:
        gains = 1.0 + rng.uniform(-0.06, 0.06, 3)
        crop = np.clip(crop.astype(np.float32) * gains, 0, 255).astype(np.uint8)
    interp = cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(crop, (size, size), interpolation=interp))

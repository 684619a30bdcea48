"""Photos in, screening replies out: the real bot, the shipped model, a fake Telegram.

Each test sends what a user would send and checks both what the user reads and what the
consultation log keeps.
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import cv2
import numpy as np
import pytest
from PIL import Image

from bot.db.models import Consultation
from bot.privacy import user_key
from bot.replies import Replies
from bot.screening import Assessed, UnsupportedMedia
from inference.preprocess import square_crop_box
from inference.types import DecodeFailure, LesionBox, QualityIssue, Risk
from tests.e2e import images
from tests.e2e.conftest import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, TEST_USER_KEY_SECRET, RunningBot
from tests.fakes.telegram_api import TOKEN, FakeTelegramApi, SentMessage
from tests.hostile_images import scan_repeat_jpeg

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def backend(each_backend: str) -> str:
    """This module runs on SQLite and on PostgreSQL."""
    return each_backend


REPLIES = Replies()
DISCLAIMER = "This is a screening aid, not a diagnosis"
RISK_WORDING = {
    Risk.HIGH: ("Result: HIGH risk.", "within 2 weeks"),
    Risk.MEDIUM: ("Result: MEDIUM risk.", "checked by a doctor in the coming weeks"),
    Risk.LOW: ("Result: LOW risk.", "ABCDE"),
}


# Samples that pass the quality gate as phone photos (the melanoma sample is borderline
# blurry at 200x150, rightly refused sometimes).
NEVUS = "ISIC_0024380_nv"
KERATOSIS = "ISIC_0024371_bkl"


@pytest.fixture(scope="module")
def phone_photos(lesion_jpegs: dict[str, bytes]) -> dict[str, bytes]:
    """The samples as phone photos (400x300): at 200x150 alone they lack detail."""
    return {
        name: images.phone_like_photo(jpeg, seed=n)
        for n, (name, jpeg) in enumerate(lesion_jpegs.items())
    }


def send_photo(api: FakeTelegramApi, user_id: int, jpeg: bytes) -> str:
    """Send ``jpeg`` as Telegram delivers a photo (several sizes); return the largest's id."""
    thumb, thumb_w, thumb_h = images.resized_jpeg(jpeg, 90)
    width, height = images.size_of(jpeg)
    small, full = api.add_file(thumb), api.add_file(jpeg)
    api.push_message(
        user_id,
        photo=[api.photo_size(small, thumb_w, thumb_h), api.photo_size(full, width, height)],
    )
    return full.file_id


def send_document(
    api: FakeTelegramApi,
    user_id: int,
    data: bytes,
    mime_type: str | None,
    file_name: str = "photo.jpg",
    file_size: int | None = -1,
) -> str:
    """Send ``data`` as a file; return its file id."""
    file = api.add_file(data, file_size=file_size)
    document: dict[str, Any] = {**file.as_dict(), "file_name": file_name}
    if mime_type is not None:
        document["mime_type"] = mime_type
    api.push_message(user_id, document=document)
    return file.file_id


async def final_text(api: FakeTelegramApi, user_id: int) -> tuple[str, list[SentMessage]]:
    """Wait for the text reply that ends every flow; return it and all replies."""
    replies = await api.wait_for_text(user_id)
    texts = [m.text or "" for m in replies if m.method == "sendMessage"]
    return texts[-1], replies


async def only_consultation(bot: RunningBot, user_id: int) -> Consultation:
    [row] = await bot.consultations(user_id)
    return row


def assert_assessed(text: str, replies: list[SentMessage], row: Consultation) -> None:
    """The result names the risk and lesion type, advises, disclaims, shows a heatmap."""
    assert row.status == "assessed"
    risk = Risk(row.risk)
    assert risk in RISK_WORDING
    for wording in RISK_WORDING[risk]:
        assert wording in text
    assert "It looks most like: " in text
    assert DISCLAIMER in text
    [heatmap] = [m for m in replies if m.method == "sendPhoto"]
    assert heatmap.text == REPLIES.heatmap_caption()
    assert heatmap.photo is not None
    with Image.open(io.BytesIO(heatmap.photo)) as picture:
        assert picture.format == "JPEG"
        assert max(picture.size) <= 1280


def assert_complete_log(row: Consultation, user_id: int, bot: RunningBot) -> None:
    """An assessed row carries everything the issue asks the log to keep."""
    assert row.user_key == user_key(user_id, TEST_USER_KEY_SECRET.encode())  # the settings' secret
    assert str(user_id) not in row.user_key
    assert row.created_at.tzinfo is not None
    assert abs(datetime.now(UTC) - row.created_at) < timedelta(hours=1)
    assert row.image_width and row.image_height and row.image_bytes
    assert row.quality_ok is True and row.quality_issues == []
    assert row.class_probabilities is not None
    assert math.isclose(sum(p or 0 for p in row.class_probabilities.values()), 1, abs_tol=1e-3)
    assert row.top_class in row.class_probabilities
    assert row.malignant_probability is not None and 0 <= row.malignant_probability <= 1
    assert row.lesion_box is not None and len(row.lesion_box) == 4
    metadata = bot.application.bot_data.runtime.screening.metadata
    assert row.model_version == metadata.version
    assert row.processing_ms is not None and row.processing_ms >= 0


async def test_lesion_photo_gets_risk_advice_heatmap_and_disclaimer(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    user_id: int,
    phone_photos: dict[str, bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A compressed lesion photo: the largest size is screened and the full result sent."""
    caplog.set_level(logging.INFO)
    largest = send_photo(fake_api, user_id, phone_photos[NEVUS])
    text, replies = await final_text(fake_api, user_id)

    row = await only_consultation(running_bot, user_id)
    assert_assessed(text, replies, row)
    assert_complete_log(row, user_id, running_bot)
    assert row.input_kind == "photo"
    assert largest in fake_api.downloads
    assert (user_id, "typing") in fake_api.chat_actions
    metadata = running_bot.application.bot_data.runtime.screening.metadata
    assert row.top_class is not None
    shown = Assessed(Risk.LOW, row.top_class, metadata.class_names[row.top_class], None)
    assert f"It looks most like: {REPLIES.lesion_name(shown)}." in text
    # Privacy: our own logs name neither the token nor the Telegram id. (Library logs
    # are covered by the whole-process test in test_process.py.)
    ours = [r.getMessage() for r in caplog.records if r.name.split(".")[0] == "bot"]
    assert ours
    assert not [m for m in ours if TOKEN in m or str(user_id) in m]


async def test_small_lesion_far_from_the_centre_of_a_large_photo_is_found_and_judged(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    """A mole in the upper-left of a full 1280x960 photo: located, classified, and the
    heatmap drawn where it is on the user's own photo, the rest of the photo untouched."""
    jpeg, (px0, py0, px1, py1) = images.large_photo_with_lesion_at(
        lesion_jpegs[NEVUS], centre=(330, 270), seed=3
    )
    send_photo(fake_api, user_id, jpeg)
    text, replies = await final_text(fake_api, user_id)

    row = await only_consultation(running_bot, user_id)
    assert_assessed(text, replies, row)
    assert row.lesion_box is not None
    x0, y0, x1, y1 = row.lesion_box
    assert px0 <= x0 < x1 <= px1 and py0 <= y0 < y1 <= py1, (row.lesion_box, (px0, py0, px1, py1))
    assert (x1 - x0) * (y1 - y0) < 0.03 * 1280 * 960  # a small part of the frame

    [heatmap] = [m for m in replies if m.method == "sendPhoto"]
    assert heatmap.photo is not None
    sent = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), np.float32)
    drawn = np.asarray(Image.open(io.BytesIO(heatmap.photo)).convert("RGB"), np.float32)
    assert drawn.shape == sent.shape  # the full photo, not the crop
    change = np.abs(drawn - sent).mean(axis=2)
    # The heat is drawn over the square the classifier saw around the lesion (where in
    # that square the class-activation map peaks is the model's business: for this
    # synthetic mole it sits on the lesion's edge) ...
    margin = running_bot.application.bot_data.runtime.screening.metadata.crop_margin
    crop = square_crop_box(LesionBox(x0, y0, x1, y1), 1280, 960, margin)
    assert change[crop.y0 : crop.y1, crop.x0 : crop.x1].mean() > 10
    assert change[600:, 800:].mean() < 3  # ... and the far corner is the user's photo


async def test_image_sent_as_a_file_is_screened(
    fake_api: FakeTelegramApi, running_bot: RunningBot, user_id: int, phone_photos: dict[str, bytes]
) -> None:
    """An uncompressed file gets the same full result and is logged as a document."""
    send_document(fake_api, user_id, phone_photos[KERATOSIS], "image/jpeg")
    text, replies = await final_text(fake_api, user_id)
    row = await only_consultation(running_bot, user_id)
    assert_assessed(text, replies, row)
    assert_complete_log(row, user_id, running_bot)
    assert row.input_kind == "document"


async def test_low_resolution_photo_gets_retake_advice_and_no_risk(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    """A 120x90 thumbnail lacks the detail the classifier needs: move closer or send a file."""
    thumbnail, width, height = images.resized_jpeg(lesion_jpegs[NEVUS], 120)
    assert min(width, height) < 120  # below the gate's 0.75 x 160 px of real detail
    send_photo(fake_api, user_id, thumbnail)
    text, replies = await final_text(fake_api, user_id)
    row = await only_consultation(running_bot, user_id)
    assert (row.status, row.reason, row.risk) == ("unassessable", "low_resolution", "unassessable")
    assert row.quality_issues == ["low_resolution"]
    assert text == REPLIES.unassessable((QualityIssue.LOW_RESOLUTION,))
    assert "send the photo as a file" in text
    assert "risk." not in text.lower()
    assert [m.method for m in replies] == ["sendMessage"]  # no heatmap for a refused photo


async def test_picture_without_a_lesion_gets_retake_advice_and_no_risk(
    fake_api: FakeTelegramApi, running_bot: RunningBot, user_id: int
) -> None:
    """A picture of no lesion: 'can't assess' with advice per issue, never a risk level."""
    send_photo(fake_api, user_id, images.flat_photo())
    text, replies = await final_text(fake_api, user_id)
    row = await only_consultation(running_bot, user_id)
    assert row.status == "unassessable"
    assert row.risk == Risk.UNASSESSABLE
    assert row.quality_ok is False
    issues = tuple(QualityIssue(i) for i in row.quality_issues or [])
    assert issues[0] is QualityIssue.NOT_A_LESION
    assert row.reason == issues[0]
    assert text.startswith("I can't assess this photo")
    assert text == REPLIES.unassessable(issues)
    assert "risk." not in text.lower()
    assert [m.method for m in replies] == ["sendMessage"]


async def assert_refused_for(
    fake_api: FakeTelegramApi, running_bot: RunningBot, user_id: int, issue: QualityIssue
) -> None:
    """The photo got 'can't assess' with ``issue``'s own advice first, and was logged so."""
    text, replies = await final_text(fake_api, user_id)
    row = await only_consultation(running_bot, user_id)
    assert (row.status, row.risk, row.quality_ok) == ("unassessable", Risk.UNASSESSABLE, False)
    issues = tuple(QualityIssue(i) for i in row.quality_issues or [])
    assert issues[0] is issue and row.reason == issue
    assert text == REPLIES.unassessable(issues)
    assert REPLIES.text(f"issue.{issue.value}") in text
    assert [m.method for m in replies] == ["sendMessage"]


async def test_blurry_photo_gets_focus_advice_and_no_risk(
    fake_api: FakeTelegramApi, running_bot: RunningBot, user_id: int, phone_photos: dict[str, bytes]
) -> None:
    """An out-of-focus phone photo of a real lesion is refused as blurry, with how to focus."""
    sharp = np.asarray(Image.open(io.BytesIO(phone_photos[NEVUS])).convert("RGB"))
    blurred = Image.fromarray(cv2.GaussianBlur(sharp, (0, 0), 5))
    send_photo(fake_api, user_id, images.encode(blurred))
    await assert_refused_for(fake_api, running_bot, user_id, QualityIssue.BLURRY)


async def test_photo_of_a_document_is_not_a_lesion(
    fake_api: FakeTelegramApi, running_bot: RunningBot, user_id: int
) -> None:
    """A photo of a printed page (no skin at all) is refused: no skin spot found."""
    page = np.full((600, 800, 3), 245, np.uint8)
    for k, y in enumerate(range(60, 560, 36)):
        line = f"Patient information leaflet, line {k}"
        cv2.putText(page, line, (40, y), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (30, 30, 30), 2)
    send_photo(fake_api, user_id, images.encode(Image.fromarray(page)))
    await assert_refused_for(fake_api, running_bot, user_id, QualityIssue.NOT_A_LESION)


Sender = Callable[[FakeTelegramApi, int, bytes], object]


def _document(data: Callable[[bytes], bytes], mime_type: str, **options: Any) -> Sender:
    """Send, as a file, what ``data`` makes of a sample lesion JPEG."""
    return lambda api, user_id, jpeg: send_document(api, user_id, data(jpeg), mime_type, **options)


def _media(field: str, **extra: Any) -> Sender:
    """Send a non-photo message (video, sticker, ...) with a file attached."""

    def send(api: FakeTelegramApi, user_id: int, jpeg: bytes) -> None:
        file = api.add_file(b"\0" * 2048)
        api.push_message(user_id, **{field: {**file.as_dict(), **extra}})

    return send


def _animation(api: FakeTelegramApi, user_id: int, jpeg: bytes) -> None:
    # Telegram sends a GIF as an mp4 animation, with a document beside it for old clients.
    file = api.add_file(b"\0" * 2048)
    media = {**file.as_dict(), "file_name": "mole.gif.mp4", "mime_type": "video/mp4"}
    api.push_message(
        user_id, animation={**media, "width": 96, "height": 96, "duration": 1}, document=media
    )


def _pad_past_limit(jpeg: bytes) -> bytes:
    return jpeg + b"\0" * (MAX_IMAGE_BYTES + 1 - len(jpeg))


class BadInput(NamedTuple):
    send: Sender
    input_kind: str  # as logged
    reason: str  # as logged, and the reply's message key
    downloaded: bool  # whether the bot had to fetch the file to find out


_HUGE_SIDE = math.isqrt(MAX_IMAGE_PIXELS) + 100
BAD_INPUTS = {
    "pdf": BadInput(
        _document(lambda _: b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "application/pdf", file_name="a.pdf"),
        "document",
        DecodeFailure.NOT_AN_IMAGE,
        downloaded=False,
    ),
    "unlabelled garbage": BadInput(
        _document(lambda _: bytes(range(256)) * 64, "application/octet-stream"),
        "document",
        DecodeFailure.NOT_AN_IMAGE,
        downloaded=True,
    ),
    "truncated jpeg": BadInput(
        _document(lambda jpeg: jpeg[: len(jpeg) // 3], "image/jpeg"),
        "document",
        DecodeFailure.CORRUPT,
        downloaded=True,
    ),
    "announced too big": BadInput(
        _document(lambda jpeg: jpeg, "image/jpeg", file_size=MAX_IMAGE_BYTES + 1),
        "document",
        DecodeFailure.TOO_MANY_BYTES,
        downloaded=False,
    ),
    "too big, size not announced": BadInput(
        _document(_pad_past_limit, "image/jpeg", file_size=None),
        "document",
        DecodeFailure.TOO_MANY_BYTES,
        downloaded=True,
    ),
    "too many pixels": BadInput(
        _document(lambda _: images.huge_png(_HUGE_SIDE, _HUGE_SIDE), "image/png"),
        "document",
        DecodeFailure.TOO_MANY_PIXELS,
        downloaded=True,
    ),
    "progressive jpeg of 200 repeated scans": BadInput(
        _document(lambda _: scan_repeat_jpeg(width=2000, height=1500), "image/jpeg"),
        "document",
        DecodeFailure.TOO_COMPLEX,
        downloaded=True,
    ),
    "tiny": BadInput(
        _document(lambda _: images.tiny_png(), "image/png"),
        "document",
        DecodeFailure.TOO_SMALL,
        downloaded=True,
    ),
    "empty": BadInput(
        _document(lambda _: b"", "image/jpeg"), "document", DecodeFailure.EMPTY, downloaded=True
    ),
    "gif as a file": BadInput(
        _document(lambda _: images.animated_gif(), "image/gif"),
        "document",
        DecodeFailure.ANIMATED,
        downloaded=True,
    ),
    "gif as an animation": BadInput(
        _animation, "animation", DecodeFailure.ANIMATED, downloaded=False
    ),
    "video": BadInput(
        _media("video", width=64, height=64, duration=3),
        "video",
        UnsupportedMedia.VIDEO,
        downloaded=False,
    ),
    "video note": BadInput(
        _media("video_note", length=64, duration=3),
        "video_note",
        UnsupportedMedia.VIDEO,
        downloaded=False,
    ),
    "sticker": BadInput(
        _media("sticker", width=512, height=512, is_animated=False, is_video=False, type="regular"),
        "sticker",
        UnsupportedMedia.STICKER,
        downloaded=False,
    ),
    "voice note": BadInput(
        _media("voice", duration=2), "voice", UnsupportedMedia.VOICE, downloaded=False
    ),
    "audio file": BadInput(
        _media("audio", duration=2), "audio", UnsupportedMedia.VOICE, downloaded=False
    ),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
async def test_bad_input_gets_a_clear_reply_and_a_logged_reason(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    user_id: int,
    lesion_jpegs: dict[str, bytes],
    name: str,
) -> None:
    """Each kind of unusable upload is explained to the user and logged as rejected."""
    bad = BAD_INPUTS[name]
    downloads_before = len(fake_api.downloads)
    bad.send(fake_api, user_id, lesion_jpegs[NEVUS])
    text, replies = await final_text(fake_api, user_id)

    assert [m.method for m in replies] == ["sendMessage"]
    assert text == REPLIES.rejected(bad.reason)
    row = await only_consultation(running_bot, user_id)
    assert (row.status, row.reason, row.input_kind) == ("rejected", bad.reason, bad.input_kind)
    assert row.risk is None
    assert (len(fake_api.downloads) > downloads_before) == bad.downloaded


async def test_bot_keeps_answering_after_bad_input(
    fake_api: FakeTelegramApi, running_bot: RunningBot, user_id: int, phone_photos: dict[str, bytes]
) -> None:
    """A corrupt upload followed by a good photo: the second still gets its result."""
    BAD_INPUTS["truncated jpeg"].send(fake_api, user_id, phone_photos[NEVUS])
    await fake_api.wait_for_text(user_id)
    send_photo(fake_api, user_id, phone_photos[NEVUS])
    await fake_api.wait_for_text(user_id, count=2)
    statuses = [row.status for row in await running_bot.consultations(user_id)]
    assert sorted(statuses) == ["assessed", "rejected"]


async def test_file_that_cannot_be_fetched_gets_an_apology_and_is_logged(
    fake_api: FakeTelegramApi, running_bot: RunningBot, user_id: int
) -> None:
    """If Telegram refuses the file (say, it expired), the global handler apologises."""
    gone = {"file_id": "expired", "file_unique_id": "gone", "width": 800, "height": 600}
    fake_api.push_message(user_id, photo=[gone])
    text, _ = await final_text(fake_api, user_id)
    assert text == REPLIES.error()
    row = await only_consultation(running_bot, user_id)
    assert (row.status, row.reason, row.input_kind) == ("failed", "BadRequest", "photo")


async def test_a_hundred_users_at_once_all_get_answers(
    fake_api: FakeTelegramApi, running_bot: RunningBot, phone_photos: dict[str, bytes]
) -> None:
    """Photos from 100 users at the same moment: every one is answered and logged."""
    photos = list(phone_photos.values())
    users = range(500_001, 500_101)
    for user in users:
        await running_bot.agree(user)
    for n, user in enumerate(users):
        send_photo(fake_api, user, photos[n % len(photos)])
    await asyncio.gather(*(fake_api.wait_for_text(user, within_s=600) for user in users))
    for user in users:
        assert len(await running_bot.consultations(user)) == 1

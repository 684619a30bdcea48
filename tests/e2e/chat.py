"""What a user does in a chat, for the end-to-end tests: send photos, press buttons."""

from __future__ import annotations

from tests.conftest import DATA_DIR
from tests.e2e import images
from tests.fakes.telegram_api import FakeTelegramApi, SentMessage

# A sample that passes the quality gate as a phone photo (see test_screening.py).
NEVUS = "ISIC_0024380_nv"
# Real photos the shipped model answers with a known risk level (tests/data/README.md;
# tests/unit/test_real_photos.py fails first if a new model changes either): a test whose
# expectation depends on the risk runs once with each, so neither branch goes untested.
KNOWN_RISK_PHOTOS = {
    "high": DATA_DIR / "pad" / "PAT_145_216_110.jpg",  # basal cell carcinoma
    "low": DATA_DIR / "pad" / "PAT_625_1184_412.jpg",  # seborrhoeic keratosis
}


def photo_known(risk: str) -> bytes:
    """A real phone photo the shipped model answers with ``risk`` ("high" or "low")."""
    return KNOWN_RISK_PHOTOS[risk].read_bytes()


def send_photo(
    api: FakeTelegramApi,
    user_id: int,
    jpeg: bytes,
    caption: str | None = None,
    language_code: str = "en",
    group_id: int | None = None,
) -> str:
    """Send ``jpeg`` as Telegram delivers a photo (two sizes); return the largest's file id.

    In the user's private chat, or in the group ``group_id``.
    """
    thumb, thumb_w, thumb_h = images.resized_jpeg(jpeg, 90)
    width, height = images.size_of(jpeg)
    small, full = api.add_file(thumb), api.add_file(jpeg)
    extra = {} if caption is None else {"caption": caption}
    api.push_message(
        user_id,
        language_code,
        group_id=group_id,
        photo=[api.photo_size(small, thumb_w, thumb_h), api.photo_size(full, width, height)],
        **extra,
    )
    return full.file_id


async def texts_after(api: FakeTelegramApi, user_id: int, count: int) -> list[str]:
    """Wait until ``count`` text messages reached the chat; return all their texts."""
    replies = await api.wait_for_text(user_id, count=count)
    return [m.text or "" for m in replies if m.method == "sendMessage"]


async def last_text(api: FakeTelegramApi, user_id: int, count: int) -> SentMessage:
    """Wait for the ``count``-th text message to the chat and return it."""
    replies = await api.wait_for_text(user_id, count=count)
    return [m for m in replies if m.method == "sendMessage"][count - 1]


async def press(
    api: FakeTelegramApi, user_id: int, message: SentMessage, data: str, language_code: str = "en"
) -> SentMessage:
    """Press a button under ``message``; return what the bot did next in the chat.

    That is the next message or edit after the press (the dropped keyboard does not count).
    """
    before = len(api.replies_to(user_id))
    api.push_callback(user_id, message, data, language_code)

    def answered() -> list[SentMessage]:
        return [
            m
            for m in api.replies_to(user_id)[before:]
            if m.method in ("sendMessage", "editMessageText")
        ]

    await api.wait_for(lambda: bool(answered()))
    return answered()[0]


def phone_photo(lesion_jpegs: dict[str, bytes], name: str = NEVUS, seed: int = 0) -> bytes:
    return images.phone_like_photo(lesion_jpegs[name], seed=seed)

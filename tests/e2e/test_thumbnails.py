"""Opt-in encrypted thumbnails of a named spot, shown side by side with its next photo
(/thumbnails; off by default; deleted by opting out and by /forget)."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image
from sqlalchemy import func, select

from bot.db.models import Thumbnail
from bot.replies import for_language
from tests.e2e.chat import last_text, phone_photo, press, send_photo
from tests.e2e.conftest import RunningBot
from tests.fakes.telegram_api import FakeTelegramApi, SentMessage

pytestmark = pytest.mark.asyncio(loop_scope="module")

EN = for_language("en")
LABEL = "left shoulder mole"
JPEG_MAGIC = b"\xff\xd8\xff"


@pytest.fixture(scope="module")
def backend(each_backend: str) -> str:
    """On SQLite and on PostgreSQL: a new table and a new column, written by both."""
    return each_backend


async def thumbnails_of(bot: RunningBot, user_id: int) -> list[Thumbnail]:
    async with bot.application.bot_data.runtime.sessions() as session:
        rows = await session.scalars(
            select(Thumbnail)
            .where(Thumbnail.user_key == bot.key(user_id))
            .order_by(Thumbnail.consultation_id)
        )
        return list(rows)


async def all_thumbnails(bot: RunningBot) -> int:
    async with bot.application.bot_data.runtime.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Thumbnail)) or 0)


def side_by_side_pictures(api: FakeTelegramApi, user_id: int) -> list[SentMessage]:
    prefix = EN.text("thumbnails.side_by_side", earlier="X", latest="Y").split("X")[0]
    return [
        m
        for m in api.replies_to(user_id)
        if m.method == "sendPhoto" and (m.text or "").startswith(prefix)
    ]


async def named_photo(api: FakeTelegramApi, user_id: int, jpeg: bytes, count: int) -> None:
    """Send a photo of the named spot and wait for its result (the ``count``-th text)."""
    send_photo(api, user_id, jpeg, caption=LABEL)
    await last_text(api, user_id, count)


async def opt_in(api: FakeTelegramApi, bot: RunningBot, user_id: int, count: int) -> None:
    api.push_text(user_id, "/thumbnails")
    offer = await last_text(api, user_id, count)
    assert EN.text("thumbnails.ask") in (offer.text or "")
    assert EN.text("thumbnails.now_off") in (offer.text or "")  # off by default
    assert offer.buttons == [
        (EN.text("thumbnails.button.on"), "thumbs:on"),
        (EN.text("thumbnails.button.off"), "thumbs:off"),
    ]
    done = await press(api, user_id, offer, "thumbs:on")
    assert done.text == EN.text("thumbnails.on")
    user = await bot.user(user_id)
    assert user is not None and user.keep_thumbnails


async def test_without_opting_in_nothing_is_kept_and_nothing_shown(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    user = await running_bot.user(user_id)
    assert user is not None and not user.keep_thumbnails  # off by default
    await named_photo(fake_api, user_id, phone_photo(lesion_jpegs, seed=1), 1)
    await named_photo(fake_api, user_id, phone_photo(lesion_jpegs, seed=2), 2)
    consultations = await running_bot.consultations(user_id)
    assert [row.status for row in consultations] == ["assessed", "assessed"]
    assert await thumbnails_of(running_bot, user_id) == []
    assert side_by_side_pictures(fake_api, user_id) == []


async def test_opted_in_thumbnails_are_sealed_shown_side_by_side_and_forgotten(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    """Opted in: each named photo keeps a thumbnail that is not a JPEG at rest (it opens,
    with this user's key and row only, into a small JPEG); the second photo of the spot
    sends both side by side with their dates; /forget deletes them."""
    await opt_in(fake_api, running_bot, user_id, 1)
    await named_photo(fake_api, user_id, phone_photo(lesion_jpegs, seed=1), 2)
    first = await thumbnails_of(running_bot, user_id)
    assert len(first) == 1
    sealed = first[0].sealed
    raw = base64.urlsafe_b64decode(sealed.split(".", 2)[2])
    assert JPEG_MAGIC not in sealed.encode() and JPEG_MAGIC not in raw
    sealer = running_bot.application.bot_data.runtime.keys.thumbnail_sealer
    key = running_bot.key(user_id)
    opened = sealer.open(sealed, key, first[0].consultation_id)
    assert opened is not None and opened.startswith(JPEG_MAGIC)
    assert max(Image.open(io.BytesIO(opened)).size) == 192
    assert sealer.open(sealed, key, first[0].consultation_id + 1) is None  # bound to its row
    assert side_by_side_pictures(fake_api, user_id) == []  # nothing to compare with yet

    await named_photo(fake_api, user_id, phone_photo(lesion_jpegs, seed=2), 3)
    await fake_api.wait_for(lambda: bool(side_by_side_pictures(fake_api, user_id)))
    (picture,) = side_by_side_pictures(fake_api, user_id)
    rows = await running_bot.consultations(user_id)
    newest, oldest = rows[0], rows[1]
    assert picture.text == EN.text(
        "thumbnails.side_by_side",
        earlier=EN.date(oldest.created_at),
        latest=EN.date(newest.created_at),
    )
    assert picture.photo is not None
    width, height = Image.open(io.BytesIO(picture.photo)).size
    assert width > 2 * 192 and height > 192  # two thumbnails and their dates
    assert len(await thumbnails_of(running_bot, user_id)) == 2

    fake_api.push_text(user_id, "/forget")
    replies = [m for m in fake_api.replies_to(user_id) if m.has_text]
    confirm = await last_text(fake_api, user_id, len(replies) + 1)
    assert confirm.text == EN.text("forget.confirm")
    done = await press(fake_api, user_id, confirm, "forget:yes")
    assert done.text == EN.text("forget.done")
    assert await thumbnails_of(running_bot, user_id) == []


async def test_opting_out_deletes_the_thumbnails_kept(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    await opt_in(fake_api, running_bot, user_id, 1)
    await named_photo(fake_api, user_id, phone_photo(lesion_jpegs, seed=3), 2)
    assert len(await thumbnails_of(running_bot, user_id)) == 1
    before = await all_thumbnails(running_bot)

    fake_api.push_text(user_id, "/thumbnails")
    offer = await last_text(fake_api, user_id, 3)
    assert EN.text("thumbnails.now_on") in (offer.text or "")
    done = await press(fake_api, user_id, offer, "thumbs:off")
    assert done.text == EN.text("thumbnails.off")
    assert await thumbnails_of(running_bot, user_id) == []
    assert await all_thumbnails(running_bot) == before - 1  # only this person's
    user = await running_bot.user(user_id)
    assert user is not None and not user.keep_thumbnails
    # Off again: the next photo of the spot keeps nothing.
    await named_photo(fake_api, user_id, phone_photo(lesion_jpegs, seed=4), 4)
    assert await thumbnails_of(running_bot, user_id) == []

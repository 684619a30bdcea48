"""Health data stays where it belongs: consent fails closed, /forget wins over a photo in
flight, the bot answers in private chats only.

The real bot, a fake Telegram, a real SQLite file and then a real PostgreSQL; faults are
injected where they happen (the database driver, the download), never by replacing our
own code.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.models import Consultation, FollowUp, User, utc_now
from bot.db.session import create_engine
from bot.replies import for_language
from bot.scheduler import send_due
from tests.e2e.chat import last_text, phone_photo, press, send_photo
from tests.e2e.conftest import ADMIN_ID, RunningBot, make_settings, start_bot
from tests.fakes.telegram_api import BOT_USER, FakeTelegramApi, Fault, SentMessage
from tests.postgres import drop_everything

pytestmark = pytest.mark.asyncio(loop_scope="module")

EN = for_language("en")


@pytest_asyncio.fixture(loop_scope="module", scope="module", params=["sqlite", "postgresql"])
async def running_bot(
    request: pytest.FixtureRequest,
    fake_api: FakeTelegramApi,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[RunningBot]:
    """The bot on a SQLite file, then on a freshly wiped PostgreSQL database."""
    database = tmp_path_factory.mktemp("db") / "bot.db"
    url = f"sqlite+aiosqlite:///{database}"
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
        if url is None:
            pytest.skip("no PostgreSQL server binaries here; set TEST_POSTGRES_URL")
        engine = create_engine(url)
        await drop_everything(engine)
        await engine.dispose()
    async with start_bot(make_settings(fake_api.url, database, database_url=url)) as bot:
        yield bot


def engine_of(bot: RunningBot) -> AsyncEngine:
    bind = bot.application.bot_data.runtime.sessions.kw["bind"]
    assert isinstance(bind, AsyncEngine)
    return bind


@contextmanager
def failing_once(engine: AsyncEngine, table: str) -> Iterator[list[str]]:
    """Make the next query that reads ``table`` fail in the driver, as a dropped
    connection or a locked database would; yields the statements that failed."""
    failed: list[str] = []

    def fail(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not failed and statement.lstrip().upper().startswith("SELECT") and table in statement:
            failed.append(statement)
            raise ConnectionError("injected: the database went away")

    event.listen(engine.sync_engine, "before_cursor_execute", fail)
    try:
        yield failed
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", fail)


async def rows_about(bot: RunningBot, user_id: int) -> dict[str, int]:
    """Count the rows about one user in every table that holds a user key."""
    key = bot.key(user_id)
    async with bot.application.bot_data.runtime.sessions() as session:
        return {
            model.__tablename__: int(
                await session.scalar(
                    select(func.count()).select_from(model).where(model.user_key == key)
                )
                or 0
            )
            for model in (User, Consultation, FollowUp)
        }


async def test_a_failed_consent_check_stops_the_photo(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    new_user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    """One database error in the consent check, a photo from someone who never agreed:
    nothing downloaded, nothing stored, one clear reply (not a screening result)."""
    with failing_once(engine_of(running_bot), "users") as failed:
        file_id = send_photo(fake_api, new_user_id, phone_photo(lesion_jpegs))
        [reply] = await fake_api.wait_for_text(new_user_id)
    assert failed, "the fault was never injected"
    assert reply.text == EN.text("consent.unchecked")
    assert file_id not in fake_api.download_requests
    assert await rows_about(running_bot, new_user_id) == {
        "users": 0,
        "consultations": 0,
        "follow_ups": 0,
    }
    # Nothing else follows: no second reply, no photo.
    await fake_api.wait_for(lambda: True)
    assert [m.method for m in fake_api.replies_to(new_user_id)] == ["sendMessage"]


async def test_forget_wins_over_a_photo_in_flight(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    """The download is held open while /forget is confirmed, then released: nothing about
    the user is stored, and nothing is sent to them over the next 30 days."""
    fake_api.push_text(user_id, "/remind monthly")
    await last_text(fake_api, user_id, 1)
    photo = phone_photo(lesion_jpegs)
    file_id = send_photo(fake_api, user_id, photo, caption="left shoulder")
    release = fake_api.hold_download(file_id)
    await fake_api.wait_for(lambda: file_id in fake_api.download_requests)

    fake_api.push_text(user_id, "/forget")
    confirm = await last_text(fake_api, user_id, 2)
    done = await press(fake_api, user_id, confirm, "forget:yes")
    assert done.text == EN.text("forget.done")
    release.set()
    dropped = await last_text(fake_api, user_id, 3)
    assert dropped.text == EN.text("forget.photo_dropped")

    assert await rows_about(running_bot, user_id) == {
        "users": 0,
        "consultations": 0,
        "follow_ups": 0,
    }
    assert not [m for m in fake_api.replies_to(user_id) if m.method == "sendPhoto"]
    before = len(fake_api.replies_to(user_id))
    runtime = running_bot.application.bot_data.runtime
    for day in range(1, 31):
        await send_due(running_bot.application.bot, runtime, utc_now() + timedelta(days=day))
    assert len(fake_api.replies_to(user_id)) == before


GROUP_ID = -1_001_234_567_000


async def test_a_group_gets_one_polite_line_and_no_health_data(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    """A photo, /history, /remind and an admin's /export typed in a group: one polite line
    in all, then the bot leaves; no result, no history, no CSV, nothing downloaded, no
    group id sealed anywhere."""
    group = next(_group_ids)
    file_id = send_photo(fake_api, user_id, phone_photo(lesion_jpegs), group_id=group)
    fake_api.push_text(user_id, "/history", group_id=group)
    fake_api.push_text(user_id, "/remind monthly", group_id=group)
    fake_api.push_text(ADMIN_ID, "/export", group_id=group)
    await fake_api.wait_for(lambda: group in fake_api.left_chats)
    await _all_fetched(fake_api)
    await _idle(running_bot)

    replies = fake_api.replies_to(group)
    assert [(m.method, m.text) for m in replies] == [("sendMessage", EN.text("private_only"))]
    assert fake_api.left_chats.count(group) == 1
    assert file_id not in fake_api.download_requests
    assert not [m for m in fake_api.sent if m.method in ("sendDocument", "sendPhoto")]
    assert await rows_about(running_bot, user_id) == {
        "users": 1,  # agreed earlier, in private
        "consultations": 0,
        "follow_ups": 0,
    }
    user = await running_bot.user(user_id)
    assert user is not None and user.chat_ref is None and user.reminder is None


# Each test its own group: a group is told once, then left.
_group_ids = itertools.count(-1_001_234_567_890, -1)


async def _all_fetched(api: FakeTelegramApi) -> None:
    """Wait until the bot has taken every queued update from the fake."""
    await api.wait_for(lambda: api.unconfirmed == 0, within_s=30)


async def _idle(bot: RunningBot) -> None:
    """Wait until the bot holds no update (every fetched one has been handled)."""
    inbox = bot.application.bot_data.runtime.inbox
    async with asyncio.timeout(60):
        while inbox.held:  # noqa: ASYNC110  # the inbox signals nothing when it empties
            await asyncio.sleep(0.05)


REFUSAL_FAULTS = {
    "not enough rights": Fault.bad_request(
        "Bad Request: not enough rights to send text messages to the chat"
    ),
    "bad gateway": Fault(502, "Bad Gateway"),
}


@pytest.mark.parametrize("fault", REFUSAL_FAULTS.values(), ids=REFUSAL_FAULTS.keys())
@pytest.mark.parametrize("sent", ["photo", "/history", "/export"])
async def test_a_group_where_the_refusal_fails_still_gets_nothing(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    user_id: int,
    lesion_jpegs: dict[str, bytes],
    sent: str,
    fault: Fault,
) -> None:
    """The private-chats-only line cannot be sent (no right to write there, or a 502):
    the update still stops at the gate. Nothing is downloaded, screened, listed or
    exported into the group, and the bot leaves it."""
    group = next(_group_ids)
    fake_api.inject("sendMessage", fault)
    file_id = None
    if sent == "photo":
        file_id = send_photo(fake_api, user_id, phone_photo(lesion_jpegs), group_id=group)
    else:
        fake_api.push_text(ADMIN_ID if sent == "/export" else user_id, sent, group_id=group)

    # Whichever comes first: the bot leaving, or anything at all reaching the group.
    await fake_api.wait_for(
        lambda: group in fake_api.left_chats or bool(fake_api.replies_to(group)), within_s=60
    )
    await _all_fetched(fake_api)
    await _idle(running_bot)
    assert fake_api.replies_to(group) == []
    assert fake_api.left_chats.count(group) == 1
    assert fake_api.pending_faults("sendMessage") == 0  # the refusal was tried, and failed
    if file_id is not None:
        assert file_id not in fake_api.download_requests
        assert await running_bot.consultations(user_id) == []


async def test_group_traffic_never_delays_a_private_user(
    fake_api: FakeTelegramApi, running_bot: RunningBot, new_user_id: int
) -> None:
    """120 messages in one group (its replies limited to 20 a minute by Telegram), then a
    private /help: answered within 2 s, as without the group. The group got one line."""
    group = next(_group_ids)
    for number in range(120):
        fake_api.push_text(new_user_id, f"hello {number}", group_id=group)
    await _all_fetched(fake_api)

    fake_api.push_text(new_user_id, "/help")
    started = time.monotonic()
    [help_text] = await fake_api.wait_for_text(new_user_id, within_s=30)
    took = time.monotonic() - started

    assert help_text.text == EN.help()
    assert took < 2.0, f"/help took {took:.1f} s behind the group's traffic"
    await fake_api.wait_for(lambda: group in fake_api.left_chats, within_s=30)
    assert len(fake_api.replies_to(group)) <= 1


def _membership(
    api: FakeTelegramApi, group: int, user_id: int, old: str, new: str
) -> dict[str, Any]:
    """A my_chat_member update: the bot's own status in ``group`` changed from old to new."""
    banned = {"until_date": 0} if new == "kicked" else {}
    return {
        "update_id": api.next_id(),
        "my_chat_member": {
            "chat": {"id": group, "type": "supergroup", "title": "Test group"},
            "from": {"id": user_id, "is_bot": False, "first_name": "Test"},
            "date": int(time.time()),
            "old_chat_member": {"user": BOT_USER, "status": old},
            "new_chat_member": {"user": BOT_USER, "status": new, **banned},
        },
    }


async def test_the_bot_leaves_a_group_as_soon_as_it_is_added(
    fake_api: FakeTelegramApi, running_bot: RunningBot, new_user_id: int
) -> None:
    """Added to a group: one line there, then it leaves, before anyone wrote anything.
    Removed from another: nothing is sent there and nothing is left."""
    del running_bot
    added, removed = next(_group_ids), next(_group_ids)
    fake_api.push_update(_membership(fake_api, removed, new_user_id, "member", "kicked"))
    fake_api.push_update(_membership(fake_api, added, new_user_id, "left", "member"))
    await fake_api.wait_for(lambda: added in fake_api.left_chats, within_s=30)
    assert [m.text for m in fake_api.replies_to(added)] == [EN.text("private_only")]
    assert fake_api.replies_to(removed) == [] and removed not in fake_api.left_chats


async def test_buttons_pressed_in_a_group_are_ignored(
    fake_api: FakeTelegramApi, running_bot: RunningBot, new_user_id: int
) -> None:
    """A consent button forwarded into a group and pressed there does nothing at all."""
    fake_api.push_text(new_user_id, "/start")
    await fake_api.wait_for_text(new_user_id, count=4)  # the consent question is the last
    start = fake_api.last_with_buttons(new_user_id)
    in_group = SentMessage("sendMessage", GROUP_ID, start.text, None, 1, start.reply_markup)
    answered, in_the_group = len(fake_api.answered_callbacks), len(fake_api.replies_to(GROUP_ID))
    fake_api.push_callback(new_user_id, in_group, "consent:agree")
    fake_api.push_text(new_user_id, "/help")  # handled after the press, in order
    await fake_api.wait_for_text(new_user_id, count=5)
    assert len(fake_api.replies_to(GROUP_ID)) == in_the_group
    assert len(fake_api.answered_callbacks) == answered
    assert await running_bot.user(new_user_id) is None  # no consent stored

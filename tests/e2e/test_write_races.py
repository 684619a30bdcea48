"""Writes re-check the user in the transaction that writes: a /forget that commits between
a handler's first read and its write wins, as it does against a photo in flight.

The race is made exact on the real SQLite file: right after the handler's read of the
user row, the row is deleted and committed on the same connection (what /forget does when
it commits at that instant); the handler's write then comes after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.replies import for_language
from tests.e2e.chat import press
from tests.e2e.conftest import RunningBot
from tests.fakes.telegram_api import FakeTelegramApi

pytestmark = pytest.mark.asyncio(loop_scope="module")

EN = for_language("en")


@contextmanager
def forgotten_after_next_read(bot: RunningBot, user_id: int) -> Iterator[list[str]]:
    """Delete the user's row, committed, right after the next read of it; yields what ran."""
    bind = bot.application.bot_data.runtime.sessions.kw["bind"]
    assert isinstance(bind, AsyncEngine)
    key = bot.key(user_id)
    done: list[str] = []

    def forget(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        reads_user = statement.lstrip().upper().startswith("SELECT") and "FROM users" in statement
        if done or not reads_user or key not in tuple(parameters or ()):
            return
        done.append(statement)
        other = conn.connection.dbapi_connection.cursor()
        # The read's transaction (BEGIN IMMEDIATE) holds the write lock: /forget's delete
        # commits here, and a new transaction is open again for the read to close.
        other.execute("DELETE FROM users WHERE user_key = ?", (key,))
        other.execute("COMMIT")
        other.execute("BEGIN IMMEDIATE")
        other.close()

    event.listen(bind.sync_engine, "after_cursor_execute", forget)
    try:
        yield done
    finally:
        event.remove(bind.sync_engine, "after_cursor_execute", forget)


async def test_remind_racing_forget_does_not_bring_the_user_back(
    fake_api: FakeTelegramApi, running_bot: RunningBot, user_id: int
) -> None:
    """On main the reminder re-created the row: consent NULL, reminder on, a sealed chat
    id, and the reminder was later sent."""
    with forgotten_after_next_read(running_bot, user_id) as done:
        fake_api.push_text(user_id, "/remind monthly")
        [reply] = await fake_api.wait_for_text(user_id)
    assert done, "the race was never set up"
    assert await running_bot.user(user_id) is None
    assert reply.text == EN.consent_required()


async def test_a_language_button_pressed_after_forget_does_not_bring_the_user_back(
    fake_api: FakeTelegramApi, running_bot: RunningBot, user_id: int
) -> None:
    """The language menu stays on screen after /forget; pressing it then must not store a
    row again (on main it re-created one, consent NULL, with the language)."""
    fake_api.push_text(user_id, "/language")
    [menu] = await fake_api.wait_for_text(user_id)
    fake_api.push_text(user_id, "/forget")
    confirm = (await fake_api.wait_for_text(user_id, count=2))[-1]
    forget_yes = next(data for _, data in confirm.buttons if data.endswith("yes"))
    await press(fake_api, user_id, confirm, forget_yes)
    assert await running_bot.user(user_id) is None

    answer = await press(fake_api, user_id, menu, "lang:kk")
    assert await running_bot.user(user_id) is None
    assert answer.text == for_language("kk").text("language.needs_consent")


async def test_a_language_is_not_stored_for_someone_who_never_agreed(
    fake_api: FakeTelegramApi, running_bot: RunningBot, new_user_id: int
) -> None:
    fake_api.push_text(new_user_id, "/language")
    [menu] = await fake_api.wait_for_text(new_user_id)
    answer = await press(fake_api, new_user_id, menu, "lang:ru")
    assert await running_bot.user(new_user_id) is None
    assert answer.text == for_language("ru").text("language.needs_consent")

"""Rotating a leaked bot token loses nothing: consent, history and reminders are keyed by
a secret of their own, set in USER_KEY_SECRET or generated once beside the database."""

from __future__ import annotations

import stat
from datetime import timedelta
from pathlib import Path

import pytest

from bot.db.models import utc_now
from bot.keys import KEY_FILE_NAME
from bot.replies import for_language
from bot.scheduler import send_due
from tests.e2e.chat import last_text, phone_photo, press, send_photo
from tests.e2e.conftest import make_settings, start_bot
from tests.fakes.telegram_api import TOKEN, FakeTelegramApi

EN = for_language("en")
NEW_TOKEN = "987654321:ROTATED-fake-token-abcdefghijklmno"
USER = 4_242_001


@pytest.mark.parametrize("secret", ["a-secret-the-deployment-keeps-c4f7a0d3e6b9c2f58c3f1a6d", None])
async def test_a_new_token_keeps_consent_history_and_reminders(
    fresh_api: FakeTelegramApi, tmp_path: Path, lesion_jpegs: dict[str, bytes], secret: str | None
) -> None:
    """Token T1, then T2 (the database and USER_KEY_SECRET, or its generated file, kept)."""
    database = tmp_path / "data" / "bot.db"
    async with start_bot(make_settings(fresh_api.url, database, user_key_secret=secret)):
        fresh_api.push_text(USER, "/start")
        start = await last_text(fresh_api, USER, 4)  # /start: 4 short messages
        await press(fresh_api, USER, start, "consent:agree")
        send_photo(fresh_api, USER, phone_photo(lesion_jpegs), caption="left arm")
        assert "not a diagnosis" in ((await last_text(fresh_api, USER, 6)).text or "")
        fresh_api.push_text(USER, "/remind monthly")
        assert (await last_text(fresh_api, USER, 7)).text == EN.text("remind.on")

    fresh_api.token = NEW_TOKEN  # the old token is revoked: Telegram refuses it from now on
    rotated = make_settings(
        fresh_api.url, database, user_key_secret=secret, telegram_bot_token=NEW_TOKEN
    )
    async with start_bot(rotated) as bot:
        fresh_api.push_text(USER, "/history")
        history = await last_text(fresh_api, USER, 8)
        assert (history.text or "").startswith(EN.text("history.title"))
        assert "left arm" in (history.text or "")
        send_photo(fresh_api, USER, phone_photo(lesion_jpegs, seed=1))
        result = await last_text(fresh_api, USER, 9)
        assert "not a diagnosis" in (result.text or "")  # no new consent asked for
        runtime = bot.application.bot_data.runtime
        await send_due(bot.application.bot, runtime, utc_now() + timedelta(days=31))
        await last_text(fresh_api, USER, 10)
        # Sent oldest first: a follow-up (due after 21 days) may come before the reminder.
        later = [m.text for m in fresh_api.replies_to(USER) if m.method == "sendMessage"][6:]
        assert EN.text("remind.message") in later

    key_file = database.parent / KEY_FILE_NAME
    if secret is None:
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert TOKEN.encode() not in key_file.read_bytes()
    else:
        assert not key_file.exists()

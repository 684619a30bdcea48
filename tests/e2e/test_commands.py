"""/start, /help and stray messages, through the real bot and a fake Telegram."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import RunningBot
from tests.fakes.telegram_api import FakeTelegramApi

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_start_explains_what_the_bot_does_and_how_to_take_a_photo(
    fake_api: FakeTelegramApi, running_bot: RunningBot, user_id: int
) -> None:
    """/start says it is not a diagnosis, gives photo tips and says to send a file."""
    fake_api.push_text(user_id, "/start")
    replies = await fake_api.wait_for_text(user_id, count=3)
    # Short messages, not one block of ~1,900 characters; no consent question (agreed).
    assert all(len(reply.text or "") < 700 for reply in replies)
    text = "\n".join(reply.text or "" for reply in replies)
    assert "I do not diagnose" in text and "Do you agree?" not in text
    for tip in ("close", "focus", "daylight", "middle", "flash", "as a file"):
        assert tip in text, tip


async def test_help_gives_photo_tips(
    fake_api: FakeTelegramApi, running_bot: RunningBot, user_id: int
) -> None:
    """/help repeats the photo tips and lists the commands."""
    fake_api.push_text(user_id, "/help")
    [reply] = await fake_api.wait_for_text(user_id)
    text = reply.text or ""
    assert "/start" in text
    assert "daylight" in text
    assert "not a diagnosis" in text


async def test_bot_registers_its_commands_on_start_up(
    fake_api: FakeTelegramApi, running_bot: RunningBot
) -> None:
    """The command menu offers the user commands, in English and in each user language."""
    expected = [
        "start",
        "help",
        "history",
        "report",
        "remind",
        "thumbnails",
        "language",
        "privacy",
        "forget",
    ]
    assert [c["command"] for c in fake_api.commands] == expected
    for language in ("ru", "kk"):
        menu = fake_api.commands_by_language[language]
        assert [c["command"] for c in menu] == expected
        assert menu != fake_api.commands  # translated descriptions


@pytest.mark.parametrize("text", ["hello, is this mole bad?", "/unknown"])
async def test_other_text_gets_a_pointer_and_is_not_logged(
    fake_api: FakeTelegramApi, running_bot: RunningBot, user_id: int, text: str
) -> None:
    """Text and unknown commands ask for a photo."""
    fake_api.push_text(user_id, text)
    [reply] = await fake_api.wait_for_text(user_id)
    assert "send me a photo" in (reply.text or "")
    assert await running_bot.consultations(user_id) == []

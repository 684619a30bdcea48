"""Consent before the first photo, /privacy, and the user's language (en, ru, kk)."""

from __future__ import annotations

import pytest

from bot.replies import for_language
from tests.e2e.chat import last_text, phone_photo, press, send_photo, texts_after
from tests.e2e.conftest import RunningBot
from tests.fakes.telegram_api import FakeTelegramApi

pytestmark = pytest.mark.asyncio(loop_scope="module")

EN = for_language("en")
AGREE, DECLINE = "consent:agree", "consent:decline"


async def test_photo_before_consent_is_neither_processed_nor_stored(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    new_user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    """A first photo gets the consent prompt with buttons; nothing is downloaded or kept."""
    file_id = send_photo(fake_api, new_user_id, phone_photo(lesion_jpegs))
    prompt = await last_text(fake_api, new_user_id, 1)
    assert prompt.text == EN.consent_required()
    assert "not looked at or kept" in (prompt.text or "")
    assert "12 months" in (prompt.text or "")
    assert "not a diagnosis" in (prompt.text or "")
    assert prompt.buttons == [("I agree", AGREE), ("No, thanks", DECLINE)]
    assert file_id not in fake_api.downloads
    assert [m.method for m in fake_api.replies_to(new_user_id)] == ["sendMessage"]
    assert await running_bot.consultations(new_user_id) == []
    assert await running_bot.user(new_user_id) is None


async def test_agreeing_stores_the_time_and_unlocks_screening(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    new_user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    """/start shows the intro and consent; Agree stores the time; the next photo is screened."""
    fake_api.push_text(new_user_id, "/start")
    expected = EN.start(ask_consent=True)
    assert len(expected) == 4  # short messages, not one block
    assert await texts_after(fake_api, new_user_id, 4) == expected
    start = fake_api.last_with_buttons(new_user_id)
    assert start.text == EN.consent() and start.text.endswith("Do you agree?")
    reply = await press(fake_api, new_user_id, start, AGREE)
    assert reply.text == EN.text("consent.agreed")
    user = await running_bot.user(new_user_id)
    assert user is not None and user.consented_at is not None and user.language == "en"

    send_photo(fake_api, new_user_id, phone_photo(lesion_jpegs))
    await last_text(fake_api, new_user_id, 6)
    [row] = await running_bot.consultations(new_user_id)
    assert row.status in ("assessed", "unassessable")


async def test_declining_keeps_nothing(
    fake_api: FakeTelegramApi, running_bot: RunningBot, new_user_id: int
) -> None:
    """Decline: the user is told nothing was kept, and indeed no row exists."""
    fake_api.push_text(new_user_id, "/privacy")
    prompt = await last_text(fake_api, new_user_id, 1)
    assert prompt.text == EN.consent()
    reply = await press(fake_api, new_user_id, prompt, DECLINE)
    assert reply.text == EN.text("consent.declined")
    assert await running_bot.user(new_user_id) is None


async def test_privacy_shows_the_terms_and_when_the_user_agreed(
    fake_api: FakeTelegramApi, running_bot: RunningBot, user_id: int
) -> None:
    """/privacy again: the same terms, the date of consent, no buttons to press."""
    fake_api.push_text(user_id, "/privacy")
    reply = await last_text(fake_api, user_id, 1)
    user = await running_bot.user(user_id)
    assert user is not None
    assert reply.text == EN.privacy(user.consented_at)
    assert "You agreed on" in (reply.text or "")
    assert "Do you agree?" not in (reply.text or "")  # agreed already: not asked again
    assert reply.buttons == []


@pytest.mark.parametrize(
    ("language_code", "disclaimer", "agree"),
    [
        ("ru", "я не ставлю диагноз", "Даю согласие"),
        ("kk", "диагноз қоймаймын", "Келісемін"),
        ("de", "I do not diagnose", "I agree"),
    ],
)
async def test_users_are_answered_in_their_telegram_language(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    new_user_id: int,
    language_code: str,
    disclaimer: str,
    agree: str,
) -> None:
    """Russian and Kazakh users get Russian and Kazakh; other languages get English."""
    fake_api.push_text(new_user_id, "/start", language_code=language_code)
    assert disclaimer in "\n".join(await texts_after(fake_api, new_user_id, 4))
    start = fake_api.last_with_buttons(new_user_id)
    assert start.buttons[0] == (agree, AGREE)
    reply = await press(fake_api, new_user_id, start, AGREE, language_code)
    expected = for_language(language_code)
    assert reply.text == expected.text("consent.agreed")
    user = await running_bot.user(new_user_id)
    assert user is not None and user.language == expected.language


async def test_language_command_switches_language_and_remembers_it(
    fake_api: FakeTelegramApi, running_bot: RunningBot, user_id: int
) -> None:
    """/language offers en/ru/kk by their own names; the choice is stored and used from then on."""
    fake_api.push_text(user_id, "/language")
    menu = await last_text(fake_api, user_id, 1)
    assert menu.text == "Choose your language:"
    assert menu.buttons == [("English", "lang:en"), ("Русский", "lang:ru"), ("Қазақша", "lang:kk")]
    confirmation = await press(fake_api, user_id, menu, "lang:kk")
    assert confirmation.text == "Дайын: енді сізге қазақша жазамын."
    user = await running_bot.user(user_id)
    assert user is not None and user.language == "kk"

    # Telegram still says "en", but the stored choice wins.
    fake_api.push_text(user_id, "/help")
    help_text = await last_text(fake_api, user_id, 2)
    assert help_text.text == for_language("kk").help()
    assert "Жақсы фотоны қалай түсіру керек" in (help_text.text or "")

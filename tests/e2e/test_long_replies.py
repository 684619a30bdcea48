"""Replies Telegram accepts: long ones split at line boundaries, odd arguments answered
with the command's usage line. The fake Bot API refuses texts over 4,096 characters, as
Telegram does, so an unsplit reply would surface here as the generic error."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.db.models import Consultation, ReferralContact, utc_now
from bot.handlers.admin import REFERRAL_MAX_CHARS
from bot.replies import TELEGRAM_TEXT_LIMIT, for_language, utf16_length
from tests.e2e import images
from tests.e2e.chat import send_photo
from tests.e2e.conftest import ADMIN_ID, RunningBot
from tests.fakes.telegram_api import FakeTelegramApi, SentMessage

pytestmark = pytest.mark.asyncio(loop_scope="module")

EN, RU = for_language("en"), for_language("ru")
# The sample the shipped model rates high as a phone photo, whatever the seed.
HIGH_RISK = "ISIC_0024787_bcc"


def texts(api: FakeTelegramApi, chat_id: int, since: int = 0) -> list[SentMessage]:
    return [m for m in api.replies_to(chat_id)[since:] if m.method == "sendMessage"]


def assert_all_fit(messages: list[SentMessage]) -> None:
    """Every message within Telegram's limit, and none of them the generic apology."""
    assert messages
    for message in messages:
        assert 0 < utf16_length(message.text or "") <= TELEGRAM_TEXT_LIMIT
        assert message.text not in (EN.error(), RU.error())


async def test_russian_stats_for_a_year_arrive_in_parts_that_fit(
    fake_api: FakeTelegramApi, running_bot: RunningBot
) -> None:
    """/stats 365 in Russian with a check on every day of the year (about 8,000 characters)."""
    now = utc_now()
    async with running_bot.application.bot_data.runtime.sessions.begin() as session:
        for day in range(365):
            session.add(
                Consultation(
                    user_key=f"{day:064d}",
                    input_kind="photo",
                    status="assessed",
                    risk="low",
                    processing_ms=100 + day,
                    created_at=now - timedelta(days=day, hours=1),
                )
            )
    before = len(fake_api.replies_to(ADMIN_ID))
    fake_api.push_text(ADMIN_ID, "/stats 365", language_code="ru")
    await fake_api.wait_for_sent(ADMIN_ID, "sendPhoto")  # the chart comes after the text
    messages = texts(fake_api, ADMIN_ID, before)
    assert_all_fit(messages)
    assert len(messages) >= 2
    whole = "\n".join(m.text or "" for m in messages)
    assert utf16_length(whole) > TELEGRAM_TEXT_LIMIT
    assert whole.startswith(RU.plural("stats.title", 365, days=365))
    assert whole.count(RU.text("stats.item", name="", count=1).strip()) >= 365


async def test_two_hundred_patients_arrive_in_parts_that_fit(
    fake_api: FakeTelegramApi, running_bot: RunningBot, new_user_id: int
) -> None:
    """/patients for a health worker with 200 patients: every patient listed, in parts."""
    await running_bot.agree(new_user_id, worker=True)
    async with running_bot.application.bot_data.runtime.sessions.begin() as session:
        for n in range(200):
            session.add(
                Consultation(
                    user_key=running_bot.key(new_user_id),
                    input_kind="photo",
                    status="assessed",
                    risk="low",
                    patient_code=f"PATIENT-{n:04d}-WITH-A-LONG-CODE",
                )
            )
    fake_api.push_text(new_user_id, "/patients")

    def lines() -> int:
        return sum((m.text or "").count("\n") + 1 for m in texts(fake_api, new_user_id))

    await fake_api.wait_for(lambda: lines() >= 201)  # the title and one line per patient
    messages = texts(fake_api, new_user_id)
    assert len(messages) >= 2
    assert_all_fit(messages)
    whole = "\n".join(m.text or "" for m in messages)
    assert all(f"PATIENT-{n:04d}-WITH-A-LONG-CODE" in whole for n in range(200))


async def test_a_long_referral_on_a_high_risk_result_arrives_whole(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    """A 4,000-character referral (stored before the cap existed) on a real high-risk
    result: the result and every contact line arrive, in messages that fit."""
    lines = [f"Clinic {n}: Main street {n}, open 9-18, phone +7 700 000 {n:04d}" for n in range(80)]
    contacts = "\n".join(lines)[:4000]
    assert len(contacts) == 4000
    async with running_bot.application.bot_data.runtime.sessions.begin() as session:
        await session.merge(ReferralContact(language="en", text=contacts))
    send_photo(fake_api, user_id, images.phone_like_photo(lesion_jpegs[HIGH_RISK], seed=1))
    # The reply ends by asking to name the spot: wait for that last part.
    await fake_api.wait_for(
        lambda: any(EN.text("track.ask") in (m.text or "") for m in texts(fake_api, user_id))
    )
    messages = texts(fake_api, user_id)
    assert len(messages) >= 2
    assert_all_fit(messages)
    whole = "\n".join(m.text or "" for m in messages)
    assert whole.startswith("Result: HIGH risk.")
    assert contacts in whole


async def test_a_referral_over_the_cap_is_refused_with_a_clear_message(
    fake_api: FakeTelegramApi, running_bot: RunningBot
) -> None:
    """/setreferral with 4,000 characters: told the limit, nothing stored."""
    before = len(fake_api.replies_to(ADMIN_ID))
    fake_api.push_text(ADMIN_ID, "/setreferral kk " + "x" * 4000)
    await fake_api.wait_for(lambda: len(texts(fake_api, ADMIN_ID, before)) == 1)
    [reply] = texts(fake_api, ADMIN_ID, before)
    assert reply.text == EN.text("referral.too_long", limit=REFERRAL_MAX_CHARS)
    async with running_bot.application.bot_data.runtime.sessions() as session:
        assert await session.get(ReferralContact, "kk") is None


@pytest.mark.parametrize(
    ("command", "usage"),
    [
        ("/stats ²", "admin.usage"),
        ("/stats ٣", "admin.usage"),
        ("/export 0", "admin.usage"),
        ("/grantworker --5", "worker.usage_grant"),
        ("/revokeworker ¹²", "worker.usage_grant"),
    ],
)
async def test_odd_arguments_get_the_usage_line(
    fake_api: FakeTelegramApi, running_bot: RunningBot, command: str, usage: str
) -> None:
    """Arguments that look like numbers to str.isdigit() but not to int() get the usage."""
    before = len(fake_api.replies_to(ADMIN_ID))
    fake_api.push_text(ADMIN_ID, command)
    await fake_api.wait_for(lambda: len(texts(fake_api, ADMIN_ID, before)) == 1)
    assert [m.text for m in texts(fake_api, ADMIN_ID, before)] == [EN.text(usage)]

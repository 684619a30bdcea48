"""Monthly reminders and the follow-up question, fired by running the job with time moved on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import pytest_asyncio
from sqlalchemy import select

from bot.context import BotApplication
from bot.db.models import Consultation, FollowUp, utc_now
from bot.db.repository import UserRepository
from bot.replies import for_language
from bot.scheduler import DUE_JOB_NAME, send_due
from tests.e2e.chat import last_text, photo_known, press, send_photo
from tests.e2e.conftest import RunningBot, initialised_application
from tests.fakes.telegram_api import FakeTelegramApi

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def backend(each_backend: str) -> str:
    """This module runs on SQLite and on PostgreSQL."""
    return each_backend


EN = for_language("en")


async def run_job_at(bot: RunningBot, days_ahead: float) -> None:
    """Run what the scheduled job runs, as if ``days_ahead`` days had passed."""
    runtime = bot.application.bot_data.runtime
    await send_due(bot.application.bot, runtime, utc_now() + timedelta(days=days_ahead))


async def test_the_due_job_is_scheduled_at_start_up(running_bot: RunningBot) -> None:
    """One repeating job sends whatever is due; post_init registers it."""
    job_queue = running_bot.application.job_queue
    assert job_queue is not None
    [job] = job_queue.get_jobs_by_name(DUE_JOB_NAME)
    assert job.next_t is not None  # it will run
    assert not job.removed


async def test_monthly_reminder_is_stored_sent_when_due_and_stops_when_off(
    fake_api: FakeTelegramApi, running_bot: RunningBot, user_id: int
) -> None:
    """/remind monthly: stored with a sealed chat, sent a month later, again a month after."""
    fake_api.push_text(user_id, "/remind monthly")
    reply = await last_text(fake_api, user_id, 1)
    assert reply.text == EN.text("remind.on")
    user = await running_bot.user(user_id)
    assert user is not None and user.reminder == "monthly"
    assert user.next_reminder_at is not None and user.chat_ref is not None
    assert str(user_id) not in user.chat_ref  # sealed, not in the clear
    assert timedelta(days=29) < user.next_reminder_at - utc_now() < timedelta(days=31)

    await run_job_at(running_bot, 1)  # not due yet
    assert len([m for m in fake_api.replies_to(user_id) if m.method == "sendMessage"]) == 1

    await run_job_at(running_bot, 31)
    reminder = await last_text(fake_api, user_id, 2)
    assert reminder.text == EN.text("remind.message")
    user = await running_bot.user(user_id)
    assert user is not None and user.next_reminder_at is not None
    assert user.next_reminder_at - utc_now() > timedelta(days=60)  # the next one, a month on

    fake_api.push_text(user_id, "/remind off")
    off = await last_text(fake_api, user_id, 3)
    assert off.text == EN.text("remind.off")
    user = await running_bot.user(user_id)
    assert user is not None and user.reminder is None and user.chat_ref is None
    await run_job_at(running_bot, 100)
    assert len([m for m in fake_api.replies_to(user_id) if m.method == "sendMessage"]) == 3


async def test_remind_offers_buttons_rather_than_english_words_to_type(
    fake_api: FakeTelegramApi, running_bot: RunningBot, user_id: int
) -> None:
    """/remind alone (or with nonsense) offers the choice as buttons in the user's language
    and stores nothing; pressing "once a month" turns reminders on, "no reminders" off."""
    await running_bot.agree(user_id, language="kk")
    kk = for_language("kk")
    fake_api.push_text(user_id, "/remind weekly")
    menu = await last_text(fake_api, user_id, 1)
    assert menu.text == kk.text("remind.ask")
    assert menu.buttons == [
        (kk.text("remind.button.monthly"), "remind:monthly"),
        (kk.text("remind.button.off"), "remind:off"),
    ]
    user = await running_bot.user(user_id)
    assert user is not None and user.reminder is None

    on = await press(fake_api, user_id, menu, "remind:monthly")
    assert on.text == kk.text("remind.on")
    user = await running_bot.user(user_id)
    assert user is not None and user.reminder == "monthly" and user.chat_ref is not None
    fake_api.push_text(user_id, "/remind")
    menu = await last_text(fake_api, user_id, 2)
    off = await press(fake_api, user_id, menu, "remind:off")
    assert off.text == kk.text("remind.off")
    user = await running_bot.user(user_id)
    assert user is not None and user.reminder is None and user.next_reminder_at is None


@pytest.mark.parametrize("risk", ["high", "low"])
async def test_photo_schedules_a_follow_up_only_for_medium_or_high_results(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    user_id: int,
    risk: str,
) -> None:
    """A result gets a follow-up row, due in FOLLOW_UP_AFTER_DAYS, iff it is medium or high:
    driven once by a photo known to come out high and once by one known low."""
    send_photo(fake_api, user_id, photo_known(risk))
    await last_text(fake_api, user_id, 1)
    [row] = await running_bot.consultations(user_id)
    assert row.risk == risk
    async with running_bot.application.bot_data.runtime.sessions() as session:
        follow_ups = (
            await session.scalars(select(FollowUp).where(FollowUp.consultation_id == row.id))
        ).all()
    if risk == "high":
        [follow_up] = follow_ups
        delay = follow_up.due_at - row.created_at
        assert abs(delay - timedelta(days=running_bot.settings.follow_up_after_days)) < timedelta(
            minutes=5
        )
        user = await running_bot.user(user_id)
        assert user is not None and user.chat_ref is not None
    else:
        assert follow_ups == []


async def seed_medium_result(bot: RunningBot, user_id: int, label: str | None) -> Consultation:
    """Store a medium-risk check with its follow-up, as the photo flow does for one."""
    runtime = bot.application.bot_data.runtime
    async with runtime.sessions.begin() as session:
        row = Consultation(
            user_key=bot.key(user_id),
            input_kind="photo",
            status="assessed",
            risk="medium",
            lesion_label=label,
        )
        session.add(row)
        await session.flush()
        delay = timedelta(days=runtime.settings.follow_up_after_days)
        session.add(
            FollowUp(consultation_id=row.id, user_key=row.user_key, due_at=utc_now() + delay)
        )
    async with runtime.sessions.begin() as session:
        user = await UserRepository(session).get_or_add(bot.key(user_id))
        user.chat_ref = runtime.seal_chat(user_id, bot.key(user_id))
    return row


async def follow_up_of(bot: RunningBot, consultation_id: int) -> FollowUp:
    async with bot.application.bot_data.runtime.sessions() as session:
        query = select(FollowUp).where(FollowUp.consultation_id == consultation_id)
        follow_up = await session.scalar(query)
    assert follow_up is not None
    return follow_up


async def test_follow_up_asks_once_and_stores_the_visit_and_the_diagnosis(
    fake_api: FakeTelegramApi, running_bot: RunningBot, user_id: int
) -> None:
    """A few weeks on: 'did you see a doctor?' -> Yes -> 'what did they say?' -> stored."""
    row = await seed_medium_result(running_bot, user_id, "arm")
    await run_job_at(running_bot, running_bot.settings.follow_up_after_days - 1)
    assert fake_api.replies_to(user_id) == []  # not yet due

    await run_job_at(running_bot, running_bot.settings.follow_up_after_days + 1)
    question = await last_text(fake_api, user_id, 1)
    assert question.text == EN.follow_up(row.created_at, "arm")
    when = EN.date(row.created_at)
    assert question.text == f"On {when} I suggested that a doctor check your spot “arm”. " + (
        "Did you manage to see a doctor?"
    )
    follow_up = await follow_up_of(running_bot, row.id)
    assert question.buttons == [
        ("Yes", f"fu:{follow_up.id}:yes"),
        ("Not yet", f"fu:{follow_up.id}:not_yet"),
        ("No, I won't", f"fu:{follow_up.id}:no"),
    ]
    await run_job_at(running_bot, running_bot.settings.follow_up_after_days + 2)
    assert len([m for m in fake_api.replies_to(user_id) if m.method == "sendMessage"]) == 1

    diagnosis = await press(fake_api, user_id, question, f"fu:{follow_up.id}:yes")
    assert diagnosis.text == "Thank you. What did the doctor say?"
    assert [data for _, data in diagnosis.buttons] == [
        f"dx:{follow_up.id}:{dx}" for dx in ("benign", "cancer", "other", "unknown")
    ]
    thanks = await press(fake_api, user_id, diagnosis, f"dx:{follow_up.id}:benign")
    assert thanks.text == EN.text("followup.thanks")
    stored = await follow_up_of(running_bot, row.id)
    assert (stored.saw_doctor, stored.diagnosis) == ("yes", "benign")
    assert stored.sent_at is not None and stored.answered_at is not None


async def test_follow_up_not_yet_is_stored_with_a_nudge_to_go(
    fake_api: FakeTelegramApi, running_bot: RunningBot, user_id: int
) -> None:
    """'Not yet' is stored, and the user is asked again to have the spot checked."""
    row = await seed_medium_result(running_bot, user_id, None)
    await run_job_at(running_bot, running_bot.settings.follow_up_after_days + 1)
    question = await last_text(fake_api, user_id, 1)
    assert question.text == EN.follow_up(row.created_at, None)
    follow_up = await follow_up_of(running_bot, row.id)
    reply = await press(fake_api, user_id, question, f"fu:{follow_up.id}:not_yet")
    assert reply.text == EN.text("followup.please_go")
    assert (await follow_up_of(running_bot, row.id)).saw_doctor == "not_yet"


async def test_follow_ups_due_together_go_out_as_one_message_naming_each_spot(
    fake_api: FakeTelegramApi, running_bot: RunningBot, user_id: int
) -> None:
    """Three results due at once (one patient used to get five messages): one message per
    person per run, each spot by name and date; one press answers for all of them."""
    await running_bot.agree(user_id, language="ru")
    rows = [
        await seed_medium_result(running_bot, user_id, label) for label in ("arm", None, "calf")
    ]
    await run_job_at(running_bot, running_bot.settings.follow_up_after_days + 1)
    question = await last_text(fake_api, user_id, 1)
    assert len([m for m in fake_api.replies_to(user_id) if m.method == "sendMessage"]) == 1
    ru = for_language("ru")
    assert question.text == ru.follow_ups([(row.created_at, row.lesion_label) for row in rows])
    text = question.text or ""
    when = ru.date(rows[0].created_at)
    for line in (f"• «arm», проверка от {when}", f"• пятно без названия, проверка от {when}"):
        assert line in text
    ids = ",".join([str((await follow_up_of(running_bot, row.id)).id) for row in rows])
    assert question.buttons[0] == (ru.text("followup.button.yes"), f"fu:{ids}:yes")
    for row in rows:
        assert (await follow_up_of(running_bot, row.id)).sent_at is not None

    diagnosis = await press(fake_api, user_id, question, f"fu:{ids}:yes")
    await press(fake_api, user_id, diagnosis, f"dx:{ids}:benign")
    for row in rows:
        stored = await follow_up_of(running_bot, row.id)
        assert (stored.saw_doctor, stored.diagnosis) == ("yes", "benign")


async def test_someone_elses_follow_up_cannot_be_answered(
    fake_api: FakeTelegramApi, running_bot: RunningBot, user_id: int
) -> None:
    """A forged button press for another user's follow-up changes nothing."""
    intruder = user_id + 1_000_000
    row = await seed_medium_result(running_bot, user_id, None)
    await run_job_at(running_bot, running_bot.settings.follow_up_after_days + 1)
    question = await last_text(fake_api, user_id, 1)
    follow_up = await follow_up_of(running_bot, row.id)
    forged = type(question)(**{**question.__dict__, "chat_id": intruder})
    answered_before = len(fake_api.answered_callbacks)
    fake_api.push_callback(intruder, forged, f"fu:{follow_up.id}:no")
    # The bot answers a press only after it has decided what to store.
    await fake_api.wait_for(lambda: len(fake_api.answered_callbacks) > answered_before)
    assert (await follow_up_of(running_bot, row.id)).saw_doctor is None
    assert fake_api.replies_to(intruder) == []


@pytest_asyncio.fixture(loop_scope="module")
async def restarted(running_bot: RunningBot) -> AsyncIterator[BotApplication]:
    """A second bot process started on the same database, as after a restart."""
    async with initialised_application(running_bot.settings) as application:
        yield application


async def test_reminders_survive_a_restart(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    user_id: int,
    restarted: BotApplication,
) -> None:
    """Stored reminders are found by the job the restarted bot schedules at start-up."""
    fake_api.push_text(user_id, "/remind monthly")
    await last_text(fake_api, user_id, 1)
    assert restarted.job_queue is not None
    assert len(restarted.job_queue.get_jobs_by_name(DUE_JOB_NAME)) == 1
    runtime = restarted.bot_data.runtime
    await send_due(restarted.bot, runtime, utc_now() + timedelta(days=31))
    reminder = await last_text(fake_api, user_id, 2)
    assert reminder.text == EN.text("remind.message")

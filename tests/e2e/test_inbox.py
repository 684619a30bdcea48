"""Updates left in the inbox by a process that stopped are handled by the running bot, once.

What a dead replica leaves is written here as it would have written it (bot.inbox.Inbox
under another owner, its lease run out); the running bot's inbox job takes it over. The job
is run by the test, as the scheduler tests run theirs, rather than waited for.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update
from telegram import Update

from bot import metrics
from bot.app import INBOX_JOB_NAME
from bot.db.models import Consultation, InboxUpdate, utc_now
from bot.inbox import KEEP_HANDLED, MAX_ATTEMPTS, Inbox, InboxQueue, tend
from bot.replies import for_language
from tests.e2e import images
from tests.e2e.chat import phone_photo
from tests.e2e.conftest import RunningBot
from tests.fakes.telegram_api import FakeTelegramApi

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def backend(each_backend: str) -> str:
    """Kept, claimed and settled alike on SQLite and PostgreSQL."""
    return each_backend


def photo_update(api: FakeTelegramApi, user_id: int, jpeg: bytes) -> dict[str, Any]:
    thumb, tw, th = images.resized_jpeg(jpeg, 90)
    width, height = images.size_of(jpeg)
    sizes = [
        api.photo_size(api.add_file(thumb), tw, th),
        api.photo_size(api.add_file(jpeg), width, height),
    ]
    return api.message_update(user_id, photo=sizes)


async def left_by_a_dead_process(bot: RunningBot, data: dict[str, Any]) -> Update:
    """Keep ``data`` in the inbox as a process that was then killed would have: held by
    another owner, whose lease has run out."""
    await inbox_job_idle(bot)
    runtime = bot.application.bot_data.runtime
    dead = Inbox(runtime.sessions, runtime.keys.update_sealer, lease=timedelta(0))
    update_ = Update.de_json(data, bot.application.bot)
    assert await dead.accept(update_)
    return update_


async def inbox_job_idle(bot: RunningBot) -> None:
    """Wait until the bot's own inbox job is not due for a while (its first run comes just
    after start-up), so that the test's run, not the job's, takes the update over."""
    assert bot.application.job_queue is not None
    [job] = bot.application.job_queue.get_jobs_by_name(INBOX_JOB_NAME)
    assert job.next_t is not None
    due_in = (job.next_t - datetime.now(UTC)).total_seconds()
    if due_in < 3:
        await asyncio.sleep(max(due_in, 0) + 0.5)  # the job queue has no event to wait on


async def take_over(bot: RunningBot) -> int:
    """One run of the running bot's inbox job."""
    application = bot.application
    queue = application.update_queue
    assert isinstance(queue, InboxQueue)
    return await tend(application.bot_data.runtime.inbox, queue, application.bot, purge=False)


async def inbox_row(bot: RunningBot, update_id: int) -> InboxUpdate:
    async with bot.application.bot_data.runtime.sessions() as session:
        row = await session.get(InboxUpdate, update_id)
    assert row is not None
    return row


def claimed_count() -> float:
    value = metrics.REGISTRY.get_sample_value("bot_inbox_updates_total", {"event": "claimed"})
    return value or 0.0


def results(api: FakeTelegramApi, user_id: int) -> list[str]:
    return [m.text or "" for m in api.replies_to(user_id) if m.method == "sendMessage"]


async def settled(bot: RunningBot, update_id: int) -> None:
    """Wait until the running bot has marked the update handled (just after its reply)."""
    async with asyncio.timeout(60):
        while True:
            if (await inbox_row(bot, update_id)).done_at is not None:
                return
            await asyncio.sleep(0.1)  # a database row: there is no event to wait on


async def test_a_photo_a_dead_process_held_is_answered_once_and_its_text_dropped(
    running_bot: RunningBot,
    fake_api: FakeTelegramApi,
    user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    data = photo_update(fake_api, user_id, phone_photo(lesion_jpegs))
    held = await left_by_a_dead_process(running_bot, data)
    # Sealed: neither the user's id nor the file's id is readable in the table.
    kept = await inbox_row(running_bot, held.update_id)
    assert kept.payload is not None and str(user_id) not in kept.payload
    assert data["message"]["photo"][1]["file_id"] not in kept.payload
    claimed_before = claimed_count()

    assert await take_over(running_bot) == 1
    await fake_api.wait_for_text(user_id)
    await settled(running_bot, held.update_id)

    assert len(results(fake_api, user_id)) == 1
    [row] = await running_bot.consultations(user_id)
    assert row.update_id == held.update_id and row.delivered_at is not None
    done = await inbox_row(running_bot, held.update_id)
    assert done.payload is None and done.owner is None and done.gave_up is None
    assert done.attempts == 2  # the dead process's and this one's
    assert claimed_count() == claimed_before + 1  # seen in /metrics
    assert await take_over(running_bot) == 0  # handled: nobody takes it again


async def test_an_update_answered_before_a_crash_is_not_answered_or_logged_again(
    running_bot: RunningBot,
    fake_api: FakeTelegramApi,
    user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    """Killed after the reply went out, before the update was marked handled: handled again,
    it finds its delivered consultation and sends nothing."""
    data = photo_update(fake_api, user_id, phone_photo(lesion_jpegs))
    held = await left_by_a_dead_process(running_bot, data)
    await take_over(running_bot)
    await fake_api.wait_for_text(user_id)
    await settled(running_bot, held.update_id)
    # As if the process had died before marking it handled: kept and free again.
    await left_by_a_dead_process_again(running_bot, data)

    assert await take_over(running_bot) == 1
    await settled(running_bot, held.update_id)

    assert len(results(fake_api, user_id)) == 1
    assert len(await running_bot.consultations(user_id)) == 1


async def test_a_consultation_logged_but_never_answered_is_replaced_when_handled_again(
    running_bot: RunningBot,
    fake_api: FakeTelegramApi,
    user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    """Killed between storing the row and the reply: the photo is screened again, answered,
    and its new row takes the old one's place (one row per update)."""
    data = photo_update(fake_api, user_id, phone_photo(lesion_jpegs))
    held = await left_by_a_dead_process(running_bot, data)
    await take_over(running_bot)
    await fake_api.wait_for_text(user_id)
    await settled(running_bot, held.update_id)
    [first] = await running_bot.consultations(user_id)
    async with running_bot.application.bot_data.runtime.sessions.begin() as session:
        await session.execute(
            update(Consultation).where(Consultation.id == first.id).values(delivered_at=None)
        )
    await left_by_a_dead_process_again(running_bot, data)

    assert await take_over(running_bot) == 1
    await fake_api.wait_for_text(user_id, count=2)
    await settled(running_bot, held.update_id)

    [row] = await running_bot.consultations(user_id)
    assert row.created_at > first.created_at and row.update_id == held.update_id
    assert row.delivered_at is not None


async def left_by_a_dead_process_again(bot: RunningBot, data: dict[str, Any]) -> None:
    """Make a handled update unhandled again, as if its process died before marking it."""
    runtime = bot.application.bot_data.runtime
    update_id = int(data["update_id"])
    payload = runtime.keys.update_sealer.seal(
        Update.de_json(data, bot.application.bot).to_json().encode(), update_id
    )
    async with runtime.sessions.begin() as session:
        await session.execute(
            update(InboxUpdate)
            .where(InboxUpdate.update_id == update_id)
            .values(done_at=None, payload=payload, owner="dead", lease_until=None)
        )


async def test_a_poison_held_with_twenty_others_is_given_up_and_its_sender_told(
    running_bot: RunningBot,
    fake_api: FakeTelegramApi,
    new_user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    """A dead process held 21 photos; one of them has killed two more processes since,
    alone each time. Taken over: the 20 others are answered (tried one at a time, as
    suspects), the poison is given up, kept sealed, and its sender asked to send it again."""
    users = [new_user_id * 100 + n for n in range(21)]
    poison, others = users[0], users[1:]
    jpeg = phone_photo(lesion_jpegs)
    held = []
    for user in users:
        await running_bot.agree(user)
        held.append(await left_by_a_dead_process(running_bot, photo_update(fake_api, user, jpeg)))
    async with running_bot.application.bot_data.runtime.sessions.begin() as session:
        await session.execute(
            update(InboxUpdate)
            .where(InboxUpdate.update_id == held[0].update_id)
            .values(attempts=MAX_ATTEMPTS)
        )

    await take_over(running_bot)
    [told] = await fake_api.wait_for_text(poison)
    for user in others:
        await fake_api.wait_for_text(user)
    for update_ in held[1:]:
        await settled(running_bot, update_.update_id)

    assert told.text == for_language("en").text("inbox.gave_up")
    assert [len(results(fake_api, user)) for user in others] == [1] * len(others)
    assert await running_bot.consultations(poison) == []
    given_up = await inbox_row(running_bot, held[0].update_id)
    assert given_up.gave_up == "attempts" and given_up.payload is not None
    for update_ in held[1:]:
        assert (await inbox_row(running_bot, update_.update_id)).gave_up is None


async def test_an_update_id_reused_by_telegram_for_another_user_is_answered(
    running_bot: RunningBot,
    fake_api: FakeTelegramApi,
    new_user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    """Telegram starts its update ids again after a week without updates: an id answered
    for one user long ago, then used for another user's photo, is a new update, whether
    its inbox row is still there (not purged yet) or gone; consultations keep their ids a
    year, so they are matched by user and time too (test 8 of issue 19)."""
    first, second, third = (new_user_id * 100 + n for n in range(3))
    for user in (first, second, third):
        await running_bot.agree(user)
    jpeg = phone_photo(lesion_jpegs)
    await deliver(running_bot, photo_update(fake_api, first, jpeg))
    await fake_api.wait_for_text(first)
    [answered] = await running_bot.consultations(first)
    reused = answered.update_id
    assert reused is not None
    await settled(running_bot, reused)

    for user, purged in ((second, False), (third, True)):
        await forgotten_long_ago(running_bot, reused, purge=purged)
        data = photo_update(fake_api, user, phone_photo(lesion_jpegs, seed=user))
        await deliver(running_bot, {**data, "update_id": reused})
        await fake_api.wait_for_text(user)
        await settled(running_bot, reused)
        assert len(results(fake_api, user)) == 1
        [row] = await running_bot.consultations(user)
        assert row.update_id == reused and row.delivered_at is not None
    assert len(results(fake_api, first)) == 1
    assert len(await running_bot.consultations(first)) == 1


async def deliver(bot: RunningBot, data: dict[str, Any]) -> None:
    """Hand an update to the bot as polling does (the fake's getUpdates offset would hide
    an id lower than the last one, which a restart of Telegram's ids produces)."""
    update_ = Update.de_json(data, bot.application.bot)
    await bot.application.update_queue.put(update_)


async def forgotten_long_ago(bot: RunningBot, update_id: int, *, purge: bool) -> None:
    """As if the update had been handled longer ago than the inbox remembers (and purged)."""
    long_ago = utc_now() - KEEP_HANDLED - timedelta(hours=1)
    async with bot.application.bot_data.runtime.sessions.begin() as session:
        await session.execute(
            update(InboxUpdate).where(InboxUpdate.update_id == update_id).values(done_at=long_ago)
        )
    if purge:
        assert await bot.application.bot_data.runtime.inbox.purge() >= 1

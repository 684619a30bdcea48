"""The scheduler's outbox under Telegram faults: each message claimed, sent and marked on its
own, retried with backoff, parked with its reason, nothing lost when a process dies.

Faults come from the fake Bot API (a queue of faults per method), through the real PTB
stack; the scheduler runs as its job runs it, with time moved on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
import pytest_asyncio
from sqlalchemy import func, select, update

from bot import metrics, scheduler
from bot.context import BotApplication
from bot.db.models import OutboxMessage, utc_now
from bot.db.repository import OutboxRepository, UserRepository
from bot.replies import for_language
from bot.scheduler import CLAIM_LEASE, RunReport, backoff, queue_due, send_due
from tests.e2e.chat import last_text
from tests.e2e.conftest import ADMIN_ID, RunningBot, initialised_application
from tests.fakes.telegram_api import FakeTelegramApi, Fault

pytestmark = pytest.mark.asyncio(loop_scope="module")

REMINDER = for_language("en").text("remind.message")


def sample(name: str, **labels: str) -> float:
    """One value from the bot's metrics registry, as /metrics serves it (0 if never set)."""
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture(scope="module")
def backend(each_backend: str) -> str:
    """The claim must hold on SQLite (no row locks) and on PostgreSQL alike."""
    return each_backend


async def run_at(bot: RunningBot, now: datetime) -> RunReport:
    return await send_due(bot.application.bot, bot.application.bot_data.runtime, now)


async def due_reminders(bot: RunningBot, user_ids: list[int], due: datetime) -> None:
    """Turn on monthly reminders for these users, due one second apart from ``due``."""
    runtime = bot.application.bot_data.runtime
    async with runtime.sessions.begin() as session:
        for n, user_id in enumerate(user_ids):
            user = await UserRepository(session).get_or_add(bot.key(user_id))
            user.language, user.reminder = "en", "monthly"
            user.next_reminder_at = due + timedelta(seconds=n)
            user.chat_ref = runtime.seal_chat(user_id, bot.key(user_id))


def reminders_to(api: FakeTelegramApi, user_id: int) -> int:
    return sum(m.text == REMINDER for m in api.replies_to(user_id))


async def outbox_rows(bot: RunningBot, user_ids: list[int]) -> list[OutboxMessage]:
    keys = [bot.key(u) for u in user_ids]
    async with bot.application.bot_data.runtime.sessions() as session:
        query = select(OutboxMessage).where(OutboxMessage.user_key.in_(keys))
        return list((await session.scalars(query.order_by(OutboxMessage.id))).all())


async def test_one_bad_request_and_one_timeout_hold_up_nothing_and_are_retried(
    fake_api: FakeTelegramApi, running_bot: RunningBot, new_user_id: int
) -> None:
    """50 due: Telegram answers 400 to the first and times out on the eleventh. 48 are
    delivered, the 2 are retried (after the backoff) and delivered on a later run, nothing
    is left claimed-but-unsent, and nobody gets a reminder twice."""
    users = [new_user_id * 1000 + n for n in range(50)]
    now = utc_now() + timedelta(days=1)
    await due_reminders(running_bot, users, now - timedelta(hours=1))
    timeout_s = running_bot.settings.scheduler_send_timeout_s
    ok: list[Fault | None] = [None] * 9
    fake_api.inject("sendMessage", Fault.bad_request(), *ok, Fault.timeout(timeout_s + 2))

    first = await run_at(running_bot, now)

    assert fake_api.pending_faults("sendMessage") == 0
    delivered = [u for u in users if reminders_to(fake_api, u) == 1]
    failed = [u for u in users if reminders_to(fake_api, u) == 0]
    assert (len(delivered), failed) == (48, [users[0], users[10]])
    assert (first.queued, first.sent, first.failed, first.parked) == (50, 48, 2, 0)
    rows = await outbox_rows(running_bot, users)
    assert len(rows) == 50
    assert [r for r in rows if r.claimed_until is not None and r.sent_at is None] == []
    retried = {r.user_key: r for r in rows if r.sent_at is None}
    assert set(retried) == {running_bot.key(users[0]), running_bot.key(users[10])}
    assert sorted(str(r.last_error) for r in retried.values()) == ["BadRequest", "TimedOut"]
    assert all(r.attempts == 1 and r.due_at > now for r in retried.values())

    # Not before the backoff: nothing is sent again yet.
    assert (await run_at(running_bot, now + timedelta(seconds=1))).sent == 0
    wait = backoff(1, running_bot.settings.scheduler_retry_after_s)
    second = await run_at(running_bot, now + wait + timedelta(seconds=1))

    assert (second.queued, second.sent, second.failed) == (0, 2, 0)
    assert [reminders_to(fake_api, u) for u in users] == [1] * 50
    assert all(r.sent_at is not None for r in await outbox_rows(running_bot, users))


async def test_due_messages_go_out_oldest_first(
    fake_api: FakeTelegramApi, running_bot: RunningBot, new_user_id: int
) -> None:
    """ORDER BY due time: whoever has waited longest is written to first."""
    users = [new_user_id * 1000 + n for n in range(5)]
    now = utc_now() + timedelta(days=2)
    runtime = running_bot.application.bot_data.runtime
    await due_reminders(running_bot, users, now - timedelta(hours=1))
    async with runtime.sessions.begin() as session:  # the last one has waited the longest
        last = await UserRepository(session).get(running_bot.key(users[-1]))
        assert last is not None
        last.next_reminder_at = now - timedelta(days=3)
    await run_at(running_bot, now)
    order = [m.chat_id for m in fake_api.sent if m.chat_id in users]
    assert order == [users[-1], *users[:-1]]


async def test_flood_control_is_waited_out_within_the_run(
    fake_api: FakeTelegramApi, running_bot: RunningBot, new_user_id: int
) -> None:
    """A 429 with retry_after is retried after the pause Telegram asks for, and counted."""
    before = sample("bot_telegram_errors_total", kind="retry_after")
    now = utc_now() + timedelta(days=3)
    await due_reminders(running_bot, [new_user_id], now - timedelta(minutes=1))
    fake_api.inject("sendMessage", Fault.flood(retry_after=1))
    report = await run_at(running_bot, now)
    assert (report.sent, report.failed) == (1, 0)
    assert reminders_to(fake_api, new_user_id) == 1
    assert sample("bot_telegram_errors_total", kind="retry_after") == before + 1


async def test_a_message_that_keeps_failing_is_parked_with_its_reason_and_shown_in_stats(
    fake_api: FakeTelegramApi, running_bot: RunningBot, new_user_id: int
) -> None:
    """After SCHEDULER_MAX_ATTEMPTS failures (5xx, dropped connections) it is parked, not
    retried for ever, and /stats says how many and why."""
    settings = running_bot.settings
    now = utc_now() + timedelta(days=4)
    await due_reminders(running_bot, [new_user_id], now - timedelta(minutes=1))
    faults = [Fault(502, "Bad Gateway"), Fault.dropped()] * settings.scheduler_max_attempts
    fake_api.inject("sendMessage", *faults[: settings.scheduler_max_attempts])
    for attempt in range(1, settings.scheduler_max_attempts + 1):
        report = await run_at(running_bot, now)
        assert report.failed + report.parked == 1, attempt
        now += backoff(attempt, settings.scheduler_retry_after_s) + timedelta(seconds=1)
    [row] = await outbox_rows(running_bot, [new_user_id])
    assert row.parked_at is not None and row.sent_at is None
    assert (row.attempts, row.last_error) == (settings.scheduler_max_attempts, "NetworkError")
    assert (await run_at(running_bot, now + timedelta(days=2))).sent == 0
    assert reminders_to(fake_api, new_user_id) == 0
    assert sample("bot_scheduler_backlog", state="parked") >= 1

    await running_bot.agree(ADMIN_ID)
    fake_api.push_text(ADMIN_ID, "/stats")
    stats = await last_text(fake_api, ADMIN_ID, 1)
    assert "Given up after repeated failures, by reason:" in (stats.text or "")
    assert "NetworkError: 1" in (stats.text or "")


async def test_a_blocked_user_is_parked_at_once_and_not_reminded_again(
    fake_api: FakeTelegramApi, running_bot: RunningBot, new_user_id: int
) -> None:
    """403 (the user blocked the bot) is an expected end: no retries, reminders off."""
    now = utc_now() + timedelta(days=5)
    await due_reminders(running_bot, [new_user_id], now - timedelta(minutes=1))
    fake_api.inject("sendMessage", Fault(403, "Forbidden: bot was blocked by the user"))
    report = await run_at(running_bot, now)
    assert (report.sent, report.parked) == (0, 1)
    [row] = await outbox_rows(running_bot, [new_user_id])
    assert (row.attempts, row.last_error) == (1, "blocked")
    user = await running_bot.user(new_user_id)
    assert user is not None and user.reminder is None and user.chat_ref is None


async def test_a_process_killed_after_claiming_loses_nothing(
    fake_api: FakeTelegramApi, running_bot: RunningBot, new_user_id: int
) -> None:
    """Killed between claim and send (the state kill -9 leaves): the claim is a lease, so
    the message is sent once the lease runs out, not dropped; another run meanwhile does
    not send it twice."""
    runtime = running_bot.application.bot_data.runtime
    now = utc_now() + timedelta(days=6)
    await due_reminders(running_bot, [new_user_id], now - timedelta(minutes=1))
    assert (await run_at(running_bot, now - timedelta(hours=2))).queued == 0  # not yet due
    # A first process queues and claims it, then dies before sending.
    assert await queue_due(runtime, now) == 1
    async with runtime.sessions.begin() as session:
        # Leases are on the database's clock (not the run's "now", which says what is due).
        claimed = await OutboxRepository(session).claim_next(now, utc_now() + CLAIM_LEASE)
        assert claimed is not None and claimed.user_key == running_bot.key(new_user_id)

    # Another replica runs meanwhile: the claim is live, so it leaves the message alone.
    assert (await run_at(running_bot, now + timedelta(seconds=1))).sent == 0
    assert reminders_to(fake_api, new_user_id) == 0
    # The lease runs out: the next run sends it, exactly once.
    async with runtime.sessions.begin() as session:
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == claimed.id)
            .values(claimed_until=utc_now() - timedelta(seconds=1))
        )
    later = now + CLAIM_LEASE + timedelta(seconds=1)
    assert (await run_at(running_bot, later)).sent == 1
    assert (await run_at(running_bot, later + timedelta(minutes=1))).sent == 0
    assert reminders_to(fake_api, new_user_id) == 1
    async with runtime.sessions() as session:
        unsent = await session.scalar(
            select(func.count()).where(
                OutboxMessage.user_key == running_bot.key(new_user_id),
                OutboxMessage.sent_at.is_(None),
            )
        )
    assert unsent == 0


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def second_replica(running_bot: RunningBot) -> AsyncIterator[BotApplication]:
    """Another bot process on the same database (a second replica, or a rolling restart)."""
    async with initialised_application(running_bot.settings) as application:
        yield application


async def test_two_replicas_running_the_scheduler_at_once_send_each_message_once(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    second_replica: BotApplication,
    new_user_id: int,
) -> None:
    """Both replicas run the job at the same moment on one database (SQLite too, where row
    locks are ignored): every due reminder goes out exactly once."""
    users = [new_user_id * 1000 + n for n in range(30)]
    now = utc_now() + timedelta(days=7)
    await due_reminders(running_bot, users, now - timedelta(hours=1))
    first, second = await asyncio.gather(
        run_at(running_bot, now),
        send_due(second_replica.bot, second_replica.bot_data.runtime, now),
    )
    assert first.queued + second.queued == 30
    assert first.sent + second.sent == 30
    assert [reminders_to(fake_api, u) for u in users] == [1] * 30


async def test_a_run_longer_than_a_lease_still_sends_each_message_once(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    second_replica: BotApplication,
    new_user_id: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Telegram answers slowly, so one run lasts longer than a claim's lease (2 s here, 5
    minutes in production), and another replica starts a run meanwhile: each claim's lease
    counts from that claim, not from the start of the run, so no message it is still
    sending looks free to the other replica. Each reminder goes out once."""
    monkeypatch.setattr(scheduler, "CLAIM_LEASE", timedelta(seconds=2))
    users = [new_user_id * 1000 + n for n in range(8)]
    now = utc_now() + timedelta(days=8)
    await due_reminders(running_bot, users, now - timedelta(hours=1))
    fake_api.inject("sendMessage", *[Fault.slow(0.5)] * len(users))
    first = asyncio.create_task(run_at(running_bot, now))
    await asyncio.sleep(2.6)  # past the first claim's lease; that run is still sending
    later = now + timedelta(seconds=2.6)
    second = await send_due(second_replica.bot, second_replica.bot_data.runtime, later)
    report = await first
    assert report.sent + second.sent == len(users)
    assert [reminders_to(fake_api, u) for u in users] == [1] * len(users)


GROUP_ID = -1_001_234_567_891


async def test_a_group_chat_or_a_seal_from_another_user_is_never_written_to(
    fake_api: FakeTelegramApi, running_bot: RunningBot, new_user_id: int
) -> None:
    """A stored chat id of a group (sealed before the private-only rule), and a value sealed
    for another user copied into this user's row: neither is sent to; both are parked as
    "no chat" and the reminders stop."""
    runtime = running_bot.application.bot_data.runtime
    in_group, copied, owner = new_user_id * 1000, new_user_id * 1000 + 1, new_user_id * 1000 + 2
    now = utc_now() + timedelta(days=7)
    await due_reminders(running_bot, [in_group, copied], now - timedelta(minutes=1))
    async with runtime.sessions.begin() as session:
        users = UserRepository(session)
        group_user = await users.get(running_bot.key(in_group))
        copy_user = await users.get(running_bot.key(copied))
        assert group_user is not None and copy_user is not None
        group_user.chat_ref = runtime.seal_chat(GROUP_ID, running_bot.key(in_group))
        copy_user.chat_ref = runtime.seal_chat(owner, running_bot.key(owner))

    report = await run_at(running_bot, now)

    assert (report.queued, report.sent, report.parked) == (2, 0, 2)
    assert fake_api.replies_to(GROUP_ID) == [] and fake_api.replies_to(owner) == []
    rows = await outbox_rows(running_bot, [in_group, copied])
    assert [(r.last_error, r.sent_at) for r in rows] == [("no_chat", None)] * 2
    for user_id in (in_group, copied):
        user = await running_bot.user(user_id)
        assert user is not None and user.reminder is None


async def test_a_user_forgotten_after_queueing_gets_nothing(
    fake_api: FakeTelegramApi, running_bot: RunningBot, new_user_id: int
) -> None:
    """Queued by one run, then /forget: the outbox rows go with the user and nothing is
    sent by any later run."""
    runtime = running_bot.application.bot_data.runtime
    now = utc_now() + timedelta(days=8)
    await due_reminders(running_bot, [new_user_id], now - timedelta(minutes=1))
    assert await queue_due(runtime, now) == 1
    async with runtime.sessions.begin() as session:
        await UserRepository(session).forget(running_bot.key(new_user_id))

    await run_at(running_bot, now)
    await run_at(running_bot, now + timedelta(days=40))
    assert reminders_to(fake_api, new_user_id) == 0
    assert await outbox_rows(running_bot, [new_user_id]) == []

"""Reminders and follow-ups the bot writes first, sent through an outbox.

Each run (one repeating job; every replica runs it) first queues what has become due, one
outbox row per message, then takes the rows one at a time, oldest first: claim (a lease),
send, mark sent. A failed send is retried on a later run with exponential backoff and,
after ``SCHEDULER_MAX_ATTEMPTS`` failures, parked with its reason (shown in /stats). A
process killed at any point loses nothing: a claimed row whose lease has run out is due
again, so at worst one message is sent twice, never silently dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Bot, InlineKeyboardMarkup
from telegram.error import Forbidden, NetworkError, TelegramError
from telegram.ext import JobQueue

from bot import metrics
from bot.config import Settings
from bot.context import BotContext, Runtime
from bot.db.models import Consultation, OutboxMessage, utc_now
from bot.db.repository import (
    ConsultationRepository,
    FollowUpRepository,
    OutboxRepository,
    UserRepository,
    database_now,
)
from bot.handlers.reminders import MAX_IDS, MONTHLY, follow_up_keyboard
from bot.replies import for_language

logger = logging.getLogger(__name__)

DUE_JOB_NAME = "due-reminders-and-follow-ups"
REMINDER, FOLLOW_UP = "reminder", "follow_up"
# Longer than one send can take (SCHEDULER_SEND_TIMEOUT_S is at most 60 s, and the rate
# limiter may wait out a few flood-control pauses), so a live claim never runs out.
CLAIM_LEASE = timedelta(minutes=5)
# Retries back off from SCHEDULER_RETRY_AFTER_S, doubling, up to a day.
MAX_BACKOFF = timedelta(days=1)
# After this many network failures in a row Telegram is down for us: stop this run and
# leave the rest due, rather than time out on every remaining message.
MAX_NETWORK_FAILURES_IN_A_ROW = 3
# Why a message is parked without being tried again.
BLOCKED, NO_CHAT = "blocked", "no_chat"


@dataclass
class RunReport:
    """What one run did (counts only)."""

    queued: int = 0
    sent: int = 0
    failed: int = 0
    parked: int = 0
    dropped: int = 0  # no longer wanted (reminders turned off meanwhile)


# Follow-ups due for one person go out as one message, about this many spots at most: the
# ids of all of them ride in each button's callback data, which Telegram caps at 64 bytes.
MAX_FOLLOW_UPS_PER_MESSAGE = MAX_IDS


@dataclass(frozen=True)
class _Outgoing:
    message_ids: tuple[int, ...]  # the outbox rows this one message sends
    chat_id: int
    text: str
    markup: InlineKeyboardMarkup | None
    # The claim's lease, which is also its fencing token: the row is marked only while it
    # still carries this lease (no other run has claimed it since).
    lease: datetime


async def send_due(bot: Bot, runtime: Runtime, now: datetime) -> RunReport:
    """Queue what is due by ``now``, send the queue one message at a time, purge old records."""
    report = RunReport(queued=await queue_due(runtime, now))
    network_failures = 0
    while network_failures < MAX_NETWORK_FAILURES_IN_A_ROW:
        claimed = await _claim(runtime, now, report)
        if claimed is None:
            break
        if isinstance(claimed, int):
            continue  # dropped or parked without a send
        try:
            await _send(bot, claimed, runtime.settings)
        except TelegramError as error:
            # Counted in bot_telegram_errors by the rate limiter every call goes through.
            network_failures = network_failures + 1 if isinstance(error, NetworkError) else 0
            for message_id in claimed.message_ids:
                await _mark_failed(runtime, claimed, message_id, error, now, report)
        else:
            network_failures = 0
            for message_id in claimed.message_ids:
                await _mark_sent(runtime, claimed, message_id, now)
            report.sent += 1
    if network_failures >= MAX_NETWORK_FAILURES_IN_A_ROW:
        logger.warning("Telegram unreachable; the rest of the outbox waits for the next run")
    await _purge(runtime, now)
    await _update_backlog(runtime)
    if report.queued or report.sent or report.failed or report.parked:
        logger.info(
            "Outbox run: %d queued, %d sent, %d failed, %d parked, %d dropped",
            report.queued,
            report.sent,
            report.failed,
            report.parked,
            report.dropped,
        )
    return report


async def queue_due(runtime: Runtime, now: datetime) -> int:
    """Add one outbox row per due reminder and per due follow-up, in one transaction;
    return how many (the first step of :func:`send_due`)."""
    interval = timedelta(days=runtime.settings.reminder_interval_days)
    queued = 0
    async with runtime.sessions.begin() as session:
        users, outbox = UserRepository(session), OutboxRepository(session)
        for user in await users.due_reminders(now):
            due = user.next_reminder_at
            assert due is not None  # the query selects only users with one
            # Moved on first: a row is queued only by the one process whose move succeeded.
            if await users.move_reminder(user.user_key, due, now + interval):
                await outbox.add(OutboxMessage(kind=REMINDER, user_key=user.user_key, due_at=due))
                queued += 1
        for follow_up, _, _ in await FollowUpRepository(session).due(now):
            await outbox.add(
                OutboxMessage(
                    kind=FOLLOW_UP,
                    user_key=follow_up.user_key,
                    follow_up_id=follow_up.id,
                    due_at=follow_up.due_at,
                )
            )
            queued += 1
    return queued


async def _claim(runtime: Runtime, now: datetime, report: RunReport) -> _Outgoing | int | None:
    """Claim the next message and render it; an id alone means it was settled unsent.

    ``now`` says what is due; the lease is from the database's clock at this claim, not
    from the start of the run: a run that lasts longer than a lease would otherwise hand
    out leases already run out, and another replica would send the same message again.
    """
    async with runtime.sessions.begin() as session:
        clock = await database_now(session)
        lease = clock + CLAIM_LEASE
        message = await OutboxRepository(session).claim_next(now, lease, clock=clock)
        if message is None:
            return None
        user = await UserRepository(session).get(message.user_key)
        if user is None or (message.kind == REMINDER and user.reminder != MONTHLY):
            await session.delete(message)  # forgotten, or reminders turned off meanwhile
            report.dropped += 1
            return message.id
        chat_id = runtime.open_chat(user.chat_ref, user.user_key) if user.chat_ref else None
        # A private chat's id is the user's own (positive); groups and channels have negative
        # ids, and this bot writes to private chats only.
        if chat_id is None or chat_id <= 0:
            _park(message, NO_CHAT, now)
            report.parked += 1
            if message.kind == REMINDER:
                user.reminder = user.next_reminder_at = None  # unreachable: stop trying
            return message.id
        replies = for_language(user.language)
        if message.kind == REMINDER:
            return _Outgoing((message.id,), chat_id, replies.text("remind.message"), None, lease)
        outbox = OutboxRepository(session)
        # Every follow-up of this person that is due goes in this one message.
        more = await outbox.claim_follow_ups_of(
            message.user_key, now, lease, MAX_FOLLOW_UPS_PER_MESSAGE - 1, clock=clock
        )
        asked: list[tuple[int, int, Consultation]] = []  # outbox row, follow-up, check
        for row in (message, *(other for other in more if other.id != message.id)):
            follow_up = await FollowUpRepository(session).get(row.follow_up_id or 0)
            consultation = (
                await ConsultationRepository(session).get(follow_up.consultation_id)
                if follow_up is not None
                else None
            )
            if follow_up is None or consultation is None:
                await session.delete(row)
                report.dropped += 1
                continue
            asked.append((row.id, follow_up.id, consultation))
        if not asked:
            return message.id
        asked.sort(key=lambda item: item[2].created_at)
        text = replies.follow_ups([(c.created_at, c.lesion_label) for _, _, c in asked])
        markup = follow_up_keyboard(replies, [follow_up_id for _, follow_up_id, _ in asked])
        ids = tuple(row_id for row_id, _, _ in asked)
        return _Outgoing(ids, chat_id, text, markup, lease)


async def _send(bot: Bot, item: _Outgoing, settings: Settings) -> None:
    timeout = settings.scheduler_send_timeout_s
    await bot.send_message(
        item.chat_id,
        item.text,
        reply_markup=item.markup,
        read_timeout=timeout,
        write_timeout=timeout,
        connect_timeout=timeout,
    )


async def _held(session: AsyncSession, item: _Outgoing, message_id: int) -> OutboxMessage | None:
    """The row, if this run's claim still holds it (else None: a /forget deleted it, or
    another run claimed it after this claim's lease ran out, and that run now decides)."""
    message = await OutboxRepository(session).get(message_id)
    if message is None or message.claimed_until != item.lease:
        if message is not None:
            logger.warning("Outbox message %d: claim lost before it was marked", message_id)
        return None
    return message


async def _mark_sent(runtime: Runtime, item: _Outgoing, message_id: int, now: datetime) -> None:
    async with runtime.sessions.begin() as session:
        message = await _held(session, item, message_id)
        if message is None:
            return
        message.sent_at, message.claimed_until = now, None
        if message.follow_up_id is not None:
            follow_up = await FollowUpRepository(session).get(message.follow_up_id)
            if follow_up is not None:
                follow_up.sent_at = now


async def _mark_failed(
    runtime: Runtime,
    item: _Outgoing,
    message_id: int,
    error: TelegramError,
    now: datetime,
    report: RunReport,
) -> None:
    kind = type(error).__name__
    settings = runtime.settings
    async with runtime.sessions.begin() as session:
        message = await _held(session, item, message_id)
        if message is None:
            return
        message.attempts += 1
        message.claimed_until = None
        message.last_error = kind[:64]
        if isinstance(error, Forbidden):
            # The user blocked the bot: an expected end. Stop writing to them.
            _park(message, BLOCKED, now)
            user = await UserRepository(session).get(message.user_key)
            if user is not None:
                user.reminder = user.next_reminder_at = user.chat_ref = None
        elif message.attempts >= settings.scheduler_max_attempts:
            _park(message, kind, now)
        else:
            message.due_at = now + backoff(message.attempts, settings.scheduler_retry_after_s)
    if message.parked_at is not None:
        report.parked += 1
        logger.warning(
            "Outbox message %d parked after %d tries: %s",
            message_id,
            message.attempts,
            message.last_error,
        )
    else:
        report.failed += 1
        logger.info("Outbox message %d failed (%s); retried later", message_id, kind)


def backoff(attempts: int, first_s: float) -> timedelta:
    """Return the wait before the next try after ``attempts`` failures (doubling, capped)."""
    return min(timedelta(seconds=first_s * 2 ** max(attempts - 1, 0)), MAX_BACKOFF)


def _park(message: OutboxMessage, reason: str, now: datetime) -> None:
    message.parked_at, message.claimed_until, message.last_error = now, None, reason


async def _purge(runtime: Runtime, now: datetime) -> None:
    async with runtime.sessions.begin() as session:
        purged = await UserRepository(session).purge_older_than(
            now - timedelta(days=runtime.settings.retention_days)
        )
    if purged:
        logger.info("Deleted %d consultations past the retention period", purged)


async def _update_backlog(runtime: Runtime) -> None:
    async with runtime.sessions() as session:
        pending, parked = await OutboxRepository(session).backlog()
    metrics.SCHEDULER_BACKLOG.labels(state="pending").set(pending)
    metrics.SCHEDULER_BACKLOG.labels(state="parked").set(sum(parked.values()))


async def _due_job(context: BotContext) -> None:
    await send_due(context.bot, context.bot_data.runtime, utc_now())


def schedule(job_queue: JobQueue[BotContext], settings: Settings) -> None:
    """Register the repeating job that sends what is due (first run soon after start-up)."""
    job_queue.run_repeating(
        _due_job,
        interval=settings.scheduler_interval_s,
        first=settings.scheduler_interval_s,
        name=DUE_JOB_NAME,
    )

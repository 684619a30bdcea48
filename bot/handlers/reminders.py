"""Opt-in monthly self-check reminders, and the follow-up after a medium or high result.

Both are stored with their due time in the database; one repeating job looks for what is
due, so a restart loses nothing (the job is registered again in ``post_init``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from telegram import Bot, InlineKeyboardMarkup, Update
from telegram.error import Forbidden
from telegram.ext import CallbackQueryHandler, CommandHandler, JobQueue, filters

from bot.config import Settings
from bot.context import BotContext, Runtime
from bot.db.models import utc_now
from bot.db.repository import FollowUpRepository, UserRepository
from bot.handlers.common import Handler, keyboard, person
from bot.replies import Replies, for_language

logger = logging.getLogger(__name__)

MONTHLY = "monthly"
DUE_JOB_NAME = "due-reminders-and-follow-ups"
SAW_DOCTOR = ("yes", "not_yet", "no")
DIAGNOSES = ("benign", "cancer", "other", "unknown")
FOLLOW_UP_PREFIX, DIAGNOSIS_PREFIX = "fu:", "dx:"


async def on_remind(update: Update, context: BotContext) -> None:
    """``/remind monthly`` turns reminders on (the chat id is kept sealed); ``off`` stops them."""
    message = update.message
    if message is None:
        return
    sender = await person(update, context)
    choice = (context.args or [""])[0].lower()
    if choice not in (MONTHLY, "off") or not sender.consented:
        await message.reply_text(sender.replies.text("remind.usage"))
        return
    runtime = context.bot_data.runtime
    async with runtime.sessions.begin() as session:
        user = await UserRepository(session).get_or_add(sender.key)
        if choice == MONTHLY:
            user.reminder = MONTHLY
            user.next_reminder_at = utc_now() + _reminder_interval(runtime.settings)
            user.chat_ref = runtime.seal_chat(message.chat_id, sender.key)
        else:
            user.reminder = user.next_reminder_at = None
            if not await FollowUpRepository(session).pending_for(sender.key):
                user.chat_ref = None  # nothing left to write first about
    await message.reply_text(
        sender.replies.text("remind.on" if choice == MONTHLY else "remind.off")
    )


async def on_follow_up_answer(update: Update, context: BotContext) -> None:
    """Store "did you see a doctor?"; after a yes, ask what the doctor said."""
    query = update.callback_query
    if query is None or query.data is None:
        return
    prefix, _, rest = query.data.partition(":")
    follow_up_id, _, answer = rest.partition(":")
    asked_saw_doctor = f"{prefix}:" == FOLLOW_UP_PREFIX
    sender = await person(update, context)
    # ASCII digits only: a forged button could carry digits int() refuses.
    stored = (
        follow_up_id.isascii()
        and follow_up_id.isdigit()
        and await _store_answer(context, sender.key, int(follow_up_id), asked_saw_doctor, answer)
    )
    await query.answer()  # after storing: a press is finished once Telegram hears back
    if not stored:
        return  # someone else's, forgotten meanwhile, or not a known answer
    replies = sender.replies
    if asked_saw_doctor and answer == "yes":
        markup = _diagnosis_keyboard(replies, int(follow_up_id))
        await query.edit_message_text(replies.text("followup.diagnosis"), reply_markup=markup)
    elif asked_saw_doctor:
        await query.edit_message_text(replies.text("followup.please_go"))
    else:
        await query.edit_message_text(replies.text("followup.thanks"))


async def _store_answer(
    context: BotContext, key: str, follow_up_id: int, saw_doctor: bool, answer: str
) -> bool:
    if answer not in (SAW_DOCTOR if saw_doctor else DIAGNOSES):
        return False
    async with context.bot_data.runtime.sessions.begin() as session:
        follow_up = await FollowUpRepository(session).get(follow_up_id)
        if follow_up is None or follow_up.user_key != key:
            return False
        follow_up.answered_at = utc_now()
        if saw_doctor:
            follow_up.saw_doctor = answer
        else:
            follow_up.diagnosis = answer
    return True


@dataclass(frozen=True)
class _Outgoing:
    user_key: str
    chat_id: int
    text: str
    markup: InlineKeyboardMarkup | None = None


async def send_due(bot: Bot, runtime: Runtime, now: datetime) -> None:
    """Send every reminder and follow-up due by ``now``, then purge expired records.

    Due items are claimed (next reminder moved on, follow-up marked sent) and committed
    before anything is sent, so no database lock is held over the network and nothing is
    sent twice.
    """
    settings = runtime.settings
    outgoing: list[_Outgoing] = []
    async with runtime.sessions.begin() as session:
        for user in await UserRepository(session).due_reminders(now):
            chat_id = runtime.open_chat(user.chat_ref, user.user_key) if user.chat_ref else None
            if chat_id is None:
                user.reminder = user.next_reminder_at = None  # unreachable: stop trying
                continue
            user.next_reminder_at = now + _reminder_interval(settings)
            text = for_language(user.language).text("remind.message")
            outgoing.append(_Outgoing(user.user_key, chat_id, text))
        for follow_up, consultation, user in await FollowUpRepository(session).due(now):
            follow_up.sent_at = now  # asked at most once
            chat_id = runtime.open_chat(user.chat_ref, user.user_key) if user.chat_ref else None
            if chat_id is not None:
                replies = for_language(user.language)
                text = replies.follow_up(consultation.created_at, consultation.lesion_label)
                markup = _follow_up_keyboard(replies, follow_up.id)
                outgoing.append(_Outgoing(user.user_key, chat_id, text, markup))
        purged = await UserRepository(session).purge_older_than(
            now - timedelta(days=settings.retention_days)
        )
    if purged:
        logger.info("Deleted %d consultations past the retention period", purged)
    for item in outgoing:
        try:
            await bot.send_message(item.chat_id, item.text, reply_markup=item.markup)
        except Forbidden:
            # The user blocked the bot: an expected end. Stop reminding them.
            async with runtime.sessions.begin() as session:
                blocked = await UserRepository(session).get(item.user_key)
                if blocked is not None:
                    blocked.reminder = blocked.next_reminder_at = blocked.chat_ref = None


def _follow_up_keyboard(replies: Replies, follow_up_id: int) -> InlineKeyboardMarkup:
    return keyboard(
        [
            (
                replies.text(f"followup.button.{answer}"),
                f"{FOLLOW_UP_PREFIX}{follow_up_id}:{answer}",
            )
            for answer in SAW_DOCTOR
        ]
    )


def _diagnosis_keyboard(replies: Replies, follow_up_id: int) -> InlineKeyboardMarkup:
    return keyboard(
        *[
            [(replies.text(f"diagnosis.{dx}"), f"{DIAGNOSIS_PREFIX}{follow_up_id}:{dx}")]
            for dx in DIAGNOSES
        ]
    )


def _reminder_interval(settings: Settings) -> timedelta:
    return timedelta(days=settings.reminder_interval_days)


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


def handlers(settings: Settings) -> list[Handler]:
    """Return this flow's handlers."""
    del settings
    return [
        CommandHandler("remind", on_remind, filters=filters.UpdateType.MESSAGE),
        CallbackQueryHandler(
            on_follow_up_answer, pattern=f"^({FOLLOW_UP_PREFIX}|{DIAGNOSIS_PREFIX})"
        ),
    ]

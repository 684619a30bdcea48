"""Opt-in monthly self-check reminders, and the answers to the follow-up question.

Both are stored with their due time in the database; ``bot.scheduler`` sends them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from telegram import InlineKeyboardMarkup, Update
from telegram.ext import CallbackQueryHandler, CommandHandler, filters

from bot.config import Settings
from bot.context import BotContext
from bot.db.models import utc_now
from bot.db.repository import FollowUpRepository, UserRepository
from bot.handlers.common import Handler, Person, consent_keyboard, keyboard, person
from bot.replies import Replies

logger = logging.getLogger(__name__)

MONTHLY = "monthly"
REMIND_CHOICES = (MONTHLY, "off")
REMIND_PREFIX = "remind:"
SAW_DOCTOR = ("yes", "not_yet", "no")
DIAGNOSES = ("benign", "cancer", "other", "unknown")
FOLLOW_UP_PREFIX, DIAGNOSIS_PREFIX = "fu:", "dx:"
# At most this many follow-ups answered by one press (bot.scheduler batches as many).
MAX_IDS = 5


async def on_remind(update: Update, context: BotContext) -> None:
    """/remind offers the choice as buttons (no English word to type); ``/remind monthly``
    and ``/remind off`` still work as typed."""
    message = update.message
    if message is None:
        return
    sender = await person(update, context)
    choice = (context.args or [""])[0].lower()
    if choice not in REMIND_CHOICES or not sender.consented:
        await message.reply_text(
            sender.replies.text("remind.ask"), reply_markup=remind_keyboard(sender.replies)
        )
        return
    await message.reply_text(await _set_reminder(context, sender, choice, message.chat_id))


async def on_remind_chosen(update: Update, context: BotContext) -> None:
    """A press of one of the /remind buttons."""
    query = update.callback_query
    if query is None or query.data is None or query.message is None:
        return
    choice = query.data.removeprefix(REMIND_PREFIX)
    sender = await person(update, context)
    await query.answer()
    if choice not in REMIND_CHOICES:
        return
    if not sender.consented:
        # Reminders need the sealed chat number, which only consent allows to keep.
        await query.edit_message_text(
            sender.replies.consent_required(), reply_markup=consent_keyboard(sender.replies)
        )
        return
    text = await _set_reminder(context, sender, choice, query.message.chat.id)
    await query.edit_message_text(text)


def remind_keyboard(replies: Replies) -> InlineKeyboardMarkup:
    return keyboard(
        [
            (replies.text(f"remind.button.{choice}"), f"{REMIND_PREFIX}{choice}")
            for choice in REMIND_CHOICES
        ]
    )


async def _set_reminder(context: BotContext, sender: Person, choice: str, chat_id: int) -> str:
    """Turn reminders on (the chat id kept sealed) or off; return the confirmation."""
    runtime = context.bot_data.runtime
    async with runtime.sessions.begin() as session:
        # Checked again where it is written, as a consultation is: a /forget that committed
        # since ``person`` read the row must not be undone by re-creating it here (with a
        # reminder on, a sealed chat id and no consent).
        user = await UserRepository(session).lock(sender.key)
        if user is None or user.consented_at is None:
            stored = False
        elif choice == MONTHLY:
            stored = True
            user.reminder = MONTHLY
            user.next_reminder_at = utc_now() + _reminder_interval(runtime.settings)
            user.chat_ref = runtime.seal_chat(chat_id, sender.key)
        else:
            stored = True
            user.reminder = user.next_reminder_at = None
            if not await FollowUpRepository(session).pending_for(sender.key):
                user.chat_ref = None  # nothing left to write first about
    if not stored:
        # Forgotten (or never agreed) since ``person`` read the row: nothing was written.
        return sender.replies.consent_required()
    return sender.replies.text("remind.on" if choice == MONTHLY else "remind.off")


async def on_follow_up_answer(update: Update, context: BotContext) -> None:
    """Store "did you see a doctor?"; after a yes, ask what the doctor said.

    One message may ask about several spots (``fu:12,13:yes``): the answer is stored for
    each of them that belongs to the sender.
    """
    query = update.callback_query
    if query is None or query.data is None:
        return
    prefix, _, rest = query.data.partition(":")
    ids_text, _, answer = rest.partition(":")
    asked_saw_doctor = f"{prefix}:" == FOLLOW_UP_PREFIX
    sender = await person(update, context)
    ids = _follow_up_ids(ids_text)
    stored = bool(ids) and await _store_answer(context, sender.key, ids, asked_saw_doctor, answer)
    await query.answer()  # after storing: a press is finished once Telegram hears back
    if not stored:
        return  # someone else's, forgotten meanwhile, or not a known answer
    replies = sender.replies
    if asked_saw_doctor and answer == "yes":
        markup = _diagnosis_keyboard(replies, ids)
        await query.edit_message_text(replies.text("followup.diagnosis"), reply_markup=markup)
    elif asked_saw_doctor:
        await query.edit_message_text(replies.text("followup.please_go"))
    else:
        await query.edit_message_text(replies.text("followup.thanks"))


def _follow_up_ids(text: str) -> list[int]:
    """Parse "12,13"; [] if anything in it is not a plain id."""
    parts = text.split(",")
    # ASCII digits only: a forged button could carry digits int() refuses.
    if not 0 < len(parts) <= MAX_IDS or not all(p.isascii() and p.isdigit() for p in parts):
        return []
    return [int(part) for part in parts]


async def _store_answer(
    context: BotContext, key: str, follow_up_ids: list[int], saw_doctor: bool, answer: str
) -> bool:
    """Store one answer for every listed follow-up of ``key``; True if any was stored."""
    if answer not in (SAW_DOCTOR if saw_doctor else DIAGNOSES):
        return False
    stored = False
    async with context.bot_data.runtime.sessions.begin() as session:
        for follow_up_id in follow_up_ids:
            follow_up = await FollowUpRepository(session).get(follow_up_id)
            if follow_up is None or follow_up.user_key != key:
                continue
            follow_up.answered_at = utc_now()
            if saw_doctor:
                follow_up.saw_doctor = answer
            else:
                follow_up.diagnosis = answer
            stored = True
    return stored


def follow_up_keyboard(replies: Replies, follow_up_ids: Sequence[int]) -> InlineKeyboardMarkup:
    """Return the "did you see a doctor?" buttons for one or several follow-ups (the
    answers come back to this module)."""
    ids = ",".join(map(str, follow_up_ids))
    return keyboard(
        [
            (replies.text(f"followup.button.{answer}"), f"{FOLLOW_UP_PREFIX}{ids}:{answer}")
            for answer in SAW_DOCTOR
        ]
    )


def _diagnosis_keyboard(replies: Replies, follow_up_ids: Sequence[int]) -> InlineKeyboardMarkup:
    ids = ",".join(map(str, follow_up_ids))
    return keyboard(
        *[[(replies.text(f"diagnosis.{dx}"), f"{DIAGNOSIS_PREFIX}{ids}:{dx}")] for dx in DIAGNOSES]
    )


def _reminder_interval(settings: Settings) -> timedelta:
    return timedelta(days=settings.reminder_interval_days)


def handlers(settings: Settings) -> list[Handler]:
    """Return this flow's handlers."""
    del settings
    return [
        CommandHandler("remind", on_remind, filters=filters.UpdateType.MESSAGE),
        CallbackQueryHandler(on_remind_chosen, pattern=f"^{REMIND_PREFIX}"),
        CallbackQueryHandler(
            on_follow_up_answer, pattern=f"^({FOLLOW_UP_PREFIX}|{DIAGNOSIS_PREFIX})"
        ),
    ]

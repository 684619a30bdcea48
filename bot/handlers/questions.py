"""The optional questions about a spot, asked with buttons and a Skip, once per spot.

A button under a result ("questions for the doctor") starts them: where the spot is, the
person's age band, and whether it is new or has changed, grown, bled or itched. Each press
is stored at once with that consultation (``Consultation.answers``, codes only), shown in
/report and /export, and deleted with the consultation by /forget. A "changed", "grown" or
"bled" answer ends with the matching warning (inference.advice).
"""

from __future__ import annotations

from telegram import InlineKeyboardMarkup, Update
from telegram.ext import CallbackQueryHandler

from bot.answers import AGES, SIGNS, SITES, signs_of, with_answer
from bot.config import Settings
from bot.context import BotContext
from bot.db.models import ConsultationStatus
from bot.db.repository import ConsultationRepository
from bot.handlers.common import Handler, keyboard, person
from bot.replies import Replies
from inference.advice import Note, advise
from inference.types import Risk

QUESTIONS_PREFIX = "qa:"
SKIP = "skip"
SIGN_WARNINGS = (Note.SIGN_CHANGED, Note.SIGN_BLED)


def questions_button(replies: Replies, consultation_id: int) -> tuple[str, str]:
    """The button under a result that starts the questions."""
    return replies.text("questions.button"), f"{QUESTIONS_PREFIX}{consultation_id}:start:go"


async def on_answer(update: Update, context: BotContext) -> None:
    """Store one press and show the next question (the answers come back here)."""
    query = update.callback_query
    if query is None or query.data is None or query.message is None:
        return
    parts = query.data.removeprefix(QUESTIONS_PREFIX).split(":")
    sender = await person(update, context)
    replies = sender.replies
    if len(parts) != 3 or not (parts[0].isascii() and parts[0].isdigit()):
        await query.answer()
        return
    raw_id, step, value = parts
    async with context.bot_data.runtime.sessions.begin() as session:
        row = await ConsultationRepository(session).get(int(raw_id))
        if row is None or row.user_key != sender.key or row.status != ConsultationStatus.ASSESSED:
            row = None  # someone else's, forgotten meanwhile, or forged
        elif step != "start":
            row.answers = with_answer(row.answers, step, value)
        answers = dict(row.answers or {}) if row is not None else {}
        risk, top = (row.risk, row.top_class) if row is not None else (None, None)
    if row is None:
        await query.answer()
        return
    consultation_id = int(raw_id)
    if step == "start":
        text, markup = _site_question(replies, consultation_id)
        await context.bot.send_message(query.message.chat.id, text, reply_markup=markup)
    elif step == "site":
        text, markup = _age_question(replies, consultation_id)
        await query.edit_message_text(text, reply_markup=markup)
    elif step in ("age", "sign"):
        text, markup = _signs_question(replies, consultation_id, signs_of(answers))
        await query.edit_message_text(text, reply_markup=markup)
    else:
        notes = advise(Risk(risk or Risk.LOW), top, signs=signs_of(answers)).notes
        warnings = [replies.text(f"advice.note.{n.value}") for n in notes if n in SIGN_WARNINGS]
        await query.edit_message_text("\n\n".join([replies.text("questions.thanks"), *warnings]))
    await query.answer()  # last: a press is finished once what it changed is shown


def _site_question(replies: Replies, consultation_id: int) -> tuple[str, InlineKeyboardMarkup]:
    buttons = _buttons(replies, consultation_id, "site", SITES)
    return replies.text("questions.site"), keyboard(*_rows(buttons, 2))


def _age_question(replies: Replies, consultation_id: int) -> tuple[str, InlineKeyboardMarkup]:
    buttons = _buttons(replies, consultation_id, "age", AGES)
    return replies.text("questions.age"), keyboard(*_rows(buttons, 2))


def _signs_question(
    replies: Replies, consultation_id: int, chosen: frozenset[str]
) -> tuple[str, InlineKeyboardMarkup]:
    prefix = f"{QUESTIONS_PREFIX}{consultation_id}"
    rows = [
        [
            (
                ("✓ " if sign in chosen else "") + replies.text(f"questions.sign.{sign}"),
                f"{prefix}:sign:{sign}",
            )
        ]
        for sign in SIGNS
    ]
    rows.append(
        [
            (replies.text("questions.done"), f"{prefix}:signs:done"),
            (replies.text("questions.skip"), f"{prefix}:signs:{SKIP}"),
        ]
    )
    return replies.text("questions.signs"), keyboard(*rows)


def _buttons(
    replies: Replies, consultation_id: int, step: str, codes: tuple[str, ...]
) -> list[tuple[str, str]]:
    prefix = f"{QUESTIONS_PREFIX}{consultation_id}:{step}"
    return [
        *((replies.text(f"questions.{step}.{code}"), f"{prefix}:{code}") for code in codes),
        (replies.text("questions.skip"), f"{prefix}:{SKIP}"),
    ]


def _rows(buttons: list[tuple[str, str]], width: int) -> list[list[tuple[str, str]]]:
    return [buttons[i : i + width] for i in range(0, len(buttons), width)]


def handlers(settings: Settings) -> list[Handler]:
    """Return this flow's handlers."""
    del settings
    return [CallbackQueryHandler(on_answer, pattern=f"^{QUESTIONS_PREFIX}")]

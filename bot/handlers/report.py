"""/report and the button under each result: a report image for the person's doctor.

The report is drawn in memory from the stored results (no photo: photos are never kept) in
the person's language, sent, and not stored. A health worker asks for one patient's:
``/report P123``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from telegram import Update
from telegram.ext import CallbackQueryHandler, CommandHandler, filters

from bot.config import Settings
from bot.context import BotContext
from bot.db.models import Consultation, ConsultationStatus, utc_now
from bot.db.repository import ConsultationRepository
from bot.doctor_report import render_png
from bot.handlers.common import Handler, Person, person
from bot.handlers.delivery import with_retries
from bot.replies import Replies
from bot.tracking import parse_patient_code

REPORT_PREFIX = "report:"
# Enough for a doctor's visit about a few spots, short enough to read on a phone.
MAX_CHECKS = 5


def report_button(replies: Replies, consultation_id: int) -> tuple[str, str]:
    """The button under a result: this result as a report for the doctor."""
    return replies.text("report.button"), f"{REPORT_PREFIX}{consultation_id}"


async def on_report(update: Update, context: BotContext) -> None:
    """The latest result of each spot (a health worker: of one patient) as one report."""
    message = update.message
    if message is None:
        return
    sender = await person(update, context)
    code = None
    if sender.is_worker:
        code = parse_patient_code(" ".join(context.args or []))
        if code is None:
            await message.reply_text(sender.replies.text("report.usage_worker"))
            return
    async with context.bot_data.runtime.sessions() as session:
        rows = await ConsultationRepository(session).history(sender.key, patient_code=code)
    checks = latest_per_spot(rows)
    if not checks:
        await message.reply_text(sender.replies.text("report.none"))
        return
    await _send_report(context, message.chat_id, sender, checks, code)


async def on_report_button(update: Update, context: BotContext) -> None:
    """The button under one result: that result alone."""
    query = update.callback_query
    if query is None or query.data is None or query.message is None:
        return
    raw = query.data.removeprefix(REPORT_PREFIX)
    sender = await person(update, context)
    row = None
    # ASCII digits only: a forged button could carry digits int() refuses.
    if raw.isascii() and raw.isdigit():
        async with context.bot_data.runtime.sessions() as session:
            row = await ConsultationRepository(session).get(int(raw))
    if row is None or row.user_key != sender.key or row.status != ConsultationStatus.ASSESSED:
        await query.answer()
        return  # someone else's, forgotten meanwhile, or forged
    await _send_report(context, query.message.chat.id, sender, [row], row.patient_code)
    await query.answer()  # after sending: the press is finished once the report is there


def latest_per_spot(rows: Sequence[Consultation]) -> list[Consultation]:
    """From checks newest first: the newest assessed one of each named spot (and the
    newest unnamed one), at most :data:`MAX_CHECKS`, newest first."""
    seen: set[str | None] = set()
    latest = []
    for row in rows:
        if row.status != ConsultationStatus.ASSESSED or row.lesion_label in seen:
            continue
        seen.add(row.lesion_label)
        latest.append(row)
    return latest[:MAX_CHECKS]


async def _send_report(
    context: BotContext,
    chat_id: int,
    sender: Person,
    checks: Sequence[Consultation],
    patient_code: str | None,
) -> None:
    replies = sender.replies
    lines = replies.report(
        checks,
        made_at=utc_now(),
        type_names=context.bot_data.runtime.screening.metadata.class_names,
        patient_code=patient_code,
    )
    png = await asyncio.to_thread(render_png, lines)
    caption = replies.text("report.caption")
    await with_retries(lambda: context.bot.send_photo(chat_id, png, caption=caption), "sendPhoto")


def handlers(settings: Settings) -> list[Handler]:
    """Return this flow's handlers."""
    del settings
    return [
        CommandHandler("report", on_report, filters=filters.UpdateType.MESSAGE),
        CallbackQueryHandler(on_report_button, pattern=f"^{REPORT_PREFIX}"),
    ]

"""Health-worker commands: /patients, /patient <code>, /myexport (refused for everyone else)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from telegram import Message, Update
from telegram.ext import CommandHandler, filters

from bot.config import Settings
from bot.context import BotContext
from bot.db.repository import ConsultationRepository
from bot.handlers.common import Handler, Person, person, reply_long
from bot.reports import WORKER_COLUMNS, consultations_csv
from bot.tracking import parse_patient_code

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


async def _worker_request(update: Update, context: BotContext) -> tuple[Message, Person] | None:
    """The message and its sender if the sender is a health worker; else a polite refusal."""
    message = update.message
    if message is None:
        return None
    sender = await person(update, context)
    if not sender.is_worker:
        await message.reply_text(sender.replies.text("refused"))
        return None
    return message, sender


async def on_patients(update: Update, context: BotContext) -> None:
    """List the worker's patients by code, with their last check."""
    request = await _worker_request(update, context)
    if request is None:
        return
    message, sender = request
    async with context.bot_data.runtime.sessions() as session:
        patients = await ConsultationRepository(session).patients(sender.key)
    await reply_long(message, sender.replies.patients(patients))


async def on_patient(update: Update, context: BotContext) -> None:
    """Show one patient's checks, newest first."""
    request = await _worker_request(update, context)
    if request is None:
        return
    message, sender = request
    code = parse_patient_code(" ".join(context.args or []))
    if code is None:
        await message.reply_text(sender.replies.text("worker.patient.usage"))
        return
    async with context.bot_data.runtime.sessions() as session:
        rows = await ConsultationRepository(session).history(sender.key, patient_code=code)
    await reply_long(message, sender.replies.patient(code, rows))


async def on_my_export(update: Update, context: BotContext) -> None:
    """Send the worker's own consultations as CSV (pseudonymous keys, their patient codes)."""
    request = await _worker_request(update, context)
    if request is None:
        return
    message, sender = request
    async with context.bot_data.runtime.sessions() as session:
        rows = await ConsultationRepository(session).since(_EPOCH, user_key=sender.key)
    data = await asyncio.to_thread(consultations_csv, rows, WORKER_COLUMNS)
    await message.reply_document(
        data, filename="my-consultations.csv", caption=sender.replies.text("worker.export.caption")
    )


def handlers(settings: Settings) -> list[Handler]:
    """Return this flow's handlers."""
    del settings
    only_messages = filters.UpdateType.MESSAGE
    return [
        CommandHandler("patients", on_patients, filters=only_messages),
        CommandHandler("patient", on_patient, filters=only_messages),
        CommandHandler("myexport", on_my_export, filters=only_messages),
    ]

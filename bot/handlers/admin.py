"""/stats for the ids in ADMIN_IDS: counts of outcomes, no personal data."""

from __future__ import annotations

from telegram import Update
from telegram.ext import CommandHandler, filters

from bot.config import Settings
from bot.context import BotContext
from bot.db.repository import ConsultationRepository
from bot.handlers.common import Handler, replies_for


async def on_stats(update: Update, context: BotContext) -> None:
    """Reply with consultation counts per outcome."""
    if not update.message:
        return
    async with context.bot_data.runtime.sessions() as session:
        counts = await ConsultationRepository(session).count_by_outcome()
    await update.message.reply_text(replies_for(update).stats(counts))


def handlers(settings: Settings) -> list[Handler]:
    """Return this flow's handlers; others sending /stats get the usual pointer."""
    admins = filters.User(user_id=settings.admin_ids)
    return [CommandHandler("stats", on_stats, filters=filters.UpdateType.MESSAGE & admins)]

"""Anything else (text, unknown commands, locations, ...): point at what the bot expects."""

from __future__ import annotations

from telegram import Update
from telegram.ext import MessageHandler, filters

from bot.config import Settings
from bot.context import BotContext
from bot.handlers.common import Handler, person


async def on_other(update: Update, context: BotContext) -> None:
    """Ask for a photo; the message itself is neither read further nor logged."""
    if update.message:
        await update.message.reply_text((await person(update, context)).replies.pointer())


def handlers(settings: Settings) -> list[Handler]:
    """Return this flow's handlers (register last: it matches every message)."""
    del settings
    return [MessageHandler(filters.UpdateType.MESSAGE, on_other)]

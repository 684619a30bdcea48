"""Photos beyond a user's rate are refused before anything else is done with them.

Runs before the consent check, so a flood costs no database work at all: one person
sending hundreds of photos must not delay anyone else's answer. The refused sender is told
at most once a minute, in their Telegram language (no database read for that either).
"""

from __future__ import annotations

import logging

from telegram import Update
from telegram.ext import MessageHandler

from bot import metrics
from bot.admission import BusyReason
from bot.context import BotContext
from bot.handlers.common import NEEDS_CONSENT, Handler, refuse, replies_for, user_key

logger = logging.getLogger(__name__)


async def stop_a_flood(update: Update, context: BotContext) -> None:
    """Let a picture through if its sender has a token left; else refuse it here."""
    admission = context.bot_data.runtime.admission
    key = user_key(update, context)
    if admission.take_token(key):
        return
    logger.info("A picture over its sender's rate was refused")
    metrics.not_admitted(BusyReason.RATE)
    if update.message is not None and admission.should_notify(key):
        await refuse(update.message.reply_text(replies_for(update).text(f"busy.{BusyReason.RATE}")))
    await refuse()


def gate_handlers() -> list[Handler]:
    """Handlers for the group after the private-chat check, before the consent check."""
    return [MessageHandler(NEEDS_CONSENT, stop_a_flood)]

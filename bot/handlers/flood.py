"""Photos beyond a user's abuse limit are refused before anything else is done with them.

The limit (``USER_PHOTO_BURST``, ``USER_PHOTOS_PER_HOUR``) is far above real use: fairness
between users comes from each user's updates waiting in their own queue (``bot.turns``),
not from refusals. Runs before the consent check, so abuse costs no database work; each
refused photo is told so, in the sender's Telegram language (every photo gets an answer).
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
    runtime = context.bot_data.runtime
    if runtime.admission.take_token(user_key(update, context)):
        return
    logger.info("A picture over its sender's limit was refused")
    metrics.not_admitted(BusyReason.RATE)
    send = None
    if update.message is not None:
        limit = runtime.settings.user_photos_per_hour
        text = replies_for(update).text("busy.hourly", limit=f"{limit:g}")
        send = update.message.reply_text(text)
    await refuse(send)


def gate_handlers() -> list[Handler]:
    """Handlers for the group after the private-chat check, before the consent check."""
    return [MessageHandler(NEEDS_CONSENT, stop_a_flood)]

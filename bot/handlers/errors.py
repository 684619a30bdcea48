"""The one global error handler: log (no user content), then apologise to the user."""

from __future__ import annotations

import logging

from telegram import Update

from bot.context import BotContext
from bot.handlers.common import replies_for
from bot.handlers.private import is_private

logger = logging.getLogger(__name__)


async def on_error(update: object, context: BotContext) -> None:
    """Log the error with its traceback and tell the user something went wrong."""
    update_id = update.update_id if isinstance(update, Update) else None
    logger.error("Error while handling update %s", update_id, exc_info=context.error)
    # Only a private chat hears about it: a group never gets anything from this bot.
    if isinstance(update, Update) and is_private(update) and update.effective_chat is not None:
        await context.bot.send_message(update.effective_chat.id, replies_for(update).error())

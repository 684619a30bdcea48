"""Small helpers shared by the handler modules."""

from __future__ import annotations

from typing import Any

from telegram import Update
from telegram.ext import BaseHandler

from bot.context import BotContext
from bot.replies import Replies, for_language

Handler = BaseHandler[Update, BotContext, Any]


def replies_for(update: object) -> Replies:
    """Return the replies in the language of the user behind ``update``."""
    user = update.effective_user if isinstance(update, Update) else None
    return for_language(user.language_code if user else None)


def user_key(update: Update, context: BotContext) -> str:
    """Return the pseudonymous key of the user who sent ``update``."""
    if update.effective_user is None:
        raise ValueError("update has no user")  # channel posts are never routed here
    return context.bot_data.runtime.user_key(update.effective_user.id)

"""Private chats only: health results, histories and exports never go to a group.

Runs before every other handler. In a group, supergroup or channel the bot says once,
politely, that it works in private chats, and does nothing else; button presses under
messages in such chats are ignored. Nothing here touches the database.
"""

from __future__ import annotations

from telegram import Update
from telegram.constants import ChatType
from telegram.ext import ApplicationHandlerStop, TypeHandler

from bot.context import BotContext
from bot.handlers.common import Handler, replies_for


def is_private(update: Update) -> bool:
    """True if ``update`` comes from a private chat with the bot."""
    chat = update.effective_chat
    return chat is not None and chat.type == ChatType.PRIVATE


async def stop_unless_private(update: Update, context: BotContext) -> None:
    """Let private chats through; answer anything else with one line and stop it."""
    if is_private(update):
        return
    message = update.message or update.channel_post
    if message is not None:
        await message.reply_text(replies_for(update).text("private_only"))
    raise ApplicationHandlerStop


def gate_handlers() -> list[Handler]:
    """Handlers for the group that runs before all others."""
    return [TypeHandler(Update, stop_unless_private)]

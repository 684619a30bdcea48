"""Private chats only: health results, histories and exports never go to a group.

Runs before every other handler. In a group, supergroup or channel the bot says once,
politely, that it works in private chats, leaves the chat, and does nothing else; button
presses under messages in such chats are ignored. Being added to one (a my_chat_member
update) is enough to leave it. Nothing here touches the database.

The update stops here whatever happens to that line: when it cannot be sent (no right to
write in the group, a 502) the next handler groups must still never run, or an admin's
/export would post the CSV into the group. The line and the leave are sent in the
background, so a group's rate limit (20 messages a minute) never holds one of the update
slots private users need: the gate itself returns at once.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from telegram import Bot, Update
from telegram.constants import ChatMemberStatus, ChatType
from telegram.ext import ApplicationHandlerStop, TypeHandler

from bot.context import BotContext
from bot.handlers.common import Handler, replies_for

logger = logging.getLogger(__name__)

# The bot's own membership after it left or was removed: nothing to say, nothing to leave.
_GONE = frozenset({ChatMemberStatus.LEFT, ChatMemberStatus.BANNED})
# Groups already told (and left), so a busy group gets one line, not one per message.
# Bounded: after this many other groups, an old one could be told a second time.
REMEMBERED_CHATS = 10_000


def is_private(update: Update) -> bool:
    """True if ``update`` comes from a private chat with the bot."""
    chat = update.effective_chat
    return chat is not None and chat.type == ChatType.PRIVATE


async def say_once_and_leave(bot: Bot, chat_id: int, text: str | None) -> None:
    """Send the one line (if any), then leave the chat; failures are logged by kind only."""
    try:
        if text is not None:
            await bot.send_message(chat_id, text)
    except Exception as error:  # no right to write, 5xx, ...: leaving matters more
        logger.info("The private-chats-only line was not sent (%s)", type(error).__name__)
    try:
        await bot.leave_chat(chat_id)
    except Exception as error:  # not fatal: its later messages stop here too
        logger.info("Could not leave a group or channel (%s)", type(error).__name__)


def gate_handlers() -> list[Handler]:
    """Handlers for the group that runs before all others."""
    told: OrderedDict[int, None] = OrderedDict()

    async def stop_unless_private(update: Update, context: BotContext) -> None:
        """Let private chats through; anything else is stopped (told once, then left)."""
        if is_private(update):
            return
        try:
            chat = update.effective_chat
            membership = update.my_chat_member
            gone = membership is not None and membership.new_chat_member.status in _GONE
            if chat is not None and chat.id not in told and not gone:
                told[chat.id] = None
                if len(told) > REMEMBERED_CHATS:
                    told.popitem(last=False)
                # Said to a message, or on being added; not under a pressed button.
                says = update.callback_query is None
                text = replies_for(update).text("private_only") if says else None
                context.application.create_task(say_once_and_leave(context.bot, chat.id, text))
        finally:
            raise ApplicationHandlerStop  # whatever happened above: see the module doc

    return [TypeHandler(Update, stop_unless_private)]

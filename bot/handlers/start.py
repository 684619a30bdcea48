"""/start and /help: what the bot does, what it does not, and how to take a good photo."""

from __future__ import annotations

from telegram import Update
from telegram.ext import CommandHandler, filters

from bot.config import Settings
from bot.context import BotContext
from bot.handlers.common import Handler, person
from bot.handlers.consent import consent_keyboard


async def on_start(update: Update, context: BotContext) -> None:
    """Introduce the bot in a few short messages; whoever has not agreed yet gets the
    consent text and buttons last."""
    if not update.message:
        return
    sender = await person(update, context)
    replies = sender.replies
    # Short messages rather than one long block; the consent buttons under the last.
    messages = replies.start(ask_consent=not sender.consented)
    for number, text in enumerate(messages, start=1):
        last = number == len(messages)
        markup = consent_keyboard(replies) if last and not sender.consented else None
        await update.message.reply_text(text, reply_markup=markup)


async def on_help(update: Update, context: BotContext) -> None:
    """Give photo tips and the commands."""
    if update.message:
        await update.message.reply_text((await person(update, context)).replies.help())


def handlers(settings: Settings) -> list[Handler]:
    """Return this flow's handlers."""
    del settings
    only_messages = filters.UpdateType.MESSAGE
    return [
        CommandHandler("start", on_start, filters=only_messages),
        CommandHandler("help", on_help, filters=only_messages),
    ]

"""/history of a user's checks, and /forget to delete everything after a confirmation."""

from __future__ import annotations

from telegram import Update
from telegram.ext import CallbackQueryHandler, CommandHandler, filters

from bot.config import Settings
from bot.context import BotContext
from bot.db.repository import ConsultationRepository, UserRepository
from bot.handlers.common import Handler, keyboard, person, reply_long

FORGET_YES, FORGET_NO = "forget:yes", "forget:no"


async def on_history(update: Update, context: BotContext) -> None:
    """List the user's past checks: date, risk level and the spot's name."""
    if update.message is None:
        return
    sender = await person(update, context)
    async with context.bot_data.runtime.sessions() as session:
        rows = await ConsultationRepository(session).history(sender.key)
    await reply_long(update.message, sender.replies.history(rows))


async def on_forget(update: Update, context: BotContext) -> None:
    """Ask for confirmation before deleting anything."""
    if update.message is None:
        return
    replies = (await person(update, context)).replies
    buttons = [
        (replies.text("forget.button.yes"), FORGET_YES),
        (replies.text("forget.button.no"), FORGET_NO),
    ]
    await update.message.reply_text(replies.text("forget.confirm"), reply_markup=keyboard(buttons))


async def on_forget_answer(update: Update, context: BotContext) -> None:
    """Delete every row about the user (consultations, follow-ups, settings), or cancel."""
    query = update.callback_query
    if query is None:
        return
    sender = await person(update, context)  # language first: the user row is about to go
    await query.answer()
    if query.data != FORGET_YES:
        await query.edit_message_text(sender.replies.text("forget.cancelled"))
        return
    async with context.bot_data.runtime.sessions.begin() as session:
        await UserRepository(session).forget(sender.key)
    await query.edit_message_text(sender.replies.text("forget.done"))


def handlers(settings: Settings) -> list[Handler]:
    """Return this flow's handlers."""
    del settings
    only_messages = filters.UpdateType.MESSAGE
    return [
        CommandHandler("history", on_history, filters=only_messages),
        CommandHandler("forget", on_forget, filters=only_messages),
        CallbackQueryHandler(on_forget_answer, pattern=f"^({FORGET_YES}|{FORGET_NO})$"),
    ]

"""Consent before the first photo, /privacy to read it again, /language to switch language."""

from __future__ import annotations

import logging

from telegram import CallbackQuery, Update
from telegram.ext import (
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    filters,
)

from bot.config import Settings
from bot.context import BotContext
from bot.db.models import utc_now
from bot.db.repository import UserRepository
from bot.handlers.common import (
    AGREE,
    DECLINE,
    NEEDS_CONSENT,
    Handler,
    consent_keyboard,
    keyboard,
    person,
    refuse,
    replies_for,
    user_key,
)
from bot.i18n import LANGUAGE_NAMES, LANGUAGES
from bot.replies import for_language

__all__ = ["AGREE", "DECLINE", "consent_keyboard", "gate_handlers", "handlers"]

logger = logging.getLogger(__name__)
LANGUAGE_PREFIX = "lang:"


async def gate(update: Update, context: BotContext) -> None:
    """Stop a picture from anyone who has not agreed yet: nothing is downloaded or stored.

    Fails closed: if consent cannot be checked (say, the database is down), the update
    stops here with an apology. An exception would let PTB run the next handler group,
    which screens the photo; so the update stops even when the refusal cannot be sent.
    """
    try:
        sender = await person(update, context)
    except Exception:  # any failure to check means "not agreed": see the docstring
        logger.exception("Consent could not be checked; the update was dropped")
        if update.message is not None:
            await refuse(update.message.reply_text(replies_for(update).text("consent.unchecked")))
        await refuse()
    if sender.consented or update.message is None:
        return
    await refuse(
        update.message.reply_text(
            sender.replies.consent_required(), reply_markup=consent_keyboard(sender.replies)
        )
    )


async def on_privacy(update: Update, context: BotContext) -> None:
    """Show what is stored and for how long; offer the buttons to whoever has not agreed."""
    if update.message is None:
        return
    sender = await person(update, context)
    markup = None if sender.consented else consent_keyboard(sender.replies)
    await update.message.reply_text(
        sender.replies.privacy(sender.consented_at), reply_markup=markup
    )


async def on_consent(update: Update, context: BotContext) -> None:
    """Record agreement (time and language), or confirm that nothing was kept."""
    query = update.callback_query
    if query is None:
        return
    sender = await person(update, context)
    await query.answer()
    await _drop_buttons(query)
    if query.data == AGREE:
        async with context.bot_data.runtime.sessions.begin() as session:
            user = await UserRepository(session).get_or_add(sender.key)
            user.consented_at = user.consented_at or utc_now()
            user.language = user.language or sender.language
        text = sender.replies.text("consent.agreed")
    else:
        text = sender.replies.text("consent.declined")
    await context.bot.send_message(_chat_id(query), text)


async def on_language(update: Update, context: BotContext) -> None:
    """Offer the languages, each named in itself."""
    if update.message is None:
        return
    sender = await person(update, context)
    buttons = [(LANGUAGE_NAMES[code], f"{LANGUAGE_PREFIX}{code}") for code in LANGUAGES]
    await update.message.reply_text(
        sender.replies.text("language.choose"), reply_markup=keyboard(buttons)
    )


async def on_language_chosen(update: Update, context: BotContext) -> None:
    """Store the chosen language and confirm in it."""
    query = update.callback_query
    if query is None or query.data is None:
        return
    language = query.data.removeprefix(LANGUAGE_PREFIX)
    await query.answer()
    if language not in LANGUAGES:
        return
    async with context.bot_data.runtime.sessions.begin() as session:
        # Only an existing row, checked where it is written: a /forget that committed
        # meanwhile (or someone who never agreed) must not get a row back from a button.
        user = await UserRepository(session).lock(user_key(update, context))
        if user is not None:
            user.language = language
    chosen = for_language(language)
    if user is None:
        await query.edit_message_text(chosen.text("language.needs_consent"))
        return
    await query.edit_message_text(chosen.text("language.set"))


def gate_handlers() -> list[Handler]:
    """Handlers for the group that runs before all others."""
    return [MessageHandler(NEEDS_CONSENT, gate)]


def handlers(settings: Settings) -> list[Handler]:
    """Return this flow's handlers."""
    del settings
    only_messages = filters.UpdateType.MESSAGE
    return [
        CommandHandler("privacy", on_privacy, filters=only_messages),
        CommandHandler("language", on_language, filters=only_messages),
        CallbackQueryHandler(on_consent, pattern=f"^({AGREE}|{DECLINE})$"),
        CallbackQueryHandler(on_language_chosen, pattern=f"^{LANGUAGE_PREFIX}"),
    ]


async def _drop_buttons(query: CallbackQuery) -> None:
    # A pressed choice should not be pressable again.
    await query.edit_message_reply_markup(reply_markup=None)


def _chat_id(query: CallbackQuery) -> int:
    if query.message is not None:
        return query.message.chat.id
    return query.from_user.id  # private chats: the chat id is the user's

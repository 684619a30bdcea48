"""Small helpers shared by the handler modules."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, NoReturn

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.ext import ApplicationHandlerStop, BaseHandler, filters

from bot.context import BotContext
from bot.db.repository import UserRepository
from bot.handlers.delivery import with_retries
from bot.i18n import language_for
from bot.replies import Replies, for_language, split_message

logger = logging.getLogger(__name__)

Handler = BaseHandler[Update, BotContext, Any]
AGREE, DECLINE = "consent:agree", "consent:decline"
NOT_A_STILL_PICTURE = (
    filters.ANIMATION
    | filters.VIDEO
    | filters.VIDEO_NOTE
    | filters.Sticker.ALL
    | filters.VOICE
    | filters.AUDIO
)
# Everything that would be screened or logged: it waits for consent (and for the rate).
NEEDS_CONSENT = filters.UpdateType.MESSAGE & (
    filters.PHOTO | filters.Document.ALL | NOT_A_STILL_PICTURE
)


def replies_for(update: object) -> Replies:
    """Return the replies in the Telegram language of the user behind ``update``.

    For the error handler and other places that must not touch the database; everything
    else uses :func:`person`, which honours the language chosen with /language.
    """
    user = update.effective_user if isinstance(update, Update) else None
    return for_language(user.language_code if user else None)


async def refuse(send: Awaitable[object] | None = None) -> NoReturn:
    """Send a gate's refusal (if any), then stop the update, whatever happened to the send.

    A refusal that fails (no right to write, a 502) must not let PTB run the next handler
    groups: they would screen a photo without consent, or post an export into a group.
    """
    try:
        if send is not None:
            await send
    except Exception as error:  # logged and counted (the rate limiter); the stop matters
        logger.warning("A gate's refusal was not sent (%s)", type(error).__name__)
    raise ApplicationHandlerStop


def user_key(update: Update, context: BotContext) -> str:
    """Return the pseudonymous key of the user who sent ``update``."""
    if update.effective_user is None:
        raise ValueError("update has no user")  # channel posts are never routed here
    return context.bot_data.runtime.user_key(update.effective_user.id)


@dataclass(frozen=True)
class Person:
    """What the bot knows about the sender of one update."""

    key: str
    language: str
    consented_at: datetime | None
    is_worker: bool
    replies: Replies

    @property
    def consented(self) -> bool:
        return self.consented_at is not None


async def person(update: Update, context: BotContext) -> Person:
    """Load the sender's stored settings (one query); unknown users get Telegram's language."""
    key = user_key(update, context)
    async with context.bot_data.runtime.sessions() as session:
        user = await UserRepository(session).get(key)
    telegram_language = update.effective_user.language_code if update.effective_user else None
    language = (user.language if user else None) or language_for(telegram_language)
    return Person(
        key=key,
        language=language,
        consented_at=user.consented_at if user else None,
        is_worker=bool(user and user.is_worker),
        replies=for_language(language),
    )


def keyboard(*rows: Sequence[tuple[str, str]]) -> InlineKeyboardMarkup:
    """Build an inline keyboard from rows of (label, callback data)."""
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(label, callback_data=data) for label, data in row] for row in rows]
    )


def consent_keyboard(replies: Replies) -> InlineKeyboardMarkup:
    """The Agree / Decline buttons under the consent text."""
    return keyboard(
        [
            (replies.text("consent.button.agree"), AGREE),
            (replies.text("consent.button.decline"), DECLINE),
        ]
    )


async def reply_long(
    message: Message, text: str, reply_markup: InlineKeyboardMarkup | None = None
) -> list[Message]:
    """Reply with ``text``, split at line boundaries into messages Telegram accepts.

    Buttons, if any, go under the last part. Each part is retried on its own (flood
    control, 5xx, timeouts), so a retry never repeats a part that got through.
    """
    parts = split_message(text)
    sent = []
    for number, part in enumerate(parts, start=1):
        markup = reply_markup if number == len(parts) else None
        sent.append(
            await with_retries(
                partial(message.reply_text, part, reply_markup=markup), "sendMessage"
            )
        )
    return sent

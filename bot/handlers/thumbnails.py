"""/thumbnails: opt in to (or out of) keeping an encrypted thumbnail of each named spot's
photos, to see them side by side with the spot's next photo (bot.thumbnails).

Off by default. Turning it off deletes every thumbnail kept; /forget deletes them too.
"""

from __future__ import annotations

from telegram import InlineKeyboardMarkup, Update
from telegram.ext import CallbackQueryHandler, CommandHandler, filters

from bot.config import Settings
from bot.context import BotContext
from bot.db.repository import ThumbnailRepository, UserRepository
from bot.handlers.common import Handler, Person, consent_keyboard, keyboard, person
from bot.replies import Replies

THUMBNAILS_PREFIX = "thumbs:"
THUMBNAIL_CHOICES = ("on", "off")


async def on_thumbnails(update: Update, context: BotContext) -> None:
    """/thumbnails says what is kept and how, whether it is on, and offers both choices."""
    message = update.message
    if message is None:
        return
    sender = await person(update, context)
    async with context.bot_data.runtime.sessions() as session:
        user = await UserRepository(session).get(sender.key)
    state = "on" if user is not None and user.keep_thumbnails else "off"
    replies = sender.replies
    text = f"{replies.text('thumbnails.ask')}\n\n{replies.text(f'thumbnails.now_{state}')}"
    await message.reply_text(text, reply_markup=thumbnails_keyboard(replies))


async def on_thumbnails_chosen(update: Update, context: BotContext) -> None:
    """A press of one of the /thumbnails buttons."""
    query = update.callback_query
    if query is None or query.data is None:
        return
    choice = query.data.removeprefix(THUMBNAILS_PREFIX)
    sender = await person(update, context)
    await query.answer()
    if choice not in THUMBNAIL_CHOICES:
        return
    if not await _set(context, sender, keep=choice == "on"):
        # Nothing is kept for someone who has not agreed (or was forgotten meanwhile).
        await query.edit_message_text(
            sender.replies.consent_required(), reply_markup=consent_keyboard(sender.replies)
        )
        return
    await query.edit_message_text(sender.replies.text(f"thumbnails.{choice}"))


def thumbnails_keyboard(replies: Replies) -> InlineKeyboardMarkup:
    return keyboard(
        [
            (replies.text(f"thumbnails.button.{choice}"), f"{THUMBNAILS_PREFIX}{choice}")
            for choice in THUMBNAIL_CHOICES
        ]
    )


async def _set(context: BotContext, sender: Person, *, keep: bool) -> bool:
    """Turn keeping on, or off and delete every kept thumbnail; False if the sender has
    not agreed (then nothing is written)."""
    async with context.bot_data.runtime.sessions.begin() as session:
        # Checked where it is written: a /forget that committed since ``person`` read the
        # row must not be undone by re-creating it.
        user = await UserRepository(session).lock(sender.key)
        if user is None or user.consented_at is None:
            return False
        user.keep_thumbnails = keep
        if not keep:
            await ThumbnailRepository(session).delete_for_user(sender.key)
    return True


def handlers(settings: Settings) -> list[Handler]:
    """Return this flow's handlers."""
    del settings
    return [
        CommandHandler("thumbnails", on_thumbnails, filters=filters.UpdateType.MESSAGE),
        CallbackQueryHandler(on_thumbnails_chosen, pattern=f"^{THUMBNAILS_PREFIX}"),
    ]

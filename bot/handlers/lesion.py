"""The main flow: a photo (or an image sent as a file) in, a screening result out."""

from __future__ import annotations

from telegram import Document, Message, PhotoSize, Update
from telegram.constants import ChatAction
from telegram.ext import MessageHandler, filters

from bot.config import Settings
from bot.context import BotContext
from bot.handlers.common import Handler, replies_for, user_key
from bot.screening import Assessed, InputKind, Outcome
from inference.types import DecodeFailure

# Senders often label images generically; the decoder has the final word on these.
MAYBE_IMAGE_MIME_TYPES = frozenset({"application/octet-stream", "binary/octet-stream"})


async def on_photo(update: Update, context: BotContext) -> None:
    """Screen a compressed photo, using the largest size Telegram offers."""
    message = update.message
    if message and message.photo:
        largest = max(message.photo, key=lambda size: size.width * size.height)
        await _screen(update, message, context, largest, InputKind.PHOTO)


async def on_document(update: Update, context: BotContext) -> None:
    """Screen an image sent as a file; refuse other files without downloading them."""
    message = update.message
    if not (message and message.document):
        return
    document = message.document
    if _may_be_image(document.mime_type):
        await _screen(update, message, context, document, InputKind.DOCUMENT)
        return
    outcome = await context.bot_data.runtime.screening.reject(
        DecodeFailure.NOT_AN_IMAGE,
        user_key=user_key(update, context),
        kind=InputKind.DOCUMENT,
        size_bytes=document.file_size,
    )
    await message.reply_text(replies_for(update).outcome(outcome))


def handlers(settings: Settings) -> list[Handler]:
    """Return this flow's handlers."""
    del settings
    only_messages = filters.UpdateType.MESSAGE
    return [
        MessageHandler(only_messages & filters.PHOTO, on_photo),
        MessageHandler(only_messages & filters.Document.ALL, on_document),
    ]


def _may_be_image(mime_type: str | None) -> bool:
    return (
        mime_type is None or mime_type.startswith("image/") or mime_type in MAYBE_IMAGE_MIME_TYPES
    )


async def _screen(
    update: Update,
    message: Message,
    context: BotContext,
    attachment: PhotoSize | Document,
    kind: InputKind,
) -> None:
    runtime = context.bot_data.runtime
    key = user_key(update, context)
    size = attachment.file_size
    outcome: Outcome
    if size is not None and size > runtime.settings.max_image_bytes:
        # Refuse before downloading: the bytes would only be thrown away.
        outcome = await runtime.screening.reject(
            DecodeFailure.TOO_MANY_BYTES, user_key=key, kind=kind, size_bytes=size
        )
    else:

        async def download() -> bytearray:
            file = await attachment.get_file()
            return await file.download_as_bytearray()  # in memory: photos never touch disk

        # Sent once, not renewed: with many users queued, renewals would spend the bot's
        # global rate limit (~30 messages/s) on indicators instead of answers.
        await context.bot.send_chat_action(message.chat_id, ChatAction.TYPING)
        outcome = await runtime.screening.screen(download, user_key=key, kind=kind)

    replies = replies_for(update)
    if isinstance(outcome, Assessed) and outcome.heatmap_jpeg is not None:
        await context.bot.send_chat_action(message.chat_id, ChatAction.UPLOAD_PHOTO)
        await message.reply_photo(outcome.heatmap_jpeg, caption=replies.heatmap_caption())
    await message.reply_text(replies.outcome(outcome))

"""Messages that are not a still picture (animations, videos, stickers, voice): say so."""

from __future__ import annotations

from telegram import Message, Update
from telegram.ext import MessageHandler, filters

from bot.config import Settings
from bot.context import BotContext
from bot.handlers.common import Handler, person
from bot.screening import InputKind, RejectReason, UnsupportedMedia
from inference.types import DecodeFailure

NOT_A_STILL_PICTURE = (
    filters.ANIMATION
    | filters.VIDEO
    | filters.VIDEO_NOTE
    | filters.Sticker.ALL
    | filters.VOICE
    | filters.AUDIO
)


async def on_unsupported(update: Update, context: BotContext) -> None:
    """Refuse the message with a reason of its own, without downloading anything."""
    message = update.message
    if not message:
        return
    sender = await person(update, context)
    kind, reason = _classify(message)
    outcome = await context.bot_data.runtime.screening.reject(
        reason, user_key=sender.key, kind=kind, size_bytes=_file_size(message)
    )
    await message.reply_text(sender.replies.outcome(outcome))


def handlers(settings: Settings) -> list[Handler]:
    """Return this flow's handlers (register before documents: a GIF is also a document)."""
    del settings
    return [MessageHandler(filters.UpdateType.MESSAGE & NOT_A_STILL_PICTURE, on_unsupported)]


def _classify(message: Message) -> tuple[InputKind, RejectReason]:
    if message.animation:
        return InputKind.ANIMATION, DecodeFailure.ANIMATED
    if message.video:
        return InputKind.VIDEO, UnsupportedMedia.VIDEO
    if message.video_note:
        return InputKind.VIDEO_NOTE, UnsupportedMedia.VIDEO
    if message.sticker:
        return InputKind.STICKER, UnsupportedMedia.STICKER
    if message.voice:
        return InputKind.VOICE, UnsupportedMedia.VOICE
    return InputKind.AUDIO, UnsupportedMedia.VOICE


def _file_size(message: Message) -> int | None:
    media = message.effective_attachment
    return getattr(media, "file_size", None)

"""Messages that are not a still picture (animations, videos, stickers, voice): say so."""

from __future__ import annotations

from telegram import Message, Update
from telegram.ext import MessageHandler, filters

from bot.config import Settings
from bot.context import BotContext
from bot.handlers.common import NOT_A_STILL_PICTURE, Handler
from bot.handlers.lesion import reject
from bot.screening import InputKind, RejectReason, UnsupportedMedia
from inference.types import DecodeFailure


async def on_unsupported(update: Update, context: BotContext) -> None:
    """Refuse the message with a reason of its own, without downloading anything."""
    message = update.message
    if not message:
        return
    kind, reason = _classify(message)
    await reject(update, message, context, kind, reason)


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

"""The main flow: a photo (or an image sent as a file) in, a screening result out.

A caption names the spot ("left shoulder mole") so that a later photo with the same name is
compared with it; a health worker's caption also carries the patient code (``#P123``).
Everything between the update and the reply is one call: ``ScreeningService.consult``.
"""

from __future__ import annotations

import logging

from telegram import Document, InlineKeyboardMarkup, Message, PhotoSize, Update
from telegram.constants import ChatAction
from telegram.error import BadRequest, NetworkError, TelegramError, TimedOut
from telegram.ext import MessageHandler, filters

from bot import metrics
from bot.config import Settings
from bot.context import BotContext
from bot.db.models import Consultation, ConsultationStatus
from bot.db.repository import ConsultationRepository
from bot.handlers.common import Handler, keyboard, person, reply_long, user_key
from bot.handlers.consent import consent_keyboard
from bot.handlers.delivery import show_action, with_retries
from bot.handlers.questions import questions_button
from bot.handlers.report import report_button
from bot.inbox import InboxProcessor, defer_current_update, sender_of
from bot.replies import Replies, for_language, utf16_length
from bot.screening import (
    AlreadyAnswered,
    Assessed,
    Consulted,
    Forgotten,
    InputKind,
    NeedsConsent,
    NeedsPatientCode,
    PhotoReply,
    PhotoRequest,
    RejectReason,
    ShuttingDownError,
    SideBySide,
    Tracked,
)
from bot.thumbnails import side_by_side
from bot.tracking import change_between, normalise_label
from inference.types import DecodeFailure

logger = logging.getLogger(__name__)

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
    await reject(update, message, context, InputKind.DOCUMENT, DecodeFailure.NOT_AN_IMAGE)


async def on_label_reply(update: Update, context: BotContext) -> None:
    """Name a spot afterwards: a text reply to one of the bot's results."""
    message = update.message
    if message is None or message.reply_to_message is None or message.text is None:
        return
    sender = await person(update, context)
    label = normalise_label(message.text)
    previous: Consultation | None = None
    async with context.bot_data.runtime.sessions.begin() as session:
        repository = ConsultationRepository(session)
        row = await repository.by_result_message(sender.key, message.reply_to_message.message_id)
        if row is None or row.status != ConsultationStatus.ASSESSED or label is None:
            row = None
        else:
            row.lesion_label = label
            await session.flush()
            previous = await repository.previous_of_lesion(row)
    if row is None or label is None:
        await message.reply_text(sender.replies.text("track.no_result"))
        return
    delta = context.bot_data.runtime.screening.metadata.same_spot_delta
    tracked = Tracked(label, change_between(previous, row, delta))
    parts = [sender.replies.text("track.named", label=label), sender.replies.tracked(tracked)]
    await reply_long(message, "\n\n".join(parts))


def handlers(settings: Settings) -> list[Handler]:
    """Return this flow's handlers."""
    del settings
    only_messages = filters.UpdateType.MESSAGE
    return [
        MessageHandler(only_messages & filters.PHOTO, on_photo),
        MessageHandler(only_messages & filters.Document.ALL, on_document),
        MessageHandler(
            only_messages & filters.REPLY & filters.TEXT & ~filters.COMMAND, on_label_reply
        ),
    ]


def _may_be_image(mime_type: str | None) -> bool:
    return (
        mime_type is None or mime_type.startswith("image/") or mime_type in MAYBE_IMAGE_MIME_TYPES
    )


async def reject(
    update: Update, message: Message, context: BotContext, kind: InputKind, reason: RejectReason
) -> None:
    """Log and answer a message refused without downloading anything."""
    media = message.effective_attachment
    request = PhotoRequest(
        user_key=user_key(update, context),
        kind=kind,
        telegram_language=update.effective_user.language_code if update.effective_user else None,
        size_bytes=getattr(media, "file_size", None),
        update_id=update.update_id,
    )
    reply = await context.bot_data.runtime.screening.reject(request, reason)
    await answer(message, context, reply)


async def _screen(
    update: Update,
    message: Message,
    context: BotContext,
    attachment: PhotoSize | Document,
    kind: InputKind,
) -> None:
    runtime = context.bot_data.runtime
    key = user_key(update, context)
    request = PhotoRequest(
        user_key=key,
        kind=kind,
        telegram_language=update.effective_user.language_code if update.effective_user else None,
        caption=message.caption,
        size_bytes=attachment.file_size,
        # Sealed now, kept only if the result asks for a follow-up.
        chat_ref=runtime.seal_chat(message.chat_id, key),
        update_id=update.update_id,
    )

    async def download() -> bytearray:
        # Sent once, not renewed: "typing..." lasts 5 s or until the answer arrives.
        show_action(context, message.chat_id, ChatAction.TYPING)
        file = await with_retries(attachment.get_file, "getFile")
        # In memory: photos never touch disk.
        return await with_retries(file.download_as_bytearray, "download")

    try:
        reply = await runtime.screening.consult(request, download)
    except ShuttingDownError:
        # Not looked at yet: the next process answers it (bot.inbox), so no reply now.
        defer_current_update()
        return
    await answer(message, context, reply, waiting=_waiting_behind(update, context))


def _waiting_behind(update: Update, context: BotContext) -> int | None:
    """How many more of this sender's updates wait behind this one, the first time it is
    asked in a run of their queue (so only the first answer of a batch says it)."""
    processor = context.application.update_processor
    if not isinstance(processor, InboxProcessor):
        return None
    return processor.turns.announce(sender_of(update))


async def answer(
    message: Message, context: BotContext, reply: PhotoReply, *, waiting: int | None = None
) -> None:
    """Send what ``consult`` or ``reject`` decided: a prompt, or the heatmap and the result."""
    replies = for_language(reply.language)
    match reply:
        case NeedsConsent():
            await message.reply_text(
                replies.consent_required(), reply_markup=consent_keyboard(replies)
            )
        case NeedsPatientCode():
            await message.reply_text(replies.text("worker.need_code"))
        case Forgotten():
            await message.reply_text(replies.text("forget.photo_dropped"))
        case AlreadyAnswered():
            pass  # answered by the process that handled this update before a crash
        case Consulted():
            await _deliver(message, context, reply, waiting)


# Telegram's caption limit (UTF-16 code units): a longer result goes as its own message.
CAPTION_LIMIT = 1024


def result_markup(replies: Replies, reply: Consulted) -> InlineKeyboardMarkup | None:
    """The buttons under an assessed result: a report to show the doctor, and the optional
    questions (once per spot: not when an earlier photo of it has answers)."""
    if not isinstance(reply.outcome, Assessed) or reply.consultation_id is None:
        return None
    rows = [[report_button(replies, reply.consultation_id)]]
    if reply.tracked is None or not reply.tracked.answered:
        rows.append([questions_button(replies, reply.consultation_id)])
    return keyboard(*rows)


def _caption(replies: Replies, reply: Consulted, waiting: int | None) -> str | None:
    """The result as the heatmap's caption, with what the heatmap shows (not in a health
    worker's short reply) when that still fits; None when the result alone is too long."""
    for explained in (not reply.worker, False):
        caption = _with_waiting(replies, replies.consulted(reply, heatmap=explained), waiting)
        if utf16_length(caption) <= CAPTION_LIMIT:
            return caption
    return None


def _with_waiting(replies: Replies, text: str, waiting: int | None) -> str:
    if not waiting:
        return text
    # A batch of photos is answered one by one: say so once, so nobody thinks the rest
    # were lost while they wait.
    return f"{text}\n\n{replies.text('queue.waiting', count=waiting)}"


async def _deliver(
    message: Message, context: BotContext, reply: Consulted, waiting: int | None = None
) -> None:
    """Send the result as one message (the heatmap with the result as its caption, or the
    text alone), then mark the consultation delivered.

    One message per answer: a send that timed out (Telegram may have shown it) is not
    resent, and nothing else of the answer is left to send, so the user never sees any
    part of it twice. A result too long for a caption goes as its own text message after
    the heatmap. An answer Telegram did not take after every in-process retry (a 5xx, the
    network) goes to the outbox (bot.scheduler), which sends it later as text.
    """
    replies = for_language(reply.language)
    outcome = reply.outcome
    markup = result_markup(replies, reply)
    text = _with_waiting(replies, replies.consulted(reply), waiting)
    sent: list[Message] = []
    if isinstance(outcome, Assessed) and outcome.heatmap_jpeg is not None:
        heatmap = outcome.heatmap_jpeg
        caption = _caption(replies, reply, waiting)
        together = caption is not None
        if caption is None and not reply.worker:
            caption = replies.heatmap_caption()
        show_action(context, message.chat_id, ChatAction.UPLOAD_PHOTO)
        try:
            photo = await with_retries(
                lambda: message.reply_photo(
                    heatmap, caption=caption, reply_markup=markup if together else None
                ),
                "sendPhoto",
            )
        except TimedOut:
            if together:
                await _uncertain(reply)
                return
            # Only the picture is in doubt: the result itself still goes.
            logger.warning("Heatmap timed out (perhaps delivered); sending the text")
        except NetworkError as error:
            # An error answer (or a failed connection) on every attempt: taken as not shown,
            # as with_retries takes it when it sends again. The picture only illustrates the
            # result, so the result goes as text, saying that the picture is missing.
            logger.warning("Heatmap not delivered (%s); sending the text", type(error).__name__)
            text = f"{text}\n\n{replies.text('answer.no_picture')}"
        else:
            if together:
                sent = [photo]
    if not sent:
        try:
            sent = await reply_long(message, text, markup)
        except TimedOut:
            await _uncertain(reply)
            return
        except BadRequest as error:
            # The same request would be refused again: nothing to retry later.
            metrics.answer_sent("abandoned")
            logger.warning(
                "Reply to consultation %s refused (%s): left undelivered",
                reply.consultation_id,
                type(error).__name__,
            )
            return
        except NetworkError as error:
            await _queue(message, context, reply, error)
            return
    metrics.answer_sent("delivered")
    if reply.side_by_side is not None:
        await _send_side_by_side(message, replies, reply.side_by_side)
    if reply.consultation_id is None:
        return
    nameable = isinstance(outcome, Assessed) and reply.subject.lesion_label is None
    remember = sent[-1].message_id if nameable and not reply.worker else None
    await context.bot_data.runtime.screening.record_delivery(reply.consultation_id, remember)


async def _send_side_by_side(message: Message, replies: Replies, pair: SideBySide) -> None:
    """The spot's previous photo and this one, side by side with their dates (for someone
    who keeps thumbnails, bot.thumbnails). After the result, which is already delivered:
    a picture that fails is logged and not retried, and the answer stands without it."""
    earlier, latest = replies.date(pair.earlier_at), replies.date(pair.latest_at)
    picture = side_by_side(pair.earlier_jpeg, earlier, pair.latest_jpeg, latest)
    caption = replies.text("thumbnails.side_by_side", earlier=earlier, latest=latest)
    try:
        await with_retries(lambda: message.reply_photo(picture, caption=caption), "sendPhoto")
    except TelegramError as error:
        logger.warning("Side-by-side picture not delivered (%s)", type(error).__name__)


async def _uncertain(reply: Consulted) -> None:
    # Telegram may have it (its answer was lost): not sent again, which would show the
    # user the result twice. Left undelivered in the log: we do not know.
    metrics.answer_sent("uncertain")
    logger.warning(
        "Reply to consultation %s timed out: perhaps delivered, not resent",
        reply.consultation_id,
    )


async def _queue(
    message: Message, context: BotContext, reply: Consulted, error: NetworkError
) -> None:
    """Leave an answer Telegram did not take to the outbox (sent later, text only)."""
    runtime = context.bot_data.runtime
    queued = False
    if reply.consultation_id is not None and message.from_user is not None:
        key = runtime.user_key(message.from_user.id)
        chat_ref = runtime.seal_chat(message.chat_id, key)
        queued = await runtime.screening.queue_answer(reply.consultation_id, chat_ref)
    metrics.answer_sent("queued" if queued else "abandoned")
    logger.warning(
        "Reply to consultation %s not delivered (%s): %s",
        reply.consultation_id,
        type(error).__name__,
        "left to the outbox" if queued else "left undelivered",
    )

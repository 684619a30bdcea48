"""The main flow: a photo (or an image sent as a file) in, a screening result out.

A caption names the spot ("left shoulder mole") so that a later photo with the same name is
compared with it; a health worker's caption also carries the patient code (``#P123``).
"""

from __future__ import annotations

from datetime import timedelta

from telegram import Document, Message, PhotoSize, Update
from telegram.constants import ChatAction
from telegram.ext import MessageHandler, filters

from bot.config import Settings
from bot.context import BotContext, Runtime
from bot.db.models import Consultation, utc_now
from bot.db.repository import ConsultationRepository, ReferralRepository
from bot.handlers.common import Handler, Person, person
from bot.replies import Replies
from bot.screening import Assessed, FollowUpPlan, InputKind, Outcome, Subject
from bot.tracking import Change, normalise_label, parse_caption
from inference.types import DecodeFailure, Risk

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
    sender = await person(update, context)
    outcome = await context.bot_data.runtime.screening.reject(
        DecodeFailure.NOT_AN_IMAGE,
        user_key=sender.key,
        kind=InputKind.DOCUMENT,
        size_bytes=document.file_size,
    )
    await message.reply_text(sender.replies.outcome(outcome))


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
        if row is None or row.status != "assessed" or label is None:
            row = None
        else:
            row.lesion_label = label
            await session.flush()
            previous = await repository.previous_of_lesion(row)
    if row is None or label is None:
        await message.reply_text(sender.replies.text("track.no_result"))
        return
    parts = [sender.replies.text("track.named", label=label)]
    parts.append(_tracking_text(sender.replies, row, previous))
    await message.reply_text("\n\n".join(parts))


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


async def _screen(
    update: Update,
    message: Message,
    context: BotContext,
    attachment: PhotoSize | Document,
    kind: InputKind,
) -> None:
    runtime = context.bot_data.runtime
    sender = await person(update, context)
    caption = parse_caption(message.caption)
    if sender.is_worker and caption.patient_code is None:
        # Every worker photo belongs to a patient: ask before screening anything.
        await message.reply_text(sender.replies.text("worker.need_code"))
        return
    if sender.is_worker:
        subject = Subject(lesion_label=caption.label, patient_code=caption.patient_code)
    else:
        subject = Subject(lesion_label=normalise_label(message.caption))
    size = attachment.file_size
    outcome: Outcome
    if size is not None and size > runtime.settings.max_image_bytes:
        # Refuse before downloading: the bytes would only be thrown away.
        outcome = await runtime.screening.reject(
            DecodeFailure.TOO_MANY_BYTES, user_key=sender.key, kind=kind, size_bytes=size
        )
    else:

        async def download() -> bytearray:
            file = await attachment.get_file()
            return await file.download_as_bytearray()  # in memory: photos never touch disk

        # Sent once, not renewed: with many users queued, renewals would spend the bot's
        # global rate limit (~30 messages/s) on indicators instead of answers.
        await context.bot.send_chat_action(message.chat_id, ChatAction.TYPING)
        outcome = await runtime.screening.screen(
            download,
            user_key=sender.key,
            kind=kind,
            subject=subject,
            compact=sender.is_worker,
            follow_up=None if sender.is_worker else _follow_up_plan(runtime, message.chat_id),
        )

    replies = sender.replies
    if isinstance(outcome, Assessed) and outcome.heatmap_jpeg is not None:
        await context.bot.send_chat_action(message.chat_id, ChatAction.UPLOAD_PHOTO)
        caption_text = None if sender.is_worker else replies.heatmap_caption()
        await message.reply_photo(outcome.heatmap_jpeg, caption=caption_text)
    text = await result_text(runtime, sender, outcome, subject)
    sent = await message.reply_text(text)
    if isinstance(outcome, Assessed) and subject.lesion_label is None and not sender.is_worker:
        # Remember which message the result was, so a reply to it can name the spot.
        async with runtime.sessions.begin() as session:
            row = await ConsultationRepository(session).get(outcome.consultation_id or 0)
            if row is not None:
                row.result_message_id = sent.message_id


def _follow_up_plan(runtime: Runtime, chat_id: int) -> FollowUpPlan:
    due = utc_now() + timedelta(days=runtime.settings.follow_up_after_days)
    return FollowUpPlan(due_at=due, chat_ref=runtime.seal_chat(chat_id))


async def result_text(runtime: Runtime, sender: Person, outcome: Outcome, subject: Subject) -> str:
    """Render the result, then how a named spot changed, where to go if high, how to name it."""
    replies = sender.replies
    if sender.is_worker and subject.patient_code is not None:
        parts = [replies.worker_outcome(outcome, subject.patient_code)]
    else:
        parts = [replies.outcome(outcome)]
    if not isinstance(outcome, Assessed):
        return "\n\n".join(parts)
    async with runtime.sessions() as session:
        if subject.lesion_label is not None and outcome.consultation_id is not None:
            repository = ConsultationRepository(session)
            current = await repository.get(outcome.consultation_id)
            if current is not None:
                previous = await repository.previous_of_lesion(current)
                parts.append(_tracking_text(replies, current, previous))
        if outcome.risk is Risk.HIGH:
            contacts = await ReferralRepository(session).get(sender.language)
            if contacts:
                parts.append(replies.referral(contacts))
    if subject.lesion_label is None and not sender.is_worker:
        parts.append(replies.text("track.ask"))
    return "\n\n".join(parts)


def _tracking_text(replies: Replies, current: Consultation, previous: Consultation | None) -> str:
    label = current.lesion_label or ""
    if previous is None or previous.risk is None or current.risk is None:
        return replies.text("track.first", label=label)
    change = Change(
        label=label,
        before_at=previous.created_at,
        risk_before=Risk(previous.risk),
        risk_after=Risk(current.risk),
        probability_before=previous.malignant_probability,
        probability_after=current.malignant_probability,
    )
    return replies.comparison(change)

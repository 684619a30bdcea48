"""The consultation log (one row per photo or other attempt), users, follow-ups, referrals.

Only portable types (JSON, timezone-aware DateTime), so SQLite and PostgreSQL share one
schema. No raw Telegram id, file name or image is ever stored; of what users type, only a
spot's name and a worker's patient code, which they give for that purpose.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names, so later migrations can alter or drop them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime, also on SQLite (which drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; store UTC-aware datetimes only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_now() -> datetime:
    """Return the current time in UTC."""
    return datetime.now(UTC)


class ConsultationStatus(StrEnum):
    """What became of one attempt: the one set of values ``consultations.status`` holds."""

    ASSESSED = "assessed"  # a risk level was given
    UNASSESSABLE = "unassessable"  # a picture, but not one the model may judge
    REJECTED = "rejected"  # not a usable picture
    FAILED = "failed"  # our fault: an unexpected error


# Outcomes a user sees as a check of a photo (refused uploads are not checks).
PHOTO_STATUSES = (ConsultationStatus.ASSESSED, ConsultationStatus.UNASSESSABLE)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Consultation(Base):
    __tablename__ = "consultations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now, index=True)
    # HMAC-SHA256 of the Telegram user id: lets us count repeat users, not identify them.
    user_key: Mapped[str] = mapped_column(String(64), index=True)
    input_kind: Mapped[str] = mapped_column(String(16))  # bot.screening.InputKind
    # A ConsultationStatus; reason says why for all but "assessed".
    status: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str | None] = mapped_column(String(64))
    image_bytes: Mapped[int | None] = mapped_column(Integer)
    image_width: Mapped[int | None] = mapped_column(Integer)
    image_height: Mapped[int | None] = mapped_column(Integer)
    quality_ok: Mapped[bool | None]
    quality_issues: Mapped[list[str] | None] = mapped_column(JSON)
    quality_measurements: Mapped[dict[str, float | None] | None] = mapped_column(JSON)
    class_probabilities: Mapped[dict[str, float | None] | None] = mapped_column(JSON)
    top_class: Mapped[str | None] = mapped_column(String(32))
    malignant_probability: Mapped[float | None] = mapped_column(Float)
    ood_score: Mapped[float | None] = mapped_column(Float)
    risk: Mapped[str | None] = mapped_column(String(16))  # inference.types.Risk
    lesion_box: Mapped[list[int] | None] = mapped_column(JSON)  # [x0, y0, x1, y1] in pixels
    model_version: Mapped[str | None] = mapped_column(String(64))
    processing_ms: Mapped[int | None] = mapped_column(Integer)
    # The name the user gave the spot (normalised by bot.tracking), to compare photos over time.
    lesion_label: Mapped[str | None] = mapped_column(String(64))
    # A health worker's code for the patient (e.g. "P123"); user_key is then the worker's.
    patient_code: Mapped[str | None] = mapped_column(String(32))
    # The bot's result message, so a reply to it can name the spot afterwards.
    result_message_id: Mapped[int | None] = mapped_column(Integer)
    # When Telegram accepted the reply; None: not (yet) delivered, after every retry.
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The Telegram update it answers: an update handled again after a crash (see
    # bot.inbox) finds its row here instead of logging a second consultation. Not unique:
    # Telegram reuses ids (it restarts them after a week without updates), so an update is
    # this id from this user within bot.inbox.KEEP_HANDLED.
    update_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    # The optional questions about the spot, answered with buttons (bot.answers): codes
    # only, e.g. {"site": "arm", "age": "50_69", "signs": ["changed"], "done": true}.
    answers: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    def __repr__(self) -> str:
        return f"Consultation(id={self.id!r}, status={self.status!r}, reason={self.reason!r})"


class User(Base):
    """One person, by pseudonymous key: consent, language, role and reminder settings."""

    __tablename__ = "users"

    user_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    language: Mapped[str | None] = mapped_column(String(8))  # bot.i18n.LANGUAGES
    consented_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    is_worker: Mapped[bool] = mapped_column(default=False, server_default=false())
    reminder: Mapped[str | None] = mapped_column(String(16))  # "monthly" or None
    next_reminder_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    # The chat id, sealed by bot.privacy (never in the clear), kept only while the bot may
    # have to write first: reminders on, or a follow-up pending.
    chat_ref: Mapped[str | None] = mapped_column(String(128))
    # Opted in to keeping an encrypted thumbnail of each photo of a named spot (off by
    # default; turning it off deletes them): see bot.thumbnails.
    keep_thumbnails: Mapped[bool] = mapped_column(default=False, server_default=false())


class Thumbnail(Base):
    """A small copy of a screened photo of a named spot, kept only for someone who opted in
    (bot.thumbnails), to show it beside the spot's next photo. ``sealed`` is the JPEG
    encrypted with AES-256-GCM (bot.privacy.ThumbnailSealer), bound to its user and
    consultation: never stored in the clear."""

    __tablename__ = "thumbnails"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    consultation_id: Mapped[int] = mapped_column(
        ForeignKey("consultations.id", ondelete="CASCADE"), unique=True
    )
    user_key: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    sealed: Mapped[str] = mapped_column(Text)


class FollowUp(Base):
    """A question sent a few weeks after a medium or high result, and its answers."""

    __tablename__ = "follow_ups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    consultation_id: Mapped[int] = mapped_column(
        ForeignKey("consultations.id", ondelete="CASCADE"), unique=True
    )
    user_key: Mapped[str] = mapped_column(String(64), index=True)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    saw_doctor: Mapped[str | None] = mapped_column(String(16))  # yes, not_yet, no
    diagnosis: Mapped[str | None] = mapped_column(String(16))  # benign, cancer, other, unknown
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ReferralContact(Base):
    """Where to get checked, shown on high-risk results; set by admins per language."""

    __tablename__ = "referral_contacts"

    language: Mapped[str] = mapped_column(String(8), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now, onupdate=utc_now)


class OutboxMessage(Base):
    """A message the bot writes first (a reminder or a follow-up question), or a photo's
    answer that Telegram did not take in time (kind "answer"), one row each.

    Each row is claimed, sent and marked on its own (see ``bot.scheduler``), so one failed
    send never holds up the others and a crash at any point loses nothing: a claim is a
    lease that runs out, after which the row is due again.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # "reminder", "follow_up" or "answer"
    user_key: Mapped[str] = mapped_column(String(64), index=True)
    # One outbox row per follow-up, ever: a second replica cannot queue it twice.
    follow_up_id: Mapped[int | None] = mapped_column(
        ForeignKey("follow_ups.id", ondelete="CASCADE"), unique=True
    )
    # The consultation an "answer" row delivers (rendered again from it, text only: the
    # heatmap is never stored). One row per consultation, ever.
    consultation_id: Mapped[int | None] = mapped_column(
        ForeignKey("consultations.id", ondelete="CASCADE"), unique=True
    )
    # The chat an answer goes to, sealed by bot.privacy; dropped once sent or parked.
    chat_ref: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    # When to try next: the due time first, later pushed on by the retry backoff.
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # A claim is a lease: if the process dies mid-send, the row is due again after it.
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Given up on (too many failures, the user blocked the bot, no chat to write to).
    parked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The kind of the last failure (an exception class name or "no_chat"), never its text.
    last_error: Mapped[str | None] = mapped_column(String(64))


class InboxUpdate(Base):
    """A Telegram update, kept from before Telegram is told it arrived until it is handled.

    Written before the next getUpdates confirms it (or before a webhook answers 200), so a
    process killed at any point loses no update: one whose lease has run out, or that was
    given back at shutdown, is handled again by whichever process claims it. The update is
    sealed (it holds raw ids and what the user typed) and dropped once handled; the id
    stays a while, so Telegram sending it again is recognised.
    """

    __tablename__ = "inbox"

    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    # bot.privacy.UpdateSealer's text; None once handled.
    payload: Mapped[str | None] = mapped_column(Text)
    # Which process handles it, until when; None: free for any process to claim.
    owner: Mapped[str | None] = mapped_column(String(32))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    # Holds not given back cleanly (accepted or claimed, then the process died): an update
    # that keeps killing its process is given up, not retried forever.
    attempts: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    # Why it was given up without being handled ("attempts", "unreadable"); None: handled.
    gave_up: Mapped[str | None] = mapped_column(String(16))

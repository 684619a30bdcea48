"""From uploaded bytes to a reply the bot can render, with one consultation row per attempt.

No Telegram here: handlers pass a :class:`PhotoRequest` and a download coroutine in, and get
a plain value (:data:`PhotoReply`) back. One consultation is one unit of work.
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from PIL import Image
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import metrics
from bot.db.models import (
    Consultation,
    ConsultationStatus,
    FollowUp,
    OutboxMessage,
    Thumbnail,
    User,
    utc_now,
)
from bot.db.repository import (
    ConsultationRepository,
    OutboxRepository,
    ReferralRepository,
    ThumbnailRepository,
    UserRepository,
)
from bot.i18n import REFERRAL_FALLBACK, language_for
from bot.privacy import ThumbnailSealer
from bot.thumbnails import thumbnail
from bot.tracking import (
    RECENT,
    Change,
    Earlier,
    change_between,
    normalise_label,
    parse_caption,
    standing_earlier,
)
from inference.advice import advise, is_suspicious
from inference.metadata import ModelMetadata
from inference.pipeline import Screener
from inference.types import (
    DecodeFailure,
    DecodeRejected,
    QualityIssue,
    RGBImage,
    Risk,
    ScreeningResult,
)

logger = logging.getLogger(__name__)

# Telegram shows photos at most ~1280 px wide; a larger heatmap only costs upload time.
HEATMAP_MAX_SIDE = 1280
HEATMAP_JPEG_QUALITY = 85
# Health workers in the field are often on slow mobile data: a small heatmap is enough.
COMPACT_HEATMAP_MAX_SIDE = 480
COMPACT_HEATMAP_JPEG_QUALITY = 60
# Results that get a follow-up question ("did you see a doctor?").
FOLLOW_UP_RISKS = frozenset({Risk.MEDIUM, Risk.HIGH})
# The outbox kind of a photo's answer Telegram did not take in time (sent by bot.scheduler).
ANSWER = "answer"


class InputKind(StrEnum):
    """How the user sent it, as stored in the consultation log."""

    PHOTO = "photo"  # compressed by Telegram
    DOCUMENT = "document"  # a file: the original bytes
    ANIMATION = "animation"
    VIDEO = "video"
    VIDEO_NOTE = "video_note"
    STICKER = "sticker"
    VOICE = "voice"
    AUDIO = "audio"


class UnsupportedMedia(StrEnum):
    """Messages that are not a still picture at all, rejected before any download."""

    VIDEO = "video"
    STICKER = "sticker"
    VOICE = "voice"  # voice notes and audio files


RejectReason = DecodeFailure | UnsupportedMedia


@dataclass(frozen=True)
class Assessed:
    risk: Risk  # low, medium or high, never unassessable
    top_class: str
    lesion_name: str  # plain words, from the model's metadata
    heatmap_jpeg: bytes | None
    consultation_id: int | None = None  # set once logged
    # Retake tips that go with the answer (the gate's advisory rules; most important first).
    tips: tuple[QualityIssue, ...] = ()


@dataclass(frozen=True)
class Unassessable:
    issues: tuple[QualityIssue, ...]  # most important first; may be empty
    consultation_id: int | None = None
    # The classifier saw high malignancy in the refused photo (see inference.advice).
    suspicious: bool = False


@dataclass(frozen=True)
class Subject:
    """Who and what a photo is about, as the user said (both optional)."""

    lesion_label: str | None = None
    patient_code: str | None = None


@dataclass(frozen=True)
class Rejected:
    reason: RejectReason


Outcome = Assessed | Unassessable | Rejected
Download = Callable[[], Awaitable[bytes | bytearray]]


@dataclass(frozen=True)
class _Screened:
    verdict: ScreeningResult | DecodeRejected
    heatmap_jpeg: bytes | None
    elapsed_ms: int
    # A small copy to keep, sealed, for someone who opted in (bot.thumbnails).
    thumbnail_jpeg: bytes | None = None


@dataclass(frozen=True)
class PhotoRequest:
    """One picture (or other attempt) as the handler saw it, before anything is loaded.

    ``chat_ref`` is the chat, already sealed: kept only if a follow-up is planned.
    """

    user_key: str
    kind: InputKind
    telegram_language: str | None = None
    caption: str | None = None
    size_bytes: int | None = None
    chat_ref: str | None = None
    # The Telegram update carrying it: handled again after a crash, it gets no second row.
    update_id: int | None = None


@dataclass(frozen=True)
class NeedsConsent:
    """The sender has not agreed (or no longer exists): nothing was downloaded or stored."""

    language: str


@dataclass(frozen=True)
class NeedsPatientCode:
    """A health worker's photo without ``#code``: asked before anything is downloaded."""

    language: str


@dataclass(frozen=True)
class Forgotten:
    """/forget committed while the photo was in flight: the result was thrown away."""

    language: str


@dataclass(frozen=True)
class AlreadyAnswered:
    """This update was screened and answered before (it is being handled again after a
    crash): nothing more to store or send."""

    language: str


class ShuttingDownError(Exception):
    """Shutdown began before this photo was downloaded: nothing was stored, and the update
    is left for the next process (see bot.inbox)."""


@dataclass(frozen=True)
class Tracked:
    """A named spot: how it changed since its previous photo (None: its first photo)."""

    label: str
    change: Change | None
    earlier: Earlier | None = None  # a higher result of this spot that still stands
    answered: bool = False  # the optional questions were answered for an earlier photo


@dataclass(frozen=True)
class SideBySide:
    """A named spot's previous photo and this one, as thumbnails (in memory only: opened
    from their sealed copies for this reply), with the dates they were screened."""

    earlier_jpeg: bytes
    earlier_at: datetime
    latest_jpeg: bytes
    latest_at: datetime


@dataclass(frozen=True)
class Consulted:
    """A stored consultation and everything its reply shows."""

    language: str
    outcome: Outcome
    subject: Subject
    worker: bool
    tracked: Tracked | None = None
    referral: str | None = None  # where to get checked, on high-risk results
    consultation_id: int | None = None  # the stored row, to mark delivered
    side_by_side: SideBySide | None = None  # for someone who keeps thumbnails


PhotoReply = NeedsConsent | NeedsPatientCode | Forgotten | AlreadyAnswered | Consulted


@dataclass(frozen=True)
class _Sender:
    language: str
    consented: bool
    worker: bool
    answered_before: bool = False  # this very update was answered by an earlier process
    keep_thumbnails: bool = False  # opted in (bot.thumbnails)


class ScreeningService:
    """One consultation per picture: screened in a bounded thread pool, stored in one unit
    of work that re-checks consent, answered with a plain value (:data:`PhotoReply`)."""

    def __init__(
        self,
        screener: Screener,
        executor: Executor,
        sessions: async_sessionmaker[AsyncSession],
        *,
        max_bytes: int,
        max_pixels: int,
        max_pending: int,
        follow_up_after: timedelta,
        hung_after_s: float = 120.0,
        thumbnails: ThumbnailSealer | None = None,
    ) -> None:
        self._screener = screener
        # Seals the thumbnails of those who opted in; None keeps none (bot.thumbnails).
        self._thumbnails = thumbnails
        self._executor = executor
        self._sessions = sessions
        self._max_bytes = max_bytes
        self._max_pixels = max_pixels
        self._follow_up_after = follow_up_after
        self._hung_after_s = hung_after_s
        # Bounds the photos held in memory (downloaded, waiting for a worker); later
        # users queue here, in arrival order, instead of failing.
        self._slots = asyncio.Semaphore(max_pending)
        self._draining = False

    @property
    def metadata(self) -> ModelMetadata:
        return self._screener.metadata

    def drain(self) -> None:
        """Shutdown began: photos already downloading or screening finish; those still
        waiting for a slot raise :class:`ShuttingDownError` instead of starting."""
        self._draining = True

    async def consult(self, request: PhotoRequest, download: Download) -> PhotoReply:
        """Check consent, download and screen one picture, store it, return what to reply.

        The sender is loaded once, before anything is downloaded; consent and existence are
        checked again in the transaction that stores the result, so a /forget that
        committed meanwhile wins and nothing is stored.
        """
        sender = await self._load_sender(request)
        if sender.answered_before:
            return AlreadyAnswered(sender.language)
        if not sender.consented:
            return NeedsConsent(sender.language)
        subject = _subject(request.caption, worker=sender.worker)
        if sender.worker and subject.patient_code is None:
            # Every worker photo belongs to a patient: ask before downloading anything.
            return NeedsPatientCode(sender.language)
        if request.size_bytes is not None and request.size_bytes > self._max_bytes:
            # Refuse before downloading: the bytes would only be thrown away.
            return await self._store(
                request, sender, subject, Rejected(DecodeFailure.TOO_MANY_BYTES)
            )
        # The abuse limit was checked before anything else (bot.handlers.flood), and each
        # user's photos come here one at a time, users in turn (bot.turns).
        return await self._screen_and_store(request, sender, subject, download)

    @metrics.tracks_queue_depth
    async def _screen_and_store(
        self, request: PhotoRequest, sender: _Sender, subject: Subject, download: Download
    ) -> PhotoReply:
        """Wait for a slot, download, screen in a worker thread, store (counted in the
        screening queue depth from admission to the stored row)."""
        async with self._slots:
            if self._draining:
                raise ShuttingDownError
            try:
                data = bytes(await download())
                loop = asyncio.get_running_loop()
                # A photo still in a worker long past its time budget is hung (a stage that
                # never returns): it counts as a failure and is answered so, rather than
                # holding its sender's turn for ever. The thread itself cannot be stopped.
                async with asyncio.timeout(self._hung_after_s):
                    screened = await loop.run_in_executor(
                        self._executor,
                        self._screen_sync,
                        data,
                        sender.worker,
                        self._keeps_thumbnail(sender, subject),
                    )
            except Exception as error:
                # Unexpected: the global error handler replies; the log keeps the attempt
                # (unless the user has been forgotten meanwhile).
                failed = Consultation(
                    status=ConsultationStatus.FAILED, reason=type(error).__name__[:64]
                )
                await self._store(request, sender, subject, None, failed)
                raise
        outcome = self._outcome(screened)
        row = _consultation(screened, outcome, len(data))
        return await self._store(
            request, sender, subject, outcome, row, thumbnail_jpeg=screened.thumbnail_jpeg
        )

    def _keeps_thumbnail(self, sender: _Sender, subject: Subject) -> bool:
        # A person's own named spots only: a health worker's photos are of patients, who
        # did not opt in themselves.
        return (
            self._thumbnails is not None
            and sender.keep_thumbnails
            and not sender.worker
            and subject.lesion_label is not None
        )

    async def reject(self, request: PhotoRequest, reason: RejectReason) -> PhotoReply:
        """Log an attempt refused before download (wrong kind of message, not an image)."""
        sender = await self._load_sender(request)
        if not sender.consented:
            return NeedsConsent(sender.language)
        return await self._store(request, sender, Subject(), Rejected(reason))

    async def record_delivery(self, consultation_id: int, message_id: int | None) -> None:
        """Mark a consultation delivered once Telegram accepted its reply; with
        ``message_id``, remember that message, so a reply to it can name the spot."""
        values: dict[str, object] = {"delivered_at": utc_now()}
        if message_id is not None:
            values["result_message_id"] = message_id
        try:
            async with self._sessions.begin() as session:
                # One UPDATE, no read first: the shortest hold of SQLite's write lock. No
                # row (a /forget came first) updates nothing.
                await ConsultationRepository(session).update(consultation_id, values)
        except SQLAlchemyError as error:
            # The reply did reach the user: an apology now would only confuse them. The
            # row stays undelivered, visibly, which is the safe side to be wrong on.
            logger.warning(
                "Consultation %d was delivered, but recording it failed (%s)",
                consultation_id,
                type(error).__name__,
            )

    async def queue_answer(self, consultation_id: int, chat_ref: str) -> bool:
        """Leave an answer Telegram did not take (5xx, network, after every in-process
        retry) to the outbox, which sends it again, text only, from the stored row (see
        bot.scheduler); return whether it is queued. Nothing to queue when the row is gone
        (a /forget) or already delivered; queued once per consultation, ever."""
        try:
            async with self._sessions.begin() as session:
                row = await ConsultationRepository(session).get(consultation_id)
                if row is None or row.delivered_at is not None:
                    return False
                outbox = OutboxRepository(session)
                if await outbox.answer_for(consultation_id) is None:
                    await outbox.add(
                        OutboxMessage(
                            kind=ANSWER,
                            user_key=row.user_key,
                            consultation_id=consultation_id,
                            chat_ref=chat_ref,
                            due_at=utc_now(),
                        )
                    )
        except SQLAlchemyError as error:
            # The row stays undelivered, visibly (/export): the state main had before.
            logger.warning(
                "Answer to consultation %d not queued (%s)",
                consultation_id,
                type(error).__name__,
            )
            return False
        return True

    async def stored_reply(
        self, session: AsyncSession, row: Consultation, user: User
    ) -> Consulted | None:
        """The reply of a stored consultation, rendered again from its row (risk, type,
        language, refusal reason), without its heatmap, which is never stored; None for a
        row that had no answer of its own (a failure)."""
        language = user.language or language_for(None)
        outcome: Outcome
        if row.status == ConsultationStatus.ASSESSED and row.risk in set(Risk):
            top = row.top_class or ""
            outcome = Assessed(
                risk=Risk(row.risk),
                top_class=top,
                lesion_name=self.metadata.class_names.get(top, top),
                heatmap_jpeg=None,
                consultation_id=row.id,
            )
        elif row.status == ConsultationStatus.UNASSESSABLE:
            issues = tuple(
                QualityIssue(issue)
                for issue in row.quality_issues or ()
                if issue in set(QualityIssue)
            )
            suspicious = is_suspicious(row.malignant_probability, self.metadata.thresholds.high)
            outcome = Unassessable(issues, row.id, suspicious)
        elif row.status == ConsultationStatus.REJECTED and row.reason is not None:
            reason = _reject_reason(row.reason)
            if reason is None:
                return None
            outcome = Rejected(reason)
        else:
            return None
        referral = None
        if isinstance(outcome, Assessed) and outcome.risk is Risk.HIGH:
            fallback = REFERRAL_FALLBACK.get(language, (language,))
            referral = await ReferralRepository(session).first_of(fallback)
        subject = Subject(lesion_label=row.lesion_label, patient_code=row.patient_code)
        worker = bool(user.is_worker)
        return Consulted(language, outcome, subject, worker, None, referral, row.id)

    async def _load_sender(self, request: PhotoRequest) -> _Sender:
        async with self._sessions() as session:
            user = await UserRepository(session).get(request.user_key)
            earlier = (
                None
                if request.update_id is None
                else await ConsultationRepository(session).by_update(
                    request.update_id, request.user_key
                )
            )
        return _Sender(
            language=(user.language if user else None) or language_for(request.telegram_language),
            consented=user is not None and user.consented_at is not None,
            worker=bool(user and user.is_worker),
            answered_before=earlier is not None and earlier.delivered_at is not None,
            keep_thumbnails=bool(user and user.keep_thumbnails),
        )

    async def _store(
        self,
        request: PhotoRequest,
        sender: _Sender,
        subject: Subject,
        outcome: Outcome | None,
        row: Consultation | None = None,
        *,
        thumbnail_jpeg: bytes | None = None,
    ) -> PhotoReply:
        """Store one consultation (and its follow-up) in one transaction, if the user still
        exists and agrees; ``outcome`` None stores a failure and replies nothing of its own."""
        if row is None:
            assert isinstance(outcome, Rejected)
            row = Consultation(status=ConsultationStatus.REJECTED, reason=outcome.reason)
            row.image_bytes = request.size_bytes
        row.user_key, row.input_kind = request.user_key, request.kind
        row.lesion_label, row.patient_code = subject.lesion_label, subject.patient_code
        tracked: Tracked | None = None
        referral: str | None = None
        pair: SideBySide | None = None
        async with self._sessions.begin() as session:
            user = await UserRepository(session).lock(request.user_key)
            if user is None or user.consented_at is None:
                return Forgotten(sender.language)
            consultations = ConsultationRepository(session)
            if request.update_id is not None:
                earlier = await consultations.by_update(request.update_id, request.user_key)
                if earlier is not None and earlier.delivered_at is not None:
                    return AlreadyAnswered(sender.language)
                if earlier is not None:
                    # Logged by a process that stopped before answering: this attempt,
                    # which will be answered, takes its place.
                    await consultations.remove(earlier)
                row.update_id = request.update_id
            # Reads first, writes last: SQLite holds its one write lock from the first
            # write to the commit, and every other photo's write waits for it meanwhile.
            previous: Consultation | None = None
            earlier_jpeg: bytes | None = None
            standing: Earlier | None = None
            answered = False
            if isinstance(outcome, Assessed):
                if subject.lesion_label is not None:
                    previous = await consultations.previous_of_lesion(row)
                    # The advice follows the spot's highest recent result (inference.advice).
                    recent = await consultations.recent_of_lesion(row, utc_now() - RECENT)
                    standing = standing_earlier(subject.lesion_label, outcome.risk, recent)
                    answered = any(earlier.answers for earlier, _ in recent)
                    if previous is not None and thumbnail_jpeg is not None:
                        earlier_jpeg = await self._open_thumbnail(session, previous)
                if Risk.HIGH in (outcome.risk, standing and standing.risk):
                    fallback = REFERRAL_FALLBACK.get(sender.language, (sender.language,))
                    referral = await ReferralRepository(session).first_of(fallback)
            await consultations.add(row)
            if isinstance(outcome, Assessed):
                if _wants_follow_up(outcome, sender) and request.chat_ref is not None:
                    session.add(
                        FollowUp(
                            consultation_id=row.id,
                            user_key=row.user_key,
                            due_at=utc_now() + self._follow_up_after,
                        )
                    )
                    user.chat_ref = request.chat_ref
                if subject.lesion_label is not None:
                    change = change_between(previous, row, self.metadata.same_spot_delta)
                    tracked = Tracked(subject.lesion_label, change, standing, answered)
                if (
                    thumbnail_jpeg is not None
                    and self._thumbnails is not None
                    and user.keep_thumbnails
                ):
                    # Sealed before it is written: the JPEG never reaches the database.
                    sealed = self._thumbnails.seal(thumbnail_jpeg, row.user_key, row.id)
                    await ThumbnailRepository(session).add(
                        Thumbnail(consultation_id=row.id, user_key=row.user_key, sealed=sealed)
                    )
                    if previous is not None and earlier_jpeg is not None:
                        pair = SideBySide(
                            earlier_jpeg, previous.created_at, thumbnail_jpeg, row.created_at
                        )
        metrics.consultation_logged(row.status, row.reason)
        logger.info(
            "Consultation %d: %s %s (%s, %s ms)",
            row.id,
            row.status,
            row.reason or row.risk,
            row.input_kind,
            row.processing_ms,
        )
        if outcome is None:
            return Forgotten(sender.language)  # not shown: the caller re-raises the error
        if isinstance(outcome, Assessed | Unassessable):
            outcome = replace(outcome, consultation_id=row.id)
        return Consulted(
            sender.language, outcome, subject, sender.worker, tracked, referral, row.id, pair
        )

    async def _open_thumbnail(self, session: AsyncSession, row: Consultation) -> bytes | None:
        """The thumbnail kept of ``row``, opened; None if none was kept or it does not open."""
        if self._thumbnails is None:
            return None
        kept = await ThumbnailRepository(session).of_consultation(row.id)
        return None if kept is None else self._thumbnails.open(kept.sealed, row.user_key, row.id)

    def _screen_sync(self, data: bytes, compact: bool, keep_thumbnail: bool = False) -> _Screened:
        # Runs in a worker thread: decode, checks, inference and JPEG encoding are all CPU.
        started = time.perf_counter()
        verdict = self._screener.screen_bytes(
            data, max_bytes=self._max_bytes, max_pixels=self._max_pixels
        )
        heatmap = None
        # Only an assessed photo shows its heatmap; on a refused one it would look like a verdict.
        if (
            isinstance(verdict, ScreeningResult)
            and verdict.risk is not Risk.UNASSESSABLE
            and verdict.heatmap_overlay is not None
        ):
            heatmap = (
                encode_jpeg(
                    verdict.heatmap_overlay, COMPACT_HEATMAP_MAX_SIDE, COMPACT_HEATMAP_JPEG_QUALITY
                )
                if compact
                else encode_jpeg(verdict.heatmap_overlay)
            )
        kept = None
        if keep_thumbnail and heatmap is not None:  # an assessed photo
            kept = thumbnail(data, max_bytes=self._max_bytes, max_pixels=self._max_pixels)
        elapsed_ms = round((time.perf_counter() - started) * 1000)
        return _Screened(verdict, heatmap, elapsed_ms, kept)

    def _outcome(self, screened: _Screened) -> Outcome:
        verdict = screened.verdict
        if isinstance(verdict, DecodeRejected):
            return Rejected(verdict.reason)
        prediction = verdict.prediction
        if verdict.risk is Risk.UNASSESSABLE or prediction is None:
            # The classifier judges every photo, refused or not: a refused photo it
            # judges as high risk gets "see a doctor if it worries you", not "no spot".
            suspicious = is_suspicious(
                prediction.malignant_probability if prediction else None,
                self.metadata.thresholds.high,
            )
            return Unassessable(verdict.quality.issues, suspicious=suspicious)
        top = prediction.top_class
        return Assessed(
            # The level shown, after the advice policy (a cancer named lifts it).
            risk=advise(verdict.risk, top).level,
            top_class=top,
            lesion_name=self.metadata.class_names.get(top, top),
            heatmap_jpeg=screened.heatmap_jpeg,
            tips=verdict.quality.tips,
        )


def encode_jpeg(
    rgb: RGBImage, max_side: int = HEATMAP_MAX_SIDE, quality: int = HEATMAP_JPEG_QUALITY
) -> bytes:
    """Encode an RGB uint8 array as a JPEG no larger than ``max_side`` (Telegram's display)."""
    image = Image.fromarray(rgb)
    image.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _wants_follow_up(outcome: Assessed, sender: _Sender) -> bool:
    # Workers are not asked about their patients: the patient is not in the chat.
    return outcome.risk in FOLLOW_UP_RISKS and not sender.worker


def _reject_reason(code: str) -> RejectReason | None:
    for kind in (DecodeFailure, UnsupportedMedia):
        if code in set(kind):
            return kind(code)
    return None


def _subject(caption: str | None, *, worker: bool) -> Subject:
    """What the caption says: a worker's patient code and spot name, or a spot name."""
    if worker:
        parsed = parse_caption(caption)
        return Subject(lesion_label=parsed.label, patient_code=parsed.patient_code)
    return Subject(lesion_label=normalise_label(caption))


def _consultation(screened: _Screened, outcome: Outcome, size: int) -> Consultation:
    row = Consultation(image_bytes=size, processing_ms=screened.elapsed_ms)
    verdict = screened.verdict
    if isinstance(verdict, DecodeRejected):
        row.status = ConsultationStatus.REJECTED
        row.reason = verdict.reason
        return row
    row.model_version = verdict.model_version
    row.image_width = verdict.width
    row.image_height = verdict.height
    row.quality_ok = verdict.quality.ok
    row.quality_issues = [issue.value for issue in verdict.quality.issues]
    row.quality_measurements = _json_floats(verdict.quality.measurements)
    # What the person was told (inference.advice may lift the model's level); the model's own
    # level follows from malignant_probability and the model's thresholds.
    row.risk = outcome.risk if isinstance(outcome, Assessed) else verdict.risk
    if verdict.lesion_box is not None:
        row.lesion_box = [int(v) for v in verdict.lesion_box.as_list()]
    if verdict.prediction is not None:
        row.class_probabilities = _json_floats(verdict.prediction.probabilities)
        row.top_class = verdict.prediction.top_class
        row.malignant_probability = _finite(verdict.prediction.malignant_probability)
        row.ood_score = _finite(verdict.prediction.ood_score)
    if isinstance(outcome, Assessed):
        row.status = ConsultationStatus.ASSESSED
    else:
        row.status = ConsultationStatus.UNASSESSABLE
        row.reason = verdict.quality.issues[0].value if verdict.quality.issues else "unassessable"
    return row


def _finite(value: float) -> float | None:
    # numpy scalars are not JSON-serialisable, and PostgreSQL's JSON refuses NaN.
    number = float(value)
    return number if math.isfinite(number) else None


def _json_floats(values: Mapping[str, float]) -> dict[str, float | None]:
    return {str(key): _finite(value) for key, value in values.items()}

"""From uploaded bytes to an outcome the bot can render, with one consultation row per attempt.

No Telegram here: handlers pass a download coroutine and a pseudonymous user key in, and
get a plain value (:data:`Outcome`) back.
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
from datetime import datetime
from enum import StrEnum

from PIL import Image
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import metrics
from bot.db.models import Consultation, FollowUp
from bot.db.repository import ConsultationRepository, UserRepository
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


class ConsultationStatus(StrEnum):
    ASSESSED = "assessed"  # a risk level was given
    UNASSESSABLE = "unassessable"  # a picture, but not one the model may judge
    REJECTED = "rejected"  # not a usable picture
    FAILED = "failed"  # our fault: an unexpected error


@dataclass(frozen=True)
class Assessed:
    risk: Risk  # low, medium or high, never unassessable
    top_class: str
    lesion_name: str  # plain words, from the model's metadata
    heatmap_jpeg: bytes | None
    consultation_id: int | None = None  # set once logged


@dataclass(frozen=True)
class Unassessable:
    issues: tuple[QualityIssue, ...]  # most important first; may be empty
    consultation_id: int | None = None


@dataclass(frozen=True)
class Subject:
    """Who and what a photo is about, as the user said (both optional)."""

    lesion_label: str | None = None
    patient_code: str | None = None


@dataclass(frozen=True)
class FollowUpPlan:
    """Ask again at ``due_at`` if the result is medium or high; ``chat_ref`` is sealed."""

    due_at: datetime
    chat_ref: str


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


class ScreeningService:
    """Screen photos in a bounded thread pool and log every attempt in the database."""

    def __init__(
        self,
        screener: Screener,
        executor: Executor,
        sessions: async_sessionmaker[AsyncSession],
        *,
        max_bytes: int,
        max_pixels: int,
        max_pending: int,
    ) -> None:
        self._screener = screener
        self._executor = executor
        self._sessions = sessions
        self._max_bytes = max_bytes
        self._max_pixels = max_pixels
        # Bounds the photos held in memory (downloaded, waiting for a worker); later
        # users queue here, in arrival order, instead of failing.
        self._slots = asyncio.Semaphore(max_pending)

    @property
    def metadata(self) -> ModelMetadata:
        return self._screener.metadata

    @metrics.tracks_queue_depth
    async def screen(
        self,
        download: Download,
        *,
        user_key: str,
        kind: InputKind,
        subject: Subject | None = None,
        compact: bool = False,
        follow_up: FollowUpPlan | None = None,
    ) -> Outcome:
        """Download one picture, screen it off the event loop, log it, return the outcome.

        The consultation, and a follow-up when ``follow_up`` applies, share one transaction.
        """
        async with self._slots:
            try:
                data = bytes(await download())
                loop = asyncio.get_running_loop()
                screened = await loop.run_in_executor(
                    self._executor, self._screen_sync, data, compact
                )
            except Exception as error:
                # Unexpected: the global error handler replies; the log keeps the attempt.
                await self._save(
                    Consultation(
                        user_key=user_key,
                        input_kind=kind,
                        status=ConsultationStatus.FAILED,
                        reason=type(error).__name__[:64],
                    )
                )
                raise
        outcome = self._outcome(screened)
        row = _consultation(screened, outcome, user_key, kind, len(data))
        if subject is not None:
            row.lesion_label, row.patient_code = subject.lesion_label, subject.patient_code
        wants_follow_up = isinstance(outcome, Assessed) and outcome.risk in FOLLOW_UP_RISKS
        plan = follow_up if wants_follow_up else None
        await self._save(row, plan)
        if isinstance(outcome, Assessed | Unassessable):
            return replace(outcome, consultation_id=row.id)
        return outcome

    async def reject(
        self, reason: RejectReason, *, user_key: str, kind: InputKind, size_bytes: int | None
    ) -> Rejected:
        """Log an attempt refused before download (wrong kind of message, file too big)."""
        await self._save(
            Consultation(
                user_key=user_key,
                input_kind=kind,
                status=ConsultationStatus.REJECTED,
                reason=reason,
                image_bytes=size_bytes,
            )
        )
        return Rejected(reason)

    def _screen_sync(self, data: bytes, compact: bool) -> _Screened:
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
        elapsed_ms = round((time.perf_counter() - started) * 1000)
        return _Screened(verdict, heatmap, elapsed_ms)

    def _outcome(self, screened: _Screened) -> Outcome:
        verdict = screened.verdict
        if isinstance(verdict, DecodeRejected):
            return Rejected(verdict.reason)
        if verdict.risk is Risk.UNASSESSABLE or verdict.prediction is None:
            return Unassessable(verdict.quality.issues)
        top = verdict.prediction.top_class
        return Assessed(
            risk=verdict.risk,
            top_class=top,
            lesion_name=self.metadata.class_names.get(top, top),
            heatmap_jpeg=screened.heatmap_jpeg,
        )

    async def _save(
        self, consultation: Consultation, follow_up: FollowUpPlan | None = None
    ) -> None:
        async with self._sessions.begin() as session:
            await ConsultationRepository(session).add(consultation)
            if follow_up is not None:
                session.add(
                    FollowUp(
                        consultation_id=consultation.id,
                        user_key=consultation.user_key,
                        due_at=follow_up.due_at,
                    )
                )
                user = await UserRepository(session).get_or_add(consultation.user_key)
                user.chat_ref = follow_up.chat_ref
        metrics.consultation_logged(consultation.status, consultation.reason)
        logger.info(
            "Consultation %d: %s %s (%s, %s ms)",
            consultation.id,
            consultation.status,
            consultation.reason or consultation.risk,
            consultation.input_kind,
            consultation.processing_ms,
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


def _consultation(
    screened: _Screened, outcome: Outcome, user_key: str, kind: InputKind, size: int
) -> Consultation:
    row = Consultation(
        user_key=user_key,
        input_kind=kind,
        image_bytes=size,
        processing_ms=screened.elapsed_ms,
    )
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
    row.risk = verdict.risk
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

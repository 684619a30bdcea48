"""Prometheus metrics, served at ``/metrics`` by ``bot.health``.

Module-level objects on the bot's own registry, as prometheus_client intends: any part of
the bot counts with one call. Tests build several bots in one process, so they compare
values before and after rather than absolute numbers. No label ever holds a user's id,
text or key: only outcomes, reasons, stages and error kinds, each a short fixed set.
"""

from __future__ import annotations

import functools
from collections import Counter as Counter_
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import ParamSpec, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)  # resident memory, CPU seconds, open files

PHOTOS_SCREENED = Counter(
    "bot_photos_screened",
    "Pictures screened, by outcome (assessed, unassessable, rejected, failed)",
    ["outcome"],
    registry=REGISTRY,
)
REFUSALS = Counter(
    "bot_refusals",
    "Pictures given no risk level, by reason (quality issue, why it was rejected, or busy)",
    ["reason"],
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "bot_screening_queue_depth",
    "Pictures waiting for a worker or being screened",
    registry=REGISTRY,
)
# Buckets from a 20 ms check to a slow 50 MP file; the reply target is 2 s.
STAGE_SECONDS = Histogram(
    "bot_stage_seconds",
    "Seconds per screening stage (decode, localise, quality, classify, heatmap, total)",
    ["stage"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
TELEGRAM_ERRORS = Counter(
    "bot_telegram_errors",
    "Failed Bot API calls, by kind (retry_after, timed_out, network, bad_request, ...)",
    ["kind"],
    registry=REGISTRY,
)
SCHEDULER_BACKLOG = Gauge(
    "bot_scheduler_backlog",
    "Outbox messages (reminders, follow-ups) waiting to be sent, or parked",
    ["state"],
    registry=REGISTRY,
)
INBOX_EVENTS = Counter(
    "bot_inbox_updates",
    "Updates through the inbox beyond the plain path, by event (seen_before, claimed, "
    "given_back, not_kept, gave_up_attempts, gave_up_unreadable, unparsable)",
    ["event"],
    registry=REGISTRY,
)
INBOX_WAITING = Gauge(
    "bot_inbox_waiting",
    "Updates kept and not yet handled, by every replica together",
    registry=REGISTRY,
)
INBOX_OLDEST_WAITING = Gauge(
    "bot_inbox_oldest_waiting_seconds",
    "Age of the oldest update kept and not yet handled (0 when none waits), all replicas",
    registry=REGISTRY,
)
# From an update kept (or taken over) by this process to its being settled: the time a
# user waits for an answer, queueing included. Buckets up to a burst's worst case.
UPDATE_SECONDS = Histogram(
    "bot_update_seconds",
    "Seconds from an update being kept or taken over to its being settled (answered)",
    buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0),
    registry=REGISTRY,
)
ANSWERS = Counter(
    "bot_answers",
    "Photo results sent, by outcome: delivered, abandoned (every retry failed: left "
    "undelivered in the log) or uncertain (timed out: perhaps delivered, not sent again)",
    ["outcome"],
    registry=REGISTRY,
)

# python-telegram-bot's exception classes, most specific first, by name: this module is
# imported by the screening service, which stays free of Telegram.
_ERROR_KINDS = (
    ("RetryAfter", "retry_after"),
    ("TimedOut", "timed_out"),
    ("Forbidden", "forbidden"),
    ("BadRequest", "bad_request"),
    ("Conflict", "conflict"),
    ("InvalidToken", "invalid_token"),
    ("NetworkError", "network"),  # also 5xx answers and dropped connections
)


def error_kind(error: BaseException) -> str:
    """Return the metric label for a Bot API error."""
    names = {cls.__name__ for cls in type(error).__mro__}
    return next((kind for name, kind in _ERROR_KINDS if name in names), "other")


def telegram_error(error: BaseException) -> None:
    """Count one failed Bot API call."""
    TELEGRAM_ERRORS.labels(kind=error_kind(error)).inc()


def consultation_logged(status: str, reason: str | None) -> None:
    """Count one screened picture by outcome, and its refusal reason if it got no risk."""
    PHOTOS_SCREENED.labels(outcome=status).inc()
    if reason is not None and status != "assessed":
        REFUSALS.labels(reason=reason).inc()


# The same pictures per UTC day and reason, for /stats: they are refused before anything is
# stored (a flood must cost no database work), so this process's own count is all there is.
_not_admitted_by_day: Counter_[tuple[date, str]] = Counter_()


def not_admitted(reason: str) -> None:
    """Count one picture refused unscreened: ``busy_rate`` (over its sender's abuse limit;
    nothing is refused for load, see bot.turns)."""
    REFUSALS.labels(reason=f"busy_{reason}").inc()
    _not_admitted_by_day[(datetime.now(UTC).date(), f"busy_{reason}")] += 1


def not_admitted_by_day() -> dict[tuple[date, str], int]:
    """Pictures not admitted since this process started, by (UTC day, reason)."""
    return dict(_not_admitted_by_day)


def answer_sent(outcome: str) -> None:
    """Count one photo result by how its sending ended (see :data:`ANSWERS`)."""
    ANSWERS.labels(outcome=outcome).inc()


def inbox_event(event: str) -> None:
    """Count one inbox event (see :data:`INBOX_EVENTS`)."""
    INBOX_EVENTS.labels(event=event).inc()


def set_inbox_waiting(count: int, oldest_s: float = 0.0) -> None:
    INBOX_WAITING.set(count)
    INBOX_OLDEST_WAITING.set(oldest_s)


def observe_stage(stage: str, seconds: float) -> None:
    """Record how long one screening stage took."""
    STAGE_SECONDS.labels(stage=stage).observe(seconds)


P = ParamSpec("P")
R = TypeVar("R")


def tracks_queue_depth(function: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Count a coroutine as queued or running in :data:`QUEUE_DEPTH` until it returns."""

    @functools.wraps(function)
    async def tracked(*args: P.args, **kwargs: P.kwargs) -> R:
        QUEUE_DEPTH.inc()
        try:
            return await function(*args, **kwargs)
        finally:
            QUEUE_DEPTH.dec()

    return tracked


def render() -> tuple[bytes, str]:
    """Return the current metrics in Prometheus' text format, with its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST

"""The metric labels for Bot API errors: a short fixed set, from python-telegram-bot's classes."""

from __future__ import annotations

import pytest
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut

from bot import metrics


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (RetryAfter(3), "retry_after"),
        (TimedOut(), "timed_out"),
        (NetworkError("Bad Gateway"), "network"),  # 5xx answers and dropped connections
        (BadRequest("Chat not found"), "bad_request"),
        (Forbidden("bot was blocked by the user"), "forbidden"),
        (ValueError("not from Telegram"), "other"),
    ],
)
def test_each_error_is_counted_under_its_kind(error: Exception, kind: str) -> None:
    """Subclasses first: a timeout is a network error, but counted as a timeout."""
    before = metrics.TELEGRAM_ERRORS.labels(kind=kind)._value.get()
    metrics.telegram_error(error)
    assert metrics.error_kind(error) == kind
    assert metrics.TELEGRAM_ERRORS.labels(kind=kind)._value.get() == before + 1


def test_a_refusal_counts_its_reason_and_an_assessment_none() -> None:
    refused = metrics.REFUSALS.labels(reason="blurry")._value.get()
    metrics.consultation_logged("unassessable", "blurry")
    metrics.consultation_logged("assessed", None)
    assert metrics.REFUSALS.labels(reason="blurry")._value.get() == refused + 1


def test_a_picture_refused_as_busy_counts_under_its_busy_reason() -> None:
    """Refused before screening (queue full, or over the sender's rate): no outcome, one
    refusal each, named apart from the quality reasons."""
    for reason in ("queue_full", "rate"):
        label = f"busy_{reason}"
        before = metrics.REFUSALS.labels(reason=label)._value.get()
        metrics.not_admitted(reason)
        assert metrics.REFUSALS.labels(reason=label)._value.get() == before + 1

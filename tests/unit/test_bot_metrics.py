"""The metric labels for Bot API errors: a short fixed set, from python-telegram-bot's classes."""

from __future__ import annotations

import pytest
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut

from bot import metrics


def sample(name: str, **labels: str) -> float:
    """One value from the bot's metrics registry, as /metrics serves it (0 if never set)."""
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


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
    before = sample("bot_telegram_errors_total", kind=kind)
    metrics.telegram_error(error)
    assert metrics.error_kind(error) == kind
    assert sample("bot_telegram_errors_total", kind=kind) == before + 1


def test_a_refusal_counts_its_reason_and_an_assessment_none() -> None:
    refused = sample("bot_refusals_total", reason="blurry")
    metrics.consultation_logged("unassessable", "blurry")
    metrics.consultation_logged("assessed", None)
    assert sample("bot_refusals_total", reason="blurry") == refused + 1


def test_a_picture_refused_as_busy_counts_under_its_busy_reason() -> None:
    """Refused before screening (over the sender's abuse limit): no outcome, one
    refusal each, named apart from the quality reasons."""
    for reason in ("rate",):
        label = f"busy_{reason}"
        before = sample("bot_refusals_total", reason=label)
        metrics.not_admitted(reason)
        assert sample("bot_refusals_total", reason=label) == before + 1

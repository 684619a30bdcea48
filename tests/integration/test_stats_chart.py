"""The /stats chart on a real database with photos spread over several days: the data the
drawn figure holds (bars, day labels, axis ticks, words), not its pixels."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.migrate import upgrade_to_head
from bot.db.models import Consultation, FollowUp
from bot.db.repository import StatsRepository, StatsSummary
from bot.db.session import create_session_factory
from bot.replies import for_language
from bot.reports import draw_stats_chart, stats_chart

# Midday, so that "N days ago, plus or minus an hour" stays on the day meant.
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
TODAY = NOW.date()
EN, RU = for_language("en"), for_language("ru")


def photo(
    days_ago: int, status: str, *, risk: str | None = None, reason: str | None = None, ms: int = 100
) -> Consultation:
    return Consultation(
        user_key=f"{days_ago:02d}{status}".ljust(64, "k"),
        input_kind="photo",
        status=status,
        risk=risk,
        reason=reason,
        processing_ms=ms,
        created_at=NOW - timedelta(days=days_ago, hours=1),
    )


@pytest.fixture
async def summary(engine: AsyncEngine) -> StatsSummary:
    """Photos on three days of the last week (none on the others), a follow-up answered."""
    await upgrade_to_head(engine)
    sessions = create_session_factory(engine)
    async with sessions.begin() as session:
        rows = [
            # 6 days ago: two low, one medium, one blurry photo
            photo(6, "assessed", risk="low", ms=80),
            photo(6, "assessed", risk="low", ms=90),
            photo(6, "assessed", risk="medium", ms=100),
            photo(6, "unassessable", reason="blurry", ms=110),
            # 3 days ago: a high, a photo with no skin spot, a video, an error
            photo(3, "assessed", risk="high", ms=120),
            photo(3, "unassessable", reason="not_a_lesion", ms=130),
            photo(3, "rejected", reason="video", ms=5),
            photo(3, "failed", reason="RuntimeError", ms=2000),
            # today: one medium
            photo(0, "assessed", risk="medium", ms=140),
            # 40 days ago: outside the period
            photo(40, "assessed", risk="high"),
        ]
        session.add_all(rows)
        await session.flush()
        session.add(
            FollowUp(
                consultation_id=rows[2].id,
                user_key=rows[2].user_key,
                due_at=NOW - timedelta(days=1),
                sent_at=NOW - timedelta(days=1),
                saw_doctor="yes",
                diagnosis="benign",
            )
        )
        session.add(FollowUp(consultation_id=rows[4].id, user_key=rows[4].user_key, due_at=NOW))
    async with sessions() as session:
        return await StatsRepository(session).summary(NOW, 7)


async def test_the_chart_shows_every_day_every_outcome_in_whole_numbers(
    summary: StatsSummary,
) -> None:
    busy = {(TODAY, "busy_rate"): 2, (TODAY - timedelta(days=1), "busy_queue_full"): 1}
    chart = stats_chart(summary, EN, busy)

    # Every day of the period, the empty ones too: 7 days back to today.
    assert chart.days == [TODAY - timedelta(days=n) for n in range(7, -1, -1)]
    six, three = (
        chart.days.index(TODAY - timedelta(days=6)),
        chart.days.index(TODAY - timedelta(days=3)),
    )
    expected: dict[str, dict[int, int]] = {
        "Low risk": {six: 2},
        "Medium risk": {six: 1, 7: 1},
        "High risk": {three: 1},
        "Cannot assess": {six: 1, three: 1},
        "Not a usable picture": {three: 1},
        "Error": {three: 1},
        "Not admitted (busy)": {7: 2, 6: 1},
    }
    assert list(chart.series) == list(expected)
    for label, counts in expected.items():
        assert chart.series[label] == [counts.get(i, 0) for i in range(8)], label
    assert sum(map(sum, chart.series.values())) == 9 + 3  # the 40-day-old photo left out

    figure = draw_stats_chart(chart)
    per_day, reasons, follow_ups = figure.axes
    # The bars drawn are these counts, stacked in this order, one bar a day.
    for container, (label, counts) in zip(per_day.containers, chart.series.items(), strict=True):
        assert container.get_label() == label
        assert [round(bar.get_height()) for bar in container] == counts
        assert all(float(bar.get_height()).is_integer() for bar in container)
    # Days under the bars, one label each, not hours; whole-number counts up the side.
    assert [t.get_text() for t in per_day.get_xticklabels()] == chart.day_labels
    assert chart.day_labels[-1] == "30 Nov"
    assert all(float(tick).is_integer() for tick in per_day.get_yticks())
    assert per_day.get_title() == "Photos per day, by outcome (last 7 days)"

    # Reasons in words, never the codes; photos not admitted among them.
    reason_labels = {t.get_text() for t in reasons.get_yticklabels()}
    assert reason_labels == {
        "blurry",
        "no skin spot found",
        "video",
        "internal error",
        "busy: too many photos from one person",
        "busy: too many photos waiting",
    }
    assert all(float(tick).is_integer() for tick in reasons.get_xticks())
    assert {t.get_text() for t in follow_ups.get_yticklabels()} == {
        "saw a doctor: Harmless (benign)",
        "not asked yet",
    }
    # Median and 95th percentile of the 9 photos' times (nearest rank).
    assert figure.get_suptitle() == ("Processing time: median 110 ms, 95th percentile 2000 ms")


async def test_the_chart_speaks_the_admins_language(summary: StatsSummary) -> None:
    chart = stats_chart(summary, RU, {})
    assert "Низкий риск" in chart.series
    assert ("размыто", 1) in chart.reasons
    assert "not_a_lesion" not in {name for name, _ in chart.reasons}
    assert chart.day_labels[-1] == "30 нояб."
    assert chart.title == "Фото по дням и результатам (период: 7 дн.)"


def test_an_empty_period_draws_zeros() -> None:
    """No data at all: zeros on every day, and the chart still draws."""
    days = [date(2026, 11, 1) + timedelta(days=n) for n in range(3)]
    summary = StatsSummary(
        days=2,
        active_users=0,
        known_users=0,
        consultations=0,
        per_day=[],
        risks={},
        rejections={},
        languages={},
        processing_p50_ms=None,
        processing_p95_ms=None,
        model_versions={},
        follow_ups={},
        outcomes_per_day=[(day, {}) for day in days],
    )
    chart = stats_chart(summary, EN, {})
    assert all(counts == [0, 0, 0] for counts in chart.series.values())
    assert chart.timing == "Processing time: median - ms, 95th percentile - ms"
    draw_stats_chart(chart)

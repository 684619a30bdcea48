"""Admin and worker reports as files: a stats chart (PNG) and consultation CSVs (pure).

Both are CPU work for a thread: handlers call them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING

from babel.dates import format_date

from bot.answers import export_cell
from bot.db.models import Consultation
from bot.db.repository import OUTCOMES, StatsSummary
from bot.replies import Replies

if TYPE_CHECKING:
    from matplotlib.figure import Figure

OUTCOME_COLOURS = {
    "low": "#4c9a2a",
    "medium": "#e0a800",
    "high": "#c0392b",
    "unassessable": "#8e8e8e",
    "rejected": "#5d6d7e",
    "failed": "#000000",
    "not_admitted": "#b57edc",
}
# At most this many day labels under the bars (a year has a label every 13 days), and
# this many reasons or follow-up answers (the rest are in the text summary).
MAX_DAY_LABELS = 30
MAX_BARS = 12
# Admin exports: pseudonymous keys and model outputs only, nothing the user typed.
ADMIN_COLUMNS = (
    "id",
    "created_at",
    "user_key",
    "input_kind",
    "status",
    "reason",
    "risk",
    "top_class",
    "malignant_probability",
    "ood_score",
    "quality_issues",
    "model_version",
    "processing_ms",
    "delivered_at",
    "answers",  # the optional questions: button codes only, never typed text
)
# A worker's own export adds what they typed themselves: the patient code and spot name.
WORKER_COLUMNS = (*ADMIN_COLUMNS, "patient_code", "lesion_label")


@dataclass(frozen=True)
class StatsChart:
    """What the /stats chart shows, in the admin's language: the data a test checks, drawn
    by :func:`draw_stats_chart`. Counts are whole numbers; every day of the period is
    there, empty days as zeros."""

    title: str
    days: list[date]
    day_labels: list[str]
    # Legend label -> count per day (one per entry of ``days``), stacked in this order.
    series: dict[str, list[int]]
    colours: list[str]
    reasons_title: str
    reasons: list[tuple[str, int]]  # in words, most frequent first
    follow_ups_title: str
    follow_ups: list[tuple[str, int]]
    timing: str


def stats_chart(
    summary: StatsSummary, replies: Replies, not_admitted: Mapping[tuple[date, str], int]
) -> StatsChart:
    """Lay out the chart for ``summary``; ``not_admitted``: pictures this process refused
    unscreened (busy), by (day, reason), stacked on their days and listed as reasons."""
    days = [day for day, _ in summary.outcomes_per_day]
    series = {
        replies.text(f"stats.outcome.{outcome}"): [
            counts.get(outcome, 0) for _, counts in summary.outcomes_per_day
        ]
        for outcome in OUTCOMES
    }
    busy_per_day = Counter[date]()
    busy_reasons = Counter[str]()
    for (day, reason), count in not_admitted.items():
        busy_per_day[day] += count
        busy_reasons[reason] += count
    series[replies.text("stats.outcome.not_admitted")] = [busy_per_day[day] for day in days]
    reasons = Counter(summary.rejections) + busy_reasons
    return StatsChart(
        title=replies.text("stats.chart.per_day", days=summary.days),
        days=days,
        day_labels=[_day_label(day, replies.language) for day in days],
        series=series,
        colours=[OUTCOME_COLOURS[outcome] for outcome in (*OUTCOMES, "not_admitted")],
        reasons_title=replies.text("stats.chart.reasons"),
        reasons=[(replies.reason(code), n) for code, n in reasons.most_common()],
        follow_ups_title=replies.text("stats.chart.followups"),
        follow_ups=[(replies.follow_up_outcome(code), n) for code, n in summary.follow_ups.items()],
        timing=replies.text(
            "stats.chart.timing",
            p50=_or_dash(summary.processing_p50_ms),
            p95=_or_dash(summary.processing_p95_ms),
        ),
    )


def draw_stats_chart(chart: StatsChart) -> Figure:
    """Draw ``chart``: photos per day stacked by outcome; refusal reasons; follow-ups."""
    # Imported here: matplotlib is a third of the bot's start-up imports (0.6 of 1.8 s), and
    # start-up time is how long a restarted bot keeps everyone waiting.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(11, 7), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)  # the Agg canvas, chosen explicitly: no display, no global backend
    grid = figure.add_gridspec(2, 2, height_ratios=[3, 2])
    per_day = figure.add_subplot(grid[0, :])
    reasons = figure.add_subplot(grid[1, 0])
    follow_ups = figure.add_subplot(grid[1, 1])
    figure.suptitle(chart.timing)

    # Days as categories, not dates: a date axis over a few days ticks every few hours.
    positions = list(range(len(chart.days)))
    bottom = [0] * len(positions)
    for (label, counts), colour in zip(chart.series.items(), chart.colours, strict=True):
        per_day.bar(positions, counts, bottom=bottom, color=colour, label=label)
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    step = max(1, math.ceil(len(positions) / MAX_DAY_LABELS))
    per_day.set_xticks(positions[::step], chart.day_labels[::step], rotation=45, ha="right")
    per_day.set_xlim(-0.5, len(positions) - 0.5)
    per_day.yaxis.set_major_locator(MaxNLocator(integer=True))
    per_day.set_title(chart.title)
    # Beside the bars, never over them.
    per_day.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    for axes, title, items in (
        (reasons, chart.reasons_title, chart.reasons[:MAX_BARS]),
        (follow_ups, chart.follow_ups_title, chart.follow_ups[:MAX_BARS]),
    ):
        labels = [name for name, _ in items][::-1]  # most frequent at the top
        axes.barh(labels, [count for _, count in items][::-1], color="#34699a")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_title(title)
    return figure


def stats_chart_png(chart: StatsChart) -> bytes:
    """Draw ``chart`` and return PNG bytes (no pyplot state)."""
    buffer = io.BytesIO()
    draw_stats_chart(chart).savefig(buffer, format="png")
    return buffer.getvalue()


def _day_label(day: date, language: str) -> str:
    return format_date(day, "d MMM", locale=language)


def _or_dash(value: int | None) -> str:
    return "-" if value is None else str(value)


def consultations_csv(rows: Iterable[Consultation], columns: tuple[str, ...]) -> bytes:
    """Write consultations as UTF-8 CSV (with BOM, so spreadsheet apps read Cyrillic)."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row, column) for column in columns])
    return text.getvalue().encode("utf-8-sig")


def _cell(row: Consultation, column: str) -> str:
    value = getattr(row, column)
    if value is None:
        return ""
    if isinstance(value, datetime):
        # Every timestamp in one format (ISO 8601, UTC offset), created_at and delivered_at
        # alike, so a spreadsheet or script reads both the same way.
        return value.isoformat()
    if column == "quality_issues":
        return ";".join(value)
    if column == "answers":
        return export_cell(value)
    text = str(value)
    # A typed cell starting like a formula would run in a spreadsheet.
    return f"'{text}" if text[:1] in ("=", "+", "-", "@") and column == "lesion_label" else text

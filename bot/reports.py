"""Admin and worker reports as files: a stats chart (PNG) and consultation CSVs (pure).

Both are CPU work for a thread: handlers call them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from bot.answers import export_cell
from bot.db.models import Consultation
from bot.db.repository import StatsSummary

RISK_COLOURS = {"low": "#4c9a2a", "medium": "#e0a800", "high": "#c0392b"}
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


def stats_chart_png(summary: StatsSummary) -> bytes:
    """Draw checks per day and the risk distribution; return PNG bytes (no pyplot state)."""
    # Imported here: matplotlib is a third of the bot's start-up imports (0.6 of 1.8 s), and
    # start-up time is how long a restarted bot keeps everyone waiting.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 4), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)  # the Agg canvas, chosen explicitly: no display, no global backend
    per_day, risks = figure.subplots(1, 2, width_ratios=[2, 1])
    days = [day for day, _ in summary.per_day]
    per_day.bar(days, [count for _, count in summary.per_day], color="#34699a")
    per_day.set_title(f"Checks per day (last {summary.days} days)")
    per_day.tick_params(axis="x", labelrotation=45)
    names = [name for name in RISK_COLOURS if name in summary.risks]
    risks.bar(
        names,
        [summary.risks[name] for name in names],
        color=[RISK_COLOURS[name] for name in names],
    )
    risks.set_title("Risk levels")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


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
    if column == "created_at":
        return str(value.isoformat())
    if column == "quality_issues":
        return ";".join(value)
    if column == "answers":
        return export_cell(value)
    text = str(value)
    # A typed cell starting like a formula would run in a spreadsheet.
    return f"'{text}" if text[:1] in ("=", "+", "-", "@") and column == "lesion_label" else text

"""Every user-facing string, rendered from a message key (pure: no I/O, no Telegram).

The texts live in gettext catalogues (``bot/locales/<lang>/LC_MESSAGES/messages.po``,
msgid = message key); handlers ask :func:`for_language` and never hold text of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime

from babel.dates import format_date
from babel.numbers import format_percent

from bot.db.models import Consultation
from bot.db.repository import PatientSummary, StatsSummary
from bot.i18n import DEFAULT_LANGUAGE, language_for, translations
from bot.screening import (
    Assessed,
    Consulted,
    Outcome,
    Rejected,
    RejectReason,
    Tracked,
    Unassessable,
)
from bot.tracking import Change
from inference.types import QualityIssue, Risk

Translate = Callable[[str], str]
# Telegram refuses a message longer than this, counted in UTF-16 code units.
TELEGRAM_TEXT_LIMIT = 4096
COMMANDS = ("start", "help", "history", "remind", "language", "privacy", "forget")


def english(key: str) -> str:
    """Look up the English text for a message key."""
    return translations(DEFAULT_LANGUAGE).gettext(key)


class Replies:
    """Render replies in one language."""

    def __init__(self, translate: Translate = english, language: str = DEFAULT_LANGUAGE) -> None:
        self._t = translate
        self.language = language

    def text(self, key: str, **values: object) -> str:
        """Render one message by key, filling its placeholders."""
        template = self._t(key)
        return template.format(**values) if values else template

    def date(self, moment: date | datetime) -> str:
        """Format a date the way this language writes it."""
        day = moment.date() if isinstance(moment, datetime) else moment
        return format_date(day, "medium", locale=self.language)

    def percent(self, value: float) -> str:
        return format_percent(value, locale=self.language)

    # -- introductions -------------------------------------------------------------------

    def start(self, *, ask_consent: bool = False) -> str:
        intro = self._t("start").format(photo_tips=self._t("photo_tips"))
        return f"{intro}\n\n{self.consent()}" if ask_consent else intro

    def help(self) -> str:
        return self._t("help").format(photo_tips=self._t("photo_tips"))

    def pointer(self) -> str:
        return self._t("pointer")

    def error(self) -> str:
        return self._t("error")

    def heatmap_caption(self) -> str:
        return self._t("heatmap_caption")

    def consent(self) -> str:
        return self._t("consent")

    def consent_required(self) -> str:
        return f"{self._t('consent.required')}\n\n{self.consent()}"

    def privacy(self, consented_at: datetime | None) -> str:
        if consented_at is None:
            return self.consent()
        return f"{self.consent()}\n\n{self.text('consent.given', date=self.date(consented_at))}"

    # -- screening results ---------------------------------------------------------------

    def outcome(self, outcome: Outcome) -> str:
        """Render the text reply for any screening outcome."""
        match outcome:
            case Assessed():
                return self.assessed(outcome.risk, self.lesion_name(outcome))
            case Unassessable():
                return self.unassessable(outcome.issues)
            case Rejected():
                return self.rejected(outcome.reason)

    def lesion_name(self, outcome: Assessed) -> str:
        """Name the lesion type in this language, or as the model's metadata does."""
        key = f"lesion.{outcome.top_class}"
        name = self._t(key)
        return outcome.lesion_name if name == key else name

    def assessed(self, risk: Risk, lesion_name: str) -> str:
        if risk is Risk.UNASSESSABLE:
            raise ValueError("an unassessable photo has no risk level to render")
        return "\n\n".join(
            [
                self._t(f"risk.{risk.value}"),
                self._t("result.lesion_type").format(name=lesion_name),
                self._t(f"advice.{risk.value}"),
                self._t("disclaimer"),
            ]
        )

    def unassessable(self, issues: tuple[QualityIssue, ...]) -> str:
        advice = [f"• {self._t(f'issue.{issue.value}')}" for issue in issues]
        return "\n\n".join(
            [
                self._t("unassessable"),
                "\n".join(advice or [self._t("issue.generic")]),
                self._t("unassessable.retake"),
                self._t("unassessable.doctor"),
            ]
        )

    def rejected(self, reason: RejectReason) -> str:
        return self._t(f"rejected.{reason.value}")

    def worker_outcome(self, outcome: Outcome, patient_code: str) -> str:
        """The short reply a health worker gets: patient, risk, type, one line of advice."""
        match outcome:
            case Assessed():
                level = self._t(f"level.{outcome.risk.value}")
                return "\n".join(
                    [
                        self.text(
                            "worker.result",
                            code=patient_code,
                            level=level,
                            name=self.lesion_name(outcome),
                        ),
                        self._t(f"advice_short.{outcome.risk.value}"),
                        self._t("worker.disclaimer"),
                    ]
                )
            case Unassessable():
                issue = outcome.issues[0].value if outcome.issues else None
                tip = self._t(f"issue.{issue}") if issue else self._t("issue.generic")
                return f"{self.text('worker.unassessable', code=patient_code)}\n{tip}"
            case Rejected():
                return self.rejected(outcome.reason)

    def consulted(self, reply: Consulted) -> str:
        """Render a stored consultation: the result, how a named spot changed, where to go
        if the risk is high, and how to name the spot."""
        code = reply.subject.patient_code
        if reply.worker and code is not None:
            parts = [self.worker_outcome(reply.outcome, code)]
        else:
            parts = [self.outcome(reply.outcome)]
        if not isinstance(reply.outcome, Assessed):
            return "\n\n".join(parts)
        if reply.tracked is not None:
            parts.append(self.tracked(reply.tracked))
        if reply.referral:
            parts.append(self.referral(reply.referral))
        if reply.subject.lesion_label is None and not reply.worker:
            parts.append(self._t("track.ask"))
        return "\n\n".join(parts)

    def tracked(self, tracked: Tracked) -> str:
        """Say that a spot's first photo is stored, or how it changed since the last one."""
        if tracked.change is None:
            return self.text("track.first", label=tracked.label)
        return self.comparison(tracked.change)

    def referral(self, contacts: str) -> str:
        return f"{self._t('referral.header')}\n{contacts}"

    # -- lesion tracking -----------------------------------------------------------------

    def comparison(self, change: Change) -> str:
        """Say how a named spot changed since its previous photo, and what to do if worse."""
        lines = [self.text("track.compare", label=change.label, date=self.date(change.before_at))]
        lines.append(
            self.text(
                "track.risk_change",
                before=self._t(f"level.{change.risk_before.value}"),
                after=self._t(f"level.{change.risk_after.value}"),
            )
        )
        if change.probability_before is not None and change.probability_after is not None:
            lines.append(
                self.text(
                    "track.probability_change",
                    before=self.percent(change.probability_before),
                    after=self.percent(change.probability_after),
                )
            )
        advice = self._t("track.worse" if change.worse else "track.not_worse")
        return "\n".join(lines) + "\n\n" + advice

    # -- history -------------------------------------------------------------------------

    def history_line(self, row: Consultation) -> str:
        if row.risk in (Risk.LOW, Risk.MEDIUM, Risk.HIGH):
            line = self.text(
                "history.line", date=self.date(row.created_at), level=self._t(f"level.{row.risk}")
            )
        else:
            line = self.text("history.line_unassessable", date=self.date(row.created_at))
        if row.lesion_label:
            return self.text("history.label", line=line, label=row.lesion_label)
        return line

    def history(self, rows: Sequence[Consultation]) -> str:
        if not rows:
            return self._t("history.empty")
        return "\n".join([self._t("history.title"), *map(self.history_line, rows)])

    def patients(self, patients: Sequence[PatientSummary]) -> str:
        if not patients:
            return self._t("worker.patients.empty")
        lines = [
            self.text(
                "worker.patients.line", code=p.code, date=self.date(p.last_at), count=p.checks
            )
            for p in patients
        ]
        return "\n".join([self._t("worker.patients.title"), *lines])

    def patient(self, code: str, rows: Sequence[Consultation]) -> str:
        if not rows:
            return self.text("worker.patient.empty", code=code)
        return "\n".join(
            [self.text("worker.patient.title", code=code), *map(self.history_line, rows)]
        )

    # -- follow-up -----------------------------------------------------------------------

    def follow_up(self, checked_at: datetime, label: str | None) -> str:
        suffix = self.text("followup.label", label=label) if label else ""
        return self.text("followup.ask", date=self.date(checked_at), label=suffix)

    # -- admin ---------------------------------------------------------------------------

    def stats(self, summary: StatsSummary, not_admitted: Mapping[str, int] | None = None) -> str:
        """Render the admin summary: counts only, no personal data. ``not_admitted``: the
        pictures this process refused unscreened (busy), by reason."""
        rejections = ((self.reason(code), n) for code, n in summary.rejections.items())
        follow_ups = ((self.follow_up_outcome(code), n) for code, n in summary.follow_ups.items())
        busy = ((self.reason(code), n) for code, n in (not_admitted or {}).items())
        sections = [
            self.text("stats.title", days=summary.days),
            self.text("stats.users", active=summary.active_users, total=summary.known_users),
            self.text("stats.consultations", count=summary.consultations),
            self._section("stats.per_day", ((self.date(d), n) for d, n in summary.per_day)),
            self._section("stats.risks", summary.risks.items()),
            self._section("stats.rejections", rejections),
            self._section("stats.not_admitted", busy),
            self._section("stats.languages", summary.languages.items()),
            self.text(
                "stats.processing",
                p50=_or_dash(summary.processing_p50_ms),
                p95=_or_dash(summary.processing_p95_ms),
            ),
            self._section("stats.models", summary.model_versions.items()),
            self._section("stats.followups", follow_ups),
            self.text("stats.outbox", pending=summary.outbox_pending),
            self._section("stats.outbox_parked", summary.outbox_parked.items()),
        ]
        return "\n".join(sections)

    def reason(self, code: str) -> str:
        """Name a refusal reason (a quality issue, a rejection, busy) in words; a code
        without words of its own (a reason added later) is shown as it is."""
        key = f"reason.{code}"
        words = self._t(key)
        return code if words == key else words

    def follow_up_outcome(self, code: str) -> str:
        """Name a follow-up outcome ("pending", "yes/benign", ...) in words."""
        answer, _, diagnosis = code.partition("/")
        key = f"stats.followup.{answer}"
        words = self._t(key)
        words = answer if words == key else words
        if diagnosis:
            named = self._t(f"diagnosis.{diagnosis}")
            return f"{words}: {diagnosis if named == f'diagnosis.{diagnosis}' else named}"
        return words

    def _section(self, title_key: str, items: Iterable[tuple[str, int]]) -> str:
        lines = [self.text("stats.item", name=name, count=count) for name, count in items]
        return "\n".join([self._t(title_key), *(lines or [self._t("stats.none")])])


def _or_dash(value: int | None) -> str:
    return "-" if value is None else str(value)


def for_language(language: str | None) -> Replies:
    """Return the replies for a language or a Telegram ``language_code`` (English fallback)."""
    resolved = language_for(language)
    return Replies(translations(resolved).gettext, resolved)


def utf16_length(text: str) -> int:
    """Return the length Telegram counts: UTF-16 code units (an emoji may count two)."""
    return len(text.encode("utf-16-le")) // 2


def split_message(text: str, limit: int = TELEGRAM_TEXT_LIMIT) -> list[str]:
    """Split ``text`` at line boundaries into messages of at most ``limit`` (UTF-16) units.

    A single line longer than ``limit`` is cut inside the line, the only way to send it.
    """
    chunks: list[str] = []
    lines: list[str] = []
    size = 0
    for line in text.split("\n"):
        for piece in _cut(line, limit):
            length = utf16_length(piece)
            if lines and size + 1 + length > limit:
                chunks.append("\n".join(lines))
                lines, size = [], 0
            size += length + (1 if lines else 0)
            lines.append(piece)
    chunks.append("\n".join(lines))
    # A cut between paragraphs leaves blank lines at the edges; Telegram refuses blank text.
    return [chunk.strip("\n") for chunk in chunks if chunk.strip()] or [text]


def _cut(line: str, limit: int) -> list[str]:
    if utf16_length(line) <= limit:
        return [line]
    pieces: list[str] = []
    start, size = 0, 0
    for index, char in enumerate(line):
        width = utf16_length(char)
        if size + width > limit:
            pieces.append(line[start:index])
            start, size = index, 0
        size += width
    pieces.append(line[start:])
    return pieces

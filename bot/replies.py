"""Every user-facing string, rendered from a message key (pure: no I/O, no Telegram).

The texts live in gettext catalogues (``bot/locales/<lang>/LC_MESSAGES/messages.po``,
msgid = message key); handlers ask :func:`for_language` and never hold text of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime

from babel.dates import format_date
from babel.numbers import format_percent

from bot.answers import SIGNS, signs_of
from bot.db.models import Consultation
from bot.db.repository import PatientSummary, StatsSummary
from bot.doctor_report import ReportLine, Style
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
from bot.tracking import Change, Direction, Earlier
from inference.advice import Advice, Note, advise, paragraphs
from inference.types import QualityIssue, Risk

Translate = Callable[[str], str]
Plural = Callable[[str, str, int], str]
# Telegram refuses a message longer than this, counted in UTF-16 code units.
TELEGRAM_TEXT_LIMIT = 4096
COMMANDS = (
    "start",
    "help",
    "history",
    "report",
    "remind",
    "thumbnails",
    "language",
    "privacy",
    "forget",
)


def english(key: str) -> str:
    """Look up the English text for a message key."""
    return translations(DEFAULT_LANGUAGE).gettext(key)


class Replies:
    """Render replies in one language."""

    def __init__(
        self,
        translate: Translate = english,
        language: str = DEFAULT_LANGUAGE,
        ngettext: Plural | None = None,
    ) -> None:
        self._t = translate
        self.language = language
        self._n = ngettext or translations(DEFAULT_LANGUAGE).ngettext

    def text(self, key: str, **values: object) -> str:
        """Render one message by key, filling its placeholders.

        A message with plural forms takes its form from its one number: ``text("stats.title",
        days=30)`` is ``plural("stats.title", 30, days=30)``, never the singular by mistake.
        """
        numbers = [v for v in values.values() if isinstance(v, int) and not isinstance(v, bool)]
        if len(numbers) == 1 and self._n(key, key, 1) != key:
            return self.plural(key, numbers[0], **values)
        return _fill(self._t(key), values)

    def plural(self, key: str, n: int, **values: object) -> str:
        """Render a message whose words agree with the number ``n`` ("1 day", "5 дней"):
        the catalogue entry has one form per plural category of its language."""
        return _fill(self._n(key, key, n), values)

    def date(self, moment: date | datetime) -> str:
        """Format a date the way this language writes it: day, month in words, year.

        Not CLDR's "medium" form: in Russian it ends in "г." (a second full stop at the end
        of a sentence) and in Kazakh it reads "2026 ж. 03 жел.", which nobody writes.
        """
        day = moment.date() if isinstance(moment, datetime) else moment
        return format_date(day, "d MMMM y", locale=self.language)

    def percent(self, value: float) -> str:
        return format_percent(value, locale=self.language)

    # -- introductions -------------------------------------------------------------------

    def start(self, *, ask_consent: bool = False) -> list[str]:
        """The introduction as short messages (what I do; what I do not do; photo tips),
        and the consent question last, where its buttons go, for whoever has not agreed."""
        messages = [self._t("start"), self._t("start.limits"), self._t("photo_tips")]
        return [*messages, self.consent()] if ask_consent else messages

    def help(self) -> str:
        return self._t("help").format(photo_tips=self._t("photo_tips"))

    def pointer(self) -> str:
        return self._t("pointer")

    def error(self) -> str:
        return self._t("error")

    def heatmap_caption(self) -> str:
        return self._t("heatmap_caption")

    def consent(self) -> str:
        """The terms and the question, for whoever has not agreed."""
        return f"{self._t('consent')}\n\n{self._t('consent.question')}"

    def consent_required(self) -> str:
        return f"{self._t('consent.required')}\n\n{self.consent()}"

    def privacy(self, consented_at: datetime | None) -> str:
        """The terms; to someone who agreed, when, and how to withdraw (not the question)."""
        if consented_at is None:
            return self.consent()
        return f"{self._t('consent')}\n\n{self.text('consent.given', date=self.date(consented_at))}"

    # -- screening results ---------------------------------------------------------------

    def outcome(self, outcome: Outcome, earlier: Earlier | None = None) -> str:
        """Render the text reply for any screening outcome (``earlier``: a higher result
        of the same named spot that still stands, see :mod:`inference.advice`)."""
        match outcome:
            case Assessed():
                advice = advise(
                    outcome.risk,
                    outcome.top_class,
                    earlier=earlier.risk if earlier else None,
                    tips=outcome.tips,
                )
                return self.assessed(advice, self.lesion_name(outcome), earlier)
            case Unassessable():
                return self.unassessable(outcome.issues, suspicious=outcome.suspicious)
            case Rejected():
                return self.rejected(outcome.reason)

    def lesion_name(self, outcome: Assessed) -> str:
        """Name the lesion type in this language, or as the model's metadata does."""
        key = f"lesion.{outcome.top_class}"
        name = self._t(key)
        return outcome.lesion_name if name == key else name

    def assessed(self, advice: Advice, lesion_name: str, earlier: Earlier | None = None) -> str:
        """Render an assessed result as the advice policy decided it."""
        if advice.level is Risk.UNASSESSABLE:
            raise ValueError("an unassessable photo has no risk level to render")
        held = None
        if Note.HELD in advice.notes and earlier is not None:
            held = self.text(
                "advice.note.held",
                date=self.date(earlier.at),
                label=earlier.label,
                level=self._t(f"level.{earlier.risk.value}"),
            )
        return "\n\n".join(paragraphs(advice, self.text, lesion_name=lesion_name, held=held))

    def unassessable(self, issues: tuple[QualityIssue, ...], *, suspicious: bool = False) -> str:
        """A refused photo: what to fix first, and what to do if the spot worries you (the
        policy, :func:`inference.advice.advise`, chooses the wording and the tips)."""
        advice = advise(Risk.UNASSESSABLE, None, issues=issues, suspicious=suspicious)
        return "\n\n".join(paragraphs(advice, self.text))

    def rejected(self, reason: RejectReason) -> str:
        return self._t(f"rejected.{reason.value}")

    def worker_outcome(
        self, outcome: Outcome, patient_code: str, earlier: Earlier | None = None
    ) -> str:
        """The short reply a health worker gets: patient, risk, type, one line of advice."""
        match outcome:
            case Assessed():
                advice = advise(
                    outcome.risk, outcome.top_class, earlier=earlier.risk if earlier else None
                )
                lines = [
                    self.text(
                        "worker.result",
                        code=patient_code,
                        level=self._t(f"level.{advice.level.value}"),
                        name=self.lesion_name(outcome),
                    ),
                    self._t(f"advice_short.{advice.action.value}"),
                ]
                if advice.warning_signs:
                    lines.append(self._t("advice_short.warning_signs"))
                return "\n".join([*lines, self._t("worker.disclaimer")])
            case Unassessable(suspicious=True):
                return self.text("worker.unassessable_suspicious", code=patient_code)
            case Unassessable():
                issue = outcome.issues[0].value if outcome.issues else None
                tip = self._t(f"issue.{issue}") if issue else self._t("issue.generic")
                return f"{self.text('worker.unassessable', code=patient_code)}\n{tip}"
            case Rejected():
                return self.rejected(outcome.reason)

    def consulted(self, reply: Consulted, *, heatmap: bool = False) -> str:
        """Render a stored consultation: the result, how a named spot changed, where to go
        if the risk is high, and how to name the spot; with ``heatmap``, what the heatmap
        it is the caption of shows, right after the result."""
        code = reply.subject.patient_code
        earlier = reply.tracked.earlier if reply.tracked is not None else None
        if reply.worker and code is not None:
            parts = [self.worker_outcome(reply.outcome, code, earlier)]
        else:
            parts = [self.outcome(reply.outcome, earlier)]
        if not isinstance(reply.outcome, Assessed):
            return "\n\n".join(parts)
        if heatmap:
            parts.append(self.heatmap_caption())
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
        """Say how a named spot changed since its previous photo: only a change beyond
        what two photos of one spot differ by chance is reported as one."""
        heading = self.text("track.compare", label=change.label, date=self.date(change.before_at))
        direction = change.direction
        if direction is Direction.SAME:
            return f"{heading}\n{self._t('track.same')}"
        if direction is Direction.UNMEASURED:
            return f"{heading}\n{self._t('track.unmeasured')}"
        lines = [
            heading,
            self.text(
                "track.risk_change",
                before=self._t(f"level.{change.risk_before.value}"),
                after=self._t(f"level.{change.risk_after.value}"),
            ),
        ]
        if change.probability_before is not None and change.probability_after is not None:
            lines.append(
                self.text(
                    "track.probability_change",
                    before=self.percent(change.probability_before),
                    after=self.percent(change.probability_after),
                )
            )
        advice = self._t("track.worse" if direction is Direction.WORSE else "track.lower")
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

    # -- report for the doctor -----------------------------------------------------------

    def report(
        self,
        checks: Sequence[Consultation],
        *,
        made_at: datetime,
        type_names: Mapping[str, str],
        patient_code: str | None = None,
    ) -> list[ReportLine]:
        """What the report for the doctor says: each assessed check with its date, spot,
        result, likely type and advice, then why there is no photo and the disclaimer.

        ``type_names``: the model's own words for a class this catalogue has no name for.
        """
        lines = [ReportLine(self._t("report.title"), Style.TITLE)]
        if patient_code is not None:
            lines.append(ReportLine(self.text("report.patient", code=patient_code)))
        lines.append(ReportLine(self.text("report.intro", date=self.date(made_at))))
        for row in checks:
            if row.risk not in (Risk.LOW, Risk.MEDIUM, Risk.HIGH) or row.top_class is None:
                continue  # only assessed checks have a result to show
            when = self.date(row.created_at)
            heading = (
                self.text("report.check_named", date=when, label=row.lesion_label)
                if row.lesion_label
                else when
            )
            advice = advise(Risk(row.risk), row.top_class, signs=signs_of(row.answers))
            name_key = f"lesion.{row.top_class}"
            name = self._t(name_key)
            if name == name_key:
                name = type_names.get(row.top_class, row.top_class)
            lines += [
                ReportLine(heading, Style.HEADING),
                ReportLine(self._t(f"risk.{advice.level.value}")),
                ReportLine(self.text("result.lesion_type", name=name)),
                *(ReportLine(self._t(f"advice.note.{n.value}")) for n in advice.notes),
                ReportLine(self._t(f"advice.{advice.action.value}")),
            ]
            if advice.warning_signs:
                lines.append(ReportLine(self._t("advice.warning_signs")))
            lines += [ReportLine(text) for text in self.answers(row.answers)]
        lines += [
            ReportLine(self._t("report.no_photo"), Style.NOTE),
            ReportLine(self._t("disclaimer"), Style.NOTE),
        ]
        return lines

    def answers(self, answers: Mapping[str, object] | None) -> list[str]:
        """The answers to the optional questions, one line each (none: nothing)."""
        lines = []
        for step in ("site", "age"):
            code = (answers or {}).get(step)
            if isinstance(code, str):
                value = self._t(f"questions.{step}.{code}")
                lines.append(self.text(f"report.answer.{step}", value=value))
        signs = [sign for sign in SIGNS if sign in signs_of(answers)]
        if signs:
            names = ", ".join(self._t(f"questions.sign.{sign}") for sign in signs)
            lines.append(self.text("report.answer.signs", value=names))
        return lines

    # -- follow-up -----------------------------------------------------------------------

    def follow_up(self, checked_at: datetime, label: str | None) -> str:
        """Ask whether the person saw a doctor about one spot: which one, and when."""
        return self.follow_ups([(checked_at, label)])

    def follow_ups(self, checks: Sequence[tuple[datetime, str | None]]) -> str:
        """Ask once about every spot whose follow-up is due: each named, with its date."""
        if len(checks) == 1:
            [(checked_at, label)] = checks
            spot = (
                self.text("followup.spot", label=label)
                if label
                else self._t("followup.spot_unnamed")
            )
            return self.text("followup.ask", date=self.date(checked_at), spot=spot)
        lines = [
            self.text("followup.line_named", label=label, date=self.date(at))
            if label
            else self.text("followup.line_unnamed", date=self.date(at))
            for at, label in checks
        ]
        return self.text("followup.ask_many", spots="\n".join(lines))

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
            self._section("stats.given_up", summary.inbox_given_up.items()),
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


def _fill(template: str, values: dict[str, object]) -> str:
    if not values:
        return template
    for name, value in values.items():
        # A value that ends a sentence itself ("3 дек. 2026 г.") takes the place of the
        # template's own full stop: never "г..".
        if isinstance(value, str) and value.endswith("."):
            template = template.replace(f"{{{name}}}.", f"{{{name}}}")
    return template.format(**values)


def _or_dash(value: int | None) -> str:
    return "-" if value is None else str(value)


def for_language(language: str | None) -> Replies:
    """Return the replies for a language or a Telegram ``language_code`` (English fallback)."""
    resolved = language_for(language)
    catalogue = translations(resolved)
    return Replies(catalogue.gettext, resolved, catalogue.ngettext)


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

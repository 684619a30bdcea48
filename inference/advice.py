"""The advice policy: what a result tells a person to do, decided in one place (pure).

:func:`advise` maps the model's risk level, its most likely lesion type and the photo
gate's outcome to the level the reply shows and the advice it gives; ``bot.replies`` only
renders the :class:`Advice`. Nothing else in the bot chooses advice, so two parts of one
reply cannot contradict each other. Every combination is listed in docs/advice.md
(``python -m bot.advice_doc --write`` writes it from this module).

Decisions, and why:

* **A skin cancer named as the likely type lifts the level to high.** The level comes from
  the summed malignant probability and the type from the single largest class; when the
  largest class is a cancer but the sum stays under the high cut-off, the reply used to
  say "melanoma" and "in the coming weeks" together. Of the two ways out (lift the level,
  or leave the type unnamed) lifting is the one that errs towards a doctor's look, which
  is the side a screening aid must err on; hiding the type would also hide what the model
  saw from the doctor the person shows the reply to.
* **Actinic keratosis / Bowen's disease (``akiec``) has its own advice**: have it looked at,
  not urgently. It is a sun-damage lesion that can turn into a skin cancer, so "watch it
  monthly" is too little and "within 2 weeks" too much; a low level with ``akiec`` on top
  is shown as medium so that the level and the advice agree. A high level stays high:
  the sum that made it high includes the cancers.
* **A harmless type with a medium or high level says why**: the type is only the single
  most likely class, while the level weighs every cancer class together.
* **Every reply that is not "low" lists the warning signs** (changes, bleeds, itches,
  does not heal); the low advice already contains them, and so do the refusal texts.
* **A refused photo in which the classifier saw high malignancy** (at least the model's
  high cut-off, :func:`is_suspicious`) is not "no skin spot": it says it cannot assess the
  photo and to see a doctor if the spot is new, changing, bleeding or worrying, with only
  the tips a new photo could fix. Refusals never name a type.
* **"Not a skin spot" first stands alone**: a photo that shows no spot at all (a
  screenshot, a page) gets no glare or focus tips beside the point.
* **A spot the person says has changed, grown or bled** gets that warning added to its
  advice (the bot's optional questions, ``bot.answers``); the answers do not change the
  level, as no held-out measurement shows they would help the model.
* **An earlier, higher result of the same named spot is not cancelled by a lower one**
  (two photos of one spot differ by chance): the advice follows the highest recent
  result until a doctor's answer in the follow-up says otherwise (``bot.tracking``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from inference.types import QualityIssue, Risk, ScreeningResult

# Skin cancers: melanoma, basal cell carcinoma, squamous cell carcinoma (``scc`` appears
# once the model separates it from actinic keratosis).
CANCER_CLASSES = frozenset({"mel", "bcc", "scc"})
# Actinic keratosis and Bowen's disease: can become a skin cancer, not urgent.
PRECANCER_CLASSES = frozenset({"akiec"})
BENIGN_CLASSES = frozenset({"nv", "bkl", "df", "vasc"})
_RANK = {Risk.LOW: 0, Risk.MEDIUM: 1, Risk.HIGH: 2}


class Action(StrEnum):
    """What to do; the reply's advice text is ``advice.<action>`` (an assessed photo) or
    the refusal's own wording (RETAKE, CANNOT_ASSESS)."""

    HIGH = "high"  # see a doctor within 2 weeks
    MEDIUM = "medium"  # have it checked in the coming weeks
    PRECANCER = "akiec"  # have it looked at, not urgent
    LOW = "low"  # watch it monthly (ABCDE)
    RETAKE = "retake"  # the photo could not be assessed: take another
    CANNOT_ASSESS = "cannot_assess"  # refused, but the classifier saw high malignancy


class Note(StrEnum):
    """Why the advice is what it is, when the level and the type alone do not say it;
    each is ``advice.note.<note>`` in the reply."""

    BENIGN_BUT_UNSURE = "benign_but_unsure"
    HELD = "held"  # an earlier, higher result of the same spot still stands
    SIGN_CHANGED = "sign_changed"  # the person said it has changed or grown
    SIGN_BLED = "sign_bled"  # the person said it has bled


# The answers to the bot's questions (codes of ``bot.answers.SIGNS``) that add a warning.
SIGN_NOTES: Mapping[str, Note] = {
    "changed": Note.SIGN_CHANGED,
    "grown": Note.SIGN_CHANGED,
    "bled": Note.SIGN_BLED,
}


@dataclass(frozen=True)
class Advice:
    level: Risk  # the level the reply shows (UNASSESSABLE for a refused photo)
    action: Action
    notes: tuple[Note, ...] = ()
    # Add the warning-signs paragraph (changes, bleeds, itches, does not heal); False where
    # the advice or refusal text already lists them.
    warning_signs: bool = True
    name_type: bool = True  # name the likely type (never on a refused photo)
    # A refused photo: the gate's issues to give a tip for, most important first. An
    # answered one: the first retake tip of the gate's advisory rules (the result stands;
    # the next photo can be better).
    tips: tuple[QualityIssue, ...] = ()


def rank(risk: Risk) -> int:
    """Order the three assessed levels (an unassessable one ranks nowhere)."""
    return _RANK[risk]


def is_suspicious(malignant_probability: float | None, high_cutoff: float) -> bool:
    """The classifier, which judges every photo, saw high malignancy in it (used for a
    photo the gate refused: such a refusal says "see a doctor if it worries you")."""
    return malignant_probability is not None and malignant_probability >= high_cutoff


def advise(
    risk: Risk,
    top_class: str | None,
    *,
    issues: tuple[QualityIssue, ...] = (),
    suspicious: bool = False,
    earlier: Risk | None = None,
    signs: frozenset[str] = frozenset(),
    tips: tuple[QualityIssue, ...] = (),
) -> Advice:
    """The advice for one result.

    ``risk`` is the model's level (UNASSESSABLE when the gate refused the photo, then
    ``issues`` are the gate's reasons, most important first); ``suspicious`` says the
    classifier still saw high malignancy in a refused photo; ``earlier`` is the highest
    recent level of the same named spot that no doctor's answer has overruled (None when
    there is none); ``signs`` what the person answered about the spot (``bot.answers``
    codes): a change or bleeding adds its warning, never a different level; ``tips`` the
    retake tips of the gate's advisory rules that fired on an answered photo (the first is
    given, with the answer).
    """
    if risk is Risk.UNASSESSABLE:
        return _refusal(issues, suspicious=suspicious)
    level = risk
    if top_class in CANCER_CLASSES:
        level = Risk.HIGH
    elif top_class in PRECANCER_CLASSES and level is Risk.LOW:
        level = Risk.MEDIUM
    notes: list[Note] = []
    if top_class in BENIGN_CLASSES and level is not Risk.LOW:
        notes.append(Note.BENIGN_BUT_UNSURE)
    action = _action(level, top_class)
    if earlier is not None and earlier is not Risk.UNASSESSABLE and rank(earlier) > rank(level):
        notes.append(Note.HELD)
        action = _action(earlier, None)
    reported = {SIGN_NOTES[sign] for sign in signs if sign in SIGN_NOTES}
    notes += [note for note in (Note.SIGN_CHANGED, Note.SIGN_BLED) if note in reported]
    return Advice(
        level=level,
        action=action,
        notes=tuple(notes),
        warning_signs=action is not Action.LOW,
        tips=tips[:1],
    )


def advise_result(result: ScreeningResult, high_cutoff: float) -> Advice:
    """The advice for one pipeline result (the offline CLI's path; the bot goes through
    its stored outcome, which carries the same three facts)."""
    prediction = result.prediction
    if result.risk is Risk.UNASSESSABLE or prediction is None:
        malignant = prediction.malignant_probability if prediction else None
        return advise(
            Risk.UNASSESSABLE,
            None,
            issues=result.quality.issues,
            suspicious=is_suspicious(malignant, high_cutoff),
        )
    return advise(result.risk, prediction.top_class, tips=result.quality.tips)


def _refusal(issues: tuple[QualityIssue, ...], *, suspicious: bool) -> Advice:
    if issues and issues[0] is QualityIssue.NOT_A_LESION:
        issues = issues[:1]
    tips: tuple[QualityIssue, ...] = issues
    action = Action.RETAKE
    if suspicious:
        # "No skin spot" would contradict what the classifier saw; other tips still help.
        tips = tuple(issue for issue in issues if issue is not QualityIssue.NOT_A_LESION)
        action = Action.CANNOT_ASSESS
    return Advice(
        level=Risk.UNASSESSABLE, action=action, warning_signs=False, name_type=False, tips=tips
    )


def _action(level: Risk, top_class: str | None) -> Action:
    if level is Risk.HIGH:
        return Action.HIGH
    if top_class in PRECANCER_CLASSES:
        return Action.PRECANCER
    return Action.MEDIUM if level is Risk.MEDIUM else Action.LOW


class Render(Protocol):
    """A message key and its placeholder values -> text in one language."""

    def __call__(self, key: str, **values: object) -> str: ...


def paragraphs(
    advice: Advice, text: Render, *, lesion_name: str = "", held: str | None = None
) -> list[str]:
    """The reply's paragraphs, in order, for ``advice`` (the wording is the catalogues').

    ``lesion_name`` names the likely type in the reply's language; ``held`` is the
    rendered ``advice.note.held`` (it needs the earlier result's date and spot name, which
    only the bot has): without it that note is left out.
    """
    tips = "\n".join(f"• {text(f'issue.{issue.value}')}" for issue in advice.tips)
    if advice.action is Action.CANNOT_ASSESS:
        parts = [text("unassessable.suspicious")]
        if tips:
            parts += [tips, text("unassessable.retake")]
        return [*parts, text("disclaimer")]
    if advice.action is Action.RETAKE:
        return [
            text("unassessable"),
            tips or text("issue.generic"),
            text("unassessable.retake"),
            text("unassessable.doctor"),
        ]
    parts = [text(f"risk.{advice.level.value}")]
    if advice.name_type:
        parts.append(text("result.lesion_type", name=lesion_name))
    for note in advice.notes:
        if note is Note.HELD:
            if held is not None:
                parts.append(held)
        else:
            parts.append(text(f"advice.note.{note.value}"))
    parts.append(text(f"advice.{advice.action.value}"))
    if advice.warning_signs:
        parts.append(text("advice.warning_signs"))
    parts += [text("result.tip", tip=text(f"issue.{tip.value}")) for tip in advice.tips]
    parts.append(text("disclaimer"))
    return parts

"""The advice policy: one place decides, and every reply in every language follows it."""

from __future__ import annotations

import re
from datetime import date, datetime

import pytest

from bot.advice_doc import DOC_PATH, assessed_cases, refused_cases, render
from bot.i18n import LANGUAGES
from bot.replies import for_language
from bot.screening import Assessed
from bot.tracking import Earlier
from inference.advice import BENIGN_CLASSES, CANCER_CLASSES, Action, Note, advise
from inference.types import QualityIssue, Risk
from tests.results import screening_result

# The words each language's warning signs must contain: bleeding, and not healing.
WARNING_WORDS = {
    "en": ("bleeds", "does not heal"),
    "ru": ("кровоточит", "не заживает"),
    "kk": ("қанаса", "жазылмаса"),
}
# Latin words allowed in a Russian or Kazakh reply ("other": the unknown class in the table).
LATIN_ALLOWED = {"ABCDE", "GP", "Telegram", "other"}


def test_the_table_in_docs_is_what_the_code_says() -> None:
    """docs/advice.md is regenerated from the policy: `python -m bot.advice_doc --write`."""
    assert DOC_PATH.read_text(encoding="utf-8") == render()


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_assessed_reply_follows_the_policy(language: str) -> None:
    """Walk every level x type: a named cancer gets the high advice, a harmless type with
    a worrying level says why, every reply that is not low lists the warning signs, the
    disclaimer is always there, and nothing is left unformatted or in English."""
    replies = for_language(language)
    for level, top, outcome in assessed_cases():
        text = replies.outcome(outcome)
        advice = advise(level, top)
        where = f"{language} {level} {top}"
        assert replies.text("disclaimer") in text, where
        assert replies.text(f"risk.{advice.level.value}") in text, where
        assert replies.text(f"advice.{advice.action.value}") in text, where
        if top in CANCER_CLASSES:
            assert advice.level is Risk.HIGH and advice.action is Action.HIGH, where
            assert replies.text("advice.high") in text, where
            assert replies.text("risk.high") in text, where
        if top in BENIGN_CLASSES and advice.level is not Risk.LOW:
            assert replies.text("advice.note.benign_but_unsure") in text, where
        if top == "akiec" and level is not Risk.HIGH:
            assert replies.text("advice.akiec") in text, where
            assert replies.text("advice.medium") not in text, where
        if advice.level is not Risk.LOW:
            assert all(word in text for word in WARNING_WORDS[language]), where
        _assert_clean(text, language, where)


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_refusal_says_what_to_do_if_the_spot_worries_you(language: str) -> None:
    """Walk every refusal: the warning signs always; a suspicious one never "no skin spot"
    but "cannot assess, see a doctor if it is new or changing"; a photo that shows no spot
    at all gets no photo-technique tips beside the point (a screenshot, no glare tip)."""
    replies = for_language(language)
    for issues, suspicious, outcome in refused_cases():
        text = replies.outcome(outcome)
        where = f"{language} {issues} {suspicious}"
        assert all(word in text for word in WARNING_WORDS[language]), where
        if suspicious:
            assert replies.text("unassessable.suspicious") in text, where
            assert replies.text("issue.not_a_lesion") not in text, where
            assert replies.text("disclaimer") in text, where
        else:
            assert replies.text("unassessable.suspicious") not in text, where
        if issues[:1] == (QualityIssue.NOT_A_LESION,):
            assert replies.text("issue.glare") not in text, where
        _assert_clean(text, language, where)


@pytest.mark.parametrize("language", LANGUAGES)
def test_health_workers_get_the_same_policy_in_short(language: str) -> None:
    replies = for_language(language)
    for level, top, outcome in assessed_cases():
        text = replies.worker_outcome(outcome, "P1")
        advice = advise(level, top)
        assert replies.text(f"advice_short.{advice.action.value}") in text
        assert replies.text(f"level.{advice.level.value}") in text
        assert (replies.text("advice_short.warning_signs") in text) is advice.warning_signs
        assert replies.text("worker.disclaimer") in text
    for _, suspicious, outcome in refused_cases():
        text = replies.worker_outcome(outcome, "P1")
        assert (replies.text("worker.unassessable_suspicious", code="P1") == text) is suspicious


def test_a_lower_result_does_not_replace_an_earlier_higher_one() -> None:
    """High on an earlier photo of the spot, low now: the high advice, with why."""
    advice = advise(Risk.LOW, "nv", earlier=Risk.HIGH)
    assert advice.level is Risk.LOW  # the photo's own result is still shown as it is
    assert advice.action is Action.HIGH and Note.HELD in advice.notes and advice.warning_signs
    assert advise(Risk.HIGH, "nv", earlier=Risk.MEDIUM).action is Action.HIGH
    assert Note.HELD not in advise(Risk.MEDIUM, "nv", earlier=Risk.MEDIUM).notes
    assert advise(Risk.LOW, "nv", earlier=None).action is Action.LOW
    earlier = Earlier(label="calf", risk=Risk.HIGH, at=datetime(2026, 12, 3))
    for language in LANGUAGES:
        replies = for_language(language)
        text = replies.outcome(Assessed(Risk.LOW, "nv", "mole", None), earlier)
        assert replies.text("advice.high") in text
        assert replies.text("advice.low") not in text
        assert "«calf»" in text or "“calf”" in text
        assert ".." not in text


def test_dates_never_end_in_a_second_full_stop() -> None:
    ru = for_language("ru")
    text = ru.text("consent.given", date="3 дек. 2026 г.")
    assert "г.." not in text and "г. Чтобы" in text
    assert ru.date(date(2026, 12, 3)) == "3 декабря 2026"
    assert for_language("kk").date(date(2026, 12, 3)) == "3 желтоқсан 2026"


def _assert_clean(text: str, language: str, where: str) -> None:
    assert "{" not in text and "}" not in text, where
    assert ".." not in text, where
    if language != "en":
        latin = set(re.findall(r"[A-Za-z]{2,}", text)) - LATIN_ALLOWED
        assert not latin, (where, latin)


def test_the_screening_service_marks_refused_photos_the_classifier_judged_high_risk() -> None:
    """PAD PAT_340_714_314, a melanoma filling the frame, was refused as "not a skin spot"
    with p(malignant) 0.84: such a refusal is marked suspicious (at the model's high cut-off
    and above), so its reply says "cannot assess; see a doctor if it worries you"."""
    from bot.screening import ScreeningService, Unassessable, _Screened
    from inference.pipeline import Screener

    service = ScreeningService.__new__(ScreeningService)
    service._screener = Screener()  # the real model's metadata: its own high cut-off
    high = service.metadata.thresholds.high
    refused = (QualityIssue.NOT_A_LESION,)
    for malignant, expected in ((high, True), (min(high + 0.05, 1.0), True), (high - 0.01, False)):
        verdict = screening_result(Risk.UNASSESSABLE, "mel", malignant, refused)
        outcome = service._outcome(_Screened(verdict, None, 0))  # type: ignore[arg-type]
        assert outcome == Unassessable(refused, suspicious=expected), malignant
        text = for_language("en").outcome(outcome)
        assert (for_language("en").text("issue.not_a_lesion") in text) is not expected
    # An assessed photo whose likely type is a cancer is stored and answered as high.
    verdict = screening_result(Risk.MEDIUM, "mel", 0.3, ())
    outcome = service._outcome(_Screened(verdict, None, 0))  # type: ignore[arg-type]
    assert isinstance(outcome, Assessed) and outcome.risk is Risk.HIGH


def test_answers_keep_to_the_known_codes_and_a_reported_change_adds_its_warning() -> None:
    from bot.answers import export_cell, signs_of, with_answer

    answers = with_answer(None, "site", "arm")
    answers = with_answer(answers, "site", "<b>forged</b>")  # unknown: no change
    answers = with_answer(answers, "sign", "bled")
    answers = with_answer(answers, "sign", "grown")
    answers = with_answer(answers, "sign", "bled")  # a second press takes it back
    assert answers == {"site": "arm", "signs": ["grown"]}
    assert export_cell(answers) == "site=arm;signs=grown"
    advice = advise(Risk.LOW, "nv", signs=signs_of(answers))
    assert Note.SIGN_CHANGED in advice.notes and Note.SIGN_BLED not in advice.notes
    assert advice.level is Risk.LOW  # a warning added, not a different level

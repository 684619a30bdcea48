"""The message catalogues: complete in every language, placeholders intact, keys all used."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from bot.admission import BusyReason
from bot.answers import AGES, SIGNS, SITES
from bot.db.repository import OUTCOMES
from bot.handlers.reminders import DIAGNOSES, REMIND_CHOICES, SAW_DOCTOR
from bot.handlers.thumbnails import THUMBNAIL_CHOICES
from bot.i18n import LANGUAGES, catalogue_path, language_for, read_catalogue
from bot.profile import MENUS
from bot.replies import COMMANDS, for_language
from bot.screening import UnsupportedMedia
from inference.advice import BENIGN_CLASSES, CANCER_CLASSES, PRECANCER_CLASSES, Action, Note
from inference.types import DecodeFailure, QualityIssue, Risk

BOT_DIR = Path(__file__).resolve().parents[2] / "bot"
# The offline CLI reads the same catalogues (inference/texts.py).
INFERENCE_DIR = BOT_DIR.parent / "inference"
ENGLISH = read_catalogue("en")


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


@pytest.mark.parametrize("language", [lang for lang in LANGUAGES if lang != "en"])
def test_every_message_is_translated_with_the_same_placeholders(language: str) -> None:
    """No key is missing or extra in ru/kk, none is empty or fuzzy, placeholders match."""
    translated = read_catalogue(language)
    assert set(translated) == set(ENGLISH)
    for key, text in translated.items():
        assert text.strip(), key
        assert placeholders(text) == placeholders(ENGLISH[key]), key
        # The translation is a translation: not English left in place (short labels aside).
        if len(ENGLISH[key]) > 40:
            assert text != ENGLISH[key], key


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_template_formats(language: str) -> None:
    """Each text renders with its own placeholders (no stray braces break str.format)."""
    for text in read_catalogue(language).values():
        text.format(**dict.fromkeys(placeholders(text), "x"))


def test_every_key_the_code_uses_exists() -> None:
    """Keys written in the code and the key families built from enums are all in English."""
    used: set[str] = set()
    for path in [*BOT_DIR.rglob("*.py"), *INFERENCE_DIR.rglob("*.py")]:
        used |= set(
            re.findall(
                r"""(?:text|_t|plural)\(\s*["']([a-z_]+\.[a-z_.]+|[a-z_]+)["']""", path.read_text()
            )
        )
    used |= {f"risk.{r.value}" for r in Risk if r is not Risk.UNASSESSABLE}
    used |= {
        f"{family}.{r}"
        for family in ("advice", "level", "advice_short")
        for r in ("low", "medium", "high")
    }
    used |= {f"issue.{issue.value}" for issue in QualityIssue}
    used |= {f"rejected.{reason.value}" for reason in (*DecodeFailure, *UnsupportedMedia)}
    used |= {f"command.{name}" for name in COMMANDS}
    used |= {f"followup.button.{answer}" for answer in SAW_DOCTOR}
    used |= {f"diagnosis.{dx}" for dx in DIAGNOSES}
    used |= {f"busy.{reason.value}" for reason in BusyReason}
    # /stats names every refusal reason, outcome and follow-up answer in words.
    used |= {
        f"reason.{code}"
        for code in (
            *QualityIssue,
            *DecodeFailure,
            *UnsupportedMedia,
            *(f"busy_{reason.value}" for reason in BusyReason),
            "unassessable",
            "failed",
        )
    }
    used |= {f"stats.outcome.{outcome}" for outcome in (*OUTCOMES, "not_admitted")}
    used |= {f"stats.followup.{answer}" for answer in (*SAW_DOCTOR, "pending", "unanswered")}
    used |= {"bot.description", "bot.short_description"}
    used |= {f"command.{name}" for menu in MENUS.values() for name in menu}
    # The advice policy's actions and notes (inference.advice), the optional questions' choices
    # (bot.answers), the /remind buttons, and the lesion types the policy knows.
    assessed_actions = [a for a in Action if a not in (Action.RETAKE, Action.CANNOT_ASSESS)]
    used |= {
        f"{family}.{a.value}" for family in ("advice", "advice_short") for a in assessed_actions
    }
    used |= {f"advice.note.{note.value}" for note in Note}
    used |= {f"questions.site.{code}" for code in SITES}
    used |= {f"questions.age.{code}" for code in AGES}
    used |= {f"questions.sign.{code}" for code in SIGNS}
    used |= {f"report.answer.{step}" for step in ("site", "age", "signs")}
    used |= {f"remind.button.{choice}" for choice in REMIND_CHOICES}
    used |= {f"thumbnails.{kind}{c}" for kind in ("", "now_", "button.") for c in THUMBNAIL_CHOICES}
    used |= {f"lesion.{code}" for code in (*CANCER_CLASSES, *PRECANCER_CLASSES, *BENIGN_CLASSES)}
    assert {"consent.agreed", "track.compare", "stats.chart_caption"} <= used  # scan works
    assert used - set(ENGLISH) == set()


def test_catalogue_files_have_no_fuzzy_entries() -> None:
    """A fuzzy entry is silently skipped at runtime, so none may be shipped."""
    for language in LANGUAGES:
        assert "#, fuzzy" not in catalogue_path(language).read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("ru", "ru"),
        ("kk", "kk"),
        ("ru-RU", "ru"),
        ("KK", "kk"),
        ("en-GB", "en"),
        ("de", "en"),
        (None, "en"),
        ("", "en"),
    ],
)
def test_telegram_language_codes_map_to_supported_languages(
    code: str | None, expected: str
) -> None:
    """Russian and Kazakh users get their language; everyone else English."""
    assert language_for(code) == expected


def test_russian_and_kazakh_replies_are_in_their_language() -> None:
    """The same reply renders differently per language, and English stays the default."""
    assert "not a diagnosis" in for_language("en").text("disclaimer")
    assert "не диагноз" in for_language("ru").text("disclaimer")
    assert "диагноз емес" in for_language("kk").text("disclaimer")


@pytest.mark.parametrize("language", LANGUAGES)
def test_plural_entries_have_every_form_of_their_language(language: str) -> None:
    """An entry with plural forms has exactly as many as the language's Plural-Forms."""
    with catalogue_path(language).open("rb") as file:
        catalog = read_po(file, locale=language)
    plural = [message for message in catalog if message.pluralizable and message.id]
    assert plural  # the scan works
    for message in plural:
        assert len(message.string) == catalog.num_plurals, message.id


def test_numbers_take_the_right_word_form() -> None:
    """ "(всего проверок: 2)" and "за последние дни (30)" are gone: numbers agree."""
    ru, en = for_language("ru"), for_language("en")
    days = [ru.plural("stats.title", n, days=n) for n in (1, 3, 5, 21)]
    assert days == [
        "За последний 1 день:",
        "За последние 3 дня:",
        "За последние 5 дней:",
        "За последний 21 день:",
    ]
    assert en.plural("stats.title", 1, days=1) == "Last 1 day:"
    assert en.plural("stats.title", 30, days=30) == "Last 30 days:"
    # Asked for as an ordinary message, a plural one still agrees with its number.
    assert en.text("stats.title", days=30) == "Last 30 days:"
    assert ru.text("export.caption", days=2).startswith("Проверки за последние 2 дня")

"""Message catalogues: gettext ``.po`` files under ``bot/locales``, compiled in memory.

The ``.po`` files are the source of truth (msgid = message key, msgstr = the text), so a
fresh clone needs no build step: each catalogue is read and compiled once, on first use.
"""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LOCALES_DIR = Path(__file__).resolve().parent / "locales"
DEFAULT_LANGUAGE = "en"
# Kazakh and Russian are what first users speak; English is the fallback.
LANGUAGES = ("en", "ru", "kk")
# Names as speakers of each language write them (never translated).
LANGUAGE_NAMES = {"en": "English", "ru": "Русский", "kk": "Қазақша"}
# Where a high-risk result looks for referral contacts when the administrator set none in
# the reader's language: contacts are mostly names, addresses and phone numbers, readable in
# another language; Russian is the one most Kazakh speakers also read, English the last resort.
REFERRAL_FALLBACK = {"kk": ("kk", "ru", "en"), "ru": ("ru", "en", "kk"), "en": ("en", "ru", "kk")}


def language_for(code: str | None) -> str:
    """Map a Telegram ``language_code`` (``ru``, ``kk``, ``ru-RU``...) to a supported language."""
    base = (code or "").split("-")[0].strip().lower()
    return base if base in LANGUAGES else DEFAULT_LANGUAGE


def catalogue_path(language: str) -> Path:
    """Return the ``.po`` file of ``language``."""
    return LOCALES_DIR / language / "LC_MESSAGES" / "messages.po"


def read_catalogue(language: str) -> dict[str, str]:
    """Return ``{message key: text}`` of one catalogue, skipping fuzzy and empty entries
    (an entry with plural forms: its forms, one per line)."""
    with catalogue_path(language).open("rb") as file:
        catalog = read_po(file, locale=language)
    texts: dict[str, str] = {}
    for message in catalog:
        if not message.id or not message.string or message.fuzzy:
            continue
        if message.pluralizable:
            # One form per plural category, keyed by the singular id; a form left empty
            # leaves the entry out, as an empty singular one is.
            forms = [str(form) for form in message.string]
            if all(forms):
                texts[str(message.id[0])] = "\n".join(forms)
        else:
            texts[str(message.id)] = str(message.string)
    return texts


@cache
def translations(language: str) -> Translations:
    """Return the compiled catalogue of ``language``; missing keys fall back to English."""
    if language not in LANGUAGES:
        raise ValueError(f"unsupported language {language!r}")
    with catalogue_path(language).open("rb") as file:
        catalog = read_po(file, locale=language)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    result = Translations(compiled, domain="messages")
    if language != DEFAULT_LANGUAGE:
        result.add_fallback(translations(DEFAULT_LANGUAGE))
    return result

"""The advice texts for the offline CLI, in English, Russian or Kazakh.

They are the bot's own texts: read with babel from the gettext catalogues in
``bot/locales`` (data files, not an import: ``inference/`` never imports ``bot``), so the
CLI and the bot say the same thing in the same words and a translation is fixed once.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from babel.messages.pofile import read_po

# bot/ and inference/ ship side by side (one distribution, one image).
LOCALES_DIR = Path(__file__).resolve().parents[1] / "bot" / "locales"
LANGUAGES = ("en", "ru", "kk")
DEFAULT_LANGUAGE = "en"


@cache
def _catalogue(language: str) -> dict[str, str]:
    path = LOCALES_DIR / language / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as file:
        catalog = read_po(file, locale=language)
    return {
        str(message.id): str(message.string)
        for message in catalog
        if message.id and message.string and not message.fuzzy
    }


class Texts:
    """Message keys rendered in one language; a key missing there falls back to English."""

    def __init__(self, language: str = DEFAULT_LANGUAGE) -> None:
        if language not in LANGUAGES:
            raise ValueError(f"unsupported language {language!r}")
        self.language = language

    def has(self, key: str) -> bool:
        return key in _catalogue(self.language) or key in _catalogue(DEFAULT_LANGUAGE)

    def text(self, key: str, **values: object) -> str:
        """The text of ``key`` with its placeholders filled; the key itself if unknown."""
        template = _catalogue(self.language).get(key) or _catalogue(DEFAULT_LANGUAGE).get(key, key)
        return template.format(**values) if values else template

"""Logging set-up: one stderr handler that never prints the token or message contents."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from urllib.parse import quote

_REDACTED = "[REDACTED]"
_HANDLER_NAME = "bot-stderr"
# Libraries whose DEBUG output dumps whole updates (user text, Telegram ids): they stay
# at INFO even when LOG_LEVEL=DEBUG.
_CONTENT_LOGGERS = ("telegram", "aiosqlite")
# httpx logs every request URL, token included, at INFO; SQLAlchemy logs SQL and its
# parameters at INFO; APScheduler (PTB's job queue) logs "Running job ..." at INFO for every
# run of the inbox job, every few seconds: most of the log, saying nothing.
_QUIET_LOGGERS = ("httpx", "httpcore", "sqlalchemy.engine", "apscheduler")


class RedactingFormatter(logging.Formatter):
    """Format records as usual, then blank out secrets.

    The token is part of every Bot API URL, so any library that logs a URL or an
    exception carrying one would otherwise leak it.
    """

    def __init__(self, fmt: str, secrets: Iterable[str]) -> None:
        super().__init__(fmt)
        plain = [s for s in secrets if s]
        # Also as it appears percent-encoded in file download URLs.
        self._secrets = tuple(dict.fromkeys([*plain, *(quote(s, safe="") for s in plain)]))

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        for secret in self._secrets:
            text = text.replace(secret, _REDACTED)
        return text


def configure_logging(level: str, secrets: Iterable[str]) -> None:
    """Send logs to stderr at ``level`` (DEBUG is for our code only), ``secrets`` redacted."""
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(
        RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", secrets)
    )
    root = logging.getLogger()
    # Replace only our own handler, so calling this twice is harmless.
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    floor = max(logging.getLevelName(level), logging.INFO)
    for name in _CONTENT_LOGGERS:
        logging.getLogger(name).setLevel(floor)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)

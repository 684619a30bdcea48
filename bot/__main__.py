"""``python -m bot``: settings -> logging -> application -> long polling (or a webhook server,
when ``WEBHOOK_URL`` is set) until SIGTERM/SIGINT.

``python -m bot migrate`` brings the database schema to head and exits (a deploy step run
once before the replicas; needs only DATABASE_URL). ``python -m bot --check`` loads the
settings and the model, then exits.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from urllib.parse import urlsplit

from pydantic import ValidationError
from sqlalchemy.engine import make_url
from telegram.error import InvalidToken

from bot.app import ALLOWED_UPDATES, build_application
from bot.config import DatabaseSettings, Settings, describe_settings_error
from bot.db.migrate import upgrade_to_head
from bot.db.session import create_engine
from bot.keys import KeySetupError
from bot.log import configure_logging
from bot.webhook import guard_webhook_server
from inference.pipeline import Screener

logger = logging.getLogger("bot")

# Exit status for unusable settings, as argparse uses for a bad command line.
EXIT_BAD_SETTINGS = 2
# Telegram refused the token (revoked, rotated or mistyped).
EXIT_BAD_TOKEN = 3
# Anything else that stopped the bot; the log has the (redacted) details.
EXIT_FAILED = 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bot (or the health check) and return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m bot", description=__doc__)
    parser.add_argument(
        "command",
        nargs="?",
        choices=("run", "migrate"),
        default="run",
        help="run the bot (default), or migrate the database and exit",
    )
    parser.add_argument(
        "--check", action="store_true", help="load the settings and the model, then exit"
    )
    args = parser.parse_args(argv)
    # PTB 22 gives durations (RetryAfter.retry_after) as timedelta with this set, and warns
    # on every flood-control answer without it; PTB 23 will always do so.
    os.environ.setdefault("PTB_TIMEDELTA", "1")
    if args.command == "migrate":
        return _migrate()
    try:
        settings = Settings()  # type: ignore[call-arg]  # fields come from the environment
    except ValidationError as error:
        sys.stderr.write(describe_settings_error(error) + "\n")
        return EXIT_BAD_SETTINGS
    configure_logging(
        settings.log_level, secrets=[*settings.secrets(), *_database_password(settings)]
    )

    if args.check:
        screener = Screener(settings.model_path, threads=1)
        logger.info("Settings and model %s load fine", screener.metadata.version)
        return 0
    # Errors out of the run are caught here: Python's default hook would print them
    # without the redacting formatter, and Telegram's InvalidToken quotes the whole token.
    try:
        _run(settings)
    except InvalidToken:
        sys.stderr.write(
            "Telegram refused the bot token: TELEGRAM_BOT_TOKEN is mistyped, or was revoked "
            "or rotated with @BotFather. Set the current token and start again.\n"
        )
        return EXIT_BAD_TOKEN
    except KeySetupError as error:
        sys.stderr.write(f"{error}\n")
        return EXIT_BAD_SETTINGS
    except Exception:
        logger.critical("The bot stopped on an unexpected error", exc_info=True)
        return EXIT_FAILED
    return 0


def _run(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT: long polling, or a webhook server with WEBHOOK_URL."""
    updates = ALLOWED_UPDATES
    # SIGTERM/SIGINT are the application's own (a graceful stop), not PTB's.
    application = build_application(settings, handle_signals=True)
    if settings.webhook_url is None:
        application.run_polling(allowed_updates=updates, stop_signals=None)
        return
    assert settings.webhook_secret is not None  # the settings refuse a webhook without one
    # Before PTB builds its server: the secret checked before a body is read, bodies capped.
    guard_webhook_server(settings.webhook_secret.get_secret_value())
    logger.info("Webhook mode, listening on %s:%d", settings.webhook_listen, settings.webhook_port)
    application.run_webhook(
        listen=settings.webhook_listen,
        port=settings.webhook_port,
        url_path=urlsplit(settings.webhook_url).path.lstrip("/"),
        webhook_url=settings.webhook_url,
        secret_token=settings.webhook_secret.get_secret_value(),
        allowed_updates=updates,
        stop_signals=None,
    )


def _database_password(settings: DatabaseSettings) -> list[str]:
    """The password in DATABASE_URL, if any: a driver error may quote the URL."""
    password = make_url(settings.database_url).password
    return [str(password)] if password else []


def _migrate() -> int:
    try:
        settings = DatabaseSettings()
    except ValidationError as error:
        sys.stderr.write(describe_settings_error(error) + "\n")
        return EXIT_BAD_SETTINGS
    configure_logging("INFO", secrets=_database_password(settings))

    async def migrate() -> None:
        engine = create_engine(settings.database_url)
        try:
            await upgrade_to_head(engine)
        finally:
            await engine.dispose()

    asyncio.run(migrate())
    logger.info("Database schema is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())

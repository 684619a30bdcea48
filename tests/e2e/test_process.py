"""``python -m bot`` as a real process: start-up, an answer, a clean SIGTERM exit, bad settings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import stat
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from aiohttp import ClientSession
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bot.__main__ import EXIT_BAD_SETTINGS, EXIT_BAD_TOKEN, main
from bot.config import Settings
from bot.db.migrate import MIGRATION_LOCK_KEY, alembic_config, upgrade_to_head
from bot.db.repository import UserRepository
from bot.db.session import create_engine, create_session_factory
from bot.keys import KEY_FILE_NAME
from tests.conftest import REPO_ROOT
from tests.e2e import images
from tests.e2e.conftest import fresh_postgres_database
from tests.e2e.processes import (
    BOT_ENV_NAMES,
    bot_env,
    bot_process,
    free_port,
    http_get,
    stop,
    wait_until_ready,
)
from tests.fakes.telegram_api import TOKEN, FakeTelegramApi

USER_ID = 918_273_645  # distinctive, to look for in the logs
# /start to a newcomer: what the bot does, what it does not, photo tips, consent.
START_MESSAGES = 4


# 32 random bytes (64 hex digits), as USER_KEY_SECRET must hold.
REPLICA_SECRET = "8c3f1a6d9e2b5c7f0a4d8e1b6c9f2a5d7e0b3c6f9a2d5e8b1c4f7a0d3e6b9c2f"


async def test_bot_process_answers_and_exits_cleanly_on_sigterm(
    fresh_api: FakeTelegramApi, tmp_path: Path, lesion_jpegs: dict[str, bytes]
) -> None:
    """A fresh machine, DEBUG logs: it answers, stops on SIGTERM, logs no token and no id."""
    database = tmp_path / "fresh" / "bot.db"
    log_path = tmp_path / "bot.log"
    health = free_port()
    env = bot_env(
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_API_URL=fresh_api.url,
        DATABASE_URL=f"sqlite+aiosqlite:///{database}",
        LOG_LEVEL="DEBUG",
        HEALTH_PORT=str(health),
    )
    async with bot_process(env, tmp_path, log_path) as process:
        fresh_api.push_text(USER_ID, "/start")
        # /start: a few short messages, the consent question (with its buttons) last.
        await fresh_api.wait_for_text(USER_ID, count=START_MESSAGES, within_s=180)
        reply = fresh_api.last_with_buttons(USER_ID)
        assert "not a diagnosis" in (reply.text or "")
        fresh_api.push_callback(USER_ID, reply, "consent:agree")
        await fresh_api.wait_for_text(USER_ID, count=START_MESSAGES + 1, within_s=180)
        photo = fresh_api.add_file(images.phone_like_photo(lesion_jpegs["ISIC_0024380_nv"]))
        fresh_api.push_message(USER_ID, document={**photo.as_dict(), "mime_type": "image/jpeg"})
        replies = await fresh_api.wait_for_text(USER_ID, count=START_MESSAGES + 2, within_s=180)
        assert "not a diagnosis" in (replies[-1].text or "")
        # In polling mode too: alive, ready, and the photo counted.
        assert await http_get(health, "/healthz") == (200, "ok\n")
        assert await http_get(health, "/readyz") == (200, "ready\n")
        status, metrics = await http_get(health, "/metrics")
        assert status == 200 and "bot_photos_screened_total{outcome=" in metrics
        returncode = await stop(process)

    output = log_path.read_text()
    assert returncode == 0, output[-3000:]
    assert database.exists()
    # No USER_KEY_SECRET on a fresh machine: one is generated beside the data, owner-only.
    key_file = database.parent / KEY_FILE_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "Consultation 1: " in output
    assert "Bot stopped" in output
    assert "Traceback" not in output
    assert TOKEN not in output
    assert TOKEN.split(":")[1] not in output  # nor its secret half, nor URL-encoded
    assert str(USER_ID) not in output
    # The job queue's scheduler logs only warnings: its "Running job" lines, one for every
    # run of the inbox job, were most of the log.
    assert " apscheduler" not in output


async def test_a_lost_key_file_stops_the_bot_with_a_clear_message(
    fresh_api: FakeTelegramApi, tmp_path: Path
) -> None:
    """A database with users, and its user_key_secret file gone: the bot exits with the
    bad-settings status and says how to recover; it writes no new secret (on main it
    wrote "user-key:" + the live token, cutting every user off from their data)."""
    database = tmp_path / "data" / "bot.db"
    url = f"sqlite+aiosqlite:///{database}"
    engine = create_engine(url)
    try:
        await upgrade_to_head(engine)
        async with create_session_factory(engine).begin() as session:
            await UserRepository(session).get_or_add("f" * 64)
    finally:
        await engine.dispose()
    env = bot_env(TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_URL=fresh_api.url, DATABASE_URL=url)
    log_path = tmp_path / "bot.log"
    async with bot_process(env, tmp_path, log_path) as process:
        returncode = await asyncio.wait_for(process.wait(), 180)
    output = log_path.read_text()
    assert returncode == EXIT_BAD_SETTINGS, output[-3000:]
    assert "user_key_secret" in output and "is missing" in output
    assert "Restore the file" in output
    assert not (database.parent / KEY_FILE_NAME).exists()
    assert TOKEN not in output and "Traceback" not in output


async def test_bot_process_in_webhook_mode_answers_and_refuses_forged_updates(
    fresh_api: FakeTelegramApi, tmp_path: Path
) -> None:
    """Behind a webhook: it registers URL and secret, answers what Telegram posts, and
    refuses a post without the secret, so a guessed URL cannot inject updates."""
    port, secret, health = free_port(), "hook-Secret_42-Jd8Wq2Lz5Xv7Nb3Mk9Pr4Tc", free_port()
    url = f"http://127.0.0.1:{port}/telegram-updates"
    log_path = tmp_path / "bot.log"
    env = bot_env(
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_API_URL=fresh_api.url,
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
        WEBHOOK_URL=url,
        WEBHOOK_PORT=str(port),
        WEBHOOK_SECRET=secret,
        LOG_LEVEL="DEBUG",
        HEALTH_PORT=str(health),
    )
    forger = USER_ID + 1
    forged = {
        "update_id": 10_000,
        "message": {
            "message_id": 1,
            "date": int(time.time()),
            "chat": {"id": forger, "type": "private", "first_name": "X"},
            "from": {"id": forger, "is_bot": False, "first_name": "X"},
            "text": "/start",
            "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
        },
    }
    async with bot_process(env, tmp_path, log_path) as process:
        await fresh_api.wait_for(lambda: fresh_api.webhook is not None, 180)
        assert fresh_api.webhook == (url, secret)
        # The webhook is registered just before its server starts listening; the fake
        # retries delivery, as Telegram does, until the bot takes the update.
        fresh_api.push_text(USER_ID, "/start")
        await fresh_api.wait_for_text(USER_ID, count=START_MESSAGES, within_s=180)
        assert "not a diagnosis" in (fresh_api.last_with_buttons(USER_ID).text or "")
        async with ClientSession() as session:
            for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "wrong"}):
                async with session.post(url, json=forged, headers=headers) as response:
                    assert response.status == 403
        # Checked before the body is read: the headers of an 80 MB post get their 403 at once.
        assert await _status_of_headers_only(port, 80 * 2**20) == b"HTTP/1.1 403 Forbidden"
        # Beside the webhook, on a port of their own.
        assert await http_get(health, "/readyz") == (200, "ready\n")
        assert (await http_get(health, "/metrics"))[0] == 200
        returncode = await stop(process)

    output = log_path.read_text()
    assert returncode == 0, output[-3000:]
    assert "getUpdates" not in fresh_api.calls  # no polling in webhook mode
    assert fresh_api.replies_to(forger) == []
    assert secret not in output and TOKEN not in output
    assert "Traceback" not in output


async def _status_of_headers_only(port: int, length: int) -> bytes:
    """POST only the headers of a ``length``-byte body, no secret; the answer's status line."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"POST /telegram-updates HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n".encode()
        )
        async with asyncio.timeout(5):
            return (await reader.readline()).strip()
    finally:
        writer.close()


@pytest.fixture
def no_bot_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No bot setting in the environment, and no .env: the working folder is ``tmp_path``."""
    for name in BOT_ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_webhook_without_a_secret_is_a_clear_error(
    no_bot_settings: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    no_bot_settings.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    no_bot_settings.setenv("WEBHOOK_URL", "https://bot.example.org/telegram")
    assert main([]) == EXIT_BAD_SETTINGS
    assert "WEBHOOK_SECRET is required when WEBHOOK_URL is set" in capsys.readouterr().err


def test_a_database_server_without_user_key_secret_is_a_clear_error(
    no_bot_settings: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """PostgreSQL and no USER_KEY_SECRET: refused before anything starts (no place to keep
    a generated one), the variable named, the token not printed."""
    no_bot_settings.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    no_bot_settings.setenv("DATABASE_URL", "postgresql+asyncpg://bot@127.0.0.1:1/bot")
    assert main([]) == EXIT_BAD_SETTINGS
    error = capsys.readouterr().err
    assert "USER_KEY_SECRET is required when DATABASE_URL is not SQLite" in error
    assert TOKEN not in error


@pytest.mark.usefixtures("no_bot_settings")
def test_missing_token_is_a_clear_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without TELEGRAM_BOT_TOKEN the bot names the variable and exits non-zero."""
    assert main([]) == EXIT_BAD_SETTINGS
    error = capsys.readouterr().err
    assert "TELEGRAM_BOT_TOKEN is required but not set" in error
    assert ".env.example" in error


def test_blank_token_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A token left empty, as in a copied .env.example, is refused the same way."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("TELEGRAM_BOT_TOKEN=\n")
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    assert main([]) == EXIT_BAD_SETTINGS
    assert "TELEGRAM_BOT_TOKEN is required but not set" in capsys.readouterr().err


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Undo the logging set-up that ``main`` does for real runs."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_health_check_loads_settings_and_model(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``--check`` (the container's HEALTHCHECK) exits 0 with valid settings and the model."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.delenv("MODEL_PATH", raising=False)
    assert main(["--check"]) == 0


def test_env_example_lists_every_setting() -> None:
    """.env.example documents exactly the settings the bot reads."""
    lines = (REPO_ROOT / ".env.example").read_text().splitlines()
    documented = {
        line.lstrip("# ").split("=", 1)[0]
        for line in lines
        if "=" in line and line.lstrip("# ").split("=", 1)[0].isupper()
    }
    expected = {name.upper() for name in Settings.model_fields}
    assert documented == expected


WORKER_ID = 736_251_948  # distinctive, to look for in the logs
ADMIN_USER_ID = 5_550_123_987
SPOT_NAME = "left shoulder mole"
PATIENT_CODE = "P4242"


def fail_inserts(database: Path) -> None:
    """Make every new consultation row fail in the database itself, as a full disk would."""
    with sqlite3.connect(database) as connection:
        connection.execute(
            "CREATE TRIGGER forced_failure BEFORE INSERT ON consultations "
            "BEGIN SELECT RAISE(ABORT, 'forced failure'); END"
        )


async def test_error_paths_log_no_token_id_spot_name_or_patient_code(
    fresh_api: FakeTelegramApi, tmp_path: Path, lesion_jpegs: dict[str, bytes]
) -> None:
    """LOG_LEVEL=DEBUG, a forced error while saving a health worker's photo, then a start
    with a refused token: the whole output holds none of the secrets or personal data."""
    database = tmp_path / "bot.db"
    log_path = tmp_path / "bot.log"
    env = bot_env(
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_API_URL=fresh_api.url,
        DATABASE_URL=f"sqlite+aiosqlite:///{database}",
        ADMIN_IDS=str(ADMIN_USER_ID),
        LOG_LEVEL="DEBUG",
    )
    async with bot_process(env, tmp_path, log_path) as process:
        fresh_api.push_text(WORKER_ID, "/start")
        await fresh_api.wait_for_text(WORKER_ID, count=START_MESSAGES, within_s=180)
        start = fresh_api.last_with_buttons(WORKER_ID)
        fresh_api.push_callback(WORKER_ID, start, "consent:agree")
        await fresh_api.wait_for_text(WORKER_ID, count=START_MESSAGES + 1)
        fresh_api.push_text(ADMIN_USER_ID, f"/grantworker {WORKER_ID}")
        await fresh_api.wait_for_text(ADMIN_USER_ID)
        fail_inserts(database)
        photo = fresh_api.add_file(images.phone_like_photo(lesion_jpegs["ISIC_0024380_nv"]))
        fresh_api.push_message(
            WORKER_ID,
            document={**photo.as_dict(), "mime_type": "image/jpeg"},
            caption=f"#{PATIENT_CODE} {SPOT_NAME}",
        )
        replies = await fresh_api.wait_for_text(WORKER_ID, count=START_MESSAGES + 2)
        assert (
            replies[-1].text
            == "Sorry, something went wrong on my side. Please try again in a minute."
        )
        assert await stop(process) == 0

    bad_token = "123456789:REVOKED-token-zyxwvutsrqponmlkjihgf"
    bad_log = tmp_path / "bad-token.log"
    async with bot_process({**env, "TELEGRAM_BOT_TOKEN": bad_token}, tmp_path, bad_log) as bad:
        returncode = await asyncio.wait_for(bad.wait(), 180)
    refused = bad_log.read_text()
    assert returncode == EXIT_BAD_TOKEN, refused[-3000:]
    assert "Telegram refused the bot token" in refused

    output = log_path.read_text() + refused
    assert "forced failure" in output  # the error was logged, with its traceback
    assert "Traceback" in output
    for secret in (TOKEN, TOKEN.split(":")[1], bad_token, bad_token.split(":")[1]):
        assert secret not in output
    for personal in (str(WORKER_ID), str(ADMIN_USER_ID), SPOT_NAME, PATIENT_CODE):
        assert personal not in output
        assert personal.lower() not in output.lower()


async def test_two_replicas_starting_together_on_an_empty_postgresql_migrate_once(
    fresh_api: FakeTelegramApi, tmp_path: Path, postgres_url: str | None
) -> None:
    """Two bot processes started at the same moment on one empty PostgreSQL database: the
    advisory lock lets one migrate while the other waits, both become ready, and the
    schema has exactly one alembic_version row, at head.

    The test holds the migration lock itself until both processes wait for it, so the two
    migrations are due at the same instant, not seconds apart as start-up times allow."""
    if postgres_url is None:
        pytest.skip("no PostgreSQL server binaries here; set TEST_POSTGRES_URL")
    async with (
        fresh_postgres_database(postgres_url) as database_url,
        _holding_the_migration_lock(database_url) as waiting,
    ):
        ports = [free_port(), free_port()]
        envs = [
            bot_env(
                TELEGRAM_BOT_TOKEN=TOKEN,
                TELEGRAM_API_URL=fresh_api.url,
                DATABASE_URL=database_url,
                # Required with a database server; shared, as replicas must share it.
                USER_KEY_SECRET=REPLICA_SECRET,
                HEALTH_PORT=str(port),
            )
            for port in ports
        ]
        async with (
            bot_process(envs[0], tmp_path, tmp_path / "first.log") as first,
            bot_process(envs[1], tmp_path, tmp_path / "second.log") as second,
        ):
            await waiting(2)  # both at the lock; the context releases it below
            await waiting.release()
            for port, process in zip(ports, (first, second), strict=True):
                await wait_until_ready(port, process)
            versions = await _alembic_versions(database_url)
            returncodes = [await stop(first), await stop(second)]
    logs = [(tmp_path / name).read_text() for name in ("first.log", "second.log")]
    assert returncodes == [0, 0], logs
    assert versions == [ScriptDirectory.from_config(alembic_config()).get_current_head()]
    assert all("Traceback" not in log for log in logs), logs


async def _alembic_versions(database_url: str) -> list[str]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(text("SELECT version_num FROM alembic_version"))
            return [str(row[0]) for row in rows]
    finally:
        await engine.dispose()


class _LockHolder:
    """The migration's advisory lock, held by the test on a connection of its own."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection

    async def __call__(self, count: int) -> None:
        """Wait until ``count`` other sessions wait for an advisory lock here."""
        query = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        async with asyncio.timeout(180):
            while True:
                if await self._connection.fetchval(query) >= count:
                    return
                await asyncio.sleep(0.2)  # polling the server: no event to wait on

    async def release(self) -> None:
        await self._connection.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)


@contextlib.asynccontextmanager
async def _holding_the_migration_lock(database_url: str) -> AsyncIterator[_LockHolder]:
    dsn = make_url(database_url).set(drivername="postgresql")
    connection = await asyncpg.connect(dsn.render_as_string(hide_password=False))
    try:
        await connection.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        yield _LockHolder(connection)
    finally:
        await connection.close()


@pytest.mark.usefixtures("restore_logging")
async def test_migrate_command_brings_an_empty_database_to_head_without_a_token(
    no_bot_settings: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``python -m bot migrate``, the deploy step before replicas start: only DATABASE_URL."""
    database = tmp_path / "data" / "bot.db"
    no_bot_settings.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{database}")
    assert await asyncio.to_thread(main, ["migrate"]) == 0
    assert await _alembic_versions(f"sqlite+aiosqlite:///{database}") == [
        ScriptDirectory.from_config(alembic_config()).get_current_head()
    ]

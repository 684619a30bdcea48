"""``python -m bot`` as a real process: start-up, an answer, a clean SIGTERM exit, bad settings."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.__main__ import EXIT_BAD_SETTINGS, main
from bot.config import Settings
from tests.conftest import REPO_ROOT
from tests.e2e import images
from tests.fakes.telegram_api import TOKEN, FakeTelegramApi

USER_ID = 918_273_645  # distinctive, to look for in the logs
BOT_ENV_NAMES = tuple(name.upper() for name in Settings.model_fields)


@pytest_asyncio.fixture
async def fresh_api() -> AsyncIterator[FakeTelegramApi]:
    """A fake Telegram of its own, in this test's event loop."""
    api = FakeTelegramApi()
    await api.start()
    yield api
    await api.stop()


def bot_env(**values: str) -> dict[str, str]:
    """Return this environment without any bot settings, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if k not in BOT_ENV_NAMES}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return {**env, **values}


async def test_bot_process_answers_and_exits_cleanly_on_sigterm(
    fresh_api: FakeTelegramApi, tmp_path: Path, lesion_jpegs: dict[str, bytes]
) -> None:
    """A fresh machine, DEBUG logs: it answers, stops on SIGTERM, logs no token and no id."""
    database = tmp_path / "fresh" / "bot.db"
    log_path = tmp_path / "bot.log"
    env = bot_env(
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_API_URL=fresh_api.url,
        DATABASE_URL=f"sqlite+aiosqlite:///{database}",
        LOG_LEVEL="DEBUG",
    )
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", cwd=tmp_path, env=env, stdout=log, stderr=log
        )
        try:
            fresh_api.push_text(USER_ID, "/start")
            [reply] = await fresh_api.wait_for_text(USER_ID, within_s=180)
            assert "not a diagnosis" in (reply.text or "")
            fresh_api.push_callback(USER_ID, reply, "consent:agree")
            await fresh_api.wait_for_text(USER_ID, count=2, within_s=180)
            photo = fresh_api.add_file(images.phone_like_photo(lesion_jpegs["ISIC_0024380_nv"]))
            fresh_api.push_message(USER_ID, document={**photo.as_dict(), "mime_type": "image/jpeg"})
            replies = await fresh_api.wait_for_text(USER_ID, count=3, within_s=180)
            assert "not a diagnosis" in (replies[-1].text or "")
            process.send_signal(signal.SIGTERM)
            returncode = await asyncio.wait_for(process.wait(), 120)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    output = log_path.read_text()
    assert returncode == 0, output[-3000:]
    assert database.exists()
    assert "Consultation 1: " in output
    assert "Bot stopped" in output
    assert "Traceback" not in output
    assert TOKEN not in output
    assert TOKEN.split(":")[1] not in output  # nor its secret half, nor URL-encoded
    assert str(USER_ID) not in output


def test_missing_token_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without TELEGRAM_BOT_TOKEN the bot names the variable and exits non-zero."""
    for name in BOT_ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
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

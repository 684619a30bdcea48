"""The bot's profile, set at start-up: descriptions and command menus in three languages,
a menu of their own for administrators and, once granted the role, health workers."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.handlers import admin, worker
from bot.profile import ADMIN_COMMANDS, MENUS, WORKER_COMMANDS
from bot.replies import for_language
from tests.e2e.chat import last_text
from tests.e2e.conftest import make_settings, start_bot
from tests.fakes.telegram_api import FakeTelegramApi

ADMIN, ABSENT_ADMIN, WORKER = 999, 998, 10_501
LANGUAGES = {"": "en", "ru": "ru", "kk": "kk"}  # Telegram's language code -> catalogue


def commands(menu: list[dict[str, str]]) -> list[str]:
    return [entry["command"] for entry in menu]


async def test_descriptions_and_menus_per_scope_and_language(
    fresh_api: FakeTelegramApi, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Everyone's menu; each administrator's chat its own menu (one who never opened the
    bot has no chat, and the bot starts all the same); descriptions in each language."""
    fresh_api.push_text(ADMIN, "/start")  # the administrator has a chat with the bot
    settings = make_settings(
        fresh_api.url, tmp_path / "bot.db", admin_ids=f"{ADMIN},{ABSENT_ADMIN}"
    )
    async with start_bot(settings):
        pass
    for code, language in LANGUAGES.items():
        replies = for_language(language)
        assert fresh_api.descriptions[code] == replies.text("bot.description")
        assert fresh_api.short_descriptions[code] == replies.text("bot.short_description")
        everyone = fresh_api.commands_by_scope[("default", code)]
        assert commands(everyone) == list(MENUS["everyone"])
        admin = fresh_api.commands_by_scope[(f"chat:{ADMIN}", code)]
        assert commands(admin) == list(MENUS["admin"])
        assert {"stats", "export", "grantworker"} <= set(commands(admin))
        assert admin[-1]["description"] == replies.text("command.revokeworker")
        assert (f"chat:{ABSENT_ADMIN}", code) not in fresh_api.commands_by_scope
    # The first screen says what the bot is, and that it is not a diagnosis.
    assert "not a diagnosis" in fresh_api.descriptions[""]
    assert "не диагноз" in fresh_api.descriptions["ru"]
    assert "диагноз емес" in fresh_api.descriptions["kk"]
    # Only menus for chats (the user's own private chat), never anything else scoped.
    assert {scope for scope, _ in fresh_api.commands_by_scope} == {"default", f"chat:{ADMIN}"}
    assert str(ABSENT_ADMIN) not in caplog.text  # ids never logged
    assert "Bot profile: an administrator's menu not set (BadRequest)" in caplog.text


async def test_a_health_worker_gets_their_menu_with_the_role_and_loses_it_with_it(
    fresh_api: FakeTelegramApi, tmp_path: Path
) -> None:
    fresh_api.push_text(ADMIN, "/help")  # one message (/start sends several)
    settings = make_settings(fresh_api.url, tmp_path / "bot.db", admin_ids=str(ADMIN))
    async with start_bot(settings) as bot:
        await bot.agree(ADMIN)
        await fresh_api.wait_for_text(ADMIN)  # the /help sent before
        fresh_api.push_text(WORKER, "/help")
        await fresh_api.wait_for_text(WORKER)

        fresh_api.push_text(ADMIN, f"/grantworker {WORKER}")
        granted = await last_text(fresh_api, ADMIN, 2)
        assert granted.text == for_language("en").text("worker.granted")
        for code, language in LANGUAGES.items():
            menu = fresh_api.commands_by_scope[(f"chat:{WORKER}", code)]
            assert commands(menu) == list(MENUS["worker"])
            assert menu[-1]["description"] == for_language(language).text("command.myexport")

        # An administrator made a health worker gets both sets of commands.
        fresh_api.push_text(ADMIN, f"/grantworker {ADMIN}")
        await last_text(fresh_api, ADMIN, 3)
        assert commands(fresh_api.commands_by_scope[(f"chat:{ADMIN}", "")]) == list(
            MENUS["admin_worker"]
        )

        fresh_api.push_text(ADMIN, f"/revokeworker {WORKER}")
        revoked = await last_text(fresh_api, ADMIN, 4)
        assert revoked.text == for_language("en").text("worker.revoked")
        for code in LANGUAGES:
            assert (f"chat:{WORKER}", code) not in fresh_api.commands_by_scope

        # Someone who never wrote to the bot has no chat: the role is granted regardless.
        fresh_api.push_text(ADMIN, "/grantworker 10502")
        granted = await last_text(fresh_api, ADMIN, 5)
        assert granted.text == for_language("en").text("worker.granted")


def test_the_menus_name_the_commands_the_handlers_serve(tmp_path: Path) -> None:
    """A menu entry nobody answers, or a staff command missing from the menu, fails here."""
    settings = make_settings("http://127.0.0.1:1", tmp_path / "bot.db")
    for module, commands_ in ((admin, ADMIN_COMMANDS), (worker, WORKER_COMMANDS)):
        served = {
            command
            for handler in module.handlers(settings)
            for command in getattr(handler, "commands", ())
        }
        assert served == set(commands_), module.__name__

"""The bot's profile in Telegram: its descriptions and command menus, in every language.

Set at start-up by every process (the calls only overwrite): the description on the empty
chat before /start, the short one on the bot's profile page, the menu everyone sees, and
each administrator's menu in their own chat (a private chat's id is the user's id). A
health worker's menu is set when the role is granted and reset when it is revoked: only
pseudonymous keys are stored, so no worker's chat is known at start-up, and Telegram
keeps a chat's menu. Telegram shows each user the entries of their app's language, and
the ones set without a language (English here) to everyone else.

A failed call is logged and skipped: a menu is a convenience, never a reason not to
start or not to grant a role (an administrator who has not opened the bot yet has no
chat, and Telegram refuses a menu for it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping

from telegram import Bot, BotCommand, BotCommandScope, BotCommandScopeChat
from telegram.error import TelegramError

from bot.i18n import DEFAULT_LANGUAGE, LANGUAGES
from bot.replies import COMMANDS, for_language

WORKER_COMMANDS = ("patients", "patient", "myexport")
ADMIN_COMMANDS = ("stats", "export", "setreferral", "grantworker", "revokeworker")
# Each menu starts with everyone's commands: a health worker or an administrator uses
# the bot as a patient does too.
MENUS: dict[str, tuple[str, ...]] = {
    "everyone": COMMANDS,
    "worker": (*COMMANDS, *WORKER_COMMANDS),
    "admin": (*COMMANDS, *ADMIN_COMMANDS),
    "admin_worker": (*COMMANDS, *WORKER_COMMANDS, *ADMIN_COMMANDS),
}

logger = logging.getLogger(__name__)


def menu(name: str, language: str) -> list[BotCommand]:
    """One menu's commands with their descriptions in ``language``."""
    replies = for_language(language)
    return [BotCommand(command, replies.text(f"command.{command}")) for command in MENUS[name]]


def _code(language: str) -> str | None:
    # Entries without a language code are the ones every other language sees.
    return None if language == DEFAULT_LANGUAGE else language


async def _try(what: str, call: Awaitable[object]) -> bool:
    try:
        await call
    except TelegramError as error:
        logger.warning("Bot profile: %s not set (%s)", what, type(error).__name__)
        return False
    return True


async def publish(bot: Bot, admins: Mapping[int, bool]) -> None:
    """Set the descriptions and menus; ``admins``: each administrator's id and whether
    they are a health worker too."""
    calls = []
    for language in LANGUAGES:
        replies, code = for_language(language), _code(language)
        calls += [
            _try(
                "description",
                bot.set_my_description(replies.text("bot.description"), language_code=code),
            ),
            _try(
                "short description",
                bot.set_my_short_description(
                    replies.text("bot.short_description"), language_code=code
                ),
            ),
            _try("menu", bot.set_my_commands(menu("everyone", language), language_code=code)),
        ]
        for admin_id, worker in admins.items():
            scope = BotCommandScopeChat(admin_id)
            name = "admin_worker" if worker else "admin"
            # Never the id in the log: only that an administrator's menu failed.
            calls.append(_try("an administrator's menu", _set(bot, name, language, scope)))
    # Together: one round trip to Telegram at start-up rather than one per call.
    await asyncio.gather(*calls)


async def set_chat_menu(bot: Bot, chat_id: int, *, worker: bool, admin: bool) -> None:
    """Set one private chat's menu after its user's role changed (everyone's menu back
    for a user who is neither a health worker nor an administrator)."""
    scope = BotCommandScopeChat(chat_id)
    if worker or admin:
        name = ("admin_worker" if worker else "admin") if admin else "worker"
        calls = [_try("a chat's menu", _set(bot, name, language, scope)) for language in LANGUAGES]
    else:
        calls = [
            _try("a chat's menu", bot.delete_my_commands(scope, language_code=_code(language)))
            for language in LANGUAGES
        ]
    await asyncio.gather(*calls)


def _set(bot: Bot, name: str, language: str, scope: BotCommandScope) -> Awaitable[bool]:
    return bot.set_my_commands(menu(name, language), scope=scope, language_code=_code(language))

"""The typed context handlers receive: ``context.bot_data.runtime`` instead of dict casts."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram.ext import Application, CallbackContext, ExtBot

from bot.admission import Admission
from bot.config import Settings
from bot.inbox import Inbox
from bot.keys import Keys
from bot.screening import ScreeningService


@dataclass(frozen=True)
class Runtime:
    """The long-lived objects created in ``post_init``."""

    settings: Settings
    screening: ScreeningService
    sessions: async_sessionmaker[AsyncSession]
    keys: Keys
    admission: Admission
    inbox: Inbox

    def user_key(self, telegram_user_id: int) -> str:
        """Return the pseudonymous key stored in place of a Telegram user id."""
        return self.keys.user_key(telegram_user_id)

    def seal_chat(self, chat_id: int, user_key: str) -> str:
        """Return ``chat_id`` encrypted for storage in the row of ``user_key``."""
        return self.keys.sealer.seal(chat_id, user_key)

    def open_chat(self, chat_ref: str, user_key: str) -> int | None:
        """Return the chat id sealed in ``chat_ref`` for ``user_key`` (None if it does not
        open: another user's row, an unknown key, or altered)."""
        return self.keys.sealer.open(chat_ref, user_key)


class BotData:
    """``bot_data``: holds the runtime while the application is running."""

    def __init__(self) -> None:
        self._runtime: Runtime | None = None
        self._resources: AsyncExitStack | None = None
        # Where /healthz, /readyz and /metrics listen (the real port when 0 was asked for).
        self.health_port = 0

    @property
    def attached(self) -> bool:
        """Whether start-up has finished (the runtime is there for handlers)."""
        return self._runtime is not None

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise RuntimeError("the bot has not finished starting (post_init has not run)")
        return self._runtime

    def attach(self, runtime: Runtime, resources: AsyncExitStack) -> None:
        """Keep ``runtime`` for handlers and ``resources`` to close on shutdown."""
        self._runtime = runtime
        self._resources = resources

    async def close(self) -> None:
        """Close what :meth:`attach` was given (a no-op if start-up never got that far)."""
        resources, self._resources, self._runtime = self._resources, None, None
        if resources is not None:
            await resources.aclose()


BotContext = CallbackContext[ExtBot[Any], dict[Any, Any], dict[Any, Any], BotData]
BotApplication = Application[ExtBot[Any], BotContext, dict[Any, Any], dict[Any, Any], BotData, Any]

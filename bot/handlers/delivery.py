"""Telegram calls on the photo path, retried with a bounded backoff.

Flood control (429 with retry_after) is waited out by the application's AIORateLimiter
first; what reaches here is what it gave up on, and 5xx answers and timeouts, which it does
not retry. A message that timed out is not sent again: Telegram may have it already. A
request Telegram refused as malformed (400) or forbidden (403) is not retried: the same
request would fail the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from telegram import Bot
from telegram.error import BadRequest, NetworkError, RetryAfter, TelegramError, TimedOut

from bot.context import BotContext

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Waits between attempts: four attempts in all, about 3.5 s of backoff at most.
BACKOFF_S = (0.5, 1.0, 2.0)
# A message the user will see is worth longer: six attempts, about 15 s of backoff (four
# 502s in a row from Telegram's front end still end in one delivered answer).
SEND_BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)
# Calls that put a message in the chat. One that timed out may have got through (Telegram
# accepted it and its answer was lost): it is not sent again blindly, which would show the
# user the same message twice. The caller counts it as perhaps delivered.
SENDS = frozenset({"sendMessage", "sendPhoto", "sendDocument"})
# A longer flood wait than this is not worth holding a photo's reply for.
MAX_RETRY_AFTER_S = 30.0


async def with_retries(call: Callable[[], Awaitable[T]], what: str) -> T:
    """Return ``await call()``, retried on flood control, 5xx and timeouts (bounded); a
    message send that timed out is not retried (see SENDS): TimedOut is raised."""
    sends = what in SENDS
    for delay in (*(SEND_BACKOFF_S if sends else BACKOFF_S), None):
        try:
            return await call()
        except RetryAfter as error:
            wait = _seconds(error.retry_after)
            if delay is None or wait > MAX_RETRY_AFTER_S:
                raise
            logger.warning("%s: flood control, retrying in %.1f s", what, wait)
            await asyncio.sleep(wait)
        except BadRequest:
            raise
        except TimedOut:
            if sends or delay is None:
                raise
            logger.warning("%s timed out, retrying in %.1f s", what, delay)
            await asyncio.sleep(delay)
        except NetworkError as error:  # 5xx answers, timeouts, dropped connections
            if delay is None:
                raise
            logger.warning("%s failed (%s), retrying in %.1f s", what, type(error).__name__, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _seconds(retry_after: int | timedelta) -> float:
    return retry_after.total_seconds() if isinstance(retry_after, timedelta) else float(retry_after)


def show_action(context: BotContext, chat_id: int, action: str) -> None:
    """Show "typing..." (or another action) in the chat, in the background.

    Only a sign that something is happening: never waited for, never retried, a failure
    only logged, so it costs the photo's answer neither time nor an error. A task of the
    application's, so a stop waits for it rather than cutting it off.
    """
    context.application.create_task(_send_action(context.bot, chat_id, action))


async def _send_action(bot: Bot, chat_id: int, action: str) -> None:
    try:
        await bot.send_chat_action(chat_id, action)
    except TelegramError as error:
        logger.debug("Chat action not shown (%s)", type(error).__name__)

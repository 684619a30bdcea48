"""An update python-telegram-bot cannot parse: skipped once, counted, nothing of it logged.

On main one such update made PTB log it, raw, at CRITICAL, 2,276 times in 20 s while
polling stalled. The real bot polls the fake Telegram at LOG_LEVEL=DEBUG here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from bot import metrics
from bot.log import configure_logging
from bot.replies import for_language
from tests.e2e.conftest import RunningBot
from tests.fakes.telegram_api import FakeTelegramApi

pytestmark = pytest.mark.asyncio(loop_scope="module")

NAME, TEXT = "Zebediah", "the mole on my secret place"
# The whole log of the test, at DEBUG: one warning line and the bot's own DEBUG lines.
MAX_LOG_CHARS = 20_000


@pytest.fixture
def debug_logging() -> Iterator[None]:
    """LOG_LEVEL=DEBUG as ``python -m bot`` sets it up; the levels are put back after."""
    names = ["", "telegram", "aiosqlite", "httpx", "httpcore", "sqlalchemy.engine"]
    levels = {name: logging.getLogger(name).level for name in names}
    configure_logging("DEBUG", secrets=[])
    try:
        yield
    finally:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if h.get_name() == "bot-stderr"]:
            root.removeHandler(handler)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _skipped() -> float:
    labels = {"event": "unparsable"}
    return metrics.REGISTRY.get_sample_value("bot_inbox_updates_total", labels) or 0.0


@pytest.mark.usefixtures("debug_logging")
async def test_an_unparsable_update_is_skipped_once_and_nothing_of_it_is_logged(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    new_user_id: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    del running_bot
    caplog.set_level(logging.DEBUG)
    before = _skipped()
    person = {"id": new_user_id, "is_bot": False, "first_name": NAME, "language_code": "en"}
    fake_api.push_update(
        {
            "update_id": fake_api.next_id(),
            "message": {
                "message_id": fake_api.next_id(),
                "date": "tomorrow",  # not a timestamp: PTB's parser raises
                "chat": {"id": new_user_id, "type": "private", "first_name": NAME},
                "from": person,
                "text": TEXT,
            },
        }
    )
    fake_api.push_text(new_user_id, "/help")  # polling goes on past it

    [reply] = await fake_api.wait_for_text(new_user_id, within_s=30)
    await fake_api.wait_for(lambda: fake_api.unconfirmed == 0, within_s=30)

    assert reply.text == for_language("en").help()  # the bad update got no answer
    assert _skipped() - before == 1
    log = caplog.text
    assert NAME not in log and TEXT not in log and str(new_user_id) not in log
    assert "tomorrow" not in log
    assert len(log) < MAX_LOG_CHARS, f"{len(log)} characters of log"

"""Delivery before bookkeeping: Telegram's flood control, 5xx answers and timeouts on the
photo path are retried with a bounded backoff; each reply arrives once, each consultation
is stored once and marked delivered only when Telegram accepted its reply.

The fake Bot API injects the faults, as Telegram answers them, per method."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest
from sqlalchemy import event

from bot.db.models import Consultation
from bot.handlers.delivery import SEND_BACKOFF_S
from bot.replies import for_language
from tests.e2e.chat import phone_photo, send_photo
from tests.e2e.conftest import RunningBot
from tests.fakes.telegram_api import FakeTelegramApi, Fault, SentMessage

pytestmark = pytest.mark.asyncio(loop_scope="module")

EN = for_language("en")
DISCLAIMER = "not a diagnosis"


def sent(api: FakeTelegramApi, user_id: int, method: str) -> list[SentMessage]:
    return [m for m in api.replies_to(user_id) if m.method == method]


def served(api: FakeTelegramApi) -> list[tuple[str, int]]:
    """The faults the fake has answered with so far, as (method, status)."""
    return [(method, fault.status) for method, fault in api.faults_used]


async def only_row(bot: RunningBot, user_id: int) -> Consultation:
    [row] = await bot.consultations(user_id)
    return row


async def delivered_row(bot: RunningBot, user_id: int) -> Consultation:
    """The user's one row, once marked delivered (just after Telegram accepted the reply)."""
    async with asyncio.timeout(30):
        # The database has no change notification to wait on: poll it.
        while (row := await only_row(bot, user_id)).delivered_at is None:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    return row


async def test_flood_control_and_a_bad_gateway_on_the_heatmap_give_one_of_each(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    """sendPhoto answered 429 (retry_after=2), then 502: one photo, one result, one row."""
    fake_api.inject("sendPhoto", Fault.flood(retry_after=2))
    fake_api.inject("sendPhoto", Fault(502, "Bad Gateway"))
    send_photo(fake_api, user_id, phone_photo(lesion_jpegs))
    await fake_api.wait_for_text(user_id)
    assert ("sendPhoto", 429) in served(fake_api)
    assert ("sendPhoto", 502) in served(fake_api)
    assert len(sent(fake_api, user_id, "sendPhoto")) == 1
    [result] = sent(fake_api, user_id, "sendMessage")
    assert DISCLAIMER in (result.text or "")
    await delivered_row(running_bot, user_id)


async def test_5xx_and_a_timeout_on_get_file_download_and_send_message(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    """getFile 502 then a stall past the client's timeout, the download 503, sendMessage
    500: each retried, one result, one row, marked delivered."""
    fake_api.inject("getFile", Fault(502, "Bad Gateway"))
    # The client gives up after 5 s.
    fake_api.inject("getFile", Fault(504, "Gateway Timeout", delay_s=6.0))
    fake_api.inject("download", Fault(503, "Service Unavailable"))
    fake_api.inject("sendMessage", Fault(500))
    send_photo(fake_api, user_id, phone_photo(lesion_jpegs, seed=1))
    await fake_api.wait_for_text(user_id)
    assert [m for m, _ in served(fake_api)[-4:]] == [
        "getFile",
        "getFile",
        "download",
        "sendMessage",
    ]
    [result] = sent(fake_api, user_id, "sendMessage")
    assert DISCLAIMER in (result.text or "")
    assert len(sent(fake_api, user_id, "sendPhoto")) <= 1
    row = await delivered_row(running_bot, user_id)
    assert row.status in ("assessed", "unassessable")


async def test_a_reply_telegram_never_accepts_is_abandoned_and_left_undelivered(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    """sendMessage fails on every attempt: the row stays undelivered (visible in /export),
    no apology is attempted on top, and the bot keeps answering afterwards."""
    before = len(fake_api.faults_used)
    attempts = len(SEND_BACKOFF_S) + 1  # every attempt the backoff allows
    for _ in range(attempts):
        fake_api.inject("sendMessage", Fault(502, "Bad Gateway"))
    send_photo(fake_api, user_id, phone_photo(lesion_jpegs, seed=2))
    await fake_api.wait_for(lambda: len(fake_api.faults_used) >= before + attempts)
    fake_api.push_text(user_id, "/help")
    [help_text] = sent(fake_api, user_id, "sendMessage") or [
        m for m in await fake_api.wait_for_text(user_id) if m.method == "sendMessage"
    ]
    assert help_text.text == EN.help()
    row = await only_row(running_bot, user_id)
    assert row.delivered_at is None


async def test_a_heatmap_telegram_never_accepts_is_skipped_and_the_result_still_sent(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    """sendPhoto fails on every attempt: the text result still arrives, once, delivered."""
    for _ in range(len(SEND_BACKOFF_S) + 1):  # every attempt the backoff allows
        fake_api.inject("sendPhoto", Fault(502, "Bad Gateway"))
    send_photo(fake_api, user_id, phone_photo(lesion_jpegs, seed=3))
    [result] = [m for m in await fake_api.wait_for_text(user_id) if m.method == "sendMessage"]
    assert DISCLAIMER in (result.text or "")
    assert sent(fake_api, user_id, "sendPhoto") == []
    await delivered_row(running_bot, user_id)


async def test_a_delivery_that_cannot_be_recorded_gets_no_apology_on_top(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    """The reply got through, then marking it delivered fails in the database: the user
    has their one result and no "something went wrong"; the row stays undelivered."""
    engine = running_bot.application.bot_data.runtime.sessions.kw["bind"]
    failed: list[str] = []

    def fail(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not failed and statement.startswith("UPDATE consultations SET delivered_at"):
            failed.append(statement)
            # What SQLite says when its one write lock stays taken past the busy timeout.
            raise sqlite3.OperationalError("database is locked")

    event.listen(engine.sync_engine, "before_cursor_execute", fail)
    try:
        send_photo(fake_api, user_id, phone_photo(lesion_jpegs, seed=4), caption="left knee")
        await fake_api.wait_for_text(user_id)
        async with asyncio.timeout(30):
            # The failure happens in the database, after the fake's last call: poll for it.
            while not failed:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        fake_api.push_text(user_id, "/help")  # answered after the photo's handler ends
        await fake_api.wait_for_text(user_id, count=2)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", fail)
    texts = [m.text for m in sent(fake_api, user_id, "sendMessage")]
    assert texts[-1] == EN.help()
    assert EN.error() not in texts
    assert len(texts) == 2
    row = await only_row(running_bot, user_id)
    assert row.delivered_at is None


async def test_a_result_answered_after_the_read_timeout_is_not_sent_again(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    """Telegram takes the result but answers after the client's 5 s read timeout: the
    bot cannot know it got through, and does not send it blindly again (test 5 of issue
    19): the user sees the heatmap once and the result once."""
    fake_api.inject("sendMessage", Fault.slow(6.5))
    send_photo(fake_api, user_id, phone_photo(lesion_jpegs, seed=3))
    await fake_api.wait_for_text(user_id)
    await asyncio.sleep(4.0)  # a resend (after the backoff) would come now
    assert ("sendMessage", 200) in served(fake_api)
    [result] = sent(fake_api, user_id, "sendMessage")
    assert DISCLAIMER in (result.text or "")
    assert len(sent(fake_api, user_id, "sendPhoto")) <= 1
    assert len(await running_bot.consultations(user_id)) == 1


async def test_four_bad_gateways_then_success_deliver_each_part_once(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    """Four 502s on the heatmap and four on the result, then Telegram takes them: each part
    arrives exactly once and the row is marked delivered (test 5 of issue 19)."""
    fake_api.inject("sendPhoto", *[Fault(502, "Bad Gateway")] * 4)
    fake_api.inject("sendMessage", *[Fault(502, "Bad Gateway")] * 4)
    send_photo(fake_api, user_id, phone_photo(lesion_jpegs))
    await fake_api.wait_for_text(user_id, within_s=60)
    assert fake_api.pending_faults("sendPhoto") == fake_api.pending_faults("sendMessage") == 0
    [result] = sent(fake_api, user_id, "sendMessage")
    assert DISCLAIMER in (result.text or "")
    assert len(sent(fake_api, user_id, "sendPhoto")) == 1
    await delivered_row(running_bot, user_id)

"""Delivery before bookkeeping: Telegram's flood control, 5xx answers and timeouts on the
photo path are retried with a bounded backoff; each answer is one message (the result as
the heatmap's caption), arrives once, each consultation is stored once and marked delivered
only when Telegram accepted its answer. An answer Telegram did not take after every
in-process retry goes to the outbox (bot.scheduler), which sends it later, text only.

The fake Bot API injects the faults, as Telegram answers them, per method; the outbox runs
as its job runs it, with time moved on."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select

from bot import metrics
from bot.db.models import Consultation, OutboxMessage, utc_now
from bot.handlers.delivery import SEND_BACKOFF_S
from bot.replies import for_language
from bot.scheduler import RunReport, backoff, send_due
from tests.e2e.chat import last_text, phone_photo, send_photo
from tests.e2e.conftest import ADMIN_ID, RunningBot
from tests.fakes.telegram_api import FakeTelegramApi, Fault, SentMessage

pytestmark = pytest.mark.asyncio(loop_scope="module")

EN = for_language("en")
DISCLAIMER = "not a diagnosis"
NO_PICTURE = EN.text("answer.no_picture")
# Every attempt the in-process backoff allows for one message.
ATTEMPTS = len(SEND_BACKOFF_S) + 1


def sent(api: FakeTelegramApi, user_id: int, method: str) -> list[SentMessage]:
    return [m for m in api.replies_to(user_id) if m.method == method]


def answers(api: FakeTelegramApi, user_id: int) -> list[SentMessage]:
    """Every message with text the user got (a photo result's caption counts)."""
    return [m for m in api.replies_to(user_id) if m.has_text]


def served(api: FakeTelegramApi) -> list[tuple[str, int]]:
    """The faults the fake has answered with so far, as (method, status)."""
    return [(method, fault.status) for method, fault in api.faults_used]


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


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


async def answer_rows(bot: RunningBot, user_id: int) -> list[OutboxMessage]:
    async with bot.application.bot_data.runtime.sessions() as session:
        query = select(OutboxMessage).where(OutboxMessage.user_key == bot.key(user_id))
        return list(await session.scalars(query))


async def queued_answer(bot: RunningBot, user_id: int) -> OutboxMessage:
    """The user's answer, once the handler left it to the outbox."""
    async with asyncio.timeout(60):
        while not (rows := await answer_rows(bot, user_id)):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    [row] = rows
    return row


async def run_outbox(bot: RunningBot, now: datetime) -> RunReport:
    return await send_due(bot.application.bot, bot.application.bot_data.runtime, now)


async def telegram_down_for_a_photo(
    api: FakeTelegramApi, bot: RunningBot, user_id: int, jpeg: bytes
) -> OutboxMessage:
    """Every in-process attempt of the heatmap and of the text fails (502): the answer is
    left to the outbox; return its row."""
    api.inject("sendPhoto", *[Fault(502, "Bad Gateway")] * ATTEMPTS)
    api.inject("sendMessage", *[Fault(502, "Bad Gateway")] * ATTEMPTS)
    send_photo(api, user_id, jpeg)
    row = await queued_answer(bot, user_id)
    assert api.pending_faults("sendPhoto") == api.pending_faults("sendMessage") == 0
    assert answers(api, user_id) == []
    return row


async def test_flood_control_and_a_bad_gateway_on_the_heatmap_give_one_answer(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    """sendPhoto answered 429 (retry_after=2), then 502: one message (the heatmap with the
    result as its caption), one row, delivered."""
    fake_api.inject("sendPhoto", Fault.flood(retry_after=2))
    fake_api.inject("sendPhoto", Fault(502, "Bad Gateway"))
    send_photo(fake_api, user_id, phone_photo(lesion_jpegs))
    await fake_api.wait_for_text(user_id)
    assert ("sendPhoto", 429) in served(fake_api)
    assert ("sendPhoto", 502) in served(fake_api)
    [result] = answers(fake_api, user_id)
    assert result.method == "sendPhoto" and result.photo is not None
    assert DISCLAIMER in (result.text or "")
    assert sent(fake_api, user_id, "sendMessage") == []
    await delivered_row(running_bot, user_id)


async def test_5xx_and_a_timeout_on_get_file_download_and_send_photo(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    """getFile 502 then a stall past the client's timeout, the download 503, sendPhoto
    500: each retried, one answer, one row, marked delivered."""
    fake_api.inject("getFile", Fault(502, "Bad Gateway"))
    # The client gives up after 5 s.
    fake_api.inject("getFile", Fault(504, "Gateway Timeout", delay_s=6.0))
    fake_api.inject("download", Fault(503, "Service Unavailable"))
    fake_api.inject("sendPhoto", Fault(500))
    send_photo(fake_api, user_id, phone_photo(lesion_jpegs, seed=1))
    await fake_api.wait_for_text(user_id)
    assert [m for m, _ in served(fake_api)[-4:]] == [
        "getFile",
        "getFile",
        "download",
        "sendPhoto",
    ]
    [result] = answers(fake_api, user_id)
    assert DISCLAIMER in (result.text or "")
    row = await delivered_row(running_bot, user_id)
    assert row.status == "assessed"


async def test_telegram_down_past_the_retries_answers_later_through_the_outbox_once(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    """Heatmap and text fail on every in-process attempt: the answer is not abandoned but
    queued; the bot keeps answering meanwhile; the outbox sends it once Telegram is back,
    text only and saying the picture is missing, exactly once, and marks the row delivered
    (test 3 of the issue's item 2)."""
    late = sample("bot_answers_total", outcome="late")
    queued = await telegram_down_for_a_photo(
        fake_api, running_bot, user_id, phone_photo(lesion_jpegs, seed=2)
    )
    row = await only_row(running_bot, user_id)
    assert (queued.kind, queued.consultation_id) == ("answer", row.id)
    assert queued.chat_ref is not None and str(user_id) not in queued.chat_ref  # sealed
    assert row.delivered_at is None

    fake_api.push_text(user_id, "/help")  # answered meanwhile: the turn was not held
    [help_text] = [m for m in await fake_api.wait_for_text(user_id) if m.has_text]
    assert help_text.text == EN.help()

    report = await run_outbox(running_bot, utc_now())
    assert report.sent >= 1
    [result] = answers(fake_api, user_id)[1:]
    assert result.method == "sendMessage"
    assert DISCLAIMER in (result.text or "")
    assert (result.text or "").endswith(NO_PICTURE)
    assert [data.split(":")[0] for _, data in result.buttons] == ["report", "qa"]
    row = await only_row(running_bot, user_id)
    assert row.delivered_at is not None and row.result_message_id == result.message_id
    [done] = await answer_rows(running_bot, user_id)
    assert done.sent_at is not None and done.chat_ref is None
    assert sample("bot_answers_total", outcome="late") == late + 1

    # A later run has nothing more to send: exactly once.
    await run_outbox(running_bot, utc_now() + timedelta(hours=1))
    assert len(answers(fake_api, user_id)) == 2


async def test_an_answer_that_keeps_failing_is_parked_and_shown_in_stats(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    """The outbox retries an answer with backoff and parks it after SCHEDULER_MAX_ATTEMPTS
    failures: its sealed chat is dropped, /stats and the metrics count it by reason."""
    settings = running_bot.settings
    await telegram_down_for_a_photo(
        fake_api, running_bot, user_id, phone_photo(lesion_jpegs, seed=5)
    )
    now = utc_now()
    fake_api.inject("sendMessage", *[Fault(502, "Bad Gateway")] * settings.scheduler_max_attempts)
    for attempt in range(1, settings.scheduler_max_attempts + 1):
        report = await run_outbox(running_bot, now)
        assert report.failed + report.parked == 1, attempt
        now += backoff(attempt, settings.scheduler_retry_after_s) + timedelta(seconds=1)
    [parked] = await answer_rows(running_bot, user_id)
    assert parked.parked_at is not None and parked.sent_at is None and parked.chat_ref is None
    assert (parked.attempts, parked.last_error) == (settings.scheduler_max_attempts, "NetworkError")
    assert (await run_outbox(running_bot, now + timedelta(days=2))).sent == 0
    assert answers(fake_api, user_id) == []
    assert (await only_row(running_bot, user_id)).delivered_at is None
    assert sample("bot_answer_outbox_backlog", state="parked") >= 1

    await running_bot.agree(ADMIN_ID)
    before, charts = len(answers(fake_api, ADMIN_ID)), len(sent(fake_api, ADMIN_ID, "sendPhoto"))
    fake_api.push_text(ADMIN_ID, "/stats")
    stats = await last_text(fake_api, ADMIN_ID, before + 1)
    assert "answer: NetworkError: 1" in (stats.text or "")
    # The chart follows the text: wait for it, so it takes none of the next test's faults.
    await fake_api.wait_for_sent(ADMIN_ID, "sendPhoto", charts + 1)


async def test_an_outbox_send_that_times_out_is_not_sent_again(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    """The outbox's send of a late answer is taken by Telegram after the client's timeout:
    perhaps shown, so it is parked as uncertain and never sent again; the user sees it
    once."""
    await telegram_down_for_a_photo(
        fake_api, running_bot, user_id, phone_photo(lesion_jpegs, seed=6)
    )
    fake_api.inject("sendMessage", Fault.slow(running_bot.settings.scheduler_send_timeout_s + 1))
    report = await run_outbox(running_bot, utc_now())
    assert (report.sent, report.parked) == (0, 1)
    [parked] = await answer_rows(running_bot, user_id)
    assert (parked.last_error, parked.chat_ref) == ("uncertain", None)
    await fake_api.wait_for(lambda: len(answers(fake_api, user_id)) == 1)  # it got through
    await run_outbox(running_bot, utc_now() + timedelta(days=2))
    await asyncio.sleep(1.0)
    [result] = answers(fake_api, user_id)
    assert DISCLAIMER in (result.text or "")


async def test_a_heatmap_telegram_never_accepts_is_skipped_and_the_result_still_sent(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    """sendPhoto fails on every attempt: the result still arrives as text, once, saying the
    picture could not be sent, and is marked delivered."""
    fake_api.inject("sendPhoto", *[Fault(502, "Bad Gateway")] * ATTEMPTS)
    send_photo(fake_api, user_id, phone_photo(lesion_jpegs, seed=3))
    [result] = [m for m in await fake_api.wait_for_text(user_id) if m.has_text]
    assert result.method == "sendMessage"
    assert DISCLAIMER in (result.text or "")
    assert (result.text or "").endswith(NO_PICTURE)
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
    texts = [m.text for m in answers(fake_api, user_id)]
    assert texts[-1] == EN.help()
    assert EN.error() not in texts
    assert len(texts) == 2
    row = await only_row(running_bot, user_id)
    assert row.delivered_at is None


async def test_an_answer_taken_after_the_read_timeout_is_seen_exactly_once(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    """Telegram takes the answer (the heatmap with the result as its caption) but answers
    after the client's 5 s read timeout: the bot cannot know it got through, sends nothing
    again, and queues nothing (test 1 of the issue's item 2): the user sees it once."""
    fake_api.inject("sendPhoto", Fault.slow(6.5))
    send_photo(fake_api, user_id, phone_photo(lesion_jpegs, seed=3))
    await fake_api.wait_for_text(user_id)
    await asyncio.sleep(4.0)  # a resend (after the backoff, or as text) would come now
    assert ("sendPhoto", 200) in served(fake_api)
    [result] = answers(fake_api, user_id)
    assert result.method == "sendPhoto"
    assert DISCLAIMER in (result.text or "")
    assert len(fake_api.replies_to(user_id)) == 1
    assert len(await running_bot.consultations(user_id)) == 1
    assert await answer_rows(running_bot, user_id) == []
    # Nothing for the outbox to send either.
    await run_outbox(running_bot, utc_now())
    assert len(fake_api.replies_to(user_id)) == 1


async def test_four_bad_gateways_then_success_deliver_the_answer_once(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    """Four 502s on the answer, then Telegram takes it: it arrives exactly once, as one
    message, and the row is marked delivered (test 2 of the issue's item 2)."""
    fake_api.inject("sendPhoto", *[Fault(502, "Bad Gateway")] * 4)
    send_photo(fake_api, user_id, phone_photo(lesion_jpegs))
    await fake_api.wait_for_text(user_id, within_s=60)
    assert fake_api.pending_faults("sendPhoto") == 0
    [result] = fake_api.replies_to(user_id)
    assert result.method == "sendPhoto" and DISCLAIMER in (result.text or "")
    await delivered_row(running_bot, user_id)
    assert await answer_rows(running_bot, user_id) == []

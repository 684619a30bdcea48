"""PTB's own webhook server, guarded as ``python -m bot`` guards it (bot.webhook): the secret
is checked before the body is read, bodies are capped, unparsable updates are stubbed.

The server is python-telegram-bot's (its Tornado app and server classes, as its Updater
builds them) on 127.0.0.1; requests are written on a raw socket, so a test can send the
headers of a large body and see the answer come before any of the body.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest_asyncio
from telegram import Bot, Update
from telegram.ext._utils.webhookhandler import WebhookAppClass, WebhookServer
from tornado.httpserver import HTTPServer

from bot import metrics
from bot.webhook import MAX_BODY_BYTES, SECRET_HEADER, guard_webhook_server
from tests.e2e.processes import free_port
from tests.fakes.telegram_api import TOKEN

SECRET = "webhook-Secret_0123456789-abcdefghijKLMNOP"
PATH = "/telegram-updates"
# What a deliberately large request claims: the size that cost +88 MB each on main.
HUGE = 80 * 2**20


@dataclass
class Hook:
    port: int
    queue: asyncio.Queue[object]


@pytest_asyncio.fixture
async def hook() -> AsyncIterator[Hook]:
    guard_webhook_server(SECRET)
    queue: asyncio.Queue[object] = asyncio.Queue()
    app = WebhookAppClass(PATH, Bot(TOKEN), queue, SECRET)
    server = WebhookServer("127.0.0.1", free_port(), app, None)
    try:
        await server.serve_forever()
        yield Hook(server.port, queue)
    finally:
        await server.shutdown()
        HTTPServer.configure(None)  # Tornado's default again for everything after


async def _exchange(port: int, head: str, body: bytes = b"", within_s: float = 3.0) -> str:
    """Send ``head`` (and ``body``); return the status line of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.encode() + body)
        await writer.drain()
        async with asyncio.timeout(within_s):
            return (await reader.readline()).decode().strip()
    finally:
        writer.close()


def _post(length: int, secret: str | None, extra: str = "") -> str:
    secret_line = "" if secret is None else f"{SECRET_HEADER}: {secret}\r\n"
    return (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"{secret_line}Content-Length: {length}\r\n{extra}\r\n"
    )


async def test_a_large_post_without_the_secret_is_refused_before_its_body(hook: Hook) -> None:
    """Only the headers of an 80 MB body are sent: the 403 comes without waiting for it
    (on main the server waited for, and kept, all 80 MB first)."""
    assert await _exchange(hook.port, _post(HUGE, None)) == "HTTP/1.1 403 Forbidden"
    assert await _exchange(hook.port, _post(HUGE, "wrong")) == "HTTP/1.1 403 Forbidden"
    assert await _exchange(hook.port, _post(HUGE, SECRET[:-1])) == "HTTP/1.1 403 Forbidden"
    # A small forged update, sent whole: drained, never taken, answered 403.
    body = json.dumps({"update_id": 40}).encode()
    assert await _exchange(hook.port, _post(len(body), None), body) == "HTTP/1.1 403 Forbidden"
    assert hook.queue.empty()


async def test_a_body_over_the_cap_is_refused_even_with_the_secret(hook: Hook) -> None:
    answer = await _exchange(hook.port, _post(MAX_BODY_BYTES + 1, SECRET))
    assert answer == "HTTP/1.1 413 Request Entity Too Large"
    chunked = (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"{SECRET_HEADER}: {SECRET}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"x" * 2**16
    body = (f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n") * (MAX_BODY_BYTES // len(chunk) + 2)
    answer = await _exchange(hook.port, chunked, body)
    assert answer.startswith(("HTTP/1.1 413", "HTTP/1.1 400"))
    assert hook.queue.empty()


async def test_an_update_with_the_secret_is_taken(hook: Hook) -> None:
    update = {
        "update_id": 41,
        "message": {
            "message_id": 1,
            "date": 1,
            "text": "hi",
            "chat": {"id": 5, "type": "private", "first_name": "A"},
        },
    }
    body = json.dumps(update).encode()
    assert await _exchange(hook.port, _post(len(body), SECRET), body) == "HTTP/1.1 200 OK"
    taken = await asyncio.wait_for(hook.queue.get(), 3)
    assert isinstance(taken, Update) and taken.update_id == 41
    assert taken.effective_message is not None and taken.effective_message.text == "hi"


async def test_an_unparsable_update_is_taken_as_its_bare_id(hook: Hook) -> None:
    """PTB would log it raw at CRITICAL and answer 400 (Telegram then sends it again)."""
    skipped = (
        metrics.REGISTRY.get_sample_value("bot_inbox_updates_total", {"event": "unparsable"}) or 0.0
    )
    update = {"update_id": 42, "message": {"message_id": 1, "date": "tomorrow", "text": "x"}}
    body = json.dumps(update).encode()
    assert await _exchange(hook.port, _post(len(body), SECRET), body) == "HTTP/1.1 200 OK"
    taken = await asyncio.wait_for(hook.queue.get(), 3)
    assert isinstance(taken, Update) and taken.update_id == 42 and taken.message is None
    after = metrics.REGISTRY.get_sample_value("bot_inbox_updates_total", {"event": "unparsable"})
    assert after == skipped + 1

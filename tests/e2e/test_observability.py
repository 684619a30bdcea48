"""/healthz, /readyz and /metrics of a running bot, with its PostgreSQL going away and back.

The database is reached through a TCP relay on 127.0.0.1 that the test closes (every
connection cut, the port refusing) and reopens: a real outage, as the bot sees one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import ClientSession
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from tests.e2e.chat import phone_photo, send_photo
from tests.e2e.conftest import RunningBot, fresh_postgres_database
from tests.fakes.telegram_api import FakeTelegramApi

pytestmark = pytest.mark.asyncio(loop_scope="module")


class TcpRelay:
    """Forward 127.0.0.1:port to a server; :meth:`close` is an outage, :meth:`open` the end."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._streams: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._streams):
            writer.transport.abort()
        self._streams.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._streams |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._streams -= {writer, up_writer}


@pytest.fixture(scope="module")
def backend(postgres_url: str | None) -> str:
    if postgres_url is None:
        pytest.skip("no PostgreSQL server binaries here; set TEST_POSTGRES_URL")
    return "postgresql"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def relay(postgres_url: str) -> AsyncIterator[TcpRelay]:
    server = make_url(postgres_url)
    relay = TcpRelay(server.host or "127.0.0.1", server.port or 5432)
    await relay.open()
    yield relay
    await relay.close()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def database_url(postgres_url: str, relay: TcpRelay) -> AsyncIterator[str]:
    """A fresh database, which the bot reaches only through the relay."""
    async with fresh_postgres_database(postgres_url) as url:
        yield make_url(url).set(port=relay.port).render_as_string(hide_password=False)


async def get(bot: RunningBot, path: str) -> tuple[int, str]:
    port = bot.application.bot_data.health_port
    async with ClientSession() as session, session.get(f"http://127.0.0.1:{port}{path}") as r:
        return r.status, await r.text()


async def status_until(bot: RunningBot, path: str, wanted: int, within_s: float = 60) -> int:
    """Ask ``path`` until it answers ``wanted`` (pools reconnect in their own time)."""
    async with asyncio.timeout(within_s):
        while True:
            status, _ = await get(bot, path)
            if status == wanted:
                return status
            await asyncio.sleep(0.2)  # polling an HTTP endpoint: there is no event to wait on


async def test_readyz_fails_while_the_database_is_unreachable_and_recovers(
    running_bot: RunningBot, relay: TcpRelay
) -> None:
    """Ready with its database; not ready (503) while it is cut off, though still alive
    (/healthz 200); ready again once it is back, without a restart."""
    assert await get(running_bot, "/readyz") == (200, "ready\n")
    assert await get(running_bot, "/healthz") == (200, "ok\n")

    await relay.close()
    status, body = await get(running_bot, "/readyz")
    assert (status, body) == (503, "not ready: database unreachable\n")
    assert (await get(running_bot, "/healthz"))[0] == 200

    await relay.open()
    assert await status_until(running_bot, "/readyz", 200) == 200


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics page, by name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(values: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    return sum(value for (sample, _), value in values.items() if sample == name)


async def test_metrics_count_a_screened_photo(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    """One photo: one more screened (by outcome), its stages timed, the queue back at 0."""
    status, page = await get(running_bot, "/metrics")
    assert status == 200
    before = samples(page)
    send_photo(fake_api, user_id, phone_photo(lesion_jpegs))
    await fake_api.wait_for_text(user_id)
    [row] = await running_bot.consultations(user_id)
    after = samples((await get(running_bot, "/metrics"))[1])

    screened = ("bot_photos_screened_total", (("outcome", row.status),))
    assert after[screened] == before.get(screened, 0) + 1
    assert (
        total(after, "bot_photos_screened_total") == total(before, "bot_photos_screened_total") + 1
    )
    timed = ("bot_stage_seconds_count", (("stage", "total"),))
    assert after[timed] == before.get(timed, 0) + 1
    assert after[("bot_screening_queue_depth", ())] == 0
    assert after[("process_resident_memory_bytes", ())] > 0

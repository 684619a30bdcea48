"""PostgreSQL restarted under a running ``python -m bot``, in polling and in webhook mode.

Photos that arrive while the database is down cannot be kept, so they are not taken:
polling asks Telegram again with the same offset (backing off), a webhook answers 503 and
Telegram posts them again. Once the database is back every photo is answered once, and
/readyz said 503 while updates could not be kept (test 3 of issue 19). The cluster is the
test's own, so stopping it touches no other test's database.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import images
from tests.e2e.chat import phone_photo, send_photo
from tests.e2e.conftest import make_settings, start_bot
from tests.e2e.processes import free_port, http_get, stop
from tests.e2e.test_crash_recovery import Deployment, register, results
from tests.fakes.telegram_api import FakeTelegramApi
from tests.postgres import Cluster, server_bin

pytestmark = pytest.mark.asyncio

OUTAGE_S = 5.0


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    bin_dir = server_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries here")
    own = Cluster(bin_dir)
    try:
        yield own
    finally:
        own.remove()


@pytest.mark.parametrize("mode", ["polling", "webhook"])
async def test_a_database_restart_loses_and_doubles_no_photo(
    mode: str,
    fresh_api: FakeTelegramApi,
    tmp_path: Path,
    lesion_jpegs: dict[str, bytes],
    cluster: Cluster,
) -> None:
    base = 7_000_000 if mode == "polling" else 7_100_000
    before, during = [base + n for n in range(2)], [base + 100 + n for n in range(5)]
    photos = [
        register(fresh_api, images.phone_like_photo(jpeg, seed=n))
        for n, jpeg in enumerate(lesion_jpegs.values())
    ]
    env = {"INBOX_LEASE_S": "3"}
    if mode == "webhook":
        port = free_port()
        env |= {
            "WEBHOOK_URL": f"http://127.0.0.1:{port}/telegram-updates",
            "WEBHOOK_SECRET": "outage-Secret_1-Kq7Zp3Xw9Lm2Vb8Nc4Rt6Yh",
            "WEBHOOK_PORT": str(port),
        }
    # The cluster is this test's own: its default database will do.
    deployment = Deployment(fresh_api, tmp_path, cluster.url, **env)
    async with deployment.process() as bot:
        await deployment.agree(during)
        await deployment.send_photos(before, photos)
        await fresh_api.wait_for(lambda: len(results(fresh_api, before)) == len(before), 120)
        await asyncio.sleep(1.0)  # settled: nothing of theirs in flight at the outage
        assert (await http_get(deployment.health_port, "/readyz"))[0] == 200

        await asyncio.to_thread(cluster.stop)
        down_at = time.monotonic()
        readiness: list[int] = []
        for n, user in enumerate(during):
            fresh_api.push_message(user, photo=photos[n % len(photos)])
            readiness.append((await http_get(deployment.health_port, "/readyz"))[0])
            await asyncio.sleep(OUTAGE_S / len(during) / 2)
        while time.monotonic() - down_at < OUTAGE_S:
            readiness.append((await http_get(deployment.health_port, "/readyz"))[0])
            await asyncio.sleep(0.25)  # an HTTP endpoint: there is no event to wait on
        await asyncio.to_thread(cluster.start)

        await fresh_api.wait_for(lambda: len(results(fresh_api, during)) == len(during), 120)
        await asyncio.sleep(2.0)  # a second answer to anyone would come now
        ready_again = await ready_within(deployment.health_port, 30)
        assert await stop(bot) == 0
    rows = await deployment.rows_per_user(before + during)

    assert 503 in readiness, readiness
    assert ready_again
    assert results(fresh_api, before + during) == dict.fromkeys(before + during, 1)
    assert rows == dict.fromkeys(before + during, 1)


async def ready_within(port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if (await http_get(port, "/readyz"))[0] == 200:
                return True
        await asyncio.sleep(0.25)  # an HTTP endpoint: there is no event to wait on
    return False


async def test_readyz_says_not_ready_while_updates_wait_and_none_finishes(
    fresh_api: FakeTelegramApi, tmp_path: Path, lesion_jpegs: dict[str, bytes]
) -> None:
    """A photo held mid-download for longer than four time budgets (0.5 s each here): the
    workers look stuck, so /readyz is 503 until it finishes, then 200 again."""
    settings = make_settings(fresh_api.url, tmp_path / "bot.db", screening_time_budget_s=0.5)
    user = 7_200_000
    async with start_bot(settings) as bot:
        port = bot.application.bot_data.health_port
        await bot.agree(user)
        file_id = send_photo(fresh_api, user, phone_photo(lesion_jpegs))
        held = fresh_api.hold_download(file_id)
        await fresh_api.wait_for(lambda: file_id in fresh_api.download_requests, 30)
        assert (await http_get(port, "/readyz"))[0] == 200  # waiting, not stuck yet
        await asyncio.sleep(2.5)  # past 4 x 0.5 s, within the client's 5 s read timeout
        status, body = await http_get(port, "/readyz")
        held.set()
        await fresh_api.wait_for_text(user)
        assert (status, "none finished" in body) == (503, True), body
        assert await ready_within(port, 10)

"""A real ``python -m bot`` killed (kill -9) or stopped (SIGTERM) with photos in flight.

Every update is kept in the database before Telegram is told it arrived (bot.inbox), so
what a stopped process held is answered by the next one, and a photo handled twice (killed
after answering, before marking it handled) still has exactly one consultation row.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.config import Settings
from bot.db.models import Consultation, InboxUpdate, utc_now
from bot.db.repository import UserRepository
from bot.db.session import create_engine, create_session_factory
from bot.privacy import user_key
from tests.e2e import images
from tests.e2e.conftest import fresh_postgres_database
from tests.e2e.processes import bot_env, bot_process, free_port, stop, wait_until_ready
from tests.fakes.telegram_api import TOKEN, FakeTelegramApi, SentMessage

SECRET = "crash-test-" + "9b1e4c7a2f5d8036e1b4a7c9d2f5083e6b1a4d7c0f3e6a9b2d5c8f1e4a7b0c3d6"
# Issue 14: back within 10 s of a restart after kill -9, and out within 10 s of SIGTERM.
ANSWERS_AGAIN_WITHIN_S = 10.0
EXITS_WITHIN_S = 10.0
Photo = list[dict[str, object]]


@pytest.fixture
def photos(lesion_jpegs: dict[str, bytes]) -> list[bytes]:
    """A few phone-like photos."""
    return [images.phone_like_photo(jpeg, seed=n) for n, jpeg in enumerate(lesion_jpegs.values())]


def register(api: FakeTelegramApi, photo: bytes) -> Photo:
    """Make ``photo`` downloadable as a new file; return its sizes as a message carries them."""
    thumb, tw, th = images.resized_jpeg(photo, 90)
    width, height = images.size_of(photo)
    return [
        api.photo_size(api.add_file(thumb), tw, th),
        api.photo_size(api.add_file(photo), width, height),
    ]


class Deployment:
    """One SQLite database and the bot processes started on it, one after another."""

    def __init__(
        self, api: FakeTelegramApi, tmp_path: Path, database_url: str | None = None, **env: str
    ) -> None:
        self.api = api
        self.tmp_path = tmp_path
        self.database_url = database_url or f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
        self.env = env
        self.log = tmp_path / "bot.log"
        self.starts = 0
        self.health_port = 0  # the latest process's /healthz, /readyz and /metrics

    @asynccontextmanager
    async def process(
        self, *, ready: bool = True, **env: str
    ) -> AsyncIterator[asyncio.subprocess.Process]:
        self.starts += 1
        health = self.health_port = free_port()
        env = bot_env(
            TELEGRAM_BOT_TOKEN=TOKEN,
            TELEGRAM_API_URL=self.api.url,
            DATABASE_URL=self.database_url,
            USER_KEY_SECRET=SECRET,
            HEALTH_PORT=str(health),
            **self.env,
            **env,
        )
        async with bot_process(env, self.tmp_path, self.tmp_path / f"bot{self.starts}.log") as p:
            if ready:
                await wait_until_ready(health, p)
            yield p

    async def wait_for_log(self, text: str, within_s: float) -> None:
        """Wait until the latest process's log says ``text``."""
        log = self.tmp_path / f"bot{self.starts}.log"
        async with asyncio.timeout(within_s):
            while True:
                if text in log.read_text():
                    return
                await asyncio.sleep(0.05)  # a file being written: no event to wait on

    def logs(self) -> str:
        return "\n".join(
            (self.tmp_path / f"bot{n}.log").read_text() for n in range(1, self.starts + 1)
        )

    async def agree(self, users: Sequence[int]) -> None:
        """Store the users' consent (the consent flow has its own tests)."""
        engine = create_engine(self.database_url)
        try:
            async with create_session_factory(engine).begin() as session:
                for user in users:
                    row = await UserRepository(session).get_or_add(key(user))
                    row.consented_at, row.language = utc_now(), "en"
        finally:
            await engine.dispose()

    async def send_photos(self, users: Sequence[int], photos: Sequence[Photo]) -> None:
        """The users agree, then each sends one photo (taken from ``photos`` in turn)."""
        await self.agree(users)
        for n, user in enumerate(users):
            self.api.push_message(user, photo=photos[n % len(photos)])

    async def rows_per_user(self, users: Sequence[int]) -> dict[int, int]:
        """Consultation rows of each user."""
        by_key = {key(user): user for user in users}
        engine = create_engine(self.database_url)
        try:
            async with create_session_factory(engine)() as session:
                rows = (
                    await session.execute(
                        select(Consultation.user_key, func.count()).group_by(Consultation.user_key)
                    )
                ).all()
                waiting = await session.scalar(
                    select(func.count()).where(InboxUpdate.done_at.is_(None))
                )
        finally:
            await engine.dispose()
        assert waiting == 0, f"{waiting} updates were never handled"
        counts = {by_key[k]: int(n) for k, n in rows if k in by_key}
        return {user: counts.get(user, 0) for user in users}


def key(user: int) -> str:
    return user_key(user, SECRET.encode())


def results(api: FakeTelegramApi, users: Sequence[int]) -> Counter[int]:
    """Result texts sent to each user (the heatmap photo is counted apart)."""
    return _count(api.sent, users, "sendMessage")


def heatmaps(api: FakeTelegramApi, users: Sequence[int]) -> Counter[int]:
    return _count(api.sent, users, "sendPhoto")


def assert_one_row_each_and_no_answer_lost(
    rows: dict[int, int], sent: Counter[int], answered_before: set[int]
) -> None:
    """After a kill -9: one consultation row per user, and every user answered. A second
    answer only where the killed process sent the first and died before marking it
    delivered: Telegram cannot tell us it already has it."""
    assert {user for user, n in rows.items() if n != 1} == set(), rows
    assert set(sent) == set(rows)
    assert {user for user, n in sent.items() if n > 1} <= answered_before, sent


def _count(sent: Sequence[SentMessage], users: Sequence[int], method: str) -> Counter[int]:
    wanted = set(users)
    return Counter(m.chat_id for m in sent if m.method == method and m.chat_id in wanted)


async def test_kill_9_during_50_uploads_loses_and_duplicates_nothing(
    fresh_api: FakeTelegramApi, tmp_path: Path, photos: list[bytes]
) -> None:
    """Test 2 of issue 14: kill -9 with 50 photos in flight, restart on the same database:
    answers again within 10 s, every photo answered, exactly one row per user."""
    users = list(range(3_000_000, 3_000_050))
    # A short lease, so the photos the dead process held are taken over within seconds.
    deployment = Deployment(fresh_api, tmp_path, INBOX_LEASE_S="5")
    sent_photos = [register(fresh_api, photo) for photo in photos]
    async with deployment.process() as first:
        await deployment.send_photos(users, sent_photos)
        # Mid-flight: some answered, the rest fetched and queued or being screened.
        await fresh_api.wait_for(lambda: len(results(fresh_api, users)) >= 5, 180)
        first.kill()
        await first.wait()
    answered_before = set(results(fresh_api, users))
    assert len(answered_before) < len(users), "all answered before the kill: nothing tested"

    newcomer = 3_999_999
    started = time.monotonic()
    async with deployment.process(ready=False) as second:
        fresh_api.push_text(newcomer, "/start")
        await fresh_api.wait_for_text(newcomer, within_s=60)
        back_after = time.monotonic() - started
        await fresh_api.wait_for(lambda: len(results(fresh_api, users)) == len(users), 180)
        await asyncio.sleep(1.0)  # the last answer's row is marked delivered just after it
        assert await stop(second) == 0

    logs = deployment.logs()
    assert "Traceback" not in logs, logs[-3000:]
    assert back_after <= ANSWERS_AGAIN_WITHIN_S, f"answered again after {back_after:.1f} s"
    assert_one_row_each_and_no_answer_lost(
        await deployment.rows_per_user(users), results(fresh_api, users), answered_before
    )


async def test_sigterm_with_40_photos_queued_exits_quickly_and_answers_each_once(
    fresh_api: FakeTelegramApi, tmp_path: Path, photos: list[bytes]
) -> None:
    """Test 3 of issue 14: SIGTERM with 40 photos queued exits 0 within 10 s. The photos
    being downloaded (one per slot) are answered first; the rest are handed over and
    answered by the next start: each user exactly one reply and one row.

    Downloads are held open until the stop has begun, so exactly the slots' photos are in
    flight at the signal, however fast or slow the machine.
    """
    users = list(range(4_000_000, 4_000_040))
    slots = Settings.model_fields["max_pending_screenings"].default
    deployment = Deployment(fresh_api, tmp_path)  # the default lease: a stop does not wait on it
    sent_photos = [register(fresh_api, photos[n % len(photos)]) for n in range(len(users))]
    held = [fresh_api.hold_download(str(photo[-1]["file_id"])) for photo in sent_photos]
    async with deployment.process() as first:
        await deployment.send_photos(users, sent_photos)
        # Every slot holds a photo being downloaded; the other photos wait for a slot.
        await fresh_api.wait_for(lambda: len(fresh_api.download_requests) == slots, 60)
        stopping = time.monotonic()
        first.send_signal(signal.SIGTERM)
        await deployment.wait_for_log("Stopping:", EXITS_WITHIN_S)
        for event in held:
            event.set()
        returncode = await asyncio.wait_for(first.wait(), 60)
        stopped_after = time.monotonic() - stopping
    answered_by_first = len(results(fresh_api, users))

    async with deployment.process() as second:
        await fresh_api.wait_for(lambda: len(results(fresh_api, users)) == len(users), 180)
        await asyncio.sleep(1.0)
        assert await stop(second) == 0

    logs = deployment.logs()
    assert returncode == 0, logs[-3000:]
    assert stopped_after <= EXITS_WITHIN_S, f"stopped after {stopped_after:.1f} s"
    assert "Traceback" not in logs, logs[-3000:]
    # The photos in flight were finished and answered; none of those waiting was started.
    assert answered_by_first == slots
    assert results(fresh_api, users) == dict.fromkeys(users, 1)
    assert max(heatmaps(fresh_api, users).values()) == 1
    assert await deployment.rows_per_user(users) == dict.fromkeys(users, 1)


async def test_a_replica_killed_under_load_has_its_photos_answered_by_the_other(
    fresh_api: FakeTelegramApi, tmp_path: Path, photos: list[bytes], postgres_url: str | None
) -> None:
    """Two webhook replicas on PostgreSQL; the one Telegram posts to is killed with photos
    in flight: the other takes over every update it held, once its lease has run out, and
    answers each photo with exactly one consultation row."""
    if postgres_url is None:
        pytest.skip("no PostgreSQL server binaries here; set TEST_POSTGRES_URL")
    users = list(range(5_000_000, 5_000_030))
    ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{port}/telegram-updates" for port in ports]
    sent_photos = [register(fresh_api, photo) for photo in photos]
    async with fresh_postgres_database(postgres_url) as database_url:
        # No load balancer here: both register the first replica's URL, so it gets every
        # update until it dies; then the fake posts to the survivor, as a balancer would.
        deployment = Deployment(
            fresh_api,
            tmp_path,
            database_url,
            INBOX_LEASE_S="5",
            WEBHOOK_URL=urls[0],
            WEBHOOK_SECRET="replica-Secret_1-Kq7Zp3Xw9Lm2Vb8Nc4Rt6Yh",
        )
        async with (
            deployment.process(WEBHOOK_PORT=str(ports[1])) as survivor,
            deployment.process(WEBHOOK_PORT=str(ports[0])) as victim,
        ):
            await deployment.send_photos(users, sent_photos)
            await fresh_api.wait_for(lambda: len(results(fresh_api, users)) >= 3, 180)
            victim.kill()
            await victim.wait()
            answered_before = set(results(fresh_api, users))
            await fresh_api.move_webhook(urls[1])
            await fresh_api.wait_for(lambda: len(results(fresh_api, users)) == len(users), 180)
            await asyncio.sleep(1.0)  # the last answer's row is marked delivered just after it
            assert await stop(survivor) == 0
        rows = await deployment.rows_per_user(users)

    logs = deployment.logs()
    assert "Traceback" not in logs, logs[-3000:]
    assert len(answered_before) < len(users), "all answered before the kill: nothing tested"
    assert "updates taken over from the inbox" in logs
    assert_one_row_each_and_no_answer_lost(rows, results(fresh_api, users), answered_before)


async def test_a_drain_longer_than_the_lease_beside_another_replica_answers_once(
    fresh_api: FakeTelegramApi, tmp_path: Path, photos: list[bytes]
) -> None:
    """A rolling restart: the new process is up, the old one gets SIGTERM while a photo's
    download hangs for longer than a lease. The old one keeps renewing its leases while it
    drains, so the new one does not take the photo over: one answer, one row."""
    user = 6_000_000
    deployment = Deployment(fresh_api, tmp_path, INBOX_LEASE_S="3")
    [photo] = [register(fresh_api, photos[0])]
    held = fresh_api.hold_download(str(photo[-1]["file_id"]))
    async with deployment.process() as old:
        await deployment.send_photos([user], [photo])
        await fresh_api.wait_for(lambda: len(fresh_api.download_requests) == 1, 60)
        async with deployment.process() as new:
            old.send_signal(signal.SIGTERM)
            await asyncio.sleep(7.0)  # more than two leases: a held photo not renewed is taken
            held.set()
            assert await asyncio.wait_for(old.wait(), 60) == 0
            await fresh_api.wait_for(lambda: len(results(fresh_api, [user])) == 1, 60)
            await asyncio.sleep(4.0)  # a second answer, from a takeover, would come now
            assert await stop(new) == 0

    logs = deployment.logs()
    assert "Traceback" not in logs, logs[-3000:]
    assert results(fresh_api, [user]) == {user: 1}
    assert heatmaps(fresh_api, [user]) == {user: 1}
    assert "taken over" not in logs
    assert await deployment.rows_per_user([user]) == {user: 1}

"""A running bot, built exactly as ``python -m bot`` builds it, polling a fake Telegram.

One bot serves a whole test module (start-up loads the model and migrates the database);
each test talks to it as its own user, so tests do not see each other's replies.

The database is a fresh SQLite file; a module that overrides the ``backend`` fixture with
``each_backend`` runs all its tests on a fresh PostgreSQL database as well.
"""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy.engine import make_url

from bot.app import ALLOWED_UPDATES, build_application
from bot.config import Settings
from bot.context import BotApplication
from bot.db.models import Consultation, User, utc_now
from bot.db.repository import ConsultationRepository, UserRepository
from tests.fakes.telegram_api import TOKEN, FakeTelegramApi

# Small limits, so tests can exceed them with small files.
MAX_IMAGE_BYTES = 3 * 1024 * 1024
MAX_IMAGE_PIXELS = 4_000_000
ADMIN_ID = 999
# 32 random bytes, as USER_KEY_SECRET must hold (a fixed value, so tests can recompute keys).
TEST_USER_KEY_SECRET = "5f0c9a3e7b21d48e6a90f3c2b7d15e84a3c6f09e2d7b41a85c3e9f06d2b7a418"


def make_settings(api_url: str, database: Path | str, **overrides: object) -> Settings:
    """Return settings for a bot talking to ``api_url`` and logging to a SQLite file (or
    to the database URL given)."""
    url = database if isinstance(database, str) else f"sqlite+aiosqlite:///{database}"
    values: dict[str, object] = {
        "telegram_bot_token": TOKEN,
        "telegram_api_url": api_url,
        "database_url": url,
        "user_key_secret": TEST_USER_KEY_SECRET,
        "max_image_bytes": MAX_IMAGE_BYTES,
        "max_image_pixels": MAX_IMAGE_PIXELS,
        "admin_ids": str(ADMIN_ID),
        # Reminders and follow-ups are sent by tests calling the job with time moved on,
        # never by the clock during a test.
        "scheduler_interval_s": 24 * 3600,
        # Any free port: several bots (and other checkouts' tests) run on one machine.
        "health_port": 0,
        # A send that hangs fails fast, so the tests of timeouts stay short.
        "scheduler_send_timeout_s": 1.0,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass
class RunningBot:
    application: BotApplication
    settings: Settings

    async def consultations(self, user_id: int) -> Sequence[Consultation]:
        """Return the consultation rows of one Telegram user, newest first."""
        key = self.key(user_id)
        async with self.application.bot_data.runtime.sessions() as session:
            return await ConsultationRepository(session).for_user(key)

    def key(self, user_id: int) -> str:
        return self.application.bot_data.runtime.user_key(user_id)

    async def user(self, user_id: int) -> User | None:
        """Return the stored settings of one Telegram user."""
        async with self.application.bot_data.runtime.sessions() as session:
            return await UserRepository(session).get(self.key(user_id))

    async def agree(self, user_id: int, *, language: str = "en", worker: bool = False) -> None:
        """Store a user's consent directly (the consent flow itself has its own tests)."""
        async with self.application.bot_data.runtime.sessions.begin() as session:
            user = await UserRepository(session).get_or_add(self.key(user_id))
            user.consented_at, user.language, user.is_worker = utc_now(), language, worker


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def fake_api(backend: str) -> AsyncIterator[FakeTelegramApi]:
    """A fake Telegram per bot: a module run on two backends starts with an empty chat log."""
    del backend  # asked for only so that each backend's bot gets its own fake
    api = FakeTelegramApi()
    await api.start()
    yield api
    await api.stop()


@pytest_asyncio.fixture
async def fresh_api() -> AsyncIterator[FakeTelegramApi]:
    """A fake Telegram of its own, in this test's event loop."""
    api = FakeTelegramApi()
    await api.start()
    yield api
    await api.stop()


@pytest.fixture(scope="module")
def backend() -> str:
    """The database the module's bot logs to: SQLite unless the module asks for both."""
    return "sqlite"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def each_backend(request: pytest.FixtureRequest) -> str:
    """Override ``backend`` with this to run a module's tests on SQLite and on PostgreSQL."""
    if request.param == "postgresql" and request.getfixturevalue("postgres_url") is None:
        pytest.skip("no PostgreSQL server binaries here; set TEST_POSTGRES_URL")
    return str(request.param)


@contextlib.asynccontextmanager
async def fresh_postgres_database(server_url: str) -> AsyncIterator[str]:
    """Create an empty database on the test cluster; yield its URL; drop it afterwards."""
    url = make_url(server_url)
    name = f"e2e_{uuid.uuid4().hex[:12]}"
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def database_url(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """A fresh, empty database for one module's bot."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'bot.db'}"
        return
    server = request.getfixturevalue("postgres_url")
    assert server is not None  # each_backend skips otherwise
    async with fresh_postgres_database(server) as url:
        yield url


@contextlib.asynccontextmanager
async def initialised_application(settings: Settings) -> AsyncIterator[BotApplication]:
    """Build the real Application and run its start-up hooks (migrations, keys, clients)."""
    application = build_application(settings)
    assert application.post_init is not None and application.post_shutdown is not None
    await application.initialize()
    try:
        await application.post_init(application)
        yield application
    finally:
        await application.shutdown()
        await application.post_shutdown(application)


@contextlib.asynccontextmanager
async def start_bot(settings: Settings) -> AsyncIterator[RunningBot]:
    """Run the real Application the way ``Application.run_polling`` does, inside this loop."""
    async with initialised_application(settings) as application:
        assert application.updater is not None
        try:
            await application.updater.start_polling(allowed_updates=ALLOWED_UPDATES)
            await application.start()
            yield RunningBot(application, settings)
        finally:
            if application.updater.running:
                await application.updater.stop()
            if application.running:
                await application.stop()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def running_bot(fake_api: FakeTelegramApi, database_url: str) -> AsyncIterator[RunningBot]:
    """One bot for the whole test module, on a fresh database (see ``backend``)."""
    async with start_bot(make_settings(fake_api.url, database_url)) as bot:
        yield bot


_user_ids = itertools.count(10_001)


@pytest.fixture
def new_user_id() -> Iterator[int]:
    """Return a Telegram user id no other test uses (a private chat has the same id)."""
    yield next(_user_ids)


@pytest_asyncio.fixture(loop_scope="module")
async def user_id(new_user_id: int, running_bot: RunningBot) -> int:
    """Return a fresh user id whose owner has already agreed to the consent text."""
    await running_bot.agree(new_user_id)
    return new_user_id

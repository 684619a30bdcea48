"""Database fixtures for the integration tests (PostgreSQL itself: tests/postgres.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.session import create_engine
from tests.postgres import drop_everything


@pytest_asyncio.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A fresh, empty database: a new SQLite file, or a wiped PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'not-yet' / 'bot.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        if url is None:
            pytest.skip("no PostgreSQL server binaries here; set TEST_POSTGRES_URL")
    engine = create_engine(url)
    await drop_everything(engine)
    yield engine
    await drop_everything(engine)
    await engine.dispose()

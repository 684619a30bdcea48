"""The async engine and the session factory (one session per unit of work)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def create_engine(database_url: str) -> AsyncEngine:
    """Create the engine, first making the folder of a SQLite database file if needed."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    return create_async_engine(url, pool_pre_ping=url.get_backend_name() != "sqlite")


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Return the factory that each unit of work opens with ``async with factory.begin()``."""
    # Rows stay readable after commit, so callers can use what they just wrote.
    return async_sessionmaker(engine, expire_on_commit=False)

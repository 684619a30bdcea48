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

SQLITE_BUSY_TIMEOUT_S = 30.0


def create_engine(database_url: str) -> AsyncEngine:
    """Create the engine, first making the folder of a SQLite database file if needed."""
    url = make_url(database_url)
    # hide_parameters: an error's message would otherwise carry the statement's values
    # (spot names, patient codes, user keys) into tracebacks and logs.
    if url.get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=True, hide_parameters=True)
    if url.database not in (None, "", ":memory:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    # SQLite has one writer at a time; with many users at once a write may wait its turn
    # longer than the driver's default 5 s, so let it wait rather than fail.
    return create_async_engine(
        url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}, hide_parameters=True
    )


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Return the factory that each unit of work opens with ``async with factory.begin()``."""
    # Rows stay readable after commit, so callers can use what they just wrote.
    return async_sessionmaker(engine, expire_on_commit=False)

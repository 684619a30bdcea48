"""Apply Alembic migrations from inside the running bot (or ``python -m bot migrate``).

Several replicas may start at the same moment on one empty database. On PostgreSQL the
upgrade runs under a transaction-level advisory lock: the first replica migrates, the
others wait for it and then find the schema at head. SQLite's single writer serialises
them by itself.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

# alembic.ini and migrations/ sit beside the bot package in the source tree and the image.
ALEMBIC_INI = Path(__file__).resolve().parents[2] / "alembic.ini"
# Any fixed 64-bit number, the same in every replica: "skin-bot migrations".
MIGRATION_LOCK_KEY = 0x5B1E_0D7A_9C42


def alembic_config(connection: Connection | None = None) -> Config:
    """Return the Alembic config; with ``connection``, env.py migrates on it, not on a URL."""
    config = Config(str(ALEMBIC_INI))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


async def upgrade_to_head(engine: AsyncEngine) -> None:
    """Bring the database schema up to the newest revision (a no-op when it already is)."""
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Held until this transaction ends; PostgreSQL runs the DDL inside it too.
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        await connection.run_sync(_upgrade)

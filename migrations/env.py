"""Alembic environment (async).

Two ways in: the bot passes its own open connection in ``config.attributes["connection"]``
(see ``bot/db/migrate.py``); the ``alembic`` command line gets none and connects to
DATABASE_URL from the environment or ``.env``.
"""

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from bot.config import DatabaseSettings
from bot.db.models import Base
from bot.db.session import create_engine

config = context.config
target_metadata = Base.metadata
shared_connection: Connection | None = config.attributes.get("connection")

# Only the command line configures logging from alembic.ini; the bot has its own.
if shared_connection is None and config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def run_migrations_offline() -> None:
    """Emit SQL for DATABASE_URL's dialect without connecting."""
    context.configure(
        url=DatabaseSettings().database_url,
        target_metadata=target_metadata,
        render_as_batch=True,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    """Migrate on an open connection."""
    # Batch mode lets ALTER-style migrations work on SQLite and is a plain ALTER elsewhere.
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    """Connect to DATABASE_URL and migrate it."""
    engine = create_engine(DatabaseSettings().database_url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
elif shared_connection is not None:
    do_run_migrations(shared_connection)
else:
    asyncio.run(run_async_migrations())

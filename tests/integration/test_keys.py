"""Keys that outlive the bot token, and chat ids re-sealed at start-up, on SQLite and
PostgreSQL: values from before the migration open after it; a value moved to another
user's row does not."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import Settings
from bot.db.migrate import upgrade_to_head
from bot.db.models import User
from bot.db.repository import UserRepository
from bot.db.session import create_engine, create_session_factory
from bot.keys import KEY_FILE_NAME, Keys, KeySetupError, load_keys, reseal_chat_refs
from bot.privacy import ChatSealer, UpdateSealer, user_key
from tests.legacy_seal import seal_chat_id_v0

T1 = "123456789:FIRST-token-abcdefghijklmnopqrstuvwxyz"
T2 = "123456789:SECOND-token-abcdefghijklmnopqrstuvwxy"
SECRET = b"the-deployment-user-key-secret"
NEW_SEAL_KEY = "n" * 64


def settings(database_url: str, token: str = T1, **values: object) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None, telegram_bot_token=token, database_url=database_url, **values
    )


async def test_values_sealed_before_the_migration_open_after_it(engine: AsyncEngine) -> None:
    """Old-format values and values of a rotated-out key are re-sealed with the current
    key; group chats are dropped; unreadable values are kept; a moved value fails to open."""
    await upgrade_to_head(engine)
    sessions = create_session_factory(engine)
    before_rotation = ChatSealer([SECRET])
    rows = {
        "a" * 64: seal_chat_id_v0(555_001, SECRET),  # the pre-v1 format
        "b" * 64: seal_chat_id_v0(-1_001_234_567_890, SECRET),  # a group, pre-v1
        "c" * 64: before_rotation.seal(555_003, "c" * 64),  # v1, the key before rotation
        "d" * 64: "garbage-nobody-can-open",
    }
    async with sessions.begin() as session:
        for key, chat_ref in rows.items():
            user = await UserRepository(session).get_or_add(key)
            user.chat_ref, user.reminder = chat_ref, "monthly"

    secrets = [NEW_SEAL_KEY.encode(), SECRET]
    keys = Keys(SECRET, ChatSealer(secrets), UpdateSealer(secrets))
    report = await reseal_chat_refs(sessions, keys)
    assert (report.resealed, report.dropped, report.unreadable) == (2, 1, 1)

    async with sessions() as session:
        users = {key: await session.get(User, key) for key in rows}
    a, b, c, d = (users[key] for key in rows)
    assert a is not None and b is not None and c is not None and d is not None
    assert a.chat_ref is not None and keys.sealer.is_current(a.chat_ref)
    assert keys.sealer.open(a.chat_ref, a.user_key) == 555_001
    assert c.chat_ref is not None and keys.sealer.open(c.chat_ref, c.user_key) == 555_003
    assert (b.chat_ref, b.reminder) == (None, None)  # private chats only
    assert d.chat_ref == "garbage-nobody-can-open"
    # Whoever can write the database cannot redirect a reminder by moving values around.
    assert keys.sealer.open(a.chat_ref, c.user_key) is None
    # Once done, nothing is left to do.
    again = await reseal_chat_refs(sessions, keys)
    assert (again.resealed, again.dropped, again.unreadable) == (0, 0, 1)


async def test_without_a_secret_one_is_generated_kept_and_survives_a_new_token(
    tmp_path: Path,
) -> None:
    """A fresh SQLite database: a random secret beside it, mode 0600, the same next time,
    whatever the token."""
    database = tmp_path / "data" / "bot.db"
    url = f"sqlite+aiosqlite:///{database}"
    engine = create_engine(url)
    try:
        await upgrade_to_head(engine)
        sessions = create_session_factory(engine)
        first = await load_keys(settings(url, T1), sessions)
        second = await load_keys(settings(url, T2), sessions)
    finally:
        await engine.dispose()
    key_file = database.parent / KEY_FILE_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert first.user_key_secret == second.user_key_secret
    assert T1.encode() not in first.user_key_secret
    assert len(first.user_key_secret) >= 64


async def test_a_database_keyed_by_the_old_token_keeps_its_users(tmp_path: Path) -> None:
    """A database from before USER_KEY_SECRET was required: its users keep their keys, and
    after that the token can change."""
    database = tmp_path / "bot.db"
    url = f"sqlite+aiosqlite:///{database}"
    legacy_secret = b"user-key:" + T1.encode()
    old_key = user_key(42, legacy_secret)
    engine = create_engine(url)
    try:
        await upgrade_to_head(engine)
        sessions = create_session_factory(engine)
        async with sessions.begin() as session:
            user = await UserRepository(session).get_or_add(old_key)
            user.chat_ref = seal_chat_id_v0(42, legacy_secret)
        keys = await load_keys(settings(url, T1), sessions)
        await reseal_chat_refs(sessions, keys)
        after_rotation = await load_keys(settings(url, T2), sessions)
        async with sessions() as session:
            stored = await UserRepository(session).get(old_key)
    finally:
        await engine.dispose()
    assert keys.user_key(42) == after_rotation.user_key(42) == old_key
    assert stored is not None and stored.chat_ref is not None
    assert after_rotation.sealer.open(stored.chat_ref, old_key) == 42


async def test_a_database_server_without_a_secret_refuses_to_start() -> None:
    """No SQLite file to keep a generated secret beside: USER_KEY_SECRET is required, by
    the settings and again by load_keys (for settings built some other way)."""
    url = "postgresql+asyncpg://bot@127.0.0.1:1/bot"  # never connected to
    with pytest.raises(ValidationError, match="USER_KEY_SECRET is required") as invalid:
        settings(url)
    assert T1 not in str(invalid.value)
    unchecked = Settings.model_construct(
        telegram_bot_token=SecretStr(T1), database_url=url, user_key_secret=None
    )
    engine = create_engine(url)
    try:
        with pytest.raises(KeySetupError, match="USER_KEY_SECRET is required") as raised:
            await load_keys(unchecked, create_session_factory(engine))
        assert T1 not in str(raised.value)
        given = settings(url, user_key_secret=SECRET.decode())
        keys = await load_keys(given, create_session_factory(engine))
    finally:
        await engine.dispose()
    assert keys.user_key_secret == SECRET

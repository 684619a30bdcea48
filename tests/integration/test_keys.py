"""Keys that outlive the bot token, and chat ids re-sealed at start-up, on SQLite and
PostgreSQL: values from before the migration open after it; a value moved to another
user's row does not."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import Settings, describe_settings_error
from bot.db.migrate import upgrade_to_head
from bot.db.models import User
from bot.db.repository import UserRepository
from bot.db.session import create_engine, create_session_factory
from bot.keys import KEY_FILE_NAME, Keys, KeySetupError, load_keys, reseal_chat_refs
from bot.privacy import ChatSealer, ThumbnailSealer, UpdateSealer, user_key
from tests.legacy_seal import seal_chat_id_v0

T1 = "123456789:FIRST-token-abcdefghijklmnopqrstuvwxyz"
T2 = "123456789:SECOND-token-abcdefghijklmnopqrstuvwxy"
SECRET = b"the-deployment-user-key-secret-" + b"1f4a7d0c3e6b9f2a5d8c1e4b7a0d3f6c"
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
    keys = Keys(SECRET, ChatSealer(secrets), UpdateSealer(secrets), ThumbnailSealer(secrets))
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
    """A database from before USER_KEY_SECRET existed: with USER_KEY_SECRET set to
    'user-key:' and the old token (the documented recovery), its users keep their keys,
    and after that the token can change."""
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
        kept = legacy_secret.decode()
        keys = await load_keys(settings(url, T1, user_key_secret=kept), sessions)
        await reseal_chat_refs(sessions, keys)
        after_rotation = await load_keys(settings(url, T2, user_key_secret=kept), sessions)
        async with sessions() as session:
            stored = await UserRepository(session).get(old_key)
    finally:
        await engine.dispose()
    assert keys.user_key(42) == after_rotation.user_key(42) == old_key
    assert stored is not None and stored.chat_ref is not None
    assert after_rotation.sealer.open(stored.chat_ref, old_key) == 42
    assert not (tmp_path / KEY_FILE_NAME).exists()


async def _database_with_a_user(url: str) -> AsyncEngine:
    engine = create_engine(url)
    await upgrade_to_head(engine)
    async with create_session_factory(engine).begin() as session:
        await UserRepository(session).get_or_add("e" * 64)
    return engine


async def test_a_missing_key_file_with_users_stops_the_bot(tmp_path: Path) -> None:
    """The kept secret is gone (lost, or a restore without it) and the database has users:
    no secret is derived from the token or generated (every user would lose their data);
    a clear error says how to recover, and nothing is written."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    engine = await _database_with_a_user(url)
    try:
        with pytest.raises(KeySetupError, match="is missing") as raised:
            await load_keys(settings(url, T1), create_session_factory(engine))
    finally:
        await engine.dispose()
    message = str(raised.value)
    assert "1 users" in message and "Restore the file" in message
    assert "USER_KEY_SECRET" in message and T1 not in message
    assert not (tmp_path / KEY_FILE_NAME).exists()


@pytest.mark.parametrize("content", [b"", b"\n", b"short", b"a" * 64])
async def test_an_empty_or_weak_key_file_stops_the_bot(tmp_path: Path, content: bytes) -> None:
    """A kept file that is empty, short or a pattern: refused, never used as the HMAC key
    (an empty key would make every user key computable by anyone), and left as it is."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    key_file = tmp_path / KEY_FILE_NAME
    key_file.write_bytes(content)
    key_file.chmod(0o600)
    engine = await _database_with_a_user(url)
    try:
        with pytest.raises(KeySetupError, match="restore the file"):
            await load_keys(settings(url, T1), create_session_factory(engine))
    finally:
        await engine.dispose()
    assert key_file.read_bytes() == content


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("user_key_secret", "a"),
        ("user_key_secret", " "),
        ("user_key_secret", "0123456789abcdef" * 2),  # 32 hex digits: 16 bytes
        ("user_key_secret", "ab" * 40),  # long, but two characters
        ("chat_seal_keys", "n" * 64),
        ("chat_seal_keys", "0123456789abcdef" * 2),
        ("webhook_secret", "b"),
        ("webhook_secret", "hook-Secret_42"),
    ],
)
def test_weak_secrets_are_refused(tmp_path: Path, name: str, value: str) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    with pytest.raises(ValidationError, match=name) as invalid:
        settings(url, **{name: value})
    explained = describe_settings_error(invalid.value)  # what the bot prints
    assert name.upper() in explained
    assert value not in explained or len(value.strip()) <= 1


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("user_key_secret", secrets.token_hex(32)),
        ("user_key_secret", secrets.token_urlsafe(32)),
        ("user_key_secret", "user-key:" + T1),  # the documented legacy recovery
        ("chat_seal_keys", secrets.token_hex(32)),
        # Rotating a key of the old rule (32 characters) out: it may still open.
        ("chat_seal_keys", f"{secrets.token_hex(32)},{'0123456789abcdef' * 2}"),
        ("webhook_secret", secrets.token_urlsafe(32)),
    ],
)
def test_random_secrets_of_32_bytes_are_accepted(tmp_path: Path, name: str, value: str) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    assert settings(url, **{name: value}) is not None


def test_every_secret_is_redacted_however_short(tmp_path: Path) -> None:
    """The token is only checked for being non-blank: a short one is still in the list
    the log formatter redacts."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    assert "1:abc" in settings(url, "1:abc").secrets()


async def test_the_database_file_and_its_folder_are_owner_only(tmp_path: Path) -> None:
    """Created 0700 and 0600 whatever the umask (spot names, patient codes, results); the
    write-ahead log SQLite creates beside it takes the file's mode."""
    database = tmp_path / "data" / "bot.db"
    old_umask = os.umask(0o022)
    try:
        engine = create_engine(f"sqlite+aiosqlite:///{database}")
        try:
            await upgrade_to_head(engine)
            wal_mode = stat.S_IMODE(os.stat(f"{database}-wal").st_mode)
        finally:
            await engine.dispose()
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(database.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    assert wal_mode == 0o600


def test_an_existing_database_readable_by_others_is_made_owner_only(tmp_path: Path) -> None:
    database = tmp_path / "bot.db"
    database.touch(mode=0o644)
    database.chmod(0o644)
    create_engine(f"sqlite+aiosqlite:///{database}")
    assert stat.S_IMODE(database.stat().st_mode) == 0o600


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

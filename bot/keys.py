"""Which secrets the bot uses, and re-sealing stored chat ids when the keys change.

The user-key secret turns Telegram ids into the pseudonymous keys every table uses, so it
must outlive any bot token: it comes from USER_KEY_SECRET, or is generated once and kept
beside the SQLite file (mode 0600). It is never derived from the token.

Fails safe: a kept file that is missing while the database has users (lost, or a restore
without it) stops the bot rather than generate a new secret, which would orphan every
user; so does an empty or short secret (bot.config.weak_secret).
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.config import Settings, weak_secret
from bot.db.models import User
from bot.privacy import (
    ChatSealer,
    ThumbnailSealer,
    UpdateSealer,
    open_legacy_chat_id,
    user_key,
)

logger = logging.getLogger(__name__)

KEY_FILE_NAME = "user_key_secret"


class KeySetupError(Exception):
    """The secrets cannot be set up; the message is safe to print (it holds no secret)."""


@dataclass(frozen=True)
class Keys:
    """The user-key secret and the sealers built from the settings."""

    user_key_secret: bytes
    sealer: ChatSealer
    # Updates waiting in the inbox (see bot.inbox), from the same secrets.
    update_sealer: UpdateSealer
    # Thumbnails kept by those who opted in (bot.thumbnails), from the same secrets.
    thumbnail_sealer: ThumbnailSealer

    def user_key(self, telegram_user_id: int) -> str:
        """Return the pseudonymous key stored in place of a Telegram user id."""
        return user_key(telegram_user_id, self.user_key_secret)


def key_file_for(database_url: str) -> Path | None:
    """Where a generated user-key secret is kept: beside the SQLite file (None otherwise)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).parent / KEY_FILE_NAME


async def load_keys(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> Keys:
    """Return the keys: USER_KEY_SECRET, or the kept secret, or a new one kept from now on."""
    secret = await _user_key_secret(settings, sessions)
    # Values sealed before CHAT_SEAL_KEYS was set were sealed with a key derived from the
    # user-key secret: it comes last, so they still open (and are re-sealed at start-up).
    seal_secrets = [key.get_secret_value().encode() for key in settings.chat_seal_keys]
    secrets = [*seal_secrets, secret]
    return Keys(secret, ChatSealer(secrets), UpdateSealer(secrets), ThumbnailSealer(secrets))


async def _user_key_secret(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> bytes:
    if settings.user_key_secret is not None:
        value = settings.user_key_secret.get_secret_value()
        if (why := weak_secret(value)) is not None:  # settings built without validation
            raise KeySetupError(f"USER_KEY_SECRET {why}")
        return value.encode()
    path = key_file_for(settings.database_url)
    if path is None:
        raise KeySetupError(
            "USER_KEY_SECRET is required when DATABASE_URL is not a SQLite file: the bot "
            "cannot keep a generated secret beside a database server. Set it to a long random "
            "value and keep it (see README, 'Privacy and security'). A database first used "
            "without it keyed its users with 'user-key:' followed by the bot token of that "
            "time: set USER_KEY_SECRET to exactly that to keep them."
        )
    if path.exists():
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
            logger.warning("%s was readable by others; it is now owner-only (0600)", path)
        kept = path.read_bytes().strip()
        if (why := weak_secret(kept.decode("utf-8", "replace"))) is not None:
            raise KeySetupError(
                f"The kept user-key secret in {path} {why}. It was not written by this bot "
                "or was damaged: restore the file from the backup taken with the database "
                "(see README, 'Privacy and security'); the bot does not replace it, which "
                "would disconnect every user from their data."
            )
        return kept
    async with sessions() as session:
        known_users = int(await session.scalar(select(func.count()).select_from(User)) or 0)
    if known_users:
        # Never a new secret (every user would lose consent, history and reminders), and
        # never one derived from the token: stop and say how to recover.
        raise KeySetupError(
            f"The user-key secret file {path} is missing, but the database already has "
            f"{known_users} users keyed with it. Restore the file from the backup taken "
            "with the database, or set USER_KEY_SECRET to its content (see README, "
            "'Privacy and security'). A database first used by a version before the "
            "secret existed was keyed with 'user-key:' followed by the bot token of that "
            "time: set USER_KEY_SECRET to exactly that, then rotate the token."
        )
    secret = secrets.token_hex(32).encode()
    logger.info("USER_KEY_SECRET is not set: generated one, kept in %s (mode 0600)", path)
    _write_private(path, secret)
    return secret


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Created owner-only from the start (no window with looser permissions); O_EXCL: two
    # processes starting at once cannot overwrite each other's secret.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data + b"\n")


@dataclass(frozen=True)
class ResealReport:
    resealed: int  # old format or an old key: now sealed with the current key
    dropped: int  # a group or channel: this bot writes to private chats only
    unreadable: int  # opened with no known key: left as they are


async def reseal_chat_refs(sessions: async_sessionmaker[AsyncSession], keys: Keys) -> ResealReport:
    """Re-seal every stored chat id not sealed with the current key (run at start-up).

    This is the data migration of the v1 format and the second half of a key rotation.
    Values no known key opens are kept, not deleted: a key left out of CHAT_SEAL_KEYS by
    mistake can be put back.
    """
    resealed = dropped = unreadable = 0
    current = f"v1.{keys.sealer.current_key_id}.%"
    async with sessions.begin() as session:
        stale = await session.scalars(
            select(User).where(User.chat_ref.is_not(None), User.chat_ref.not_like(current))
        )
        for user in stale.all():
            assert user.chat_ref is not None
            chat_id = keys.sealer.open(user.chat_ref, user.user_key)
            if chat_id is None:
                chat_id = open_legacy_chat_id(user.chat_ref, keys.user_key_secret)
            if chat_id is None:
                unreadable += 1
            elif chat_id < 0:  # groups and channels have negative ids
                user.chat_ref = user.reminder = user.next_reminder_at = None
                dropped += 1
            else:
                user.chat_ref = keys.sealer.seal(chat_id, user.user_key)
                resealed += 1
    report = ResealReport(resealed, dropped, unreadable)
    if resealed or dropped or unreadable:
        logger.info(
            "Chat ids: %d re-sealed, %d of groups dropped, %d unreadable (kept)",
            resealed,
            dropped,
            unreadable,
        )
    return report

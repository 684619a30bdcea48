"""Pseudonymous user keys and sealed chat ids: the database never sees a raw Telegram id.

No database and no Telegram here; :mod:`bot.keys` decides which secrets are in use.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def user_key(telegram_user_id: int, secret: bytes) -> str:
    """Return the HMAC-SHA256 of a Telegram user id as 64 hex characters."""
    return hmac.new(secret, str(telegram_user_id).encode(), hashlib.sha256).hexdigest()


# Sealed chat ids: the bot must know a chat to write first (reminders, follow-ups), but the
# database never holds it in the clear. AES-256-GCM from the `cryptography` package:
#   v1.<key id>.<base64url(nonce | ciphertext | tag)>
# The key id names the key that sealed it, so keys can rotate (new values use the first,
# old ones still open with the others until re-sealed). The user key is the associated
# data, so a value copied into another user's row fails to open. The plaintext is always
# 8 bytes, so the length no longer tells how many digits the chat id has.
_VERSION = "v1"
_NONCE_BYTES = 12
_CHAT_ID = struct.Struct(">q")  # Telegram chat ids fit a signed 64-bit integer


def _derive(secret: bytes, purpose: bytes) -> bytes:
    # Each secret gives an independent AES key, never the secret itself.
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(secret)


@dataclass(frozen=True)
class _SealKey:
    key_id: str
    cipher: AESGCM


class Sealer:
    """AES-256-GCM for small values kept in the database; the first secret seals, every
    secret opens. ``purpose`` gives each kind of value its own keys, so a value of one
    kind never opens as another."""

    def __init__(self, secrets: Sequence[bytes], purpose: bytes) -> None:
        if not secrets:
            raise ValueError("at least one sealing secret is needed")
        keys = []
        for secret in secrets:
            key = _derive(secret, purpose)
            key_id = hashlib.sha256(b"key id:" + key).hexdigest()[:8]
            keys.append(_SealKey(key_id, AESGCM(key)))
        self._keys = {key.key_id: key for key in reversed(keys)}
        self._current = keys[0]

    @property
    def current_key_id(self) -> str:
        return self._current.key_id

    def seal(self, plain: bytes, associated: bytes) -> str:
        """Encrypt ``plain``, bound to ``associated`` (a different text every time)."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._current.cipher.encrypt(nonce, plain, associated)
        payload = base64.urlsafe_b64encode(nonce + sealed).decode()
        return f"{_VERSION}.{self._current.key_id}.{payload}"

    def open(self, sealed: str, associated: bytes) -> bytes | None:
        """Return the plaintext, or None if it was sealed with other associated data or an
        unknown key, or was altered."""
        version, _, rest = sealed.partition(".")
        key_id, _, payload = rest.partition(".")
        key = self._keys.get(key_id)
        if version != _VERSION or key is None:
            return None
        try:
            raw = base64.urlsafe_b64decode(payload.encode())
            return key.cipher.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], associated)
        except (ValueError, binascii.Error, InvalidTag):
            return None

    def is_current(self, sealed: str) -> bool:
        """True if ``sealed`` is in this format and under the current key."""
        return sealed.startswith(f"{_VERSION}.{self._current.key_id}.")


class ChatSealer:
    """Seal and open chat ids, each bound to its user's row."""

    def __init__(self, secrets: Sequence[bytes]) -> None:
        self._sealer = Sealer(secrets, b"skin-bot chat-ref v1")

    @property
    def current_key_id(self) -> str:
        return self._sealer.current_key_id

    def seal(self, chat_id: int, user_key: str) -> str:
        """Encrypt ``chat_id`` for the row of ``user_key`` (a different text every time)."""
        return self._sealer.seal(_CHAT_ID.pack(chat_id), _aad(user_key))

    def open(self, sealed: str, user_key: str) -> int | None:
        """Return the chat id, or None if it was sealed for another row or with an unknown
        key, or was altered."""
        plain = self._sealer.open(sealed, _aad(user_key))
        if plain is None or len(plain) != _CHAT_ID.size:
            return None
        return int(_CHAT_ID.unpack(plain)[0])

    def is_current(self, sealed: str) -> bool:
        """True if ``sealed`` is in this format and under the current key."""
        return self._sealer.is_current(sealed)


class UpdateSealer:
    """Seal and open whole Telegram updates while they wait in the inbox (they hold raw
    ids and what the user typed), each bound to its update id."""

    def __init__(self, secrets: Sequence[bytes]) -> None:
        self._sealer = Sealer(secrets, b"skin-bot inbox v1")

    def seal(self, update: bytes, update_id: int) -> str:
        return self._sealer.seal(update, _update_aad(update_id))

    def open(self, sealed: str, update_id: int) -> bytes | None:
        """Return the update's bytes, or None if it does not open (another update's value,
        an unknown key, or altered)."""
        return self._sealer.open(sealed, _update_aad(update_id))


class ThumbnailSealer:
    """Seal and open the thumbnails a person opted in to keep (bot.thumbnails): the JPEG is
    never stored in the clear, and each is bound to its user and consultation, so a value
    copied to another row does not open."""

    def __init__(self, secrets: Sequence[bytes]) -> None:
        self._sealer = Sealer(secrets, b"skin-bot thumbnail v1")

    def seal(self, jpeg: bytes, user_key: str, consultation_id: int) -> str:
        return self._sealer.seal(jpeg, _thumbnail_aad(user_key, consultation_id))

    def open(self, sealed: str, user_key: str, consultation_id: int) -> bytes | None:
        """Return the JPEG, or None if it does not open (another row's value, an unknown
        key, or altered)."""
        return self._sealer.open(sealed, _thumbnail_aad(user_key, consultation_id))


def _thumbnail_aad(user_key: str, consultation_id: int) -> bytes:
    return f"thumbnail:{user_key}:{consultation_id}".encode()


def _update_aad(update_id: int) -> bytes:
    return b"inbox:" + str(update_id).encode()


def _aad(user_key: str) -> bytes:
    return b"chat-ref:" + user_key.encode()


# The format before v1, an HMAC-SHA256 stream cipher (no key id, not bound to its row).
# Only opened, to re-seal such values once at start-up (see bot.keys.reseal_chat_refs).
_LEGACY_NONCE_BYTES = 16
_LEGACY_TAG_BYTES = 16


def open_legacy_chat_id(sealed: str, secret: bytes) -> int | None:
    """Return a chat id sealed in the pre-v1 format, or None if it fails to verify."""
    if sealed.startswith(f"{_VERSION}."):
        return None
    try:
        raw = base64.urlsafe_b64decode(sealed.encode())
    except (ValueError, binascii.Error):
        return None
    if len(raw) <= _LEGACY_NONCE_BYTES + _LEGACY_TAG_BYTES:
        return None
    nonce = raw[:_LEGACY_NONCE_BYTES]
    cipher, tag = raw[_LEGACY_NONCE_BYTES:-_LEGACY_TAG_BYTES], raw[-_LEGACY_TAG_BYTES:]
    mac_key = hmac.new(secret, b"chat-ref:mac", hashlib.sha256).digest()
    expected = hmac.new(mac_key, nonce + cipher, hashlib.sha256).digest()[:_LEGACY_TAG_BYTES]
    if not hmac.compare_digest(tag, expected):
        return None
    enc_key = hmac.new(secret, b"chat-ref:enc", hashlib.sha256).digest()
    stream = b"".join(
        hmac.new(enc_key, nonce + counter.to_bytes(4, "big"), hashlib.sha256).digest()
        for counter in range(-(-len(cipher) // 32))
    )
    plain = bytes(a ^ b for a, b in zip(cipher, stream, strict=False))
    try:
        return int(plain.decode())
    except ValueError:
        return None

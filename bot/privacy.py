"""Pseudonymous user keys and sealed chat ids: the database never sees a raw Telegram id."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets


def user_key(telegram_user_id: int, secret: bytes) -> str:
    """Return the HMAC-SHA256 of a Telegram user id as 64 hex characters."""
    return hmac.new(secret, str(telegram_user_id).encode(), hashlib.sha256).hexdigest()


# Sealed chat ids: the bot must know a chat to write first (reminders, follow-ups), but the
# database never holds it in the clear. A stream cipher built from HMAC-SHA256 (a PRF) in
# counter mode with a random nonce, then encrypt-then-MAC; standard library only.
_NONCE_BYTES = 16
_TAG_BYTES = 16


def _subkey(secret: bytes, purpose: bytes) -> bytes:
    return hmac.new(secret, b"chat-ref:" + purpose, hashlib.sha256).digest()


def _keystream(key: bytes, nonce: bytes, length: int) -> bytes:
    blocks = (
        hmac.new(key, nonce + counter.to_bytes(4, "big"), hashlib.sha256).digest()
        for counter in range(-(-length // 32))
    )
    return b"".join(blocks)[:length]


def seal_chat_id(chat_id: int, secret: bytes) -> str:
    """Encrypt and authenticate a chat id for storage (a different text every time)."""
    plain = str(chat_id).encode()
    nonce = secrets.token_bytes(_NONCE_BYTES)
    stream = _keystream(_subkey(secret, b"enc"), nonce, len(plain))
    cipher = bytes(a ^ b for a, b in zip(plain, stream, strict=True))
    tag = hmac.new(_subkey(secret, b"mac"), nonce + cipher, hashlib.sha256).digest()[:_TAG_BYTES]
    return base64.urlsafe_b64encode(nonce + cipher + tag).decode()


def open_chat_id(sealed: str, secret: bytes) -> int | None:
    """Return the chat id sealed by :func:`seal_chat_id`, or None if it fails to verify."""
    try:
        raw = base64.urlsafe_b64decode(sealed.encode())
    except ValueError:
        return None
    nonce, cipher, tag = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:-_TAG_BYTES], raw[-_TAG_BYTES:]
    expected = hmac.new(_subkey(secret, b"mac"), nonce + cipher, hashlib.sha256).digest()
    too_short = len(raw) <= _NONCE_BYTES + _TAG_BYTES
    if too_short or not hmac.compare_digest(tag, expected[:_TAG_BYTES]):
        return None
    stream = _keystream(_subkey(secret, b"enc"), nonce, len(cipher))
    plain = bytes(a ^ b for a, b in zip(cipher, stream, strict=True))
    return int(plain.decode())

"""The chat-id sealing the bot shipped before v1 (HMAC-SHA256 in counter mode), verbatim,
so tests can make values as old databases hold them and check they are re-sealed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets


def _subkey(secret: bytes, purpose: bytes) -> bytes:
    return hmac.new(secret, b"chat-ref:" + purpose, hashlib.sha256).digest()


def _keystream(key: bytes, nonce: bytes, length: int) -> bytes:
    blocks = (
        hmac.new(key, nonce + counter.to_bytes(4, "big"), hashlib.sha256).digest()
        for counter in range(-(-length // 32))
    )
    return b"".join(blocks)[:length]


def seal_chat_id_v0(chat_id: int, secret: bytes) -> str:
    """Seal as the old bot did."""
    plain = str(chat_id).encode()
    nonce = secrets.token_bytes(16)
    stream = _keystream(_subkey(secret, b"enc"), nonce, len(plain))
    cipher = bytes(a ^ b for a, b in zip(plain, stream, strict=True))
    tag = hmac.new(_subkey(secret, b"mac"), nonce + cipher, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(nonce + cipher + tag).decode()

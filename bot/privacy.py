"""Pseudonymous user keys: the database never sees a raw Telegram id."""

from __future__ import annotations

import hashlib
import hmac


def user_key(telegram_user_id: int, secret: bytes) -> str:
    """Return the HMAC-SHA256 of a Telegram user id as 64 hex characters."""
    return hmac.new(secret, str(telegram_user_id).encode(), hashlib.sha256).hexdigest()

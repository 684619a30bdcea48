"""Abuse limits: a per-user token bucket, set far above what any real user sends (pure,
no Telegram, no database).

Fairness between users is not done by refusing photos (see ``bot.turns``: each sender's
updates wait in their own queue and senders are served in turn). This only stops abuse: a
health worker's whole day of photos fits (``USER_PHOTO_BURST`` at once, refilled at
``USER_PHOTOS_PER_HOUR``); beyond it each photo is refused, and told so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

# Buckets that are full again are forgotten past this many, so memory stays bounded.
MAX_TRACKED_USERS = 10_000


class BusyReason(StrEnum):
    RATE = "rate"  # this sender's photos: beyond the abuse limit


@dataclass
class _Bucket:
    tokens: float
    updated: float


class Admission:
    """The photos per user: a bucket of ``burst`` tokens, refilled at ``per_hour``."""

    def __init__(
        self,
        *,
        burst: int,
        per_hour: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._burst = burst
        self._refill_per_s = per_hour / 3600.0
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take_token(self, user_key: str) -> bool:
        """Spend one of the user's tokens; False if they have none left (refuse this one)."""
        now = self._clock()
        bucket = self._buckets.get(user_key)
        if bucket is None:
            if len(self._buckets) >= MAX_TRACKED_USERS:
                self._forget_full_buckets(now)
            bucket = self._buckets[user_key] = _Bucket(float(self._burst), now)
        bucket.tokens = min(
            float(self._burst), bucket.tokens + (now - bucket.updated) * self._refill_per_s
        )
        bucket.updated = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def _forget_full_buckets(self, now: float) -> None:
        def full(bucket: _Bucket) -> bool:
            refilled = bucket.tokens + (now - bucket.updated) * self._refill_per_s
            return refilled >= self._burst

        self._buckets = {k: b for k, b in self._buckets.items() if not full(b)}

"""Who may have a photo screened now: a per-user token bucket, one photo per user at a
time, and a bounded queue for everyone together (pure asyncio, no Telegram, no database).

One person sending hundreds of photos must not delay everyone else's answers: beyond a
small burst their photos are refused (and told so at most once a minute), and their
photos are screened one after another, never several at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum

# Tell a refused sender at most this often: a notice per refused photo would itself flood
# the chat and spend the bot's global send rate (~30 messages/s) that others' answers need.
NOTICE_INTERVAL_S = 60.0
# Buckets that are full again are forgotten past this many, so memory stays bounded.
MAX_TRACKED_USERS = 10_000


class BusyReason(StrEnum):
    QUEUE_FULL = "queue_full"  # everyone's photos: the queue is at its limit
    RATE = "rate"  # this sender's photos: beyond their burst and rate


@dataclass
class _Bucket:
    tokens: float
    updated: float


class Admission:
    """Admit photos: the rate per user (checked first, before any database work), then a
    place in the queue (released with :meth:`done`), then the user's one turn."""

    def __init__(
        self,
        *,
        queue_limit: int,
        burst: int,
        per_minute: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._queue_limit = queue_limit
        self._burst = burst
        self._refill_per_s = per_minute / 60.0
        self._clock = clock
        self._queued = 0
        self._buckets: dict[str, _Bucket] = {}
        self._notified: dict[str, float] = {}
        self._turns: dict[str, tuple[asyncio.Lock, int]] = {}

    @property
    def queued(self) -> int:
        """Photos admitted and not yet answered."""
        return self._queued

    def take_token(self, user_key: str) -> bool:
        """Spend one of the user's tokens; False if they have none left (send no more)."""
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

    def enter_queue(self) -> bool:
        """Take a place in the queue; False if it is full. Release it with :meth:`done`."""
        if self._queued >= self._queue_limit:
            return False
        self._queued += 1
        return True

    def done(self) -> None:
        """Give back the place of an admitted photo (answered, failed or abandoned)."""
        self._queued -= 1

    def should_notify(self, user_key: str) -> bool:
        """True at most once per NOTICE_INTERVAL_S per user: say "busy" this time."""
        now = self._clock()
        last = self._notified.get(user_key)
        if last is not None and now - last < NOTICE_INTERVAL_S:
            return False
        if len(self._notified) >= MAX_TRACKED_USERS:
            self._notified = {
                k: t for k, t in self._notified.items() if now - t < NOTICE_INTERVAL_S
            }
        self._notified[user_key] = now
        return True

    @asynccontextmanager
    async def turn(self, user_key: str) -> AsyncIterator[None]:
        """Hold the user's one turn: their photos are screened one at a time, in order."""
        lock, waiting = self._turns.get(user_key, (asyncio.Lock(), 0))
        self._turns[user_key] = (lock, waiting + 1)
        try:
            async with lock:
                yield
        finally:
            lock, waiting = self._turns[user_key]
            if waiting == 1:
                del self._turns[user_key]
            else:
                self._turns[user_key] = (lock, waiting - 1)

    def _forget_full_buckets(self, now: float) -> None:
        def full(bucket: _Bucket) -> bool:
            refilled = bucket.tokens + (now - bucket.updated) * self._refill_per_s
            return refilled >= self._burst

        self._buckets = {k: b for k, b in self._buckets.items() if not full(b)}

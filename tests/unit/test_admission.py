"""Admission of photos: a per-user token bucket, one turn per user, a bounded queue."""

from __future__ import annotations

import asyncio

from bot.admission import NOTICE_INTERVAL_S, Admission


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_refill_rate_per_user() -> None:
    """Three at once, then one every ten seconds (6 a minute); other users unaffected."""
    clock = Clock()
    admission = Admission(queue_limit=100, burst=3, per_minute=6, clock=clock)
    assert [admission.take_token("flood") for _ in range(5)] == [True] * 3 + [False] * 2
    assert admission.take_token("someone else")
    clock.now += 9
    assert not admission.take_token("flood")
    clock.now += 1
    assert admission.take_token("flood")
    clock.now += 3600  # a long pause refills only up to the burst
    assert [admission.take_token("flood") for _ in range(4)] == [True] * 3 + [False]


def test_a_full_queue_refuses_everyone_until_a_place_is_freed() -> None:
    admission = Admission(queue_limit=2, burst=3, per_minute=6, clock=Clock())
    assert admission.enter_queue() and admission.enter_queue()
    assert not admission.enter_queue()
    assert admission.queued == 2
    admission.done()
    assert admission.enter_queue()


def test_a_refused_sender_is_told_once_a_minute() -> None:
    clock = Clock()
    admission = Admission(queue_limit=2, burst=1, per_minute=1, clock=clock)
    assert [admission.should_notify("flood") for _ in range(3)] == [True, False, False]
    assert admission.should_notify("other")
    clock.now += NOTICE_INTERVAL_S
    assert admission.should_notify("flood")


async def test_one_users_photos_take_turns_and_others_do_not_wait() -> None:
    """While one of a user's photos is in flight their next waits; another user's does not."""
    admission = Admission(queue_limit=10, burst=3, per_minute=6)
    order: list[str] = []
    release = asyncio.Event()

    async def photo(user: str, name: str, hold: bool) -> None:
        async with admission.turn(user):
            order.append(f"start {name}")
            if hold:
                await release.wait()
            order.append(f"end {name}")

    first = asyncio.create_task(photo("flood", "1", hold=True))
    second = asyncio.create_task(photo("flood", "2", hold=False))
    other = asyncio.create_task(photo("other", "x", hold=False))
    await asyncio.wait_for(other, 5)
    assert order == ["start 1", "start x", "end x"]
    release.set()
    await asyncio.wait_for(asyncio.gather(first, second), 5)
    assert order[3:] == ["end 1", "start 2", "end 2"]

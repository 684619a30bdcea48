"""The abuse limit: a per-user token bucket, far above what a real user sends."""

from __future__ import annotations

from bot.admission import Admission


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_refill_rate_per_user() -> None:
    """Three at once, then one every twenty minutes (3 an hour); other users unaffected."""
    clock = Clock()
    admission = Admission(burst=3, per_hour=3, clock=clock)
    assert [admission.take_token("flood") for _ in range(5)] == [True] * 3 + [False] * 2
    assert admission.take_token("someone else")
    clock.now += 1199
    assert not admission.take_token("flood")
    clock.now += 1
    assert admission.take_token("flood")
    clock.now += 10 * 3600  # a long pause refills only up to the burst
    assert [admission.take_token("flood") for _ in range(4)] == [True] * 3 + [False]


def test_the_default_limit_takes_a_health_workers_day_of_photos_at_once() -> None:
    """200 photos uploaded in one go (a day in the villages) all pass; the 201st does not."""
    admission = Admission(burst=200, per_hour=200, clock=Clock())
    assert all(admission.take_token("worker") for _ in range(200))
    assert not admission.take_token("worker")

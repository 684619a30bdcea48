"""Turns: each sender's updates one at a time in order, senders served round-robin."""

from __future__ import annotations

import asyncio

import pytest

from bot.turns import Turns, TurnsClosedError


async def run_all(turns: Turns, arrivals: list[str], slots_log: list[str]) -> None:
    """Each arrival enters in order, holds its turn for one loop step, and leaves."""

    async def one(sender: str, n: int) -> None:
        await turns.enter(sender)
        slots_log.append(f"{sender}{n}")
        await asyncio.sleep(0)
        turns.leave(sender)

    counts: dict[str, int] = {}
    tasks = []
    for sender in arrivals:
        counts[sender] = counts.get(sender, 0) + 1
        tasks.append(asyncio.create_task(one(sender, counts[sender])))
    await asyncio.wait_for(asyncio.gather(*tasks), 5)


async def test_a_flood_from_one_sender_does_not_hold_back_the_others() -> None:
    """One slot: after the flooder's first, each newcomer runs before the flooder's next."""
    turns = Turns(1)
    order: list[str] = []
    await run_all(turns, ["f"] * 5 + ["a", "b"], order)
    assert order == ["f1", "a1", "b1", "f2", "f3", "f4", "f5"]


async def test_one_sender_runs_one_at_a_time_in_order_whatever_the_slots() -> None:
    turns = Turns(8)
    running: list[int] = []
    order: list[int] = []

    async def one(n: int) -> None:
        await turns.enter("same")
        running.append(n)
        assert len(running) == 1
        order.append(n)
        await asyncio.sleep(0.001)
        running.remove(n)
        turns.leave("same")

    await asyncio.wait_for(asyncio.gather(*(one(n) for n in range(10))), 5)
    assert order == list(range(10))


async def test_the_first_answer_says_how_many_more_wait_once_per_run() -> None:
    turns = Turns(4)
    await turns.enter("u")
    waiting = [asyncio.create_task(turns.enter("u")) for _ in range(3)]
    await asyncio.sleep(0)
    assert turns.announce("u") == 3
    assert turns.announce("u") is None  # told already
    assert turns.announce("other") is None  # nothing waits
    for task in waiting:
        turns.leave("u")
        await task
    turns.leave("u")
    await turns.enter("u")
    blocked = asyncio.create_task(turns.enter("u"))
    await asyncio.sleep(0)
    assert turns.announce("u") == 1  # a new run of their queue: told again
    turns.close()
    with pytest.raises(TurnsClosedError):
        await blocked


async def test_backpressure_waits_for_room() -> None:
    turns = Turns(1)
    await turns.enter("a")
    second = asyncio.create_task(turns.enter("b"))
    await asyncio.sleep(0)
    room = asyncio.create_task(turns.wait_for_room(2))
    await asyncio.sleep(0.01)
    assert not room.done()  # one running, one waiting: at the limit
    turns.leave("a")
    await asyncio.wait_for(room, 1)
    await second
    turns.leave("b")


async def test_closing_refuses_the_waiting_and_later_updates() -> None:
    turns = Turns(1)
    await turns.enter("a")
    waiting = asyncio.create_task(turns.enter("b"))
    await asyncio.sleep(0)
    turns.close()
    with pytest.raises(TurnsClosedError):
        await waiting
    with pytest.raises(TurnsClosedError):
        await turns.enter("c")
    assert turns.waiting == 0
    turns.leave("a")

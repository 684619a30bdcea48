"""Whose update runs next: each sender's updates in their own queue, senders served in turn
(pure asyncio, no Telegram, no database).

A refusal is not fairness: a health worker back in signal who uploads 60 photos must get 60
answers, and the ten people who write just after them must not wait for all 60. So every
sender's updates wait in a queue of their own and run one at a time, in the order they
came (a reply to a photo never overtakes the photo); the free slots go to the senders with
something waiting in turn (round-robin), so a newcomer waits for at most one update of each
sender ahead, never for anyone's whole backlog.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Hashable


class TurnsClosedError(Exception):
    """The gate was closed (shutdown began) while the update was still waiting its turn."""


class Turns:
    """At most ``slots`` updates at once, at most one per sender, senders in turn."""

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._waiting: dict[Hashable, deque[asyncio.Future[None]]] = {}
        self._ready: deque[Hashable] = deque()  # senders with one waiting and none running
        self._running: set[Hashable] = set()
        self._closed = False
        self._total_waiting = 0
        # Senders already told how many of theirs wait (once per run of their queue).
        self._announced: set[Hashable] = set()
        self._changed = asyncio.Event()

    @property
    def waiting(self) -> int:
        """Updates waiting for their turn, every sender together."""
        return self._total_waiting

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def senders_waiting(self) -> int:
        """Senders with at least one update waiting."""
        return len(self._waiting)

    def waiting_of(self, sender: Hashable) -> int:
        """How many of ``sender``'s updates wait behind the one running (if any)."""
        queue = self._waiting.get(sender)
        return len(queue) if queue else 0

    def announce(self, sender: Hashable) -> int | None:
        """How many of ``sender``'s updates wait behind this one, the first time it is
        asked while their queue is not empty; None otherwise (nothing waits, or told)."""
        count = self.waiting_of(sender)
        if count == 0 or sender in self._announced:
            return None
        self._announced.add(sender)
        return count

    def load(self, held: Callable[[], int] | None = None) -> int:
        """Updates waiting or running here or, with ``held`` (the inbox's count of updates
        kept and not yet settled), kept but not yet at their turn: an update is kept
        before it reaches :meth:`enter`, and a whole getUpdates batch can be kept in that
        gap."""
        here = self._total_waiting + len(self._running)
        return max(here, held()) if held is not None else here

    async def wait_for_room(self, limit: int, held: Callable[[], int] | None = None) -> None:
        """Return once fewer than ``limit`` updates are held (:meth:`load`; backpressure).
        Settling an update happens before its turn is left, so the wake-up sees it."""
        while self.load(held) >= limit and not self._closed:
            await self._changed.wait()

    async def enter(self, sender: Hashable) -> None:
        """Wait for ``sender``'s turn; then call :meth:`leave` once the update is done.

        Raises :class:`TurnsClosedError` if the gate is (or gets) closed before the turn came.
        """
        if self._closed:
            raise TurnsClosedError
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._waiting.setdefault(sender, deque())
        queue.append(turn)
        self._total_waiting += 1
        if len(queue) == 1 and sender not in self._running:
            self._ready.append(sender)
        self._dispatch()
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled() and turn.exception() is None:
                self.leave(sender)  # granted in the same instant: hand the turn on
            else:
                self._forget(sender, turn)
            raise

    def leave(self, sender: Hashable) -> None:
        """The sender's running update is done: the next sender in line gets the slot, and
        this sender goes to the back of the line if more of theirs wait."""
        self._running.discard(sender)
        self._free += 1
        if self._waiting.get(sender):
            self._ready.append(sender)
        else:
            self._announced.discard(sender)
        self._dispatch()
        self._notify()

    def close(self) -> None:
        """Refuse every update still waiting (and any later one): shutdown began."""
        self._closed = True
        for queue in self._waiting.values():
            for turn in queue:
                if not turn.done():
                    turn.set_exception(TurnsClosedError())
        self._waiting.clear()
        self._ready.clear()
        self._total_waiting = 0
        self._notify()

    def _notify(self) -> None:
        # Wake every waiter; each re-checks and waits on the fresh event.
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    def _dispatch(self) -> None:
        while self._free > 0 and self._ready:
            sender = self._ready.popleft()
            queue = self._waiting.get(sender)
            if not queue:
                continue
            turn = queue.popleft()
            self._total_waiting -= 1
            if not queue:
                del self._waiting[sender]
            self._running.add(sender)
            self._free -= 1
            turn.set_result(None)

    def _forget(self, sender: Hashable, turn: asyncio.Future[None]) -> None:
        queue = self._waiting.get(sender)
        if queue is None or turn not in queue:
            return
        queue.remove(turn)
        self._total_waiting -= 1
        if not queue:
            del self._waiting[sender]
            if sender in self._ready:
                self._ready.remove(sender)

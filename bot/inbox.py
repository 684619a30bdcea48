"""No update lost to a crash or a restart: each is kept before Telegram is told it arrived.

Telegram forgets an update once the next getUpdates names a later offset (or once a webhook
answered 200), and python-telegram-bot asks for the next batch before it has handled the
last one. So the application's update queue is an :class:`InboxQueue`: putting an update
first writes it, sealed, to the ``inbox`` table, held by this process under a lease; an
update already there (Telegram sending it again after a crash, or to another replica) is
not taken twice. The :class:`InboxProcessor` marks it handled once its handlers ran.

What a stopped process held comes back: at shutdown it gives back what it did not start
(any process may claim that at once); after a kill -9 its leases run out. A repeating job
(:func:`tend`) renews this process's leases and claims the free updates. Handling an update
twice is then possible (killed after handling, before marking), so the photo path finds the
consultation of an update by its id (``bot.screening``): one row per update, whatever
happens. An update that keeps killing its process is given up after MAX_ATTEMPTS claims.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Hashable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from http import HTTPStatus
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram import Bot, Update
from telegram.error import NetworkError
from telegram.ext import BaseUpdateProcessor
from tornado.web import HTTPError

from bot import metrics
from bot.db.models import utc_now
from bot.db.repository import UPDATE_WINDOW, InboxRepository, database_now
from bot.privacy import UpdateSealer
from bot.turns import Turns, TurnsClosedError

logger = logging.getLogger(__name__)

# Claims of one update before it is given up: each claim after the first follows a process
# that stopped while holding it, and a third in a row is no coincidence.
MAX_ATTEMPTS = 3
# Handled updates are remembered this long, longer than Telegram keeps one (24 hours),
# so an update sent again is recognised rather than handled twice; an older id is a new
# update (Telegram reuses ids after a week without updates).
KEEP_HANDLED = UPDATE_WINDOW
# Updates claimed per run of the job: the queue takes them all, the screening queue then
# admits what fits (the rest get "busy" and are done with).
CLAIM_BATCH = 100
# PTB's semaphore, made too wide to bind (see InboxProcessor).
UNBOUNDED = 1_000_000


class Inbox:
    """The ``inbox`` table, seen from one process (``owner``)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        sealer: UpdateSealer,
        *,
        lease: timedelta,
    ) -> None:
        self._sessions = sessions
        self._sealer = sealer
        self._lease = lease
        # This process, for as long as it runs: leases name it.
        self.owner = uuid.uuid4().hex
        # The updates this process has accepted or claimed and not yet finished.
        self._held: set[int] = set()
        # Held updates whose previous holder died (suspects): tried one at a time, so that
        # if this process dies too, only the one it was trying is to blame.
        self._suspects: set[int] = set()
        # Told about each update given up because it kept failing (its user is told).
        self.on_given_up: Callable[[Update], Awaitable[None]] | None = None

    @property
    def held(self) -> int:
        return len(self._held)

    async def accept(self, update: Update) -> bool:
        """Keep ``update`` (held by this process); False if it was kept before."""
        plain = json.dumps(_without_names(update.to_dict())).encode()
        payload = self._sealer.seal(plain, update.update_id)
        async with self._sessions.begin() as session:
            now = await database_now(session)
            new = await InboxRepository(session).accept(
                update.update_id, payload, self.owner, now, now + self._lease
            )
        if new:
            self._held.add(update.update_id)
        else:
            metrics.inbox_event("seen_before")
        return new

    def is_suspect(self, update_id: int) -> bool:
        return update_id in self._suspects

    async def finish(self, update_id: int, gave_up: str | None = None) -> None:
        """Mark an update handled (or given up, with why)."""
        self._held.discard(update_id)
        self._suspects.discard(update_id)
        try:
            async with self._sessions.begin() as session:
                # Only while this process still holds it: if its lease ran out and another
                # process took it over, that one settles it.
                await InboxRepository(session).finish(update_id, self.owner, utc_now(), gave_up)
        except Exception as error:
            # Not fatal: its lease runs out and it is handled again, which the photo path
            # recognises (one consultation per update).
            logger.warning("Update not marked handled (%s)", type(error).__name__)

    async def release(self, update_id: int | None = None) -> int:
        """Give back one held update (or all of them) for any process to claim at once;
        return how many. If the database fails, their leases run out instead."""
        ids = None if update_id is None else [update_id]
        if update_id is None:
            self._held.clear()
            self._suspects.clear()
        else:
            self._held.discard(update_id)
            self._suspects.discard(update_id)
        try:
            async with self._sessions.begin() as session:
                return await InboxRepository(session).release(self.owner, ids)
        except Exception as error:
            logger.warning("Updates not given back (%s)", type(error).__name__)
            return 0

    async def renew(self) -> None:
        """Extend the leases of the updates this process still holds."""
        if not self._held:
            return
        async with self._sessions.begin() as session:
            until = await database_now(session) + self._lease
            await InboxRepository(session).renew(self.owner, sorted(self._held), until)

    async def claim(self, bot: Bot, limit: int = CLAIM_BATCH) -> list[Update]:
        """Claim free updates and return those to handle, oldest first: up to ``limit``
        given back cleanly, and at most one suspect (its holder died), none while this
        process still tries one. Those that cannot be read, or that were tried alone
        MAX_ATTEMPTS times, are given up here (and their senders told); a suspect given up
        is followed by the next one."""
        updates: list[Update] = []
        while True:
            more, gave_up_suspect = await self._claim_once(bot, limit)
            updates += more
            limit -= len(more)
            if not gave_up_suspect or self._suspects or limit <= 0:
                return updates

    async def _claim_once(self, bot: Bot, limit: int) -> tuple[list[Update], bool]:
        suspects = 0 if self._suspects else 1
        async with self._sessions.begin() as session:
            # Leases on the database's clock, read at the claim itself.
            now = await database_now(session)
            rows = await InboxRepository(session).claim_free(
                self.owner, now, now + self._lease, limit, suspects=suspects
            )
            claimed = [(row.update_id, row.payload, row.attempts, row.suspect) for row in rows]
        updates = []
        gave_up_suspect = False
        for update_id, payload, attempts, suspect in claimed:
            self._held.add(update_id)
            if suspect:
                self._suspects.add(update_id)
            update = self._open(update_id, payload, bot)
            if update is None or attempts > MAX_ATTEMPTS:
                gave_up_suspect = gave_up_suspect or suspect
            if update is None:
                logger.warning("Update %d given up: it cannot be opened", update_id)
                await self._give_up(update_id, "unreadable")
            elif attempts > MAX_ATTEMPTS:
                logger.warning("Update %d given up after %d attempts", update_id, attempts - 1)
                await self._give_up(update_id, "attempts")
                if self.on_given_up is not None:
                    try:
                        await self.on_given_up(update)
                    except Exception as error:  # told or not, it stays given up
                        logger.warning("Given-up notice not sent (%s)", type(error).__name__)
            else:
                metrics.inbox_event("claimed")
                updates.append(update)
        return updates, gave_up_suspect

    async def purge(self) -> int:
        """Forget handled updates older than KEEP_HANDLED; return how many."""
        async with self._sessions.begin() as session:
            return await InboxRepository(session).purge_done_before(utc_now() - KEEP_HANDLED)

    async def waiting(self) -> tuple[int, float]:
        """How many updates wait to be handled, and the oldest one's age in seconds."""
        async with self._sessions() as session:
            repository = InboxRepository(session)
            count = await repository.waiting()
            oldest = await repository.oldest_waiting()
            now = await database_now(session)
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=now.tzinfo)  # an aggregate skips the column type
        return count, 0.0 if oldest is None else max((now - oldest).total_seconds(), 0.0)

    async def _give_up(self, update_id: int, why: str) -> None:
        metrics.inbox_event(f"gave_up_{why}")
        await self.finish(update_id, gave_up=why)

    def _open(self, update_id: int, payload: str | None, bot: Bot) -> Update | None:
        plain = None if payload is None else self._sealer.open(payload, update_id)
        if plain is None:
            return None
        try:
            return Update.de_json(json.loads(plain), bot)
        except (ValueError, TypeError, KeyError):
            return None


# Telegram's User and Chat carry the person's names, which the bot never uses: not kept.
_NAME_FIELDS = frozenset({"first_name", "last_name", "username", "title"})


def _without_names(value: Any) -> Any:
    """The update as a dict, with every name replaced (``first_name`` is required, so it
    stays, empty) and nothing else changed."""
    if isinstance(value, list):
        return [_without_names(item) for item in value]
    if not isinstance(value, dict):
        return value
    out = {k: _without_names(v) for k, v in value.items() if k not in _NAME_FIELDS}
    if "first_name" in value:
        out["first_name"] = ""
    return out


class InboxQueue(asyncio.Queue[object]):
    """The application's update queue: an update is kept in the inbox before it is taken.

    Until :attr:`inbox` is set (start-up), updates pass straight through; none arrive then.
    While the processor's backlog is at :attr:`max_backlog`, a new update waits here before
    it is kept: polling then asks Telegram for no more (the next getUpdates waits for this
    one), and a webhook request waits, so Telegram holds the rest rather than this process.
    """

    def __init__(self) -> None:
        super().__init__()
        self.inbox: Inbox | None = None
        self.turns: Turns | None = None
        self.max_backlog = 0
        # Webhook mode: an update that cannot be kept is refused with a 503 (Telegram sends
        # it again); in polling mode with a NetworkError (the same offset is asked again).
        self.webhook = False
        # Monotonic time of the first failure to keep an update since the last success
        # (None: the last one was kept), for /readyz.
        self.failing_since: float | None = None

    async def put(self, item: object) -> None:
        if isinstance(item, Update) and self.inbox is not None:
            if self.turns is not None and self.max_backlog > 0:
                inbox = self.inbox
                await self.turns.wait_for_room(self.max_backlog, held=lambda: inbox.held)
            try:
                new = await self.inbox.accept(item)
            except Exception as error:
                # Not kept, so not taken either (any error: a database restart raises
                # ConnectionRefusedError, not an SQLAlchemyError). As a NetworkError,
                # polling waits and asks Telegram again with the same offset; a webhook
                # answers an error and Telegram sends it again later.
                metrics.inbox_event("not_kept")
                if self.failing_since is None:
                    self.failing_since = time.monotonic()
                why = f"the update could not be kept ({type(error).__name__})"
                if self.webhook:
                    raise HTTPError(HTTPStatus.SERVICE_UNAVAILABLE, reason=why) from error
                raise NetworkError(why) from error
            self.failing_since = None
            if not new:
                return  # handled, or being handled, already
        await super().put(item)

    async def put_claimed(self, update: Update) -> None:
        """Queue an update claimed from the inbox (kept already)."""
        await super().put(update)


@dataclass
class _Handling:
    deferred: bool = False


_handling: ContextVar[_Handling | None] = ContextVar("inbox_handling", default=None)


def defer_current_update() -> None:
    """Leave the update being handled unfinished: it is given back at shutdown and handled
    again by the next process (called when shutdown began before its photo was looked at)."""
    handling = _handling.get()
    if handling is not None:
        handling.deferred = True


class InboxProcessor(BaseUpdateProcessor):
    """Runs updates concurrently, each sender's in turn (:class:`bot.turns.Turns`), and
    then settles them in the inbox: handled, or given back. Once :attr:`draining` (shutdown
    began), updates not yet started are given back without being handled."""

    def __init__(self, max_concurrent_updates: int) -> None:
        # PTB's own semaphore is FIFO over everyone: one sender's 60 photos would hold 60
        # of its places. It is made wide, and the turns below decide who runs.
        super().__init__(UNBOUNDED)
        self.turns = Turns(max_concurrent_updates)
        self.inbox: Inbox | None = None
        self.draining = False
        # Where claimed updates go (the application's queue), set at start-up.
        self.queue: InboxQueue | None = None
        # Monotonic time an update last finished (for /readyz: workers alive).
        self.last_finished = time.monotonic()

    def drain(self) -> None:
        """Shutdown began: updates still waiting for their turn are given back."""
        self.draining = True
        self.turns.close()

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        inbox = self.inbox
        if inbox is None or not isinstance(update, Update):
            await coroutine
            return
        sender = sender_of(update)
        arrived = time.monotonic()
        if self.turns.waiting + self.turns.running == 0:
            self.last_finished = arrived  # idle until now: nothing was stuck
        try:
            if self.draining:
                raise TurnsClosedError
            await self.turns.enter(sender)
        except TurnsClosedError:
            if asyncio.iscoroutine(coroutine):
                coroutine.close()  # never started: nothing to undo
            await inbox.release(update.update_id)
            metrics.inbox_event("given_back")
            return
        try:
            handling = _Handling()
            token = _handling.set(handling)
            try:
                await coroutine
            finally:
                _handling.reset(token)
            suspect = inbox.is_suspect(update.update_id)
            if handling.deferred:
                await inbox.release(update.update_id)
                metrics.inbox_event("given_back")
            else:
                await inbox.finish(update.update_id)
                metrics.UPDATE_SECONDS.observe(time.monotonic() - arrived)
        finally:
            self.last_finished = time.monotonic()
            self.turns.leave(sender)
        if suspect and self.queue is not None and not self.draining:
            # Suspects are tried one at a time: this one is settled, so the next at once
            # (not at the next run of the inbox job, a third of a lease away).
            try:
                await take_over(inbox, self.queue, update.get_bot())
            except Exception as error:  # the inbox job tries again
                logger.warning("Next suspect not claimed (%s)", type(error).__name__)

    async def initialize(self) -> None:
        """Nothing to set up: the inbox is attached once the database is open."""

    async def shutdown(self) -> None:
        """Nothing to close: the inbox belongs to the runtime."""


def sender_of(update: Update) -> Hashable:
    """Whose queue an update waits in: a picture, its sender's (in memory only, never
    stored or logged), so a user's photos are screened one at a time, in order. Anything
    else (a command, a button, a text) is quick and waits in a queue of its own: /forget
    or /help is never held up behind a batch of photos, and /forget still wins over a
    photo in flight (its result is thrown away)."""
    user, message = update.effective_user, update.message
    if user is not None and message is not None and (message.photo or message.document):
        return user.id
    return ("update", update.update_id)


async def take_over(inbox: Inbox, queue: InboxQueue, bot: Bot) -> int:
    """Queue the free updates, as far as the backlog leaves room; return how many."""
    room = CLAIM_BATCH
    if queue.turns is not None and queue.max_backlog > 0:
        room = min(room, queue.max_backlog - queue.turns.load(lambda: inbox.held))
    if room <= 0:
        return 0
    updates = await inbox.claim(bot, room)
    for update in updates:
        await queue.put_claimed(update)
    if updates:
        logger.info("%d updates taken over from the inbox", len(updates))
    return len(updates)


async def tend(
    inbox: Inbox, queue: InboxQueue, bot: Bot, *, purge: bool, claim: bool = True
) -> int:
    """One run of the inbox job: renew this process's leases, queue the free updates
    (given back by a stopped process, or held by one that died), and now and then forget
    old handled ones. Return how many were queued."""
    await inbox.renew()
    taken = await take_over(inbox, queue, bot) if claim else 0
    if purge:
        await inbox.purge()
    metrics.set_inbox_waiting(*await inbox.waiting())
    return taken

"""The inbox's rules on a real database (SQLite and PostgreSQL): an update is kept once,
sealed; held under a lease; claimed by another process only once free; given up after
MAX_ATTEMPTS claims or when it cannot be opened; remembered after it is handled."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from telegram import Bot, Update
from telegram.error import NetworkError

from bot.db.migrate import upgrade_to_head
from bot.db.models import InboxUpdate, utc_now
from bot.db.session import create_session_factory
from bot.inbox import KEEP_HANDLED, MAX_ATTEMPTS, Inbox, InboxQueue
from bot.privacy import UpdateSealer

SEALER = UpdateSealer([b"inbox-test-secret"])
HOUR = timedelta(hours=1)
USER_ID = 818_273_645


@pytest.fixture
async def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    await upgrade_to_head(engine)
    return create_session_factory(engine)


@pytest.fixture
def bot() -> Bot:
    return Bot("123:not-used-no-request-is-made")


def text_update(update_id: int, bot: Bot, text_: str = "left shoulder mole") -> Update:
    data = {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 1_700_000_000,
            "chat": {"id": USER_ID, "type": "private"},
            "from": {
                "id": USER_ID,
                "is_bot": False,
                "first_name": "Aigerim",
                "last_name": "Nurlanovna",
                "username": "aigerim_n",
            },
            "text": text_,
        },
    }
    update_ = Update.de_json(data, bot)
    assert update_ is not None
    return update_


async def row(sessions: async_sessionmaker[AsyncSession], update_id: int) -> InboxUpdate:
    async with sessions() as session:
        found = await session.get(InboxUpdate, update_id)
    assert found is not None
    return found


async def test_an_update_is_kept_once_and_sealed(
    sessions: async_sessionmaker[AsyncSession], bot: Bot
) -> None:
    first, second = (Inbox(sessions, SEALER, lease=HOUR) for _ in range(2))
    update_ = text_update(1, bot)
    assert await first.accept(update_)
    # Telegram sent it again (to this replica or another): not taken a second time.
    assert not await second.accept(update_)
    assert not await first.accept(update_)
    kept = await row(sessions, 1)
    assert kept.owner == first.owner and kept.payload is not None
    assert str(USER_ID) not in kept.payload and "shoulder" not in kept.payload


async def test_a_held_update_is_claimed_by_another_process_only_once_its_lease_ran_out(
    sessions: async_sessionmaker[AsyncSession], bot: Bot
) -> None:
    alive = Inbox(sessions, SEALER, lease=HOUR)
    dead = Inbox(sessions, SEALER, lease=timedelta(0))  # killed: its lease runs out at once
    other = Inbox(sessions, SEALER, lease=HOUR)
    assert await alive.accept(text_update(1, bot))
    assert await dead.accept(text_update(2, bot, "what the user typed"))

    claimed = await other.claim(bot)

    assert [u.update_id for u in claimed] == [2]
    message = claimed[0].message
    assert message is not None and message.text == "what the user typed"
    # Kept without the person's names, which the bot never uses.
    assert message.from_user is not None and message.from_user.id == USER_ID
    assert (message.from_user.first_name, message.from_user.username) == ("", None)
    assert (await row(sessions, 2)).owner == other.owner
    assert await other.claim(bot) == []  # held now, by a live lease
    # The dead owner's renewal cannot take it back.
    await dead.renew()
    assert (await row(sessions, 2)).owner == other.owner


async def test_updates_given_back_at_shutdown_are_claimed_at_once_oldest_first(
    sessions: async_sessionmaker[AsyncSession], bot: Bot
) -> None:
    stopping = Inbox(sessions, SEALER, lease=HOUR)
    next_process = Inbox(sessions, SEALER, lease=HOUR)
    for update_id in (7, 5, 6):
        assert await stopping.accept(text_update(update_id, bot))
    await stopping.finish(6)
    assert await stopping.release() == 2
    assert stopping.held == 0

    assert [u.update_id for u in await next_process.claim(bot)] == [5, 7]
    # Handed over cleanly, so not an attempt that failed: as if it arrived here.
    assert (await row(sessions, 5)).attempts == 1


async def test_an_update_that_keeps_killing_its_process_is_given_up(
    sessions: async_sessionmaker[AsyncSession], bot: Bot
) -> None:
    assert await Inbox(sessions, SEALER, lease=timedelta(0)).accept(text_update(1, bot))
    for _ in range(MAX_ATTEMPTS - 1):  # each claimer dies too
        assert len(await Inbox(sessions, SEALER, lease=timedelta(0)).claim(bot)) == 1

    assert await Inbox(sessions, SEALER, lease=HOUR).claim(bot) == []
    given_up = await row(sessions, 1)
    assert given_up.gave_up == "attempts" and given_up.done_at is not None
    assert given_up.payload is not None  # kept sealed, for an administrator, until purged


async def test_a_poison_held_with_twenty_others_is_the_only_one_given_up(
    sessions: async_sessionmaker[AsyncSession], bot: Bot
) -> None:
    """A process dies holding 21 updates, one of which kills every process that handles
    it. The 21 are suspects now, so they are tried one at a time: the 20 others are
    handled, and only the one that killed its holder is charged, given up and its sender
    told (test 4 of issue 19)."""
    dead = Inbox(sessions, SEALER, lease=timedelta(0))
    for update_id in range(1, 22):
        assert await dead.accept(text_update(update_id, bot))
    poison = 8
    handled: list[int] = []
    told: list[int] = []

    async def tell(update_: Update) -> None:
        told.append(update_.update_id)

    deaths = 1  # the first holder
    for _ in range(40):  # each pass a process that lives until the poison kills it
        process = Inbox(sessions, SEALER, lease=HOUR)
        process.on_given_up = tell
        if (await process.waiting())[0] == 0:
            break
        while claimed := await process.claim(bot):
            [one] = claimed  # one suspect at a time
            if one.update_id == poison:
                await lease_runs_out(sessions, poison)  # killed while handling it
                deaths += 1
                break
            await process.finish(one.update_id)
            handled.append(one.update_id)
    assert handled == [n for n in range(1, 22) if n != poison]
    assert told == [poison] and deaths == MAX_ATTEMPTS
    given_up = await row(sessions, poison)
    assert given_up.gave_up == "attempts" and given_up.payload is not None
    assert {(await row(sessions, n)).gave_up for n in handled} == {None}


async def lease_runs_out(sessions: async_sessionmaker[AsyncSession], update_id: int) -> None:
    async with sessions.begin() as session:
        await session.execute(
            update(InboxUpdate)
            .where(InboxUpdate.update_id == update_id)
            .values(lease_until=utc_now() - timedelta(seconds=1))
        )


async def test_an_update_that_cannot_be_opened_is_given_up(
    sessions: async_sessionmaker[AsyncSession], bot: Bot
) -> None:
    """Sealed under a key this process no longer has (say, rotated out)."""
    old = Inbox(sessions, UpdateSealer([b"a key since removed"]), lease=timedelta(0))
    assert await old.accept(text_update(1, bot))

    assert await Inbox(sessions, SEALER, lease=HOUR).claim(bot) == []
    assert (await row(sessions, 1)).gave_up == "unreadable"


async def test_handled_updates_are_remembered_then_purged(
    sessions: async_sessionmaker[AsyncSession], bot: Bot
) -> None:
    inbox = Inbox(sessions, SEALER, lease=HOUR)
    for update_id in (1, 2):
        assert await inbox.accept(text_update(update_id, bot))
        await inbox.finish(update_id)
    async with sessions.begin() as session:
        await session.execute(
            update(InboxUpdate)
            .where(InboxUpdate.update_id == 1)
            .values(done_at=utc_now() - KEEP_HANDLED - HOUR)
        )

    assert await inbox.purge() == 1
    assert not await inbox.accept(text_update(2, bot))  # recent: still recognised
    assert (await inbox.waiting())[0] == 0


async def test_the_queue_takes_an_update_once_and_refuses_it_when_it_cannot_be_kept(
    sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine, bot: Bot
) -> None:
    queue = InboxQueue()
    queue.inbox = Inbox(sessions, SEALER, lease=HOUR)
    await queue.put(text_update(1, bot))
    await queue.put(text_update(1, bot))
    await queue.put("not an update: passed through")
    assert queue.qsize() == 2

    async with engine.begin() as connection:
        await connection.execute(text("DROP TABLE inbox"))
    # Not kept, so not taken: a NetworkError makes polling ask Telegram again.
    with pytest.raises(NetworkError):
        await queue.put(text_update(2, bot))
    assert queue.qsize() == 2
    # Settling fails quietly too: the update's lease runs out and it is handled again.
    await queue.inbox.finish(1)
    assert await queue.inbox.release() == 0

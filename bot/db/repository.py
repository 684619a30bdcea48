"""Reads and writes of the bot's tables; the caller owns the session and so the transaction."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import ColumnElement, delete, exists, func, or_, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import (
    PHOTO_STATUSES,
    Consultation,
    ConsultationStatus,
    FollowUp,
    InboxUpdate,
    OutboxMessage,
    ReferralContact,
    Thumbnail,
    User,
)

# How long an update id names one update: longer than Telegram keeps an update (24 hours),
# shorter than the week without updates after which it may start its ids again.
UPDATE_WINDOW = timedelta(hours=48)


async def database_now(session: AsyncSession) -> datetime:
    """The database server's clock, for leases: replicas whose own clocks disagree still
    agree on when a lease runs out. SQLite is a file on this machine: its clock is ours."""
    if session.get_bind().dialect.name == "postgresql":
        moment = await session.scalar(select(func.clock_timestamp()))
        assert isinstance(moment, datetime)
        return moment.astimezone(UTC)
    return datetime.now(UTC)


@dataclass(frozen=True)
class PatientSummary:
    code: str
    checks: int
    last_at: datetime


@dataclass(frozen=True)
class StatsSummary:
    """Counts for the admin summary: nothing here identifies anyone."""

    days: int
    active_users: int
    known_users: int
    consultations: int
    per_day: list[tuple[date, int]]
    risks: dict[str, int]
    rejections: dict[str, int]
    languages: dict[str, int]
    processing_p50_ms: int | None
    processing_p95_ms: int | None
    model_versions: dict[str, int]
    follow_ups: dict[str, int]
    # Reminders and follow-ups waiting to be sent, and those given up on, by reason.
    outbox_pending: int = 0
    outbox_parked: dict[str, int] = field(default_factory=dict)
    # Every calendar day (UTC) of the period, empty ones too, oldest first, with its count
    # per outcome: the risk level of an assessed photo, else the status (OUTCOMES).
    outcomes_per_day: list[tuple[date, dict[str, int]]] = field(default_factory=list)
    # Updates given up in the period (they kept failing, or could not be opened), by reason.
    inbox_given_up: dict[str, int] = field(default_factory=dict)


# What became of a photo, as the /stats chart stacks it.
OUTCOMES = ("low", "medium", "high", "unassessable", "rejected", "failed")


class ConsultationRepository:
    """Consultation rows within one unit of work; it never commits on its own."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, consultation: Consultation) -> Consultation:
        """Stage ``consultation`` and assign its id (flushed, committed by the caller)."""
        self._session.add(consultation)
        await self._session.flush()
        return consultation

    async def get(self, consultation_id: int) -> Consultation | None:
        """Return one consultation by id."""
        return await self._session.get(Consultation, consultation_id)

    async def update(self, consultation_id: int, values: dict[str, object]) -> None:
        """Set ``values`` on one consultation in a single UPDATE (nothing if it is gone)."""
        await self._session.execute(
            update(Consultation).where(Consultation.id == consultation_id).values(**values)
        )

    async def by_update(self, update_id: int, user_key: str) -> Consultation | None:
        """Return the consultation that answers one Telegram update, if any: this id from
        this user within UPDATE_WINDOW (Telegram reuses ids, so an older one, or another
        user's, answers another update)."""
        since = datetime.now(UTC) - UPDATE_WINDOW
        return await self._session.scalar(
            select(Consultation)
            .where(
                Consultation.update_id == update_id,
                Consultation.user_key == user_key,
                Consultation.created_at >= since,
            )
            .order_by(Consultation.id.desc())
            .limit(1)
        )

    async def remove(self, consultation: Consultation) -> None:
        """Delete one consultation with its follow-up and any outbox row for it."""
        follow_ups = select(FollowUp.id).where(FollowUp.consultation_id == consultation.id)
        # Explicitly: SQLite does not enforce ON DELETE CASCADE by default.
        await self._session.execute(
            delete(OutboxMessage).where(
                or_(
                    OutboxMessage.follow_up_id.in_(follow_ups),
                    OutboxMessage.consultation_id == consultation.id,
                )
            )
        )
        await self._session.execute(
            delete(FollowUp).where(FollowUp.consultation_id == consultation.id)
        )
        await self._session.execute(
            delete(Thumbnail).where(Thumbnail.consultation_id == consultation.id)
        )
        await self._session.delete(consultation)
        await self._session.flush()

    async def for_user(self, user_key: str, limit: int = 50) -> Sequence[Consultation]:
        """Return a user's consultations, newest first."""
        query = (
            select(Consultation)
            .where(Consultation.user_key == user_key)
            .order_by(Consultation.created_at.desc(), Consultation.id.desc())
            .limit(limit)
        )
        return (await self._session.scalars(query)).all()

    async def history(
        self, user_key: str, *, patient_code: str | None = None, limit: int = 20
    ) -> Sequence[Consultation]:
        """Return the checked photos of a user (or of one of a worker's patients), newest first."""
        query = (
            select(Consultation)
            .where(
                Consultation.user_key == user_key,
                Consultation.status.in_(PHOTO_STATUSES),
                (
                    Consultation.patient_code.is_(None)
                    if patient_code is None
                    else Consultation.patient_code == patient_code
                ),
            )
            .order_by(Consultation.created_at.desc(), Consultation.id.desc())
            .limit(limit)
        )
        return (await self._session.scalars(query)).all()

    async def patients(self, worker_key: str) -> list[PatientSummary]:
        """Return a worker's patients with their number of checks, most recent first."""
        last = func.max(Consultation.created_at)
        query = (
            select(Consultation.patient_code, func.count(), last)
            .where(
                Consultation.user_key == worker_key,
                Consultation.patient_code.is_not(None),
                Consultation.status.in_(PHOTO_STATUSES),
            )
            .group_by(Consultation.patient_code)
            .order_by(last.desc())
        )
        rows = (await self._session.execute(query)).all()
        return [PatientSummary(str(code), count, _utc(at)) for code, count, at in rows]

    async def previous_of_lesion(self, current: Consultation) -> Consultation | None:
        """Return the latest assessed photo of the same named spot before ``current``
        (``current`` may not be stored yet: then every stored one is before it)."""
        if current.lesion_label is None:
            return None
        query = (
            select(Consultation)
            .where(*_same_spot_before(current))
            .order_by(Consultation.id.desc())
            .limit(1)
        )
        return await self._session.scalar(query)

    async def recent_of_lesion(
        self, current: Consultation, since: datetime
    ) -> list[tuple[Consultation, str | None]]:
        """Return the assessed photos of the same named spot before ``current`` and since
        ``since``, oldest first, each with the doctor's answer to its follow-up (if any)."""
        if current.lesion_label is None:
            return []
        query = (
            select(Consultation, FollowUp.diagnosis)
            .outerjoin(FollowUp, FollowUp.consultation_id == Consultation.id)
            .where(*_same_spot_before(current), Consultation.created_at >= since)
            .order_by(Consultation.id)
        )
        return [(row, diagnosis) for row, diagnosis in (await self._session.execute(query)).all()]

    async def by_result_message(self, user_key: str, message_id: int) -> Consultation | None:
        """Return the consultation whose result the bot sent as ``message_id``."""
        query = select(Consultation).where(
            Consultation.user_key == user_key, Consultation.result_message_id == message_id
        )
        return await self._session.scalar(query)

    async def since(self, since: datetime, user_key: str | None = None) -> Sequence[Consultation]:
        """Return all consultations since ``since`` (optionally one user's), oldest first."""
        query = select(Consultation).where(Consultation.created_at >= since)
        if user_key is not None:
            query = query.where(Consultation.user_key == user_key)
        return (await self._session.scalars(query.order_by(Consultation.id))).all()

    async def count_by_outcome(self) -> dict[tuple[str, str | None], int]:
        """Count consultations per (status, risk or reason)."""
        label = func.coalesce(Consultation.risk, Consultation.reason)
        query = select(Consultation.status, label, func.count()).group_by(
            Consultation.status, label
        )
        rows = (await self._session.execute(query)).all()
        return {(status, detail): count for status, detail, count in rows}


class UserRepository:
    """User rows: consent, language, role, reminders."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, user_key: str) -> User | None:
        return await self._session.get(User, user_key)

    async def get_or_add(self, user_key: str) -> User:
        """Return the user's row, staging a new one if there is none."""
        user = await self.get(user_key)
        if user is None:
            user = User(user_key=user_key, is_worker=False)
            self._session.add(user)
        return user

    async def lock(self, user_key: str) -> User | None:
        """Return the user's row locked until the end of this transaction (None if gone).

        A consultation and /forget both lock the user row first, so on PostgreSQL one waits
        for the other: a /forget that commits first leaves the consultation nothing to find,
        and one that commits second deletes what the consultation wrote. (SQLite has one
        writer at a time and ignores the lock.)
        """
        query = select(User).where(User.user_key == user_key).with_for_update()
        return await self._session.scalar(query)

    async def due_reminders(self, now: datetime) -> Sequence[User]:
        """Users whose reminder is due, locked for this transaction.

        With several replicas (webhook mode, PostgreSQL) each runs the scheduler: rows
        another replica is already claiming are skipped, not sent twice. SQLite, one
        process only, ignores the lock.
        """
        query = (
            select(User)
            .where(User.reminder.is_not(None), User.next_reminder_at <= now)
            .order_by(User.next_reminder_at, User.user_key)
            .with_for_update(skip_locked=True)
        )
        return (await self._session.scalars(query)).all()

    async def move_reminder(self, user_key: str, expected: datetime, to: datetime) -> bool:
        """Move a reminder from ``expected`` to ``to``; False if someone else already did.

        A compare-and-set, so two processes on one SQLite file (where row locks are
        ignored) cannot both queue the same reminder.
        """
        result = await self._session.execute(
            update(User)
            .where(User.user_key == user_key, User.next_reminder_at == expected)
            .values(next_reminder_at=to)
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0) == 1

    async def forget(self, user_key: str) -> None:
        """Delete every row about one user: follow-ups, consultations, the user row."""
        await self.lock(user_key)  # wait for a consultation being stored (see lock)
        await self._session.execute(delete(OutboxMessage).where(OutboxMessage.user_key == user_key))
        await self._session.execute(delete(FollowUp).where(FollowUp.user_key == user_key))
        await ThumbnailRepository(self._session).delete_for_user(user_key)
        await self._session.execute(delete(Consultation).where(Consultation.user_key == user_key))
        await self._session.execute(delete(User).where(User.user_key == user_key))

    async def purge_older_than(self, cutoff: datetime) -> int:
        """Delete consultations (and their follow-ups) from before ``cutoff``; return how many.

        Users who then have nothing left, no reminder and no role go too.
        """
        old = select(Consultation.id).where(Consultation.created_at < cutoff)
        old_follow_ups = select(FollowUp.id).where(FollowUp.consultation_id.in_(old))
        # Outbox rows go explicitly: SQLite does not enforce ON DELETE CASCADE by default.
        await self._session.execute(
            delete(OutboxMessage).where(
                or_(
                    OutboxMessage.follow_up_id.in_(old_follow_ups),
                    OutboxMessage.consultation_id.in_(old),
                    OutboxMessage.sent_at < cutoff,
                    OutboxMessage.parked_at < cutoff,
                )
            )
        )
        await self._session.execute(delete(FollowUp).where(FollowUp.consultation_id.in_(old)))
        await self._session.execute(delete(Thumbnail).where(Thumbnail.consultation_id.in_(old)))
        result = await self._session.execute(
            delete(Consultation).where(Consultation.created_at < cutoff)
        )
        still_used = select(Consultation.user_key).distinct()
        await self._session.execute(
            delete(User).where(
                User.created_at < cutoff,
                User.reminder.is_(None),
                User.is_worker.is_(False),
                User.user_key.not_in(still_used),
            )
        )
        return int(getattr(result, "rowcount", 0) or 0)


class ThumbnailRepository:
    """The sealed thumbnails of those who opted in (bot.thumbnails). Deleted explicitly
    with their consultation or user: SQLite does not enforce ON DELETE CASCADE by default."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, thumbnail: Thumbnail) -> None:
        self._session.add(thumbnail)
        await self._session.flush()

    async def of_consultation(self, consultation_id: int) -> Thumbnail | None:
        return await self._session.scalar(
            select(Thumbnail).where(Thumbnail.consultation_id == consultation_id)
        )

    async def count_for_user(self, user_key: str) -> int:
        query = select(func.count()).select_from(Thumbnail).where(Thumbnail.user_key == user_key)
        return int(await self._session.scalar(query) or 0)

    async def delete_for_user(self, user_key: str) -> None:
        await self._session.execute(delete(Thumbnail).where(Thumbnail.user_key == user_key))


class FollowUpRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, follow_up: FollowUp) -> FollowUp:
        self._session.add(follow_up)
        await self._session.flush()
        return follow_up

    async def get(self, follow_up_id: int) -> FollowUp | None:
        return await self._session.get(FollowUp, follow_up_id)

    async def due(self, now: datetime) -> Sequence[tuple[FollowUp, Consultation, User]]:
        """Return unsent follow-ups due by ``now`` and not yet queued in the outbox, with
        their consultation and user.

        The follow-up rows are locked for this transaction and rows another replica is
        claiming are skipped, as in :meth:`UserRepository.due_reminders`.
        """
        queued = exists().where(OutboxMessage.follow_up_id == FollowUp.id)
        query = (
            select(FollowUp, Consultation, User)
            .join(Consultation, Consultation.id == FollowUp.consultation_id)
            .join(User, User.user_key == FollowUp.user_key)
            .where(FollowUp.sent_at.is_(None), FollowUp.due_at <= now, ~queued)
            .order_by(FollowUp.due_at, FollowUp.id)
            .with_for_update(skip_locked=True, of=FollowUp)
        )
        rows = (await self._session.execute(query)).all()
        return [(f, c, u) for f, c, u in rows]

    async def pending_for(self, user_key: str) -> int:
        query = select(func.count()).where(
            FollowUp.user_key == user_key, FollowUp.sent_at.is_(None)
        )
        return int(await self._session.scalar(query) or 0)


class OutboxRepository:
    """Messages the bot writes first: queued, claimed one at a time, marked sent or parked."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, message: OutboxMessage) -> OutboxMessage:
        self._session.add(message)
        await self._session.flush()
        return message

    async def get(self, message_id: int) -> OutboxMessage | None:
        return await self._session.get(OutboxMessage, message_id)

    async def claim_next(
        self, now: datetime, lease_until: datetime, *, clock: datetime | None = None
    ) -> OutboxMessage | None:
        """Claim the oldest message due by ``now`` that nobody holds at ``clock`` (the
        database's time; ``now`` if not given); return it, or None when none is left.

        The claim is a conditional UPDATE (claimed only if still unclaimed), which holds
        on SQLite too, where ``SKIP LOCKED`` is ignored; on PostgreSQL the lock lets two
        replicas pass each other instead of waiting.
        """
        held_until = now if clock is None else clock
        free = or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until <= held_until)
        waiting = (
            OutboxMessage.sent_at.is_(None),
            OutboxMessage.parked_at.is_(None),
            OutboxMessage.due_at <= now,
        )
        while True:
            query = (
                select(OutboxMessage.id)
                .where(*waiting, free)
                .order_by(OutboxMessage.due_at, OutboxMessage.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            message_id = await self._session.scalar(query)
            if message_id is None:
                return None
            result = await self._session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == message_id, *waiting, free)
                .values(claimed_until=lease_until)
                .execution_options(synchronize_session=False)
            )
            if int(getattr(result, "rowcount", 0) or 0) == 1:
                return await self._session.get(OutboxMessage, message_id, populate_existing=True)

    async def claim_follow_ups_of(
        self,
        user_key: str,
        now: datetime,
        lease_until: datetime,
        limit: int,
        *,
        clock: datetime | None = None,
    ) -> list[OutboxMessage]:
        """Claim up to ``limit`` more due follow-up messages of one person, oldest first,
        to send with one already claimed (one message per person per run); held means
        held at ``clock`` (the database's time; ``now`` if not given), as in claim_next."""
        held_until = now if clock is None else clock
        free = or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until <= held_until)
        waiting = (
            OutboxMessage.kind == "follow_up",
            OutboxMessage.user_key == user_key,
            OutboxMessage.sent_at.is_(None),
            OutboxMessage.parked_at.is_(None),
            OutboxMessage.due_at <= now,
        )
        query = (
            select(OutboxMessage.id)
            .where(*waiting, free)
            .order_by(OutboxMessage.due_at, OutboxMessage.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        ids = list(await self._session.scalars(query))
        if not ids:
            return []
        # Conditional, as in claim_next: a row another replica claimed meanwhile is not ours.
        await self._session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(ids), *waiting, free)
            .values(claimed_until=lease_until)
            .execution_options(synchronize_session=False)
        )
        claimed = select(OutboxMessage).where(
            OutboxMessage.id.in_(ids), OutboxMessage.claimed_until == lease_until
        )
        rows = await self._session.scalars(claimed.execution_options(populate_existing=True))
        return list(rows)

    async def answer_for(self, consultation_id: int) -> OutboxMessage | None:
        """The outbox row delivering one consultation's answer, if one was queued."""
        return await self._session.scalar(
            select(OutboxMessage).where(OutboxMessage.consultation_id == consultation_id)
        )

    async def backlog(self) -> tuple[int, dict[str, int]]:
        """Return how many messages wait to be sent, and the parked ones by reason (a
        photo's answer as "answer: <reason>", so an administrator tells them apart)."""
        pending = await self._session.scalar(
            select(func.count()).where(
                OutboxMessage.sent_at.is_(None), OutboxMessage.parked_at.is_(None)
            )
        )
        parked = (
            await self._session.execute(
                select(OutboxMessage.kind, OutboxMessage.last_error, func.count())
                .where(OutboxMessage.parked_at.is_not(None))
                .group_by(OutboxMessage.kind, OutboxMessage.last_error)
            )
        ).all()
        reasons: Counter[str] = Counter()
        for kind, reason, count in parked:
            label = str(reason or "?")
            reasons[f"answer: {label}" if kind == "answer" else label] += int(count)
        return int(pending or 0), _by_count(reasons)

    async def answer_backlog(self) -> dict[str, int]:
        """Photo answers in the outbox by state: pending (waiting for a send), parked."""
        rows = (
            await self._session.execute(
                select(OutboxMessage.parked_at.is_not(None), func.count())
                .where(OutboxMessage.kind == "answer", OutboxMessage.sent_at.is_(None))
                .group_by(OutboxMessage.parked_at.is_not(None))
            )
        ).all()
        counts = {"pending": 0, "parked": 0}
        for parked, count in rows:
            counts["parked" if parked else "pending"] += int(count)
        return counts


@dataclass(frozen=True)
class ClaimedUpdate:
    update_id: int
    payload: str | None
    attempts: int
    suspect: bool  # its previous holder died holding it


class InboxRepository:
    """Updates from their arrival until they are handled (see ``bot.inbox``)."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def accept(
        self, update_id: int, payload: str, owner: str, now: datetime, lease_until: datetime
    ) -> bool:
        """Keep a new update, held by ``owner``; False if this update id is known already
        (Telegram sent it again, or another replica got it): nothing is written then. An id
        handled longer than UPDATE_WINDOW ago and not purged yet is a new update (Telegram
        reuses ids): it takes the old row's place."""
        dialect = self._session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        values = {
            "update_id": update_id,
            "received_at": now,
            "payload": payload,
            "owner": owner,
            "lease_until": lease_until,
            "attempts": 1,
            "done_at": None,
            "gave_up": None,
        }
        forgotten = InboxUpdate.done_at.is_not(None) & (InboxUpdate.done_at < now - UPDATE_WINDOW)
        statement = (
            insert(InboxUpdate)
            .values(**values)
            .on_conflict_do_update(
                index_elements=[InboxUpdate.update_id],
                set_={k: v for k, v in values.items() if k != "update_id"},
                where=forgotten,
            )
            .returning(InboxUpdate.update_id)
        )
        return (await self._session.scalar(statement)) is not None

    async def finish(
        self, update_id: int, owner: str, now: datetime, gave_up: str | None = None
    ) -> None:
        """Mark ``owner``'s update handled (or given up): its sealed text goes, its id
        stays. Nothing happens if another process holds it now (fenced by the owner)."""
        await self._session.execute(
            update(InboxUpdate)
            .where(
                InboxUpdate.update_id == update_id,
                InboxUpdate.owner == owner,
                InboxUpdate.done_at.is_(None),
            )
            .values(
                done_at=now,
                # A given-up update stays sealed until purged, for an administrator to see.
                payload=None if gave_up is None else InboxUpdate.payload,
                owner=None,
                lease_until=None,
                gave_up=gave_up,
            )
        )

    async def release(self, owner: str, update_ids: Sequence[int] | None = None) -> int:
        """Give back ``owner``'s unhandled updates (those of ``update_ids``, or all) so that
        any process may claim them at once; return how many. A hold given back cleanly
        does not count as an attempt."""
        query = update(InboxUpdate).where(InboxUpdate.owner == owner, InboxUpdate.done_at.is_(None))
        if update_ids is not None:
            query = query.where(InboxUpdate.update_id.in_(update_ids))
        result = await self._session.execute(
            query.values(owner=None, lease_until=None, attempts=InboxUpdate.attempts - 1)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    async def renew(self, owner: str, update_ids: Sequence[int], lease_until: datetime) -> None:
        """Extend ``owner``'s leases on the updates it is still handling."""
        await self._session.execute(
            update(InboxUpdate)
            .where(
                InboxUpdate.owner == owner,
                InboxUpdate.done_at.is_(None),
                InboxUpdate.update_id.in_(update_ids),
            )
            .values(lease_until=lease_until)
        )

    async def claim_free(
        self, owner: str, now: datetime, lease_until: datetime, limit: int, *, suspects: int = 1
    ) -> list[ClaimedUpdate]:
        """Claim up to ``limit`` unhandled updates given back cleanly, and up to
        ``suspects`` whose holder's lease ran out (it died holding them), oldest first,
        counting the attempt.

        A conditional UPDATE like the outbox's claim: an update another process claimed
        in between no longer matches, on SQLite and PostgreSQL alike.
        """
        unhandled = InboxUpdate.done_at.is_(None)
        given_back = InboxUpdate.lease_until.is_(None)
        ran_out = InboxUpdate.lease_until <= now
        candidates: list[tuple[int, bool]] = []
        for wanted, condition, suspect in ((limit, given_back, False), (suspects, ran_out, True)):
            if wanted <= 0:
                continue
            ids = (
                await self._session.scalars(
                    select(InboxUpdate.update_id)
                    .where(unhandled, condition)
                    .order_by(InboxUpdate.update_id)
                    .limit(wanted)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            candidates += [(update_id, suspect) for update_id in ids]
        if not candidates:
            return []
        suspect_of = dict(candidates)
        claimed = await self._session.scalars(
            update(InboxUpdate)
            .where(
                InboxUpdate.update_id.in_(list(suspect_of)),
                unhandled,
                or_(given_back, ran_out),
            )
            .values(owner=owner, lease_until=lease_until, attempts=InboxUpdate.attempts + 1)
            .returning(InboxUpdate)
            .execution_options(synchronize_session=False)
        )
        rows = sorted(claimed.all(), key=lambda row: row.update_id)
        return [
            ClaimedUpdate(row.update_id, row.payload, row.attempts, suspect_of[row.update_id])
            for row in rows
        ]

    async def waiting(self) -> int:
        """How many updates wait to be handled (held or free)."""
        count = await self._session.scalar(
            select(func.count()).where(InboxUpdate.done_at.is_(None))
        )
        return int(count or 0)

    async def oldest_waiting(self) -> datetime | None:
        """When the oldest update still waiting to be handled arrived (None: none waits)."""
        return await self._session.scalar(
            select(func.min(InboxUpdate.received_at)).where(InboxUpdate.done_at.is_(None))
        )

    async def purge_done_before(self, cutoff: datetime) -> int:
        """Forget handled updates from before ``cutoff``; return how many."""
        result = await self._session.execute(
            delete(InboxUpdate).where(InboxUpdate.done_at < cutoff)
        )
        return int(getattr(result, "rowcount", 0) or 0)


class ReferralRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, language: str) -> str | None:
        row = await self._session.get(ReferralContact, language)
        return row.text if row else None

    async def first_of(self, languages: Sequence[str]) -> str | None:
        """Return the contacts in the first of ``languages`` that has any (one query)."""
        query = select(ReferralContact).where(ReferralContact.language.in_(languages))
        found = {row.language: row.text for row in await self._session.scalars(query)}
        return next((found[language] for language in languages if language in found), None)

    async def languages(self) -> set[str]:
        """Return the languages that have contacts."""
        return set(await self._session.scalars(select(ReferralContact.language)))

    async def set(self, language: str, text: str) -> None:
        row = await self._session.get(ReferralContact, language)
        if row is None:
            self._session.add(ReferralContact(language=language, text=text))
        else:
            row.text = text


class StatsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def summary(self, now: datetime, days: int) -> StatsSummary:
        """Summarise the last ``days`` days (per-day counts grouped here: portable SQL)."""
        since = now - timedelta(days=days)
        rows = (
            await self._session.execute(
                select(
                    Consultation.created_at,
                    Consultation.user_key,
                    Consultation.status,
                    Consultation.risk,
                    Consultation.reason,
                    Consultation.processing_ms,
                    Consultation.model_version,
                ).where(Consultation.created_at >= since)
            )
        ).all()
        per_day = Counter(_utc(row.created_at).date() for row in rows)
        risks = Counter(
            row.risk for row in rows if row.status == ConsultationStatus.ASSESSED and row.risk
        )
        rejections = Counter(
            reason for row in rows if (reason := _refusal_reason(row.status, row.reason))
        )
        by_day: dict[date, Counter[str]] = {}
        for row in rows:
            outcome = row.risk if row.status == ConsultationStatus.ASSESSED else row.status
            by_day.setdefault(_utc(row.created_at).date(), Counter())[outcome or row.status] += 1
        days_shown = (now.date() - _utc(since).date()).days + 1
        outcomes_per_day = [
            (day, dict(by_day.get(day, Counter())))
            for day in (_utc(since).date() + timedelta(days=n) for n in range(days_shown))
        ]
        versions = Counter(row.model_version for row in rows if row.model_version)
        timings = sorted(row.processing_ms for row in rows if row.processing_ms is not None)
        languages = (
            await self._session.execute(select(User.language, func.count()).group_by(User.language))
        ).all()
        follow_ups = (
            await self._session.execute(
                select(FollowUp.sent_at.is_not(None), FollowUp.saw_doctor, FollowUp.diagnosis)
                .join(Consultation, Consultation.id == FollowUp.consultation_id)
                .where(Consultation.created_at >= since)
            )
        ).all()
        outcomes = Counter(
            _follow_up_outcome(bool(sent), saw, diagnosis) for sent, saw, diagnosis in follow_ups
        )
        known = await self._session.scalar(select(func.count()).select_from(User))
        outbox_pending, outbox_parked = await OutboxRepository(self._session).backlog()
        given_up = (
            await self._session.execute(
                select(InboxUpdate.gave_up, func.count())
                .where(InboxUpdate.gave_up.is_not(None), InboxUpdate.done_at >= since)
                .group_by(InboxUpdate.gave_up)
            )
        ).all()
        return StatsSummary(
            days=days,
            active_users=len({row.user_key for row in rows}),
            known_users=int(known or 0),
            consultations=len(rows),
            per_day=sorted(per_day.items()),
            risks=_by_count(risks),
            rejections=_by_count(rejections),
            languages=_by_count(Counter({language or "?": n for language, n in languages})),
            processing_p50_ms=_percentile(timings, 50),
            processing_p95_ms=_percentile(timings, 95),
            model_versions=_by_count(versions),
            follow_ups=_by_count(outcomes),
            outbox_pending=outbox_pending,
            outbox_parked=outbox_parked,
            outcomes_per_day=outcomes_per_day,
            inbox_given_up=_by_count(Counter({str(why): int(n) for why, n in given_up})),
        )


def _refusal_reason(status: str, reason: str | None) -> str | None:
    """Why a photo got no risk level (None if it got one). An unexpected error counts as
    "failed": its exception's name is in the log and the export, not a reason to show."""
    if status == ConsultationStatus.ASSESSED:
        return None
    if status == ConsultationStatus.FAILED:
        return "failed"
    return reason or status


def _same_spot_before(current: Consultation) -> list[ColumnElement[bool]]:
    """Conditions for an assessed photo of ``current``'s named spot stored before it."""
    same_patient = (
        Consultation.patient_code.is_(None)
        if current.patient_code is None
        else Consultation.patient_code == current.patient_code
    )
    return [
        Consultation.user_key == current.user_key,
        Consultation.lesion_label == current.lesion_label,
        same_patient,
        Consultation.status == ConsultationStatus.ASSESSED,
        true() if current.id is None else Consultation.id < current.id,
    ]


def _follow_up_outcome(sent: bool, saw_doctor: str | None, diagnosis: str | None) -> str:
    if not sent:
        return "pending"
    if saw_doctor is None:
        return "unanswered"
    return f"{saw_doctor}/{diagnosis}" if diagnosis else saw_doctor


def _percentile(sorted_values: Sequence[int], percent: int) -> int | None:
    """Nearest-rank percentile."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(percent / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _by_count(counts: Counter[str]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _utc(moment: datetime) -> datetime:
    # Guards values that reach us without the column's type (SQLite keeps no offset).
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment

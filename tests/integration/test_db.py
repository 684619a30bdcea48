"""The consultation log on a real SQLite file and a real PostgreSQL (see conftest.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.migrate import alembic_config, upgrade_to_head
from bot.db.models import Base, Consultation, FollowUp
from bot.db.repository import (
    ConsultationRepository,
    FollowUpRepository,
    ReferralRepository,
    StatsRepository,
    UserRepository,
)
from bot.db.session import create_session_factory


def _schema_drift(connection: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_migrations_build_the_schema_the_models_describe(engine: AsyncEngine) -> None:
    """Upgrading a fresh database yields exactly the models' schema, and is repeatable."""
    await upgrade_to_head(engine)
    await upgrade_to_head(engine)  # already at head: a no-op, as on every restart
    async with engine.connect() as connection:
        assert await connection.run_sync(_tables) == {
            "consultations",
            "users",
            "follow_ups",
            "referral_contacts",
            "outbox",
            "inbox",
            "thumbnails",
            "alembic_version",
        }
        assert await connection.run_sync(_schema_drift) == []


async def test_migrations_downgrade_to_an_empty_database(engine: AsyncEngine) -> None:
    """Every revision can be undone, so a bad release can be rolled back."""
    await upgrade_to_head(engine)

    def downgrade(connection: Connection) -> None:
        command.downgrade(alembic_config(connection), "base")

    async with engine.begin() as connection:
        await connection.run_sync(downgrade)
    async with engine.connect() as connection:
        assert await connection.run_sync(_tables) == {"alembic_version"}


def _full_consultation() -> Consultation:
    return Consultation(
        user_key="a" * 64,
        input_kind="document",
        status="assessed",
        image_bytes=123_456,
        image_width=1200,
        image_height=900,
        quality_ok=True,
        quality_issues=[],
        quality_measurements={"sharpness": 312.5, "brightness": 0.48},
        class_probabilities={"mel": 0.25, "nv": 0.7, "bkl": 0.05},
        top_class="nv",
        malignant_probability=0.25,
        ood_score=3.5,
        risk="medium",
        lesion_box=[10, 20, 300, 310],
        model_version="test-1",
        processing_ms=87,
    )


async def test_repository_writes_and_reads_a_consultation_in_one_unit_of_work(
    engine: AsyncEngine,
) -> None:
    """What one transaction writes, another reads back intact, with a UTC timestamp."""
    await upgrade_to_head(engine)
    sessions = create_session_factory(engine)
    async with sessions.begin() as session:
        written = await ConsultationRepository(session).add(_full_consultation())
    assert written.id is not None

    async with sessions() as session:
        read = await ConsultationRepository(session).get(written.id)
        [listed] = await ConsultationRepository(session).for_user("a" * 64)
        counts = await ConsultationRepository(session).count_by_outcome()
    assert read is not None and listed.id == read.id
    expected = _full_consultation()
    for column in Consultation.__table__.c:
        if column.key not in ("id", "created_at"):
            assert getattr(read, column.key) == getattr(expected, column.key), column.key
    assert read.created_at.tzinfo is not None
    assert read.created_at.utcoffset() == UTC.utcoffset(None)
    assert abs((datetime.now(UTC) - read.created_at).total_seconds()) < 3600
    assert counts == {("assessed", "medium"): 1}


async def test_failed_unit_of_work_leaves_nothing_behind(engine: AsyncEngine) -> None:
    """An error inside the transaction rolls the whole consultation back."""
    await upgrade_to_head(engine)
    sessions = create_session_factory(engine)
    with pytest.raises(RuntimeError, match="boom"):
        async with sessions.begin() as session:
            await ConsultationRepository(session).add(_full_consultation())
            raise RuntimeError("boom")
    async with sessions() as session:
        assert await ConsultationRepository(session).for_user("a" * 64) == []


async def test_people_queries_work_on_every_backend(engine: AsyncEngine) -> None:
    """Stats, patients, lesion history, due follow-ups, purge and forget: portable SQL."""
    await upgrade_to_head(engine)
    sessions = create_session_factory(engine)
    now = datetime.now(UTC)
    old = now - timedelta(days=400)
    async with sessions.begin() as session:
        users = UserRepository(session)
        (await users.get_or_add("a" * 64)).language = "kk"
        (await users.get_or_add("w" * 64)).is_worker = True
        (await users.get_or_add("o" * 64)).created_at = old
        repository = ConsultationRepository(session)
        first = await repository.add(_full_consultation())
        first.lesion_label = "arm"
        second = await repository.add(_full_consultation())
        second.lesion_label = "arm"
        patient = await repository.add(_full_consultation())
        patient.user_key, patient.patient_code = "w" * 64, "P1"
        ancient = await repository.add(_full_consultation())
        ancient.user_key, ancient.created_at = "o" * 64, old
        await session.flush()
        session.add(FollowUp(consultation_id=first.id, user_key="a" * 64, due_at=now))
        session.add(FollowUp(consultation_id=ancient.id, user_key="o" * 64, due_at=old))
        await ReferralRepository(session).set("ru", "clinic")
        await ReferralRepository(session).set("ru", "clinic 2")

    async with sessions() as session:
        repository = ConsultationRepository(session)
        previous = await repository.previous_of_lesion(second)
        assert previous is not None and previous.id == first.id
        [summary] = await repository.patients("w" * 64)
        assert (summary.code, summary.checks) == ("P1", 1)
        assert [c.id for c in await repository.history("w" * 64, patient_code="P1")] == [patient.id]
        assert len(await FollowUpRepository(session).due(now)) == 2
        stats = await StatsRepository(session).summary(now, 30)
        assert (stats.consultations, stats.active_users, stats.known_users) == (3, 2, 3)
        assert stats.languages == {"?": 2, "kk": 1}
        assert stats.risks == {"medium": 3} and stats.follow_ups == {"pending": 1}
        assert stats.processing_p50_ms == stats.processing_p95_ms == 87
        assert await ReferralRepository(session).get("ru") == "clinic 2"

    async with sessions.begin() as session:
        assert await UserRepository(session).purge_older_than(now - timedelta(days=365)) == 1
    async with sessions.begin() as session:
        await UserRepository(session).forget("a" * 64)
    async with sessions() as session:
        assert await UserRepository(session).get("o" * 64) is None  # nothing left: purged
        assert await UserRepository(session).get("a" * 64) is None
        assert await UserRepository(session).get("w" * 64) is not None
        assert await ConsultationRepository(session).for_user("a" * 64) == []
        assert await FollowUpRepository(session).due(now) == []


async def test_two_replicas_never_claim_the_same_due_follow_up_or_reminder(
    engine: AsyncEngine,
) -> None:
    """Behind a webhook several replicas run the scheduler; on PostgreSQL a row one is
    claiming is skipped by the other, so nobody is asked twice. (SQLite: one process.)"""
    if engine.dialect.name != "postgresql":
        pytest.skip("row locks are a PostgreSQL matter; SQLite serves one process")
    await upgrade_to_head(engine)
    sessions = create_session_factory(engine)
    now = datetime.now(UTC)
    async with sessions.begin() as session:
        user = await UserRepository(session).get_or_add("r" * 64)
        user.reminder, user.next_reminder_at = "monthly", now - timedelta(minutes=1)
        consultation = await ConsultationRepository(session).add(_full_consultation())
        consultation.user_key = "r" * 64
        await session.flush()
        session.add(FollowUp(consultation_id=consultation.id, user_key="r" * 64, due_at=now))

    async with sessions.begin() as first, sessions.begin() as second:
        claimed = await FollowUpRepository(first).due(now)
        reminders = await UserRepository(first).due_reminders(now)
        assert len(claimed) == 1 and len(reminders) == 1
        # While the first replica holds them, the second sees nothing to send.
        assert await FollowUpRepository(second).due(now) == []
        assert await UserRepository(second).due_reminders(now) == []
        claimed[0][0].sent_at = now
        reminders[0].next_reminder_at = now + timedelta(days=30)
    async with sessions() as session:
        assert await FollowUpRepository(session).due(now) == []
        assert await UserRepository(session).due_reminders(now) == []

"""Reads and writes of consultations; the caller owns the session and so the transaction."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import Consultation


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

    async def for_user(self, user_key: str, limit: int = 50) -> Sequence[Consultation]:
        """Return a user's consultations, newest first."""
        query = (
            select(Consultation)
            .where(Consultation.user_key == user_key)
            .order_by(Consultation.created_at.desc(), Consultation.id.desc())
            .limit(limit)
        )
        return (await self._session.scalars(query)).all()

    async def count_by_outcome(self) -> dict[tuple[str, str | None], int]:
        """Count consultations per (status, risk or reason), for the admin summary."""
        label = func.coalesce(Consultation.risk, Consultation.reason)
        query = select(Consultation.status, label, func.count()).group_by(
            Consultation.status, label
        )
        rows = (await self._session.execute(query)).all()
        return {(status, detail): count for status, detail, count in rows}

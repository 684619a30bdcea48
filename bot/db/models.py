"""The consultation log: one row per photo (or other attempt) a user sends.

Only portable types (JSON, timezone-aware DateTime), so SQLite and PostgreSQL share one
schema. No raw Telegram id, file name, caption or image is ever stored.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, DateTime, Dialect, Float, Integer, MetaData, String, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names, so later migrations can alter or drop them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime, also on SQLite (which drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; store UTC-aware datetimes only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_now() -> datetime:
    """Return the current time in UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Consultation(Base):
    __tablename__ = "consultations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now, index=True)
    # HMAC-SHA256 of the Telegram user id: lets us count repeat users, not identify them.
    user_key: Mapped[str] = mapped_column(String(64), index=True)
    input_kind: Mapped[str] = mapped_column(String(16))  # bot.screening.InputKind
    # "assessed", "unassessable" or "rejected"; reason says why for the last two.
    status: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str | None] = mapped_column(String(64))
    image_bytes: Mapped[int | None] = mapped_column(Integer)
    image_width: Mapped[int | None] = mapped_column(Integer)
    image_height: Mapped[int | None] = mapped_column(Integer)
    quality_ok: Mapped[bool | None]
    quality_issues: Mapped[list[str] | None] = mapped_column(JSON)
    quality_measurements: Mapped[dict[str, float | None] | None] = mapped_column(JSON)
    class_probabilities: Mapped[dict[str, float | None] | None] = mapped_column(JSON)
    top_class: Mapped[str | None] = mapped_column(String(32))
    malignant_probability: Mapped[float | None] = mapped_column(Float)
    ood_score: Mapped[float | None] = mapped_column(Float)
    risk: Mapped[str | None] = mapped_column(String(16))  # inference.types.Risk
    lesion_box: Mapped[list[int] | None] = mapped_column(JSON)  # [x0, y0, x1, y1] in pixels
    model_version: Mapped[str | None] = mapped_column(String(64))
    processing_ms: Mapped[int | None] = mapped_column(Integer)

    def __repr__(self) -> str:
        return f"Consultation(id={self.id!r}, status={self.status!r}, reason={self.reason!r})"

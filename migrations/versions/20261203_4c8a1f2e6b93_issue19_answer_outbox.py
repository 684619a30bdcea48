"""Issue 19: a photo's answer Telegram did not take goes through the outbox.

An outbox row of kind "answer" points at its consultation (rendered again from it) and
holds the sealed chat it goes to until it is sent or parked.

Revision ID: 4c8a1f2e6b93
Revises: 9d4e2b7c1f60
Create Date: 2026-12-03 10:20:00.000000+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "4c8a1f2e6b93"
down_revision: str | Sequence[str] | None = "9d4e2b7c1f60"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("consultation_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("chat_ref", sa.String(length=128), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_outbox_consultation_id_consultations"),
            "consultations",
            ["consultation_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_unique_constraint(
            batch_op.f("uq_outbox_consultation_id"), ["consultation_id"]
        )


def downgrade() -> None:
    """Downgrade schema (answers still waiting in the outbox are dropped)."""
    op.execute("DELETE FROM outbox WHERE kind = 'answer'")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_outbox_consultation_id"), type_="unique")
        batch_op.drop_constraint(
            batch_op.f("fk_outbox_consultation_id_consultations"), type_="foreignkey"
        )
        batch_op.drop_column("chat_ref")
        batch_op.drop_column("consultation_id")

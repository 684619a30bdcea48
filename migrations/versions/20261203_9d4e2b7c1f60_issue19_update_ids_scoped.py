"""Issue 19: a consultation's update id is scoped to its user and a time window.

Telegram restarts update ids after a week without updates, and consultations are kept a
year: a unique update id made a second user's photo with a reused id look answered.

Revision ID: 9d4e2b7c1f60
Revises: b7d2c4e9f015
Create Date: 2026-12-03 09:30:00.000000+00:00

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "9d4e2b7c1f60"
down_revision: str | Sequence[str] | None = "b7d2c4e9f015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("consultations", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_consultations_update_id"), type_="unique")
        batch_op.create_index(batch_op.f("ix_consultations_update_id"), ["update_id"])


def downgrade() -> None:
    """Downgrade schema (fails if a reused update id is stored twice)."""
    with op.batch_alter_table("consultations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consultations_update_id"))
        batch_op.create_unique_constraint(
            batch_op.f("uq_consultations_update_id"), ["update_id"]
        )

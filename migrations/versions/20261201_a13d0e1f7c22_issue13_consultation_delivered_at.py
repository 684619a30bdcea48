"""Consultations: delivered_at, set once Telegram accepted the reply (issue 13/14 photo path).

Sealed chat ids change format too (AES-GCM with key ids), but in place: the bot re-seals
them at start-up with its keys (bot/keys.py), which a migration does not have.

Revision ID: a13d0e1f7c22
Revises: c2a9e4b71d30
Create Date: 2026-12-01 10:45:00.000000+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "a13d0e1f7c22"
down_revision: str | Sequence[str] | None = "c2a9e4b71d30"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("consultations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("consultations", schema=None) as batch_op:
        batch_op.drop_column("delivered_at")

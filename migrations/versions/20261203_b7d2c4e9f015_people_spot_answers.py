"""Consultations: answers, the optional questions about the spot (issue 21).

Body site, age band and what the person noticed (new, changed, grown, bled, itched), each
from buttons, never free text; deleted with the consultation (/forget, retention).

Revision ID: b7d2c4e9f015
Revises: e3c91a5d7b10
Create Date: 2026-12-03 09:40:00.000000+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "b7d2c4e9f015"
down_revision: str | Sequence[str] | None = "e3c91a5d7b10"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("consultations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("answers", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("consultations", schema=None) as batch_op:
        batch_op.drop_column("answers")

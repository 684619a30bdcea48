"""People, issue 21: opt-in encrypted thumbnails of a named spot, shown side by side.

``users.keep_thumbnails`` (off by default) and the ``thumbnails`` table: one AES-GCM sealed
JPEG per consultation, deleted with it, by /forget and by opting out.

Revision ID: e52b8c1d7a43
Revises: 4c8a1f2e6b93
Create Date: 2026-12-03 12:30:00.000000+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision: str = "e52b8c1d7a43"
down_revision: str | Sequence[str] | None = "4c8a1f2e6b93"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "thumbnails",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("consultation_id", sa.Integer(), nullable=False),
        sa.Column("user_key", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["consultation_id"],
            ["consultations.id"],
            name=op.f("fk_thumbnails_consultation_id_consultations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_thumbnails")),
        sa.UniqueConstraint("consultation_id", name=op.f("uq_thumbnails_consultation_id")),
    )
    with op.batch_alter_table("thumbnails", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_thumbnails_user_key"), ["user_key"], unique=False)
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("keep_thumbnails", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    """Downgrade schema (kept thumbnails are dropped)."""
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("keep_thumbnails")
    with op.batch_alter_table("thumbnails", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_thumbnails_user_key"))
    op.drop_table("thumbnails")

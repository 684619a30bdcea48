"""Create the consultations table.

Revision ID: 7f4c250174e5
Revises:
Create Date: 2026-11-23 17:34:18.395356+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "7f4c250174e5"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "consultations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_key", sa.String(length=64), nullable=False),
        sa.Column("input_kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("image_bytes", sa.Integer(), nullable=True),
        sa.Column("image_width", sa.Integer(), nullable=True),
        sa.Column("image_height", sa.Integer(), nullable=True),
        sa.Column("quality_ok", sa.Boolean(), nullable=True),
        sa.Column("quality_issues", sa.JSON(), nullable=True),
        sa.Column("quality_measurements", sa.JSON(), nullable=True),
        sa.Column("class_probabilities", sa.JSON(), nullable=True),
        sa.Column("top_class", sa.String(length=32), nullable=True),
        sa.Column("malignant_probability", sa.Float(), nullable=True),
        sa.Column("ood_score", sa.Float(), nullable=True),
        sa.Column("risk", sa.String(length=16), nullable=True),
        sa.Column("lesion_box", sa.JSON(), nullable=True),
        sa.Column("model_version", sa.String(length=64), nullable=True),
        sa.Column("processing_ms", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consultations")),
    )
    with op.batch_alter_table("consultations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_consultations_created_at"), ["created_at"])
        batch_op.create_index(batch_op.f("ix_consultations_status"), ["status"])
        batch_op.create_index(batch_op.f("ix_consultations_user_key"), ["user_key"])


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("consultations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consultations_user_key"))
        batch_op.drop_index(batch_op.f("ix_consultations_status"))
        batch_op.drop_index(batch_op.f("ix_consultations_created_at"))
    op.drop_table("consultations")

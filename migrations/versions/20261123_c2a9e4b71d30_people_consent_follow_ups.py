"""People: users (consent, language, role, reminders), follow-ups, referral contacts,
and lesion labels / patient codes on consultations.

Revision ID: c2a9e4b71d30
Revises: 7f4c250174e5
Create Date: 2026-11-23 18:10:00.000000+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "c2a9e4b71d30"
down_revision: str | Sequence[str] | None = "7f4c250174e5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "users",
        sa.Column("user_key", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=True),
        sa.Column("consented_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("is_worker", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("reminder", sa.String(length=16), nullable=True),
        sa.Column("next_reminder_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("chat_ref", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("user_key", name=op.f("pk_users")),
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_users_next_reminder_at"), ["next_reminder_at"])

    op.create_table(
        "follow_ups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("consultation_id", sa.Integer(), nullable=False),
        sa.Column("user_key", sa.String(length=64), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("saw_doctor", sa.String(length=16), nullable=True),
        sa.Column("diagnosis", sa.String(length=16), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["consultation_id"],
            ["consultations.id"],
            name=op.f("fk_follow_ups_consultation_id_consultations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_follow_ups")),
        sa.UniqueConstraint("consultation_id", name=op.f("uq_follow_ups_consultation_id")),
    )
    with op.batch_alter_table("follow_ups", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_follow_ups_due_at"), ["due_at"])
        batch_op.create_index(batch_op.f("ix_follow_ups_user_key"), ["user_key"])

    op.create_table(
        "referral_contacts",
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("language", name=op.f("pk_referral_contacts")),
    )

    with op.batch_alter_table("consultations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lesion_label", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("patient_code", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("result_message_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("consultations", schema=None) as batch_op:
        batch_op.drop_column("result_message_id")
        batch_op.drop_column("patient_code")
        batch_op.drop_column("lesion_label")
    op.drop_table("referral_contacts")
    with op.batch_alter_table("follow_ups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_follow_ups_user_key"))
        batch_op.drop_index(batch_op.f("ix_follow_ups_due_at"))
    op.drop_table("follow_ups")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_users_next_reminder_at"))
    op.drop_table("users")

"""group sessions, bookings, patients

Revision ID: 0001
Revises:
Create Date: 2026-11-26 16:20:11.069581
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "patient",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("family", sa.String(length=100), nullable=False),
        sa.Column("given", sa.String(length=100), nullable=False),
        sa.Column("family_folded", sa.String(length=100), nullable=False),
        sa.Column("given_folded", sa.String(length=100), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("gender", sa.String(length=16), nullable=True),
        sa.Column("phone", sa.String(length=40), nullable=True),
        sa.Column("phone_digits", sa.String(length=20), nullable=True),
        sa.Column("restricted", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_patient_family_folded"), ["family_folded"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_patient_phone_digits"), ["phone_digits"], unique=False)

    op.create_table(
        "provider",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("family", sa.String(length=100), nullable=False),
        sa.Column("given", sa.String(length=100), nullable=False),
        sa.Column("prefix", sa.String(length=20), nullable=True),
        sa.Column("identifier_system", sa.String(length=200), nullable=True),
        sa.Column("identifier_value", sa.String(length=100), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "provider_group",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("identifier_system", sa.String(length=200), nullable=True),
        sa.Column("identifier_value", sa.String(length=100), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "department",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("provider_group_id", sa.String(length=64), nullable=False),
        sa.Column("identifier_system", sa.String(length=200), nullable=True),
        sa.Column("identifier_value", sa.String(length=100), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["provider_group_id"],
            ["provider_group.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "patient_identifier",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("system", sa.String(length=200), nullable=False),
        sa.Column("value", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(["patient_id"], ["patient.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("patient_identifier", schema=None) as batch_op:
        batch_op.create_index("ix_patient_identifier_value", ["system", "value"], unique=False)

    op.create_table(
        "provider_schedule",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("provider_id", sa.String(length=64), nullable=False),
        sa.Column("department_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("horizon_start", sa.DateTime(), nullable=True),
        sa.Column("horizon_end", sa.DateTime(), nullable=True),
        sa.Column("identifier_system", sa.String(length=200), nullable=True),
        sa.Column("identifier_value", sa.String(length=100), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["department_id"],
            ["department.id"],
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["provider.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("provider_schedule", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_provider_schedule_department_id"), ["department_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_provider_schedule_provider_id"), ["provider_id"], unique=False
        )

    op.create_table(
        "group_session",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("schedule_id", sa.String(length=64), nullable=False),
        sa.Column("start_at", sa.DateTime(), nullable=False),
        sa.Column("end_at", sa.DateTime(), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("booked", sa.Integer(), nullable=False),
        sa.Column("appointment_type", sa.String(length=64), nullable=True),
        sa.Column("service_type", sa.String(length=64), nullable=True),
        sa.Column("closed", sa.Boolean(), nullable=False),
        sa.Column("blocked", sa.Boolean(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.DateTime(), nullable=False),
        sa.CheckConstraint("booked >= 0 AND booked <= capacity", name="ck_session_booked_in_range"),
        sa.CheckConstraint("capacity >= 0", name="ck_session_capacity_nonneg"),
        sa.CheckConstraint("end_at > start_at", name="ck_session_end_after_start"),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["provider_schedule.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("group_session", schema=None) as batch_op:
        batch_op.create_index(
            "ix_session_schedule_start", ["schedule_id", "start_at"], unique=False
        )
        batch_op.create_index("ix_session_start", ["start_at"], unique=False)

    op.create_table(
        "booking",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=True),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("start_at", sa.DateTime(), nullable=True),
        sa.Column("end_at", sa.DateTime(), nullable=True),
        sa.Column("appointment_type", sa.String(length=64), nullable=True),
        sa.Column("department_id", sa.String(length=64), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("cancellation_reason", sa.String(length=200), nullable=True),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["department_id"],
            ["department.id"],
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patient.id"],
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["group_session.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("booking", schema=None) as batch_op:
        batch_op.create_index("ix_booking_patient", ["patient_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_booking_session_id"), ["session_id"], unique=False)
        batch_op.create_index("ix_booking_start", ["start_at"], unique=False)
        batch_op.create_index(
            "uq_booking_patient_session_active",
            ["session_id", "patient_id"],
            unique=True,
            sqlite_where=sa.text(
                "status IN ('arrived', 'booked', 'checked-in', 'fulfilled', 'noshow')"
            ),
            postgresql_where=sa.text(
                "status IN ('arrived', 'booked', 'checked-in', 'fulfilled', 'noshow')"
            ),
        )

    op.create_table(
        "booking_identifier",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("booking_id", sa.String(length=64), nullable=False),
        sa.Column("system", sa.String(length=200), nullable=False),
        sa.Column("value", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(["booking_id"], ["booking.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("system", "value", name="uq_booking_identifier"),
    )
    with op.batch_alter_table("booking_identifier", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_booking_identifier_booking_id"), ["booking_id"], unique=False
        )

    op.create_table(
        "booking_provider",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("booking_id", sa.String(length=64), nullable=False),
        sa.Column("provider_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["booking_id"], ["booking.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["provider.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("booking_id", "provider_id"),
    )
    with op.batch_alter_table("booking_provider", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_booking_provider_provider_id"), ["provider_id"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("booking_provider", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_booking_provider_provider_id"))

    op.drop_table("booking_provider")
    with op.batch_alter_table("booking_identifier", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_booking_identifier_booking_id"))

    op.drop_table("booking_identifier")
    with op.batch_alter_table("booking", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_booking_patient_session_active",
            sqlite_where=sa.text(
                "status IN ('arrived', 'booked', 'checked-in', 'fulfilled', 'noshow')"
            ),
            postgresql_where=sa.text(
                "status IN ('arrived', 'booked', 'checked-in', 'fulfilled', 'noshow')"
            ),
        )
        batch_op.drop_index("ix_booking_start")
        batch_op.drop_index(batch_op.f("ix_booking_session_id"))
        batch_op.drop_index("ix_booking_patient")

    op.drop_table("booking")
    with op.batch_alter_table("group_session", schema=None) as batch_op:
        batch_op.drop_index("ix_session_start")
        batch_op.drop_index("ix_session_schedule_start")

    op.drop_table("group_session")
    with op.batch_alter_table("provider_schedule", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_provider_schedule_provider_id"))
        batch_op.drop_index(batch_op.f("ix_provider_schedule_department_id"))

    op.drop_table("provider_schedule")
    with op.batch_alter_table("patient_identifier", schema=None) as batch_op:
        batch_op.drop_index("ix_patient_identifier_value")

    op.drop_table("patient_identifier")
    op.drop_table("department")
    op.drop_table("provider_group")
    op.drop_table("provider")
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_patient_phone_digits"))
        batch_op.drop_index(batch_op.f("ix_patient_family_folded"))

    op.drop_table("patient")

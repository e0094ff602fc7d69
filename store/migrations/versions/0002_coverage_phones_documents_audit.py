"""coverage, phones, documents, audit

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 16:31:13.163122
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_record",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("recorded", sa.DateTime(), nullable=False),
        sa.Column("action", sa.String(length=1), nullable=False),
        sa.Column("subtype", sa.String(length=20), nullable=False),
        sa.Column("outcome", sa.String(length=2), nullable=False),
        sa.Column("agent", sa.String(length=200), nullable=False),
        sa.Column("entity_kind", sa.String(length=40), nullable=True),
        sa.Column("entity_id", sa.String(length=64), nullable=True),
        sa.Column("patient_id", sa.String(length=64), nullable=True),
        sa.Column("restricted", sa.Boolean(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_record", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_record_entity_id"), ["entity_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_audit_record_patient_id"), ["patient_id"], unique=False
        )
        batch_op.create_index("ix_audit_recorded", ["recorded"], unique=False)

    op.create_table(
        "coverage",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("beneficiary_id", sa.String(length=64), nullable=False),
        sa.Column("subscriber_patient_id", sa.String(length=64), nullable=True),
        sa.Column("subscriber_id", sa.String(length=100), nullable=True),
        sa.Column("payor_kind", sa.String(length=20), nullable=False),
        sa.Column("payor_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("type_system", sa.String(length=200), nullable=True),
        sa.Column("type_code", sa.String(length=64), nullable=True),
        sa.Column("self_pay", sa.Boolean(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=True),
        sa.Column("period_start", sa.DateTime(), nullable=True),
        sa.Column("period_end", sa.DateTime(), nullable=True),
        sa.Column("document", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["beneficiary_id"],
            ["patient.id"],
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_patient_id"],
            ["patient.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("coverage", schema=None) as batch_op:
        batch_op.create_index("ix_coverage_beneficiary", ["beneficiary_id"], unique=False)
        batch_op.create_index("ix_coverage_payor", ["payor_kind", "payor_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_coverage_subscriber_patient_id"), ["subscriber_patient_id"], unique=False
        )

    op.create_table(
        "patient_phone",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("value", sa.String(length=40), nullable=False),
        sa.Column("digits", sa.String(length=20), nullable=False),
        sa.Column("use", sa.String(length=10), nullable=True),
        sa.ForeignKeyConstraint(["patient_id"], ["patient.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("patient_phone", schema=None) as batch_op:
        batch_op.create_index("ix_patient_phone_by_digits", ["digits"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_patient_phone_patient_id"), ["patient_id"], unique=False
        )

    op.create_table(
        "coverage_identifier",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("coverage_id", sa.String(length=64), nullable=False),
        sa.Column("system", sa.String(length=200), nullable=False),
        sa.Column("value", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(["coverage_id"], ["coverage.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("coverage_identifier", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_coverage_identifier_coverage_id"), ["coverage_id"], unique=False
        )
        batch_op.create_index("ix_coverage_identifier_value", ["system", "value"], unique=False)

    op.create_table(
        "booking_coverage",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("booking_id", sa.String(length=64), nullable=False),
        sa.Column("coverage_id", sa.String(length=64), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["booking_id"], ["booking.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["coverage_id"],
            ["coverage.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("booking_id", "rank"),
    )
    with op.batch_alter_table("booking_coverage", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_booking_coverage_coverage_id"), ["coverage_id"], unique=False
        )

    # Keep every phone already on file: copy it into the new table before the columns go.
    op.execute(
        "INSERT INTO patient_phone (patient_id, position, value, digits, use) "
        "SELECT id, 0, phone, COALESCE(phone_digits, ''), 'mobile' FROM patient "
        "WHERE phone IS NOT NULL"
    )
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.add_column(sa.Column("document", sa.Text(), nullable=True))
        batch_op.drop_index(batch_op.f("ix_patient_phone_digits"))
        batch_op.drop_column("phone_digits")
        batch_op.drop_column("phone")

    with op.batch_alter_table("patient_identifier", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last4", sa.String(length=4), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_patient_identifier_patient_id"), ["patient_id"], unique=False
        )

    with op.batch_alter_table("provider_group", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=20), server_default="provider-group", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("provider_group", schema=None) as batch_op:
        batch_op.drop_column("kind")

    with op.batch_alter_table("patient_identifier", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_patient_identifier_patient_id"))
        batch_op.drop_column("last4")

    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.add_column(sa.Column("phone", sa.VARCHAR(length=40), nullable=True))
        batch_op.add_column(sa.Column("phone_digits", sa.VARCHAR(length=20), nullable=True))
        batch_op.create_index(batch_op.f("ix_patient_phone_digits"), ["phone_digits"], unique=False)
        batch_op.drop_column("document")

    with op.batch_alter_table("booking_coverage", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_booking_coverage_coverage_id"))

    op.drop_table("booking_coverage")
    with op.batch_alter_table("coverage_identifier", schema=None) as batch_op:
        batch_op.drop_index("ix_coverage_identifier_value")
        batch_op.drop_index(batch_op.f("ix_coverage_identifier_coverage_id"))

    op.drop_table("coverage_identifier")
    with op.batch_alter_table("patient_phone", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_patient_phone_patient_id"))
        batch_op.drop_index("ix_patient_phone_by_digits")

    op.drop_table("patient_phone")
    with op.batch_alter_table("coverage", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_coverage_subscriber_patient_id"))
        batch_op.drop_index("ix_coverage_payor")
        batch_op.drop_index("ix_coverage_beneficiary")

    op.drop_table("coverage")
    with op.batch_alter_table("audit_record", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_recorded")
        batch_op.drop_index(batch_op.f("ix_audit_record_patient_id"))
        batch_op.drop_index(batch_op.f("ix_audit_record_entity_id"))

    op.drop_table("audit_record")

"""privacy follows the patient: audit records no longer keep a restriction flag of their
own (visibility is decided at read time from the patient's current restriction, found
through a partial index of the restricted patients);
booking identifiers are unique per patient, not across all bookings

Revision ID: 0006_privacy_follows_patient
Revises: 0005_record_versions
Create Date: 2026-11-29 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_privacy_follows_patient"
down_revision = "0005_record_versions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite 3.35+ and PostgreSQL both drop a plain column in place.
    op.execute("ALTER TABLE audit_record DROP COLUMN restricted")
    op.add_column("booking_identifier", sa.Column("patient_id", sa.String(64), nullable=True))
    op.execute(
        "UPDATE booking_identifier SET patient_id = "
        "(SELECT booking.patient_id FROM booking WHERE booking.id = booking_identifier.booking_id)"
    )
    # SQLite rebuilds the table (a child table only: nothing refers to it).
    with op.batch_alter_table("booking_identifier") as table:
        table.alter_column("patient_id", existing_type=sa.String(64), nullable=False)
        table.create_foreign_key(
            "booking_identifier_patient_id_fkey", "patient", ["patient_id"], ["id"]
        )
        table.drop_constraint("uq_booking_identifier", type_="unique")
        table.create_unique_constraint(
            "uq_booking_identifier_patient", ["patient_id", "system", "value"]
        )
        table.create_index("ix_booking_identifier_value", ["system", "value"])
    op.create_index(
        "ix_patient_restricted",
        "patient",
        ["id"],
        sqlite_where=sa.text("restricted IS 1"),
        postgresql_where=sa.text("restricted IS TRUE"),
    )


def downgrade() -> None:
    op.drop_index("ix_patient_restricted", table_name="patient")
    # Back to one identifier across all bookings: fails (and changes nothing) if two
    # patients' bookings now share one, which the old schema cannot hold.
    with op.batch_alter_table("booking_identifier") as table:
        table.drop_index("ix_booking_identifier_value")
        table.drop_constraint("uq_booking_identifier_patient", type_="unique")
        table.create_unique_constraint("uq_booking_identifier", ["system", "value"])
        table.drop_constraint("booking_identifier_patient_id_fkey", type_="foreignkey")
        table.drop_column("patient_id")
    op.add_column(
        "audit_record",
        sa.Column("restricted", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.execute(
        "UPDATE audit_record SET restricted = EXISTS (SELECT 1 FROM patient "
        "WHERE patient.id = audit_record.patient_id AND patient.restricted)"
    )

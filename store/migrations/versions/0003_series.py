"""recurring series: the series record, and each booking's place in its series

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 16:38:34.740741
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "series",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("department_id", sa.String(length=64), nullable=True),
        sa.Column("appointment_type", sa.String(length=64), nullable=True),
        sa.Column("frequency", sa.String(length=10), nullable=False),
        sa.Column("repeat_interval", sa.Integer(), nullable=False),
        sa.Column("weekdays", sa.String(length=20), nullable=False),
        sa.Column("month_day", sa.Integer(), nullable=True),
        sa.Column("nth_weekday", sa.String(length=8), nullable=True),
        sa.Column("first_date", sa.Date(), nullable=False),
        sa.Column("local_time", sa.String(length=15), nullable=False),
        sa.Column("duration_minutes", sa.Integer(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("count", sa.Integer(), nullable=True),
        sa.Column("until", sa.Date(), nullable=True),
        sa.Column("excluded", sa.Text(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["department_id"], ["department.id"]),
        sa.ForeignKeyConstraint(["patient_id"], ["patient.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_series_patient_id", "series", ["patient_id"], unique=False)
    # Plain ADD COLUMN, no table rebuild on SQLite, so the partial unique index on
    # booking stays exactly as 0001 made it. SQLite cannot add a constraint to an
    # existing table but accepts an inline REFERENCES on a nullable new column.
    if op.get_context().dialect.name == "sqlite":
        op.execute(
            "ALTER TABLE booking ADD COLUMN series_id VARCHAR(64) "
            "CONSTRAINT fk_booking_series_id REFERENCES series (id)"
        )
    else:
        op.add_column("booking", sa.Column("series_id", sa.String(length=64), nullable=True))
        op.create_foreign_key("fk_booking_series_id", "booking", "series", ["series_id"], ["id"])
    op.add_column("booking", sa.Column("recurrence_id", sa.Integer(), nullable=True))
    op.create_index("ix_booking_series_id", "booking", ["series_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_booking_series_id", table_name="booking")
    with op.batch_alter_table("booking", schema=None) as batch_op:
        if op.get_context().dialect.name != "sqlite":
            batch_op.drop_constraint("fk_booking_series_id", type_="foreignkey")
        batch_op.drop_column("recurrence_id")
        batch_op.drop_column("series_id")
    op.drop_index("ix_series_patient_id", table_name="series")
    op.drop_table("series")

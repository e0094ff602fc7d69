"""client documents on Schedule and Slot; schedules without a provider; folded names
compared bytewise ("C" collation on PostgreSQL) with an index in name order

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_patient_family_folded", table_name="patient")
    _folded_names_collation(to="C", was=None)
    op.create_index("ix_patient_name_order", "patient", ["family_folded", "given_folded", "id"])
    op.create_index("ix_patient_given_prefix", "patient", ["given_folded"])
    op.add_column("provider_schedule", sa.Column("document", sa.Text(), nullable=True))
    op.add_column("group_session", sa.Column("document", sa.Text(), nullable=True))
    if op.get_context().dialect.name == "sqlite":
        _sqlite_table_sql(
            "provider_schedule", "provider_id VARCHAR(64) NOT NULL", "provider_id VARCHAR(64)"
        )
    else:
        op.alter_column("provider_schedule", "provider_id", nullable=True)


def downgrade() -> None:
    op.drop_index("ix_patient_given_prefix", table_name="patient")
    op.drop_index("ix_patient_name_order", table_name="patient")
    _folded_names_collation(to=None, was="C")
    op.create_index("ix_patient_family_folded", "patient", ["family_folded"])
    if op.get_context().dialect.name == "sqlite":
        _sqlite_table_sql(
            "provider_schedule", "provider_id VARCHAR(64)", "provider_id VARCHAR(64) NOT NULL"
        )
    else:
        op.alter_column("provider_schedule", "provider_id", nullable=False)
    op.drop_column("group_session", "document")
    op.drop_column("provider_schedule", "document")


def _folded_names_collation(*, to: str | None, was: str | None) -> None:
    """PostgreSQL only: SQLite already compares text bytewise (BINARY)."""
    if op.get_context().dialect.name != "postgresql":
        return
    for column in ("family_folded", "given_folded"):
        op.alter_column(
            "patient",
            column,
            type_=sa.String(length=100, collation=to),
            existing_type=sa.String(length=100, collation=was),
            existing_nullable=False,
        )


def _sqlite_table_sql(table: str, old: str, new: str) -> None:
    """Drop or restore a NOT NULL by editing the table's definition: the procedure the
    SQLite manual gives for removing NOT NULL constraints (ALTER TABLE, section 7). A
    rebuild would need foreign keys off, which cannot change inside our transaction."""
    bind = op.get_bind()
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar_one()
    bind.exec_driver_sql("PRAGMA writable_schema=ON")
    changed = bind.exec_driver_sql(
        "UPDATE sqlite_master SET sql = replace(sql, ?, ?) WHERE type = 'table' AND name = ?",
        (f"\t{old}, ", f"\t{new}, ", table),
    ).rowcount
    bind.exec_driver_sql(f"PRAGMA schema_version={int(version) + 1}")
    bind.exec_driver_sql("PRAGMA writable_schema=OFF")
    if changed != 1:
        raise RuntimeError(f"{table}: column definition {old!r} not found")

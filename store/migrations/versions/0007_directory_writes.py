"""directory writes: providers, departments and provider groups can be inactive and keep
the document a client sent; sessions keep a searchable business identifier

Revision ID: 0007_directory_writes
Revises: 0006_privacy_follows_patient
Create Date: 2026-11-29 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_directory_writes"
down_revision = "0006_privacy_follows_patient"
branch_labels = None
depends_on = None

_DIRECTORY = ("provider_group", "department", "provider")


def upgrade() -> None:
    for table in _DIRECTORY:
        op.add_column(
            table, sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
        op.add_column(table, sa.Column("document", sa.Text(), nullable=True))
    op.add_column("group_session", sa.Column("identifier_system", sa.String(200), nullable=True))
    op.add_column("group_session", sa.Column("identifier_value", sa.String(100), nullable=True))
    op.create_index("ix_session_identifier", "group_session", ["identifier_value"])


def downgrade() -> None:
    op.drop_index("ix_session_identifier", table_name="group_session")
    op.drop_column("group_session", "identifier_value")
    op.drop_column("group_session", "identifier_system")
    for table in reversed(_DIRECTORY):
        op.drop_column(table, "document")
        op.drop_column(table, "active")

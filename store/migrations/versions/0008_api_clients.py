"""SMART Backend Services: registered system clients and the assertion ids already used

Revision ID: 0008_api_clients
Revises: 0007_directory_writes
Create Date: 2026-11-29 01:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_api_clients"
down_revision = "0007_directory_writes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_client",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("jwks", sa.Text(), nullable=True),
        sa.Column("jwks_url", sa.String(length=2000), nullable=True),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "used_assertion",
        sa.Column("client_id", sa.String(length=200), nullable=False),
        sa.Column("jti", sa.String(length=200), nullable=False),
        sa.Column("expires", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "jti"),
    )
    op.create_index("ix_used_assertion_expires", "used_assertion", ["expires"])


def downgrade() -> None:
    op.drop_index("ix_used_assertion_expires", table_name="used_assertion")
    op.drop_table("used_assertion")
    op.drop_table("api_client")

"""A subscription is bound to its creator: the API client, or the token's expiry

Revision ID: 0011_subscription_binding
Revises: 0010_notify_subscriptions
Create Date: 2026-11-29 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_subscription_binding"
down_revision = "0010_notify_subscriptions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscription") as table:
        table.add_column(sa.Column("client_id", sa.String(length=200), nullable=True))
        table.add_column(sa.Column("ends", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscription") as table:
        table.drop_column("ends")
        table.drop_column("client_id")

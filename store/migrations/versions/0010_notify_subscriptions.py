"""Topic-based subscriptions and their outbox of notifications

Revision ID: 0010_notify_subscriptions
Revises: 0009_waitlist_queue_and_offers
Create Date: 2026-11-29 04:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_notify_subscriptions"
down_revision = "0009_waitlist_queue_and_offers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscription",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("topic", sa.String(length=200), nullable=False),
        sa.Column("criteria", sa.Text(), nullable=False),
        sa.Column("endpoint", sa.String(length=2000), nullable=False),
        sa.Column("server_base", sa.String(length=2000), nullable=False),
        sa.Column("content", sa.String(length=20), nullable=False),
        sa.Column("heartbeat_s", sa.Integer(), nullable=True),
        sa.Column("timeout_s", sa.Integer(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.DateTime(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("delivered", sa.Integer(), nullable=False),
        sa.Column("handshake_done", sa.Boolean(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("next_attempt", sa.DateTime(), nullable=True),
        sa.Column("last_sent", sa.DateTime(), nullable=True),
        sa.Column("heartbeat_due", sa.DateTime(), nullable=True),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_subscription_owner", "subscription", ["owner"])
    op.create_index("ix_subscription_topic_status", "subscription", ["topic", "status"])
    op.create_table(
        "notification",
        sa.Column("subscription_id", sa.String(length=64), nullable=False),
        sa.Column("event_number", sa.Integer(), nullable=False),
        sa.Column("focus_kind", sa.String(length=40), nullable=False),
        sa.Column("focus_id", sa.String(length=64), nullable=False),
        sa.Column("focus_version", sa.Integer(), nullable=False),
        sa.Column("occurred", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["subscription_id"], ["subscription.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("subscription_id", "event_number"),
    )


def downgrade() -> None:
    op.drop_table("notification")
    op.drop_index("ix_subscription_topic_status", table_name="subscription")
    op.drop_index("ix_subscription_owner", table_name="subscription")
    op.drop_table("subscription")

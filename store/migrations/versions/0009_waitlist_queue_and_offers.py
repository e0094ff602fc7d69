"""Waitlists: queue order, priority, offers and their expiry on bookings; each
schedule's promotion policy; pending offers hold a place

Revision ID: 0009_waitlist_queue_and_offers
Revises: 0008_api_clients
Create Date: 2026-11-29 04:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_waitlist_queue_and_offers"
down_revision = "0008_api_clients"
branch_labels = None
depends_on = None

_HOLDS_PLACE_BEFORE = "status IN ('arrived', 'booked', 'checked-in', 'fulfilled', 'noshow')"
_HOLDS_PLACE_AFTER = (
    "status IN ('arrived', 'booked', 'checked-in', 'fulfilled', 'noshow', 'pending')"
)
_WAITLIST = "status = 'waitlist'"


def _active_index(batch_op: object, where: str) -> None:
    batch_op.create_index(  # type: ignore[attr-defined]
        "uq_booking_patient_session_active",
        ["session_id", "patient_id"],
        unique=True,
        sqlite_where=sa.text(where),
        postgresql_where=sa.text(where),
    )


def upgrade() -> None:
    with op.batch_alter_table("provider_schedule", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "waitlist_policy", sa.String(length=10), server_default="book", nullable=False
            )
        )
        batch_op.add_column(sa.Column("offer_seconds", sa.Integer(), nullable=True))
    with op.batch_alter_table("booking", schema=None) as batch_op:
        batch_op.add_column(sa.Column("queue_position", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("priority", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("offer_expires", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("waitlist_note", sa.String(length=300), nullable=True))
        batch_op.create_unique_constraint(
            "uq_booking_queue_position", ["session_id", "queue_position"]
        )
        batch_op.create_index("ix_booking_offer_expires", ["offer_expires"])
        batch_op.drop_index("uq_booking_patient_session_active")
        _active_index(batch_op, _HOLDS_PLACE_AFTER)
        batch_op.create_index(
            "uq_booking_patient_session_waitlist",
            ["session_id", "patient_id"],
            unique=True,
            sqlite_where=sa.text(_WAITLIST),
            postgresql_where=sa.text(_WAITLIST),
        )


def downgrade() -> None:
    with op.batch_alter_table("booking", schema=None) as batch_op:
        batch_op.drop_index("uq_booking_patient_session_waitlist")
        batch_op.drop_index("ix_booking_offer_expires")
        batch_op.drop_index("uq_booking_patient_session_active")
        _active_index(batch_op, _HOLDS_PLACE_BEFORE)
        batch_op.drop_constraint("uq_booking_queue_position", type_="unique")
        batch_op.drop_column("waitlist_note")
        batch_op.drop_column("offer_expires")
        batch_op.drop_column("priority")
        batch_op.drop_column("queue_position")
    with op.batch_alter_table("provider_schedule", schema=None) as batch_op:
        batch_op.drop_column("offer_seconds")
        batch_op.drop_column("waitlist_policy")

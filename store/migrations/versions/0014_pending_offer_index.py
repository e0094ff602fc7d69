"""The lapsed-offer probe reads live offers only

Revision ID: 0014_pending_offer_index
Revises: 0013_session_fillfactor
Create Date: 2026-11-30 03:30:00

Every write first asks whether any waitlist offer has lapsed (one indexed lookup,
`store.promotion.has_lapsed_offers`). An offer that lapsed or was declined is
cancelled and keeps its `offer_expires`, so the index on `offer_expires` alone led the
lookup through every such offer before it could say none was live: 5,000 of them made
it 1.8 ms, on every write, growing with the clinic's history. Indexed for pending
offers only, the lookup reads live offers and nothing else.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_pending_offer_index"
down_revision = "0013_session_fillfactor"
branch_labels = None
depends_on = None

_PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.drop_index("ix_booking_offer_expires", table_name="booking")
    op.create_index(
        "ix_booking_offer_pending",
        "booking",
        ["offer_expires"],
        postgresql_where=_PENDING,
        sqlite_where=_PENDING,
    )


def downgrade() -> None:
    op.drop_index("ix_booking_offer_pending", table_name="booking")
    op.create_index("ix_booking_offer_expires", "booking", ["offer_expires"])

"""Group sessions' pages keep room for their places being taken

Revision ID: 0013_session_fillfactor
Revises: 0012_name_index_restricted
Create Date: 2026-11-30 00:30:00

Every booking and cancellation updates its session's row (the place count, the
version). With full pages (PostgreSQL's default fill factor, 100) the new row version
goes to another page, and each of the table's four indexes gets a new entry for it;
with room left on the page the update is a heap-only tuple: no index is touched. A
series' booking updates 156 sessions at once. Existing pages keep their fill until
rewritten; new ones (a clinic's sessions are created week by week) get the room.
SQLite has no such setting.
"""

from __future__ import annotations

from alembic import op

revision = "0013_session_fillfactor"
down_revision = "0012_name_index_restricted"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE group_session SET (fillfactor = 80)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE group_session RESET (fillfactor)")

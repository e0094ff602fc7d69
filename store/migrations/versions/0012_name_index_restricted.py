"""The name-order index carries `restricted`: staff searches stop at their bound

Revision ID: 0012_name_index_restricted
Revises: 0011_subscription_binding
Create Date: 2026-11-29 13:00:00

A family-name search by staff without the privacy permission filters out restricted
patients. With `restricted` only in the table, PostgreSQL counted the matches (up to
the total's bound) with a bitmap scan that first collects every match of the name
range, so the count grew with the data; with it as the index's last column, the count
is an index-only scan that stops at the bound and the page skips restricted patients
inside the index. The key (family, given, id) is unique, so the order is unchanged.
"""

from __future__ import annotations

from alembic import op

revision = "0012_name_index_restricted"
down_revision = "0011_subscription_binding"
branch_labels = None
depends_on = None

_NAME_ORDER = ["family_folded", "given_folded", "id"]


def upgrade() -> None:
    op.drop_index("ix_patient_name_order", table_name="patient")
    op.create_index("ix_patient_name_order", "patient", [*_NAME_ORDER, "restricted"])


def downgrade() -> None:
    op.drop_index("ix_patient_name_order", table_name="patient")
    op.create_index("ix_patient_name_order", "patient", _NAME_ORDER)

"""Small pieces every use case needs."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Table


def new_id() -> str:
    return uuid.uuid4().hex


def table_of(kind: Any) -> Table:
    """A mapped class's table, for Core statements (which skip the ORM's per-call work)."""
    table = kind.__table__
    assert isinstance(table, Table)
    return table

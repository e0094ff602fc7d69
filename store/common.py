"""Small pieces every use case needs."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from sqlalchemy import Table
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

R = TypeVar("R")


def new_id() -> str:
    return uuid.uuid4().hex


def table_of(kind: Any) -> Table:
    """A mapped class's table, for Core statements (which skip the ORM's per-call work)."""
    table = kind.__table__
    assert isinstance(table, Table)
    return table


def stored(kind: type[R], values: dict[str, Any], **collections: list[Any]) -> R:
    """A record of `kind` as the database holds it, ready to be attached to a session
    (`Session.add`) as a stored one: `values` its columns (by attribute; one left out
    is loaded if read), `collections` its loaded one-to-many links (`stored` too).
    Built the way a query loads one, without the change events of a record being
    edited: what a Core INSERT just wrote needs no unit of work."""
    record = kind()
    vars(record).update(values)
    for name, items in collections.items():
        set_committed_value(record, name, items)
    make_transient_to_detached(record)
    return record

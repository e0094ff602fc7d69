"""The demo clinic, loaded once per test process and copied into each test's database.

Loading the demo clinic books its patients through the store, one booking at a time:
about 0.7 s on PostgreSQL, paid by every test that starts from the demo. A snapshot
holds the rows `store.demo.load_demo` wrote into a database of the same kind (once per
database kind and `today`); copying them into the test's own database takes a few
milliseconds and gives the test the same clinic, still isolated from every other test.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Integer, create_engine, func, select, text
from sqlalchemy.engine import make_url

from store.db import Database, DatabaseSettings
from store.demo import load_demo
from store.models import Base, Department

Rows = dict[str, list[dict[str, Any]]]


class DemoSnapshots:
    """The demo clinic's rows by (database kind, today), each loaded on first use."""

    def __init__(
        self, folder: Path, sqlite_template: Path, postgres_source: Callable[[], str]
    ) -> None:
        """`postgres_source` gives a migrated, empty PostgreSQL database to load into."""
        self._folder = folder
        self._sqlite_template = sqlite_template
        self._postgres_source = postgres_source
        self._rows: dict[tuple[str, dt.date], Rows] = {}

    def rows(self, kind: str, today: dt.date) -> Rows:
        key = (kind, today)
        if key not in self._rows:
            self._rows[key] = self._load(kind, today)
        return self._rows[key]

    def _load(self, kind: str, today: dt.date) -> Rows:
        if kind == "sqlite":
            path = self._folder / f"demo-{today.isoformat()}.sqlite3"
            shutil.copy(self._sqlite_template, path)
            url = f"sqlite:///{path}"
        else:
            url = self._postgres_source()
        database = Database(DatabaseSettings(url))
        try:
            database.write(lambda db: load_demo(db, today=today))
            with database.engine.connect() as conn:
                rows = {
                    table.name: [dict(row._mapping) for row in conn.execute(select(table))]
                    for table in Base.metadata.sorted_tables
                }
            if kind != "sqlite":
                with database.engine.begin() as conn:
                    for table in reversed(Base.metadata.sorted_tables):
                        conn.execute(table.delete())
        finally:
            database.dispose()
        return rows


def copy_demo(rows: Rows, url: str) -> bool:
    """Write the snapshot's rows into the database at `url`, as `load_demo` would: only
    when no clinic is there yet. Returns True when copied."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            if conn.scalar(select(func.count()).select_from(Department.__table__)):
                return False
            for table in Base.metadata.sorted_tables:
                if rows[table.name]:
                    conn.execute(table.insert(), rows[table.name])
            if make_url(url).get_backend_name() == "postgresql":
                _advance_sequences(conn, rows)
    finally:
        engine.dispose()
    return True


def _advance_sequences(conn: Any, rows: Rows) -> None:
    """Rows copied with their ids leave PostgreSQL's sequences behind: move them past."""
    for table in Base.metadata.sorted_tables:
        for column in table.primary_key.columns:
            if not isinstance(column.type, Integer) or column.autoincrement is not True:
                continue
            if rows[table.name]:
                highest = max(row[column.name] for row in rows[table.name])
                conn.execute(
                    text("SELECT setval(pg_get_serial_sequence(:table, :column), :value)"),
                    {"table": table.name, "column": column.name, "value": highest},
                )

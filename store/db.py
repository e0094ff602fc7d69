"""Engines, sessions and the transaction runner.

SQLite (embedded default) runs in WAL mode; write transactions start with
`BEGIN IMMEDIATE` so two writers queue on the lock instead of failing on a
stale snapshot. PostgreSQL transactions that die on a deadlock or a
serialization failure are retried here, so the client never sees them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from store.history import Renderer, keep_versions

T = TypeVar("T")

_RETRYABLE_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock detected


@dataclass(frozen=True)
class DatabaseSettings:
    url: str
    pool_size: int = 10
    statement_timeout_ms: int = 15000
    echo: bool = False


def _is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(settings: DatabaseSettings) -> Engine:
    if _is_sqlite(settings.url):
        engine = create_engine(
            settings.url,
            echo=settings.echo,
            connect_args={"timeout": settings.statement_timeout_ms / 1000},
        )
        _configure_sqlite(engine, settings)
        return engine
    return create_engine(
        settings.url,
        echo=settings.echo,
        pool_size=settings.pool_size,
        max_overflow=settings.pool_size,
        pool_pre_ping=True,
        connect_args={"options": f"-c statement_timeout={settings.statement_timeout_ms}"},
    )


def _configure_sqlite(engine: Engine, settings: DatabaseSettings) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={settings.statement_timeout_ms}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


class Database:
    """One per application: hands out read sessions and runs write transactions."""

    def __init__(self, settings: DatabaseSettings, *, max_retries: int = 5) -> None:
        self.settings = settings
        self.engine = make_engine(settings)
        self.is_sqlite = _is_sqlite(settings.url)
        writer = self.engine.execution_options(sqlite_begin="IMMEDIATE")
        # PostgreSQL reads run in autocommit: under READ COMMITTED each statement sees
        # its own snapshot inside a transaction too, so BEGIN and COMMIT were two round
        # trips that bought nothing. SQLite reads keep their transaction, which holds one
        # WAL snapshot for the whole request.
        reader = (
            self.engine
            if self.is_sqlite
            else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        self._read_sessions = sessionmaker(reader, expire_on_commit=False)
        self._write_sessions = sessionmaker(writer, expire_on_commit=False)
        self.max_retries = max_retries

    @contextmanager
    def reading(self) -> Iterator[Session]:
        with self._read_sessions() as session, session.begin():
            yield session

    def write(self, work: Callable[[Session], T]) -> T:
        """Run `work` in one transaction; commit on success, roll back on any error.

        Deadlocks and serialization failures are retried with a short backoff.
        """
        attempt = 0
        while True:
            try:
                with self._write_sessions() as session, session.begin():
                    return work(session)
            except DBAPIError as exc:
                attempt += 1
                if attempt > self.max_retries or not _retryable(exc):
                    raise
                time.sleep(0.01 * 2**attempt)

    def keep_versions(self, render: Renderer) -> None:
        """Keep every version written through `write` (store.history)."""
        keep_versions(self._write_sessions, render)

    def dispose(self) -> None:
        self.engine.dispose()


def _retryable(exc: DBAPIError) -> bool:
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate in _RETRYABLE_SQLSTATES:
        return True
    return isinstance(exc, OperationalError) and "database is locked" in str(exc.orig)

"""Engines, sessions and the transaction runner.

SQLite (embedded default) runs in WAL mode; write transactions start with
`BEGIN IMMEDIATE` so two writers queue on the lock instead of failing on a
stale snapshot. PostgreSQL transactions that die on a deadlock or a
serialization failure are retried here, so the client never sees them.

A PostgreSQL that stops answering (a silent network: packets dropped, not refused)
must not hang a request. Statement timeouts run inside the server and cannot help,
so the driver bounds every wait itself: `connect_timeout` for a new connection,
TCP keepalives and `tcp_user_timeout` so the kernel gives up on a dead peer, and a
read bound on every round trip (`BoundedConnection`), after which the connection is
closed and the pool replaces it. A request then fails with `DatabaseUnavailable`
(503) within about `read_timeout_ms` + `connect_timeout_s`, and the next one after
the network returns gets a fresh connection (`_closed_by_server` drops the dead ones).
SQLite is a local file: there is no network to bound.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from store.access import Access
from store.direct import background_failure
from store.errors import DatabaseUnavailable
from store.history import Observer, Renderer, keep_versions
from store.scope import Store

T = TypeVar("T")

_RETRYABLE_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock detected


@dataclass(frozen=True)
class DatabaseSettings:
    url: str
    pool_size: int = 10
    statement_timeout_ms: int = 15000
    connect_timeout_s: int = 5  # libpq's minimum is 2
    read_timeout_ms: int = 20000  # above the statement timeout: the server's own comes first
    keepalive_s: int = 10
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
    engine = create_engine(
        settings.url,
        echo=settings.echo,
        pool_size=settings.pool_size,
        max_overflow=settings.pool_size,
        pool_timeout=settings.connect_timeout_s,  # waiting for a free connection
        connect_args={
            "options": f"-c statement_timeout={settings.statement_timeout_ms}",
            "connect_timeout": settings.connect_timeout_s,
            "keepalives": 1,
            "keepalives_idle": settings.keepalive_s,
            "keepalives_interval": settings.keepalive_s,
            "keepalives_count": 3,
            "tcp_user_timeout": settings.read_timeout_ms,
        },
    )
    read_timeout = settings.read_timeout_ms / 1000

    @event.listens_for(engine, "do_connect")
    def _connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> BoundedConnection:
        connection = BoundedConnection.connect(*cargs, **cparams)
        connection.read_timeout = read_timeout
        return connection

    @event.listens_for(engine, "checkout")
    def _check(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if _closed_by_server(dbapi_connection):
            raise DisconnectionError("the database ended this connection")  # the pool retries

    return engine


def _closed_by_server(connection: psycopg.Connection[Any]) -> bool:
    """Whether an idle pooled connection is dead, asked without a round trip.

    The server says nothing to an idle connection unless it ends it (a restart,
    `pg_terminate_backend`, an idle timeout: an error, then end of file) or, rarely,
    reports a changed setting; so anything waiting to be read, or a hang-up, means the
    connection is replaced (a spare reconnect in the rare case). A connection closed
    here (a read that timed out) is replaced too. SQLAlchemy's pre-ping asked the
    server `SELECT 1` instead: a round trip before every request's first statement
    (0.3-0.4 ms of a 1 ms read on the benchmark's machine). A silent network is no
    better seen by a ping than by the request's own statement, which is bounded."""
    if connection.closed:
        return True
    poller = select.poll()
    poller.register(connection.fileno(), select.POLLIN)  # hang-ups and errors come too
    return bool(poller.poll(0))


class BoundedConnection(psycopg.Connection[Any]):
    """A psycopg connection whose every wait for the server (query, fetch, commit,
    rollback) gives up after `read_timeout` seconds.

    Keepalives and `tcp_user_timeout` only notice a peer whose packets go
    unacknowledged; a proxy or a half-dead server that acknowledges and never answers
    needs this bound. A connection that timed out is mid-protocol, so it is closed:
    the pool sees it broken and replaces it.
    """

    read_timeout: float | None = None

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        bound = timeout if timeout is not None else self.read_timeout
        try:
            return super().wait(gen, interval, bound)
        except pg_errors._WaitTimeout as exc:  # psycopg's own, meant to be converted
            self.pgconn.finish()
            raise psycopg.OperationalError(
                f"no answer from the database within {self.read_timeout} s"
            ) from exc


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
        with self._unavailable(), self._read_sessions() as session, session.begin():
            yield session

    @contextmanager
    def read_as(self, access: Access) -> Iterator[Store]:
        """A read transaction as `access` sees it (store.scope)."""
        with self.reading() as session:
            yield Store(session, access)

    def write_as(self, access: Access, work: Callable[[Store], T]) -> T:
        """`write`, the work seeing the transaction as `access` does (store.scope)."""
        return self.write(lambda session: work(Store(session, access)))

    def write(self, work: Callable[[Session], T]) -> T:
        """Run `work` in one transaction; commit on success, roll back on any error.

        Deadlocks and serialization failures are retried with a short backoff.
        """
        attempt = 0
        while True:
            try:
                with self._unavailable(), self._write_sessions() as session, session.begin():
                    return _worked(work, session)
            except DBAPIError as exc:
                attempt += 1
                if attempt > self.max_retries or not _retryable(exc):
                    raise
                time.sleep(0.01 * 2**attempt)

    @contextmanager
    def _unavailable(self) -> Iterator[None]:
        """A database that cannot be reached (or stopped answering) is DatabaseUnavailable."""
        try:
            yield
        except PoolTimeout as exc:
            raise DatabaseUnavailable("no database connection became free in time") from exc
        except (OperationalError, InterfaceError) as exc:
            if self.is_sqlite or not _unreachable(exc):
                raise
            raise DatabaseUnavailable("the database cannot be reached") from exc

    def keep_versions(self, render: Renderer, observe: Observer | None = None) -> None:
        """Keep every version written through `write` (store.history), shown to `observe`."""
        keep_versions(self._write_sessions, render, observe)

    def dispose(self) -> None:
        self.engine.dispose()


def _worked(work: Callable[[Session], T], session: Session) -> T:
    """`work`'s result. If it failed (say, in Python) while a statement of its
    transaction ran in the background (`Direct.start`) and that statement was refused,
    the refusal is raised: it went wrong first."""
    try:
        return work(session)
    except BaseException as exc:
        failed = background_failure(session)
        if failed is not None and failed is not exc:
            raise failed from failed.__cause__  # the statement's own error, if translated
        raise


def _unreachable(exc: DBAPIError) -> bool:
    """Lost or never made: the connection broke, or the driver gave up before the server
    said anything (psycopg's own errors carry no SQLSTATE), or the server is going away."""
    if exc.connection_invalidated:
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return sqlstate is None or sqlstate.startswith(("08", "57P"))


def _retryable(exc: DBAPIError) -> bool:
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate in _RETRYABLE_SQLSTATES:
        return True
    return isinstance(exc, OperationalError) and "database is locked" in str(exc.orig)

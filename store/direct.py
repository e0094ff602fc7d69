"""Statements a request runs every time, compiled once and run on the driver's cursor.

`Connection.execute` spends about as much of the server's CPU around a statement as the
driver and PostgreSQL's answer take together: it keys the statement for its compiled
cache, builds an execution context, processes the parameters and wraps the cursor in a
result object. A booking ran eight statements then: that was about 45 % of its CPU
outside the database's wait. `Direct` keeps what is the same on every call, the SQL
text and the parameter and result conversions of its types, and on PostgreSQL runs the
statement straight on psycopg's cursor in the session's transaction, still telling the
engine's listeners (`before_cursor_execute`, `after_cursor_execute`) and still raising
SQLAlchemy's errors (an `IntegrityError` is one; a lost connection is invalidated).
Elsewhere (SQLite), and for a statement that needs per-call work (an expanding `IN`
list, a column default computed in Python), it is `Connection.execute`.

A long INSERT whose result the request does not need at once can run in the background
(`Direct.start`): PostgreSQL writes a series' bookings while the request renders its
answer, on the other core. Statements still run in the order the request gives them,
and the first refusal is what the request fails with (`_in_turn`, `settle`).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ARRAY, Connection, Dialect, Engine, TypeDecorator, event, exc
from sqlalchemy.orm import Session
from sqlalchemy.pool import Pool
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.base import Executable


class Direct:
    """A Core statement (SELECT, or DML with or without RETURNING; an INSERT names its
    values, `.values()` or `from_select`) run as rows of plain tuples, every value
    converted by its column's type as `Connection.execute` would."""

    __slots__ = ("statement", "_plans")

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._plans: dict[Dialect, _Plan | None] = {}  # None: through `Connection.execute`

    def rows(self, db: Session, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        connection = db.connection()
        plan = self._plan(connection)
        if plan is not None:
            return plan.run(connection, params)
        result = connection.execute(self.statement, dict(params))
        return [tuple(row) for row in result] if result.returns_rows else []

    def first(self, db: Session, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        found = self.rows(db, params)
        return found[0] if found else None

    def start(
        self,
        db: Session,
        params: Mapping[str, Any],
        then: Callable[[list[tuple[Any, ...]]], None],
        refusal: Callable[[Exception], Exception],
    ) -> None:
        """Run the statement while the request goes on, and `then` with its rows (on the
        statement's thread), when nothing the request does next needs them (a series'
        bookings: while PostgreSQL writes them, the request renders its answer, on the
        other core). On PostgreSQL it runs on a thread of its own, in the session's
        transaction, after any started before it. The request's next statement on the
        connection, and the commit, wait for it and raise what refused it, as `refusal`
        names it (`_in_turn`); so does `settle`, and `Database.write` when the request
        failed otherwise meanwhile. Elsewhere (SQLite) it runs now, and raises now."""
        connection = db.connection()
        plan = self._plan(connection)
        if plan is None:
            try:
                rows = self.rows(db, params)
            except Exception as exc:
                found = refusal(exc)
                if found is exc:
                    raise
                raise found from exc
            then(rows)
            return
        # After the one still running, if any: in the order given, and not at all if that
        # one failed (the transaction is aborted; the first failure is what is raised).
        running = _Running(refusal, (db.info, connection.info), db.info.get(_RUNNING))

        def run() -> None:
            try:
                if running.before is not None and running.before.failed():
                    return
                then(plan.run(connection, params))
            except BaseException as exc:  # raised where it is settled
                running.error = exc

        running.thread = threading.Thread(target=run, name="statement", daemon=True)
        db.info[_RUNNING] = connection.info[_RUNNING] = running
        running.thread.start()

    def _plan(self, connection: Connection) -> _Plan | None:
        dialect = connection.dialect
        if dialect in self._plans:
            return self._plans[dialect]
        plan = self._plans[dialect] = _Plan.of(self.statement, dialect)
        return plan


#: From this many rows on, an INSERT nothing waits for but the request's next statement
#: runs in the background (`Direct.start`): a series' 156 bookings take PostgreSQL about
#: 8 ms, in which the request renders its answer. Fewer go at once: a thread costs more.
IN_BACKGROUND = 16

#: Key, in the session's `info` and its connection's, of the statements the transaction
#: runs in the background (`Direct.start`): the last one started, each knowing the one
#: before it.
_RUNNING = "store.direct.running"


@dataclass(eq=False)
class _Running:
    refusal: Callable[[Exception], Exception]
    infos: tuple[dict[Any, Any], dict[Any, Any]]  # the session's and the connection's
    before: _Running | None  # started before it and still running then: it goes first
    thread: threading.Thread | None = None
    error: BaseException | None = None

    def failed(self) -> bool:
        """Wait for it (and those before it): whether one of them failed."""
        assert self.thread is not None
        self.thread.join()
        return self.first_error() is not None

    def runs_on(self, thread: threading.Thread) -> bool:
        """Whether it, or one started before it, runs on `thread`."""
        return self.thread is thread or (self.before is not None and self.before.runs_on(thread))

    def first_error(self) -> tuple[_Running, BaseException] | None:
        earlier = self.before.first_error() if self.before is not None else None
        if earlier is not None:
            return earlier
        return None if self.error is None else (self, self.error)

    def outcome(self) -> BaseException | None:
        """Wait for them all, done with them: what refused the first that failed, as its
        `refusal` names it, or None."""
        self.failed()
        for info in self.infos:
            if info.get(_RUNNING) is self:
                del info[_RUNNING]
        found = self.first_error()
        if found is None:
            return None
        which, error = found
        if not isinstance(error, Exception):
            return error
        refused = which.refusal(error)
        if refused is not error:
            refused.__cause__ = error
        return refused


def settle(db: Session) -> None:
    """Wait for the statements the transaction runs in the background (`Direct.start`),
    if any, and raise what refused the first that failed, as its `refusal` names it."""
    error = background_failure(db)
    if error is not None:
        raise error


def background_failure(db: Session) -> BaseException | None:
    """`settle`, the refusal answered rather than raised (None if none)."""
    running: _Running | None = db.info.get(_RUNNING)
    return None if running is None else running.outcome()


def _in_turn(connection: Connection, *_: Any) -> None:
    """Before any other statement on a connection running some in the background, and
    before its commit: those first, so statements run in the order the request gives
    them (the driver alone lets whichever thread comes first go first), and what refused
    one is raised, not the aborted transaction the statement would find (PostgreSQL
    would answer the COMMIT of one with a rollback, and no error)."""
    running: _Running | None = connection.info.get(_RUNNING)
    if running is not None and not running.runs_on(threading.current_thread()):
        error = running.outcome()
        if error is not None:
            raise error


def _forget(db: Session, *_: Any) -> None:
    """A rolled-back transaction's background statements (the rollback waited for them):
    what refused them no longer matters."""
    background_failure(db)


def _returned(_dbapi_connection: Any, record: Any) -> None:
    """A connection back in the pool (its transaction rolled back, if the session closed
    without ending it) keeps nothing running for the next one, nor its refusal."""
    running: _Running | None = record.info.get(_RUNNING) if record is not None else None
    if running is not None:
        running.outcome()


# On every engine, other statements wait their turn and the commit waits for them all; in
# every session, a rollback forgets them, and so does every pool for its connections.
event.listen(Engine, "before_cursor_execute", _in_turn)
event.listen(Engine, "commit", _in_turn)
event.listen(Session, "after_rollback", _forget)
event.listen(Pool, "checkin", _returned)


@functools.lru_cache(maxsize=64)
def direct(statement: Executable) -> Direct:
    """The `Direct` of a statement built once elsewhere and kept (per access, say): one
    compilation per statement object, not per call."""
    return Direct(statement)


class BinaryArray(TypeDecorator[list[Any]]):
    """An array parameter (`BinaryArray(item_type)`) that `Direct` sends in PostgreSQL's
    binary format: psycopg writes each element's bytes as they are, and PostgreSQL reads
    them without parsing. For long text (the versions' documents: as text, or inside a
    JSON text, every quote is escaped by the client and parsed back by the server)."""

    impl = ARRAY
    cache_ok = True


Processor = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    compiled: Any  # sqlalchemy.sql.compiler.SQLCompiler
    binds: tuple[tuple[str, Processor], ...]  # (compiled parameter name, its conversion)
    results: tuple[Processor | None, ...] | None  # per returned column; None: no rows

    @classmethod
    def of(cls, statement: Executable, dialect: Dialect) -> _Plan | None:
        """The statement's plan on `dialect`, or None where it needs what only
        `Connection.execute` does: rendering per call (expanding `IN` lists) or
        computing column defaults in Python (a column the rows leave out)."""
        if dialect.name != "postgresql":
            return None
        compiled: Any = cast(ClauseElement, statement).compile(dialect=dialect)
        per_call = compiled.literal_execute_params or compiled.post_compile_params
        if per_call or compiled.insert_prefetch or compiled.update_prefetch:
            return None
        binds = tuple(
            (name, processor)
            for bind, name in compiled.bind_names.items()
            if (processor := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        )
        returned = getattr(statement, "exported_columns", None)
        results = None
        if returned is not None and len(returned):
            results = tuple(
                column.type.dialect_impl(dialect).result_processor(dialect, None)
                for column in returned
            )
        sql = compiled.string
        for bind, name in compiled.bind_names.items():
            if isinstance(bind.type, BinaryArray):  # psycopg: `%(name)b`, the binary format
                text = f"%({name})s"
                assert sql.count(text) == 1, (name, sql)
                sql = sql.replace(text, f"%({name})b")
        return cls(sql, compiled, binds, results)

    def run(self, connection: Connection, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        values = self.compiled.construct_params(params)
        for name, processor in self.binds:
            values[name] = processor(values[name])
        dbapi_connection = connection.connection.dbapi_connection
        assert dbapi_connection is not None
        dispatch = connection.dispatch
        cursor = dbapi_connection.cursor()
        try:
            dispatch.before_cursor_execute(connection, cursor, self.sql, values, None, False)
            cursor.execute(self.sql, values)
            # Whether rows come back is known from the statement: psycopg's `description`
            # builds a column object per column on every call (~5 % of a booking's CPU).
            found: list[tuple[Any, ...]] = (
                list(cursor.fetchall()) if self.results is not None else []
            )
            dispatch.after_cursor_execute(connection, cursor, self.sql, values, None, False)
        except connection.dialect.loaded_dbapi.Error as error:
            raise _translated(connection, error, self.sql, values, cursor) from error
        finally:
            cursor.close()
        if not found or self.results is None or not any(self.results):
            return found
        results = self.results
        return [
            tuple(v if p is None else p(v) for p, v in zip(results, row, strict=True))
            for row in found
        ]


def _translated(
    connection: Connection, error: Any, sql: str, values: Any, cursor: Any
) -> exc.StatementError:
    """The error `Connection.execute` would raise (an `IntegrityError` for a broken
    constraint, say), the connection invalidated if it is lost."""
    dialect = connection.dialect
    lost = dialect.is_disconnect(error, connection.connection.dbapi_connection, cursor)
    if lost:
        connection.invalidate(error)
    translated: exc.StatementError = exc.DBAPIError.instance(
        sql,
        values,
        error,
        dialect.loaded_dbapi.Error,
        connection_invalidated=lost,
        dialect=dialect,
    )
    return translated

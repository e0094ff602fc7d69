"""Small pieces every use case needs."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeVar

import orjson
from sqlalchemy import (
    ARRAY,
    JSON,
    BindParameter,
    ColumnElement,
    Dialect,
    Insert,
    Table,
    Text,
    TypeDecorator,
    any_,
    bindparam,
    cast,
    func,
    insert,
    literal_column,
    select,
)
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.orm.util import identity_key

from store.direct import IN_BACKGROUND, BinaryArray, Direct

R = TypeVar("R")


def new_id() -> str:
    """A random (version 4) UUID's 32 hex digits, from 16 random bytes with the version
    and variant bits set, as `uuid.uuid4().hex` gives them without building the UUID
    object: a third of its time (a series' `$book` makes 312)."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40
    raw[8] = raw[8] & 0x3F | 0x80
    return raw.hex()


def table_of(kind: Any) -> Table:
    """A mapped class's table, for Core statements (which skip the ORM's per-call work)."""
    table = kind.__table__
    assert isinstance(table, Table)
    return table


def plain(kind: type[R], values: dict[str, Any]) -> R:
    """A record of `kind` as the database holds it, outside any session: `values` (its
    columns by attribute, and any links a reader needs, `plain` too) read as attributes,
    as a renderer reads them, and nothing more: no session, no change events, no lazy
    loading (reading an attribute not in `values` raises). What a Core INSERT or UPDATE
    just wrote, to be answered and versioned, needs no record of the unit of work, which
    costs some twenty times as much to build and attach (a series writes 468)."""
    record = kind.__new__(kind)
    vars(record).update(values)
    return record


def any_of(
    db: Session, column: InstrumentedAttribute[Any], values: Collection[Any]
) -> ColumnElement[bool]:
    """`column IN values`, for a list of any length (a series names 156 sessions): on
    PostgreSQL `column = ANY(:values)`, one array parameter, so the statement's text is
    the same whatever their number and the driver and the server reuse their work on it
    (a list of 156 placeholders is parsed afresh each time, by both); elsewhere an IN."""
    if on_postgresql(db):
        return column == any_(array_parameter(column, None, list(values)))
    return column.in_(values)


def array_parameter(
    column: InstrumentedAttribute[Any] | ColumnElement[Any], name: str | None, value: Any = None
) -> BindParameter[Any]:
    """A PostgreSQL array parameter of `column`'s type (see `any_of`)."""
    return bindparam(name, value, type_=ARRAY(column.type))


#: `column IN :name` for a list bound per call, as one backend takes it (`Listing`).
Listed = Callable[[InstrumentedAttribute[Any], str], ColumnElement[bool]]


class Listing:
    """A statement with list parameters, built once for each kind of backend and run
    directly (`Direct`): `build` makes it from `listed(column, name)`, that backend's
    `column IN :name`. On PostgreSQL the list is one array parameter (`= ANY`, as in
    `any_of`: one statement text whatever the list's length), elsewhere an expanding
    IN (which `Connection.execute` renders per call)."""

    __slots__ = ("_postgresql", "_other")

    def __init__(self, build: Callable[[Listed], Any]) -> None:
        self._postgresql = Direct(build(_any_array))
        self._other = Direct(build(_expanding))

    def rows(self, db: Session, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        return (self._postgresql if on_postgresql(db) else self._other).rows(db, params)

    def first(self, db: Session, params: dict[str, Any]) -> tuple[Any, ...] | None:
        return (self._postgresql if on_postgresql(db) else self._other).first(db, params)


def _any_array(column: InstrumentedAttribute[Any], name: str) -> ColumnElement[bool]:
    return column == any_(array_parameter(column, name))


def _expanding(column: InstrumentedAttribute[Any], name: str) -> ColumnElement[bool]:
    return column.in_(bindparam(name, expanding=True))


def held(db: Session, kind: type[R], ident: str) -> R | None:
    """The record of `kind` the session already holds under `ident` (what `Session.get`
    would answer without a query), or None."""
    found = db.identity_map.get(identity_key(kind, ident))
    return found if isinstance(found, kind) else None


def on_postgresql(db: Session) -> bool:
    return db.get_bind().dialect.name == "postgresql"


def insert_rows(db: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows (by column name, each naming the same columns) with one statement: on
    PostgreSQL as one JSON parameter (`insert_from_json`) or, for one row, its values,
    either way run directly (`store.direct`); elsewhere an executemany."""
    if not rows:
        return
    if not on_postgresql(db):
        db.connection().execute(insert(table), rows)
        return
    names = tuple(rows[0])
    if len(rows) == 1:
        _inserting_one(table, names).rows(db, rows[0])
    elif len(rows) >= IN_BACKGROUND:  # nothing waits for it but the request's next statement
        _inserting_json(table, names).start(db, {"rows": rows}, _ignored, _as_it_is)
    else:
        _inserting_json(table, names).rows(db, {"rows": rows})


def _ignored(_: list[tuple[Any, ...]]) -> None:
    pass


def _as_it_is(exc: Exception) -> Exception:
    return exc


@functools.lru_cache(maxsize=32)
def _inserting_one(table: Table, names: tuple[str, ...]) -> Direct:
    columns = table.c
    return Direct(insert(table).values({n: bindparam(n, type_=columns[n].type) for n in names}))


@functools.lru_cache(maxsize=32)
def _inserting_json(table: Table, names: tuple[str, ...]) -> Direct:
    return Direct(insert_from_json(table, names))


def insert_from_json(table: Table, names: Sequence[str], parameter: str = "rows") -> Insert:
    """PostgreSQL: an INSERT of many rows given as one parameter, `rows` (or `parameter`,
    for a statement inserting into several tables): a list of dicts by column name, sent
    as one JSON text and read back as rows of the table by `json_populate_recordset`.
    Its text does not depend on the number of rows, unlike a VALUES list (see `any_of`),
    and it is the cheap way to send many rows, RETURNING or not: the driver dumps an
    array parameter element by element in Python (a series' 156 bookings as arrays cost
    10 ms of the server's CPU; as JSON, orjson's 0.3 ms), and sends an executemany's
    rows one by one (a series' 313 versions)."""
    assert _PLAIN_NAME.fullmatch(table.name), table.name
    source = func.json_populate_recordset(
        literal_column(f"NULL::{table.name}"),
        cast(bindparam(parameter, type_=_JSONRows(table, names)), JSON),
    ).table_valued(*names)
    return insert(table).from_select(list(names), select(*(source.c[name] for name in names)))


def insert_from_arrays(table: Table, names: Sequence[str]) -> Insert:
    """PostgreSQL, run by `Direct`: an INSERT of many rows given column by column, each
    column a list parameter named after it, sent in the binary format (`BinaryArray`),
    read back as rows by `unnest`. For rows with long text: inside `insert_from_json`'s
    JSON text a document is escaped by the client and parsed back by the server, which
    was half of the INSERT of a series' 313 versions."""
    columns = [table.c[name] for name in names]
    source = (
        func.unnest(*(bindparam(c.name, type_=BinaryArray(c.type)) for c in columns))
        .table_valued(*names)
        .render_derived()  # `AS anon_1(kind, ...)`: the columns named
    )
    return insert(table).from_select(list(names), select(*(source.c[name] for name in names)))


_PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_]*")


class _JSONRows(TypeDecorator[list[dict[str, Any]]]):
    """Rows (dicts by column name) as one JSON text, each value converted first by its
    column's type, as it would be sent alone (an aware datetime to naive UTC, say:
    PostgreSQL ignores an offset given for a `timestamp without time zone`)."""

    impl = Text
    cache_ok = False  # holds a table's columns; `Direct` compiles its statements once

    def __init__(self, table: Table, names: Sequence[str]) -> None:
        super().__init__()
        self._types = [(name, table.c[name].type) for name in names]
        self._conversions: dict[str, list[tuple[str, Callable[[Any], Any]]]] = {}

    def process_bind_param(self, value: Any, dialect: Dialect) -> str:
        conversions = self._conversions.get(dialect.name)
        if conversions is None:
            conversions = self._conversions[dialect.name] = [
                (name, convert)
                for name, kind in self._types
                if (convert := kind.dialect_impl(dialect).bind_processor(dialect)) is not None
            ]
        if conversions:
            value = [_converted(row, conversions) for row in value]
        # Column names are str subclasses (`quoted_name`), which orjson takes as keys
        # only when asked to.
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _converted(
    row: dict[str, Any], conversions: list[tuple[str, Callable[[Any], Any]]]
) -> dict[str, Any]:
    row = dict(row)
    for name, convert in conversions:
        row[name] = convert(row[name])
    return row

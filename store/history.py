"""Past versions of the records the API exposes (vread and instance history).

Whenever a record is given a version number (created, or `touch`ed, or its count
moved by a conditional UPDATE), a snapshot of it is kept in `record_version`, in
the transaction that gave the number, so a committed version always has its
snapshot and a rolled-back one never does. The store knows no FHIR: the
application hands `keep_versions` a renderer, and the snapshot is the record as
the API showed it then (opaque JSON text).

Versions are found by watching the write sessions: records new or with a changed
`version` at each flush, plus the ids a Core UPDATE reports through `bumped` (the
place-taking UPDATE bypasses the ORM), plus the new records a Core INSERT wrote
(`created`). They are rendered once, just before commit, in their final state.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple, Protocol

from sqlalchemy import ColumnElement, event, insert, inspect, select
from sqlalchemy.orm import Session, lazyload, sessionmaker
from sqlalchemy.sql.dml import ReturningInsert

from store.common import insert_from_arrays, on_postgresql, table_of
from store.direct import Direct, background_failure, settle
from store.models import Base, RecordVersion, Versioned

Renderer = Callable[[Base], str]


class Observer(Protocol):
    """Told, in the same transaction, of the versions about to be committed (the outbox).

    `question`: given the kinds (table names) of the versions, a boolean SQL expression
    the statement that writes them also answers (RETURNING), or None; the answer comes
    with the versions (None when nothing was asked). It costs the observer no statement
    of its own, asked at the moment it would have asked it."""

    def question(self, kinds: set[str]) -> ColumnElement[bool] | None: ...

    def __call__(self, db: Session, versions: list[Version], answer: bool | None) -> None: ...


class Version(NamedTuple):
    """A version about to be committed, as observers are shown it (its `record_version`
    row; plain data, not a record of the session)."""

    kind: str
    record_id: str
    version: int
    last_updated: dt.datetime
    document: str


_PENDING = "store.history.pending"


def keep_versions(
    sessions: sessionmaker[Session], render: Renderer, observe: Observer | None = None
) -> None:
    """Keep a snapshot of every version that transactions of `sessions` commit, and show
    the snapshots to `observe` before the commit (what it writes commits with them)."""

    def collect(db: Session, _context: Any) -> None:
        pending = db.info.setdefault(_PENDING, {})
        for record in db.new:
            if isinstance(record, Versioned):
                pending.setdefault((type(record), record.id), record)  # type: ignore[attr-defined]
        for record in db.dirty:
            if isinstance(record, Versioned) and inspect(record).attrs.version.history.added:
                key = (type(record), record.id)  # type: ignore[attr-defined]
                if _is_plain(pending.setdefault(key, record)):
                    pending[key] = record  # loaded and changed since it was written

    def write(db: Session) -> None:
        db.flush()  # what changed since the last flush is collected too
        pending: dict[tuple[type[Base], str], Base | None] = db.info.pop(_PENDING, {})
        reloaded = _reload(db, [key for key, record in pending.items() if record is None])
        rows: list[dict[str, Any]] = []
        for key, record in pending.items():
            kind, ident = key
            record = record if record is not None else reloaded.get(key)
            if record is None:
                continue
            assert isinstance(record, Versioned)
            rows.append(
                {
                    "kind": kind.__tablename__,
                    "record_id": ident,
                    "version": record.version,
                    "last_updated": record.last_updated,
                    "document": render(record),
                }
            )
        if not rows:
            return
        # One INSERT, no unit of work; Core (the flush above was the last). On PostgreSQL
        # the rows go column by column, one binary array each (`insert_from_arrays`: the
        # documents are not escaped and parsed again), run directly, however many (a
        # series: 313).
        question = observe.question({row["kind"] for row in rows}) if observe else None
        answer = None
        if on_postgresql(db):
            columns = {name: [row[name] for row in rows] for name in _NAMES}
            found = _inserting(question).rows(db, columns)
            answer = None if question is None else bool(found[0][0])
        elif question is None:
            db.connection().execute(_INSERT, rows)
        else:
            answer = bool(db.connection().scalars(_asking(question), rows).first())
        if observe is not None:
            observe(db, [Version(**row) for row in rows], answer)

    event.listen(sessions, "after_flush", collect)
    event.listen(sessions, "before_commit", write)


def _is_plain(record: Base | None) -> bool:
    """A record outside any session (`store.common.plain`)."""
    return record is not None and inspect(record, raiseerr=False) is None


_TABLE = table_of(RecordVersion)
_NAMES = ("kind", "record_id", "version", "last_updated", "document")
_INSERT = insert(_TABLE)


@functools.lru_cache(maxsize=8)
def _asking(question: ColumnElement[bool]) -> ReturningInsert[bool]:
    """The versions' INSERT, each row returning the observer's answer (built once)."""
    return _INSERT.returning(question)


@functools.lru_cache(maxsize=8)
def _inserting(question: ColumnElement[bool] | None) -> Direct:
    """PostgreSQL: the same, run directly, the rows given as one array per column."""
    statement = insert_from_arrays(_TABLE, _NAMES)
    return Direct(statement if question is None else statement.returning(question))


def _reload(db: Session, keys: list[tuple[type[Base], str]]) -> dict[tuple[type[Base], str], Base]:
    """Records a Core UPDATE changed, loaded as they will be committed: one SELECT per
    kind, however many records (a series moves 156 sessions' counts)."""
    wanted: dict[type[Base], list[str]] = {}
    for kind, ident in keys:
        wanted.setdefault(kind, []).append(ident)
    loaded: dict[tuple[type[Base], str], Base] = {}
    for kind, ids in wanted.items():
        id_col: Any = kind.id  # type: ignore[attr-defined]
        statement = (
            select(kind)
            .where(id_col.in_(ids))
            .options(lazyload("*"))
            .execution_options(populate_existing=True)
        )
        for record in db.scalars(statement):
            loaded[(kind, record.id)] = record  # type: ignore[attr-defined]
    return loaded


@contextmanager
def savepoint(db: Session) -> Iterator[None]:
    """A SAVEPOINT in `db`'s transaction; when it is rolled back (an exception leaves
    it), the versions it gave are forgotten with it: its flushes', and those of the
    records it wrote without the unit of work (`created`)."""
    before = dict(db.info.get(_PENDING, {}))
    nested = db.begin_nested()
    try:
        yield
        # A statement it left running in the background (`Direct.start`) is its own:
        # its refusal rolls the savepoint back, and the savepoint's rollback forgets it.
        settle(db)
    except BaseException:
        background_failure(db)
        nested.rollback()
        db.info[_PENDING] = before
        raise
    nested.commit()


def bumped(db: Session, kind: type[Base], ids: Iterable[str]) -> None:
    """Records whose version a Core UPDATE moved, inside `db`'s transaction (they are
    reloaded before their snapshot: a copy in the session may predate the UPDATE)."""
    pending = db.info.setdefault(_PENDING, {})
    for ident in ids:
        pending[(kind, ident)] = None


def created(db: Session, records: Iterable[Base]) -> None:
    """New records written without the unit of work (Core INSERTs), answered as plain
    records outside the session (`store.common.plain`): their first version's snapshot
    is taken at commit, as a flush's would be, unless the transaction loads and changes
    them again (that copy's version is the one kept), and a savepoint rolled back
    forgets it."""
    pending = db.info.setdefault(_PENDING, {})
    for record in records:
        pending.setdefault((type(record), record.id), record)  # type: ignore[attr-defined]


def reloaded(db: Session, records: Iterable[Base]) -> None:
    """Records loaded afresh (`populate_existing`) after the Core UPDATE that `bumped`
    them, in `db`'s transaction: their snapshot is taken from these copies, with no
    second read. (A later Core UPDATE calls `bumped` again.)"""
    pending = db.info.setdefault(_PENDING, {})
    for record in records:
        key = (type(record), record.id)  # type: ignore[attr-defined]
        if key in pending and pending[key] is None:
            pending[key] = record


def held_pending(db: Session) -> list[Base]:
    """The records whose new versions the commit will keep, as `db` holds them now (not
    those to be read again first). Their snapshots may be rendered before the commit
    (`fhir_facade.registry.prerendered`): one of a version changed since is not used."""
    pending: dict[tuple[type[Base], str], Base | None] = db.info.get(_PENDING, {})
    return [record for record in pending.values() if record is not None]


def version_of(db: Session, kind: type[Base], ident: str, version: int) -> RecordVersion | None:
    return db.get(RecordVersion, (kind.__tablename__, ident, version))


def versions_of(db: Session, kind: type[Base], ident: str) -> list[RecordVersion]:
    """Every kept version of a record, newest first."""
    statement = (
        select(RecordVersion)
        .where(RecordVersion.kind == kind.__tablename__, RecordVersion.record_id == ident)
        .order_by(RecordVersion.version.desc())
    )
    return list(db.scalars(statement))

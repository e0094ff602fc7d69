"""Statements run directly on the driver's cursor (`store.direct`) behave as
`Connection.execute` does: values converted by their columns' types both ways, the
engine's listeners told, SQLAlchemy's errors raised, and what it cannot do directly
(a column default computed in Python) done by SQLAlchemy after all."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from sqlalchemy import Dialect, Text, TypeDecorator, bindparam, insert, literal_column, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from store.common import insert_from_arrays, insert_rows, table_of
from store.direct import Direct
from store.models import AuditRecord, RecordVersion
from tests.integration.helpers import recorded

WHEN = dt.datetime(2031, 3, 4, 5, 6, 7, 890000, tzinfo=dt.UTC)
SECOND = dt.timedelta(seconds=1)
_VERSIONS = table_of(RecordVersion)
_AUDIT = table_of(AuditRecord)
_ADD_VERSION = Direct(
    insert(_VERSIONS)
    .values(
        kind=bindparam("kind"),
        record_id=bindparam("record_id"),
        version=bindparam("version"),
        last_updated=bindparam("last_updated", type_=RecordVersion.last_updated.type),
        document=bindparam("document"),
    )
    .returning(_VERSIONS.c.record_id, _VERSIONS.c.last_updated)
)


def _version(record_id: str) -> dict[str, object]:
    return {
        "kind": "patient",
        "record_id": record_id,
        "version": 1,
        "last_updated": WHEN,
        "document": "{}",
    }


def test_values_go_in_and_come_back_as_their_types_make_them(database):
    def run(db):
        returned = _ADD_VERSION.rows(db, _version("typed"))
        stored = db.scalars(select(RecordVersion).where(RecordVersion.record_id == "typed"))
        return returned, stored.one().last_updated

    returned, stored = database.write(run)

    assert returned == [("typed", WHEN)]  # an aware UTC datetime, as the column gives it
    assert stored == WHEN


def test_a_time_given_in_another_zone_is_kept_as_the_same_instant(database):
    elsewhere = WHEN.astimezone(dt.timezone(dt.timedelta(hours=-7)))
    since = Direct(
        select(RecordVersion.record_id).where(
            RecordVersion.last_updated >= bindparam("since", type_=RecordVersion.last_updated.type)
        )
    )

    def run(db):
        returned = _ADD_VERSION.rows(db, {**_version("zoned"), "last_updated": elsewhere})
        return (
            returned,
            since.rows(db, {"since": elsewhere}),
            since.rows(db, {"since": WHEN + SECOND}),
        )

    returned, found, later = database.write(run)

    assert returned == [("zoned", WHEN)]
    assert found == [("zoned",)]
    assert later == []


def test_the_engines_listeners_see_each_statement_run_directly(database):
    with recorded(database.engine) as seen:
        database.write(lambda db: _ADD_VERSION.rows(db, _version("heard")))

    assert [s for s in seen if "INSERT INTO record_version" in s], seen


def test_a_broken_constraint_raises_sqlalchemys_error_and_the_transaction_rolls_back(database):
    database.write(lambda db: _ADD_VERSION.rows(db, _version("twice")))

    def again(db):
        _ADD_VERSION.rows(db, _version("other"))
        _ADD_VERSION.rows(db, _version("twice"))  # the same primary key

    with pytest.raises(IntegrityError):
        database.write(again)
    with database.reading() as db:
        ids = db.scalars(select(RecordVersion.record_id).order_by(RecordVersion.record_id))
        assert list(ids) == ["twice"]  # "other" went with the rollback


def test_a_column_left_to_its_python_default_still_gets_it(database):
    """An INSERT leaving out `recorded` (default: now, computed in Python) cannot run
    directly; it runs through SQLAlchemy, which fills it in."""
    row = {"id": "no-time", "action": "C", "subtype": "create", "outcome": "0", "agent": "t"}
    adding = Direct(insert(table_of(AuditRecord)).values({name: bindparam(name) for name in row}))
    before = dt.datetime.now(dt.UTC)

    database.write(lambda db: adding.rows(db, row))

    with database.reading() as db:
        recorded = db.scalars(select(AuditRecord.recorded).where(AuditRecord.id == "no-time"))
        assert recorded.one() >= before.replace(microsecond=0)


def test_many_rows_go_in_as_one_statement_each_value_converted_by_its_column(database):
    """`insert_rows`: on PostgreSQL the rows travel as one JSON text, which PostgreSQL reads
    as the table's rows: a time in another zone must still be the same instant (it ignores
    an offset given for a column without a zone), a text keeps its quotes, backslashes
    and non-ASCII letters, a missing value is NULL, and column names from SQLAlchemy
    (str subclasses) are keys."""
    east = dt.timezone(dt.timedelta(hours=5, minutes=30))
    text = 'say "ü" \\ {"n": 1}'
    given = [
        {
            "id": f"many-{i}",
            "recorded": (WHEN + i * SECOND).astimezone(east),
            "action": "C",
            "subtype": "create",
            "outcome": "0",
            "agent": "tester",
            "description": text if i else None,
        }
        for i in range(3)
    ]
    names = [column.name for column in _AUDIT.c if column.name in given[0]]
    rows = [{name: row[name] for name in names} for row in given]  # keys: quoted_name

    def run(db):
        with recorded(db.get_bind()) as statements:
            insert_rows(db, _AUDIT, rows)
        found = db.scalars(
            select(AuditRecord).where(AuditRecord.id.like("many-%")).order_by(AuditRecord.id)
        )
        return statements, [(r.id, r.recorded, r.description) for r in found]

    statements, stored = database.write(run)

    assert stored == [
        ("many-0", WHEN, None),
        ("many-1", WHEN + SECOND, text),
        ("many-2", WHEN + 2 * SECOND, text),
    ]
    if database.engine.dialect.name == "postgresql":
        assert len(statements) == 1 and "json_populate_recordset" in statements[0]


def test_rows_given_as_binary_arrays_go_in_unchanged_as_one_statement(database):
    """`insert_from_arrays` (the versions' INSERT on PostgreSQL): each column one array
    parameter in the binary format, so a document's quotes, backslashes, line breaks and
    non-ASCII letters are stored byte for byte as given, with no escaping, and a time in
    another zone is still the same instant."""
    if database.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's statement; elsewhere the versions are an executemany")
    east = dt.timezone(dt.timedelta(hours=5, minutes=30))
    documents = ['{"text":"say \\"ü\\" \\\\ 中"}', 'line\none\t"two"\\', "{}" * 2000]
    names = ("kind", "record_id", "version", "last_updated", "document")
    statement = Direct(insert_from_arrays(_VERSIONS, names))

    def run(db):
        with recorded(db.get_bind()) as statements:
            statement.rows(
                db,
                {
                    "kind": ["patient"] * 3,
                    "record_id": ["arrays-0", "arrays-1", "arrays-2"],
                    "version": [1, 2, 3],
                    "last_updated": [(WHEN + i * SECOND).astimezone(east) for i in range(3)],
                    "document": documents,
                },
            )
        found = db.execute(
            select(RecordVersion.record_id, RecordVersion.version)
            .add_columns(RecordVersion.last_updated, RecordVersion.document)
            .where(RecordVersion.record_id.like("arrays-%"))
            .order_by(RecordVersion.record_id)
        )
        return statements, [tuple(row) for row in found]

    statements, stored = database.write(run)

    assert stored == [
        (f"arrays-{i}", i + 1, WHEN + i * SECOND, document) for i, document in enumerate(documents)
    ]
    assert len(statements) == 1 and "unnest(" in statements[0]
    assert "%(document)b" in statements[0]  # sent in the binary format, not as text


# -- a statement run in the background (`Direct.start`) ----------------------------------

#: The same INSERT, a quarter of a second slow on PostgreSQL: its caller gets on meanwhile.
_SLOW_VERSION = Direct(
    insert(_VERSIONS).from_select(
        ["kind", "record_id", "version", "last_updated", "document"],
        select(
            bindparam("kind"),
            bindparam("record_id"),
            bindparam("version"),
            bindparam("last_updated", type_=RecordVersion.last_updated.type),
            bindparam("document"),
        ).where(literal_column("pg_sleep(0.25) IS NOT NULL")),
    )
)


class _SlowToSend(TypeDecorator[str]):
    """Text whose conversion takes a fifth of a second: a statement using it reaches the
    driver late, after whatever its caller runs next, unless that waits its turn."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        time.sleep(0.2)
        return value


_LATE_VERSION = Direct(
    insert(_VERSIONS).values(
        kind=bindparam("kind"),
        record_id=bindparam("record_id"),
        version=bindparam("version"),
        last_updated=bindparam("last_updated", type_=RecordVersion.last_updated.type),
        document=bindparam("document", type_=_SlowToSend()),
    )
)


class _Refused(Exception):
    pass


def _refusal(exc: Exception) -> Exception:
    return _Refused("twice") if isinstance(exc, IntegrityError) else exc


def test_a_statement_started_in_the_background_is_written_with_the_transaction(database):
    done: list[object] = []
    waited = []

    def run(db):
        started = time.perf_counter()
        adding = _ADD_VERSION if database.is_sqlite else _SLOW_VERSION
        adding.start(db, _version("behind"), done.append, _refusal)
        waited.append(time.perf_counter() - started)

    started = time.perf_counter()
    database.write(run)
    took = time.perf_counter() - started

    if not database.is_sqlite:
        assert waited[0] < 0.2 < took  # the caller went on; the commit waited for it
    assert len(done) == 1  # its rows were handed over
    with database.reading() as db:
        assert db.scalars(select(RecordVersion.record_id)).all() == ["behind"]


def test_the_next_statement_waits_for_the_one_in_the_background(database):
    """Statements run in the order the request gives them: a read right after a
    background INSERT finds its row, though the INSERT reached the driver after it."""

    def run(db):
        _LATE_VERSION.start(db, _version("first"), lambda rows: None, _refusal)
        return db.scalars(select(RecordVersion.record_id)).all()

    assert database.write(run) == ["first"]


def test_a_background_statement_refused_by_the_database_refuses_the_commit(database):
    database.write(lambda db: _ADD_VERSION.rows(db, _version("twice")))

    def run(db):
        _ADD_VERSION.rows(db, _version("other"))
        _ADD_VERSION.start(db, _version("twice"), lambda rows: None, _refusal)

    with pytest.raises(_Refused):  # as its refusal names it, at the commit
        database.write(run)
    with database.reading() as db:
        assert db.scalars(select(RecordVersion.record_id)).all() == ["twice"]


def test_a_request_failing_after_a_refused_background_statement_says_what_refused_it(database):
    """The next statement finds the transaction aborted; the error raised is still the
    background statement's own, so a client is told why (409, not 500)."""
    database.write(lambda db: _ADD_VERSION.rows(db, _version("twice")))

    def run(db):
        _ADD_VERSION.start(db, _version("twice"), lambda rows: None, _refusal)
        _ADD_VERSION.rows(db, _version("after"))

    with pytest.raises(_Refused):
        database.write(run)
    with database.reading() as db:
        assert db.scalars(select(RecordVersion.record_id)).all() == ["twice"]


def test_a_request_failing_otherwise_meanwhile_says_what_refused_the_statement_first(database):
    """What went wrong first, in the order the request ran, is what the client is told."""
    database.write(lambda db: _ADD_VERSION.rows(db, _version("twice")))

    def run(db):
        _ADD_VERSION.start(db, _version("twice"), lambda rows: None, _refusal)
        raise KeyError("later")

    with pytest.raises(_Refused):
        database.write(run)


def test_background_statements_run_in_turn_and_the_first_refusal_is_raised(database):
    database.write(lambda db: _ADD_VERSION.rows(db, _version("twice")))
    later: list[object] = []

    def run(db):
        _LATE_VERSION.start(db, _version("twice"), lambda rows: None, _refusal)  # refused
        _ADD_VERSION.start(db, _version("after"), later.append, lambda exc: KeyError("second"))

    with pytest.raises(_Refused):
        database.write(run)
    assert later == []  # not run: the transaction was already lost

    def both(db):
        _LATE_VERSION.start(db, _version("a"), later.append, _refusal)
        _ADD_VERSION.start(db, _version("b"), later.append, _refusal)

    database.write(both)
    with database.reading() as db:
        assert sorted(db.scalars(select(RecordVersion.record_id))) == ["a", "b", "twice"]
    assert len(later) == 2


def test_a_rolled_back_transaction_forgets_its_background_statement(database):
    if database.is_sqlite:
        pytest.skip("SQLite runs the statement at once: nothing is left running")
    database.write(lambda db: _ADD_VERSION.rows(db, _version("twice")))
    with Session(database.engine) as db:
        with pytest.raises(KeyError), db.begin():
            _ADD_VERSION.start(db, _version("twice"), lambda rows: None, _refusal)
            raise KeyError("the request failed for another reason")
        with db.begin():  # the same session's next transaction knows nothing of it
            _ADD_VERSION.rows(db, _version("next"))
    with database.reading() as db:
        assert sorted(db.scalars(select(RecordVersion.record_id))) == ["next", "twice"]


def test_a_connection_goes_back_to_the_pool_with_nothing_left_running(database):
    """A session closed without a commit or a rollback of its own (the pool rolls the
    connection back) leaves no background statement, nor its refusal, to the next
    transaction that gets the connection."""
    if database.is_sqlite:
        pytest.skip("SQLite runs the statement at once: nothing is left running")
    database.write(lambda db: _ADD_VERSION.rows(db, _version("twice")))
    db = Session(database.engine)
    db.begin()
    _ADD_VERSION.start(db, _version("twice"), lambda rows: None, _refusal)  # refused
    db.close()

    database.write(lambda db: _ADD_VERSION.rows(db, _version("next")))

    with database.reading() as db:
        assert sorted(db.scalars(select(RecordVersion.record_id))) == ["next", "twice"]

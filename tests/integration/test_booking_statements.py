"""How many SQL statements one booking over the API costs (README, Benchmark): each
statement is a round trip plus ORM work, so a new one on the hot path shows here."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import orjson
import pytest
from sqlalchemy import func, select
from sqlalchemy import inspect as sa_inspect

from fhir_facade.references import Vouched, checked_in
from store.access import Access
from store.audit import Audited
from store.booking import (
    IN_BACKGROUND,
    BookingRequest,
    BookingResult,
    Placement,
    book_patients,
    store_drafts,
)
from store.errors import AlreadyBooked
from store.models import (
    AuditRecord,
    Booking,
    BookingStatus,
    Coverage,
    GroupSession,
    RecordVersion,
)
from store.scope import Store
from tests.factories import MONDAY, make_clinic, make_patient, make_session
from tests.integration.helpers import appointment, fhir, monday_series_find, post, recorded

#: Statements of one booking (its one transaction, BEGIN and COMMIT not counted); on
#: PostgreSQL the booking and its links are one INSERT (store.booking._inserting_all).
BOOKING_STATEMENTS = {"postgresql": 6, "sqlite": 8}


@pytest.fixture
def statements(app) -> Iterator[list[str]]:
    with recorded(app.extensions["fhir_facade.db"].engine) as seen:
        yield seen


@pytest.mark.parametrize("participants", [False, True])
def test_a_booking_costs_a_fixed_number_of_statements(
    client, app, mint, statements, database_url, participants
):
    """With the Practitioners and the Location an EHR names too, one statement more
    looks them all up."""
    database = app.extensions["fhir_facade.db"]

    def build(db):
        clinic = make_clinic(db)
        return clinic, make_session(db, clinic).id, make_patient(db).id, make_patient(db).id

    clinic, session_id, first, second = database.write(build)
    named = {"practitioners": (clinic.provider_id, clinic.other_provider_id),
             "location": clinic.department_id} if participants else {}  # fmt: skip
    headers = mint()
    fhir(post(client, "/fhir/Appointment", appointment(session_id, first, **named), headers), 201)
    statements.clear()

    fhir(post(client, "/fhir/Appointment", appointment(session_id, second, **named), headers), 201)

    backend = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    ran = [s for s in statements if s.split()[0].upper() not in ("BEGIN", "COMMIT")]
    most = BOOKING_STATEMENTS[backend] + (1 if participants else 0)
    assert len(ran) <= most, "\n".join(" ".join(s.split()) for s in ran)


def test_the_answers_check_skips_only_the_references_the_write_vouched_for(database):
    def build(db):
        hidden = make_patient(db, restricted=True).id
        seen = make_patient(db).id
        ids = {
            p: db.scalars(select(Coverage.id).where(Coverage.beneficiary_id == p)).one()
            for p in (hidden, seen)
        }
        return ids[hidden], ids[seen]

    hidden_plan, seen_plan = database.write(build)
    references = [{"reference": f"Coverage/{c}"} for c in (hidden_plan, seen_plan)]
    answer = {"resourceType": "Appointment", "id": "a", "supportingInformation": references}

    with recorded(database.engine) as ran, database.reading() as db:
        store = Store(db, Access())
        checked = checked_in(store, Vouched(answer, {("Coverage", seen_plan)}))
        looked = len(ran)
        checked_in(store, Vouched(checked, {("Coverage", seen_plan)}))

    assert checked["supportingInformation"] == [{"reference": f"Coverage/{seen_plan}"}]
    assert looked >= 1  # the hidden plan was looked up, and left out
    assert len(ran) == looked  # what the write vouched for is not looked up again


def plain(record) -> bool:
    """A record outside any session (`store.common.plain`): no ORM state at all."""
    return sa_inspect(record, raiseerr=False) is None


def test_a_new_booking_is_a_plain_record_with_everything_loaded(database):
    """A single booking is written with Core INSERTs (no flush) and answered as a plain
    record, in no session: what the request then reads of it (columns, links, version)
    costs no query, and it is stored as read."""

    def build(db):
        clinic = make_clinic(db)
        return clinic, make_session(db, clinic).id, make_patient(db).id

    clinic, session_id, patient_id = database.write(build)
    request = BookingRequest(
        patient_id,
        session_id,
        provider_ids=(clinic.other_provider_id, clinic.provider_id),
        identifiers=(("urn:example:ids", "b-1"),),
        comment="first visit",
    )

    def book(db):
        booking = Store(db, Access()).book(request).booking
        with recorded(db.bind) as ran:
            seen = (
                [p.provider_id for p in booking.providers],
                [c.coverage_id for c in booking.coverages],
                [(i.system, i.value) for i in booking.identifiers],
                booking.version,
                booking.series_id,
                booking.queue_position,
                booking.offer_expires,
                booking.waitlist_note,
            )
        assert ran == [], ran
        assert plain(booking) and not db.new and not db.dirty
        again = db.get(Booking, booking.id)  # read in the same transaction: the stored row
        assert again is not booking and again.comment == "first visit" and again.version == 1
        return booking.id, seen

    booking_id, seen = database.write(book)
    providers, coverages, identifiers, version, *unset = seen
    assert providers == [clinic.other_provider_id, clinic.provider_id]
    assert len(coverages) == 1 and identifiers == [("urn:example:ids", "b-1")]
    assert version == 1 and unset == [None, None, None, None]
    with database.reading() as db:
        stored = db.get(Booking, booking_id)
        assert stored is not None and stored.comment == "first visit" and stored.version == 1
        assert [p.provider_id for p in stored.providers] == providers
        assert [c.coverage_id for c in stored.coverages] == coverages
        assert [(i.system, i.value) for i in stored.identifiers] == identifiers


def test_a_booking_changed_in_the_transaction_that_made_it_keeps_its_last_version(app):
    """The plain record answered for a new booking is not the one a later change in the
    same transaction loads and edits: the version kept at commit is the changed one."""
    database = app.extensions["fhir_facade.db"]  # the app's: it keeps versions

    def build(db):
        return make_session(db, make_clinic(db)).id, make_patient(db).id

    session_id, patient_id = database.write(build)

    def book_then_cancel(db):
        store = Store(db, Access())
        booking = store.book(BookingRequest(patient_id, session_id)).booking
        cancel = BookingRequest(patient_id, session_id, status=BookingStatus.CANCELLED)
        return store.rebook(booking.id, cancel).booking.id

    booking_id = database.write(book_then_cancel)
    with database.reading() as db:
        kept = db.scalars(select(RecordVersion).where(RecordVersion.record_id == booking_id)).all()
        assert [(v.version, orjson.loads(v.document)["status"]) for v in kept] == [(2, "cancelled")]
        assert db.get(Booking, booking_id).version == 2


def test_a_booking_made_in_a_savepoint_rolled_back_leaves_the_session(database):
    """Written without the unit of work, the booking is still forgotten with the
    savepoint: the transaction does not go on seeing a row that was rolled back, and no
    version of it is kept."""

    def build(db):
        return make_session(db, make_clinic(db)).id, make_patient(db).id

    session_id, patient_id = database.write(build)

    class Undo(Exception):
        pass

    def book(db):
        store = Store(db, Access())
        try:
            with store.savepoint():
                booking = store.book(BookingRequest(patient_id, session_id)).booking
                raise Undo
        except Undo:
            pass
        return booking.id, db.get(Booking, booking.id)

    booking_id, found = database.write(book)
    assert found is None
    with database.reading() as db:
        assert db.get(Booking, booking_id) is None


def test_a_batch_booked_in_a_savepoint_rolled_back_leaves_the_session(app):
    """The batch path (a series' occurrences, booked and drafts) is written without the
    unit of work too: rolling the savepoint back takes every booking, link and version
    out."""
    database = app.extensions["fhir_facade.db"]  # the app's: it keeps versions

    def build(db):
        clinic = make_clinic(db)
        sessions = [
            make_session(db, clinic, start=MONDAY + dt.timedelta(days=d)).id for d in (0, 2)
        ]
        return sessions, make_patient(db).id

    sessions, patient_id = database.write(build)

    class Undo(Exception):
        pass

    def book(db):
        try:
            with Store(db, Access()).savepoint():
                booked = book_patients(
                    db, [Placement(BookingRequest(patient_id, s)) for s in sessions], Access()
                )
                draft = BookingRequest(
                    patient_id, None, status=BookingStatus.PROPOSED, start=MONDAY, end=MONDAY
                )
                drafts = store_drafts(db, [Placement(draft), Placement(draft)], Access())
                made = [r.booking for r in [*booked, *drafts] if isinstance(r, BookingResult)]
                assert len(made) == 4
                raise Undo
        except Undo:
            pass
        links = [link for b in made for link in [*b.providers, *b.coverages]]
        assert links, "the bookings had links, rolled back with them"
        return [b.id for b in made], [db.get(Booking, b.id) for b in made]

    ids, found = database.write(book)
    assert found == [None] * 4
    with database.reading() as db:
        assert db.scalars(select(Booking.id).where(Booking.id.in_(ids))).all() == []
        kept = select(RecordVersion.record_id).where(RecordVersion.record_id.in_(ids))
        assert db.scalars(kept).all() == []


def test_a_new_batch_is_plain_records_with_everything_loaded(database):
    """The batch path writes its bookings with one INSERT per table and answers them as
    plain records: what the request then reads of them costs no query, and they are
    stored as read."""

    def build(db):
        clinic = make_clinic(db)
        sessions = [
            make_session(db, clinic, start=MONDAY + dt.timedelta(days=d)).id for d in (0, 2)
        ]
        return clinic, sessions, make_patient(db).id

    clinic, sessions, patient_id = database.write(build)
    providers = (clinic.other_provider_id, clinic.provider_id)
    requests = [
        BookingRequest(
            patient_id,
            session_id,
            provider_ids=providers,
            identifiers=(("urn:example:ids", f"s-{n}"),),
            comment=f"visit {n}",
        )
        for n, session_id in enumerate(sessions)
    ]

    def book(db):
        results = book_patients(db, [Placement(r) for r in requests], Access())
        made = [r.booking for r in results if isinstance(r, BookingResult)]
        with recorded(db.bind) as ran:
            seen = [
                (
                    b.id,
                    b.comment,
                    [p.provider_id for p in b.providers],
                    len(b.coverages),
                    [(i.system, i.value) for i in b.identifiers],
                    b.version,
                    b.queue_position,
                )
                for b in made
            ]
        assert ran == [], ran
        assert all(plain(b) for b in made) and not db.new and not db.dirty
        return seen

    seen = database.write(book)
    assert [s[1:] for s in seen] == [
        (f"visit {n}", list(providers), 1, [("urn:example:ids", f"s-{n}")], 1, None)
        for n in range(2)
    ]
    with database.reading() as db:
        for ident, comment, provider_ids, coverages, identifiers, *_ in seen:
            stored = db.get(Booking, ident)
            assert stored is not None and stored.comment == comment and stored.version == 1
            assert [p.provider_id for p in stored.providers] == provider_ids
            assert len(stored.coverages) == coverages
            assert [(i.system, i.value) for i in stored.identifiers] == identifiers


#: Statements of a series' $book (its one transaction, BEGIN and COMMIT not counted),
#: at most, whatever the number of its occurrences, booked or drafts (a long one asks
#: whether some subscription listens apart from writing its versions: store.history).
#: On PostgreSQL the booked and the drafts are one INSERT each, with their links and
#: audit records.
SERIES_BOOK_STATEMENTS = {"postgresql": 11, "sqlite": 16}


@pytest.mark.parametrize("weeks", [2, 6])
def test_booking_a_series_costs_a_fixed_number_of_statements(
    client, app, mint, statements, database_url, weeks
):
    """Mondays and Wednesdays have a session (booked), Fridays none (drafts)."""
    database = app.extensions["fhir_facade.db"]

    def build(db):
        clinic = make_clinic(db)
        for week in range(weeks):
            for day in (0, 2):
                make_session(db, clinic, start=MONDAY + dt.timedelta(days=7 * week + day))
        return clinic.provider_id, make_patient(db).id

    provider, patient = database.write(build)
    headers = mint("user/*.cruds")
    body = monday_series_find(
        patient, provider, MONDAY.date().isoformat(), 3 * weeks, dayOfWeek=["mon", "wed", "fri"]
    )
    preview = fhir(post(client, "/fhir/Appointment/$find", body, headers), 200)
    kept = [e["resource"] for e in preview["entry"] if e["search"]["mode"] == "match"]
    book = {
        "resourceType": "Parameters",
        "parameter": [{"name": "appointment-resource", "resource": k} for k in kept],
    }
    statements.clear()

    answer = fhir(post(client, "/fhir/Appointment/$book", book, headers), 200)

    statuses = [
        e["resource"]["status"]
        for e in answer["entry"]
        if e["resource"]["resourceType"] == "Appointment"
    ]
    assert sorted(statuses) == ["booked"] * (2 * weeks) + ["proposed"] * weeks
    backend = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    ran = [s for s in statements if s.split()[0].upper() not in ("BEGIN", "COMMIT")]
    assert len(ran) <= SERIES_BOOK_STATEMENTS[backend], "\n".join(
        " ".join(s.split())[:100] for s in ran
    )


# -- a long batch, written in the background (`store.direct.IN_BACKGROUND`) --------------


def _sessions_and_patient(database, count: int) -> tuple[list[str], str]:
    def build(db):
        clinic = make_clinic(db)
        sessions = [
            make_session(db, clinic, start=MONDAY + dt.timedelta(days=d)).id for d in range(count)
        ]
        return sessions, make_patient(db).id

    return database.write(build)


def _placements(patient_id: str, sessions: list[str]) -> list[Placement]:
    return [Placement(BookingRequest(patient_id, s)) for s in sessions]


def _booked(database, sessions: list[str]) -> dict[str, int]:
    with database.reading() as db:
        found = select(GroupSession.id, GroupSession.booked).where(GroupSession.id.in_(sessions))
        return {ident: booked for ident, booked in db.execute(found)}


def test_a_long_batch_is_answered_at_once_and_its_links_numbered_by_the_commit(database):
    sessions, patient_id = _sessions_and_patient(database, IN_BACKGROUND)

    def book(db):
        results = book_patients(db, _placements(patient_id, sessions), Access())
        return [r.booking for r in results if isinstance(r, BookingResult)]

    made = database.write(book)

    assert len(made) == IN_BACKGROUND
    with database.reading() as db:
        for booking in made:
            stored = db.get(Booking, booking.id)
            assert stored is not None and stored.session_id == booking.session_id
            assert [(p.id, p.provider_id) for p in booking.providers] == [
                (p.id, p.provider_id) for p in stored.providers
            ]
            assert [(c.id, c.coverage_id) for c in booking.coverages] == [
                (c.id, c.coverage_id) for c in stored.coverages
            ]
    assert _booked(database, sessions) == dict.fromkeys(sessions, 1)


def test_a_long_batch_the_database_refuses_refuses_the_whole_transaction(database):
    """The patient already holds a place in one session: the database's unique index
    refuses the batch's INSERT (on PostgreSQL while the request goes on), and the request
    fails as it would have at once, with nothing written."""
    sessions, patient_id = _sessions_and_patient(database, IN_BACKGROUND + 4)
    database.write(lambda db: book_patients(db, _placements(patient_id, sessions[7:8]), Access()))
    audited = Audited("C", "operation", "staff")

    with pytest.raises(AlreadyBooked):
        database.write(
            lambda db: book_patients(
                db, _placements(patient_id, sessions), Access(), audited=audited
            )
        )

    with database.reading() as db:
        held = db.scalars(select(Booking.session_id).where(Booking.patient_id == patient_id))
        assert held.all() == [sessions[7]]
        assert db.scalar(select(func.count()).select_from(AuditRecord)) == 0
    assert _booked(database, sessions) == {s: int(s == sessions[7]) for s in sessions}


def test_a_long_batch_refused_in_a_savepoint_leaves_the_rest_of_the_transaction(database):
    sessions, patient_id = _sessions_and_patient(database, IN_BACKGROUND + 4)
    database.write(lambda db: book_patients(db, _placements(patient_id, sessions[3:4]), Access()))

    def book(db):
        with pytest.raises(AlreadyBooked), Store(db, Access()).savepoint():
            book_patients(db, _placements(patient_id, sessions), Access())
        book_patients(db, _placements(patient_id, sessions[:1]), Access())

    database.write(book)

    assert _booked(database, sessions) == {
        s: int(s in sessions[:1] + sessions[3:4]) for s in sessions
    }


def test_a_sessions_bookings_are_found_by_one_index_that_new_bookings_keep(database):
    """The unique (session_id, queue_position) constraint's index serves lookups by
    session; no second index on session_id alone costs every new booking an entry."""
    indexes = sa_inspect(database.engine).get_indexes("booking")
    assert [i["name"] for i in indexes if i["column_names"] == ["session_id"]] == []
    lookup = "SELECT id FROM booking WHERE session_id = 'session-x'"
    with database.engine.connect() as connection:
        if database.engine.dialect.name == "postgresql":
            connection.exec_driver_sql("SET enable_seqscan = off")  # a table this small
            plan = connection.exec_driver_sql(f"EXPLAIN {lookup}").scalars().all()
            found = "uq_booking_queue_position"
        else:  # SQLite names a unique constraint's index itself
            plan = [row[3] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {lookup}")]
            found = "USING INDEX sqlite_autoindex_booking_"
    assert any(found in line for line in plan), plan

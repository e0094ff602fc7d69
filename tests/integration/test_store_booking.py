"""Booking rules in the store, against real SQLite and PostgreSQL transactions."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from store.access import STAFF
from store.booking import BookingRequest, Notice, book_patient, update_booking
from store.errors import (
    AlreadyBooked,
    CapacityBelowBooked,
    NotFound,
    RuleViolation,
    SessionFull,
    SessionUnavailable,
    VersionMismatch,
)
from store.models import Booking, BookingStatus, GroupSession
from store.sessions import SessionSpec, create_session, update_session
from tests.factories import MONDAY, make_clinic, make_patient, make_session
from tests.integration.helpers import book, booked, state


@pytest.fixture
def clinic(database):
    return database.write(make_clinic)


def new_session(database, clinic, **options) -> str:
    return database.write(lambda db: make_session(db, clinic, **options).id)


def new_patients(database, n: int = 1) -> list[str]:
    return database.write(lambda db: [make_patient(db).id for _ in range(n)])


def booking_snapshot(database, booking_id: str) -> tuple:
    with database.reading() as db:
        b = db.get(Booking, booking_id)
        return (b.status, b.session_id, b.version, b.start, b.end)


def request_for(database, booking_id: str, **changes) -> BookingRequest:
    """The booking's current state as a request, with some fields changed."""
    with database.reading() as db:
        b = db.get(Booking, booking_id)
        current = BookingRequest(
            patient_id=b.patient_id,
            session_id=b.session_id,
            status=BookingStatus(b.status),
            provider_ids=tuple(p.provider_id for p in b.providers),
            department_id=b.department_id,
            appointment_type=b.appointment_type,
        )
    return dataclasses.replace(current, **changes)


def spec_of(database, session_id: str, **changes) -> SessionSpec:
    with database.reading() as db:
        s = db.get(GroupSession, session_id)
        current = SessionSpec(
            schedule_id=s.schedule_id,
            start=s.start,
            end=s.end,
            capacity=s.capacity,
            appointment_type=s.appointment_type,
            service_type=s.service_type,
            closed=s.closed,
            blocked=s.blocked,
        )
    return dataclasses.replace(current, **changes)


def test_booking_a_patient_raises_the_booked_count_by_one(database, clinic):
    session_id = new_session(database, clinic, capacity=3)
    (patient_id,) = new_patients(database)

    result = database.write(
        lambda db: book_patient(db, BookingRequest(patient_id, session_id), STAFF)
    )

    assert booked(database, session_id) == 1
    assert result.warnings == []
    assert result.booking.status == BookingStatus.BOOKED
    assert result.booking.session_id == session_id


def test_booking_the_place_after_the_last_is_refused_and_changes_nothing(database, clinic):
    session_id = new_session(database, clinic, capacity=2)
    first, second, late = new_patients(database, 3)
    book(database, session_id, first, second)
    before = state(database)

    with pytest.raises(SessionFull):
        database.write(lambda db: book_patient(db, BookingRequest(late, session_id), STAFF))

    assert state(database) == before
    assert before.booked[session_id] == 2
    assert before.appointments == 2


def test_booking_the_same_patient_twice_in_a_session_is_refused(database, clinic):
    session_id = new_session(database, clinic, capacity=5)
    (patient_id,) = new_patients(database)
    book(database, session_id, patient_id)
    before = state(database)

    with pytest.raises(AlreadyBooked):
        book(database, session_id, patient_id)

    assert state(database) == before
    assert before.booked[session_id] == 1


def test_a_patient_may_hold_places_in_two_different_sessions(database, clinic):
    monday = new_session(database, clinic)
    tuesday = new_session(database, clinic, start=MONDAY + dt.timedelta(days=1))
    (patient_id,) = new_patients(database)

    book(database, monday, patient_id)
    book(database, tuesday, patient_id)

    assert (booked(database, monday), booked(database, tuesday)) == (1, 1)


def test_cancelling_a_booking_gives_the_place_back(database, clinic):
    session_id = new_session(database, clinic, capacity=1)
    first, second = new_patients(database, 2)
    (booking_id,) = book(database, session_id, first)
    cancel = request_for(database, booking_id, status=BookingStatus.CANCELLED)

    database.write(lambda db: update_booking(db, booking_id, cancel, STAFF))

    assert booked(database, session_id) == 0
    assert booking_snapshot(database, booking_id)[0] == BookingStatus.CANCELLED
    book(database, session_id, second)  # the freed place can be taken again
    assert booked(database, session_id) == 1


def test_a_cancelled_patient_can_be_booked_into_the_same_session_again(database, clinic):
    session_id = new_session(database, clinic)
    (patient_id,) = new_patients(database)
    (booking_id,) = book(database, session_id, patient_id)
    cancel = request_for(database, booking_id, status=BookingStatus.CANCELLED)
    database.write(lambda db: update_booking(db, booking_id, cancel, STAFF))

    book(database, session_id, patient_id)

    assert booked(database, session_id) == 1


def test_rescheduling_moves_the_place_from_the_old_session_to_the_new(database, clinic):
    old = new_session(database, clinic)
    new = new_session(database, clinic, start=MONDAY + dt.timedelta(days=2))
    patient_id, other = new_patients(database, 2)
    (booking_id,) = book(database, old, patient_id)
    book(database, new, other)
    move = request_for(database, booking_id, session_id=new)

    result = database.write(lambda db: update_booking(db, booking_id, move, STAFF))

    assert (booked(database, old), booked(database, new)) == (0, 2)
    assert result.booking.session_id == new
    assert result.booking.start == MONDAY + dt.timedelta(days=2)
    assert result.booking.version == 2


def test_rescheduling_into_a_full_session_changes_neither_count_nor_booking(database, clinic):
    old = new_session(database, clinic)
    full = new_session(database, clinic, capacity=1, start=MONDAY + dt.timedelta(days=2))
    patient_id, other = new_patients(database, 2)
    (booking_id,) = book(database, old, patient_id)
    book(database, full, other)
    before = state(database)
    booking_before = booking_snapshot(database, booking_id)
    move = request_for(database, booking_id, session_id=full)

    with pytest.raises(SessionFull):
        database.write(lambda db: update_booking(db, booking_id, move, STAFF))

    assert state(database) == before
    assert (before.booked[old], before.booked[full]) == (1, 1)
    assert booking_snapshot(database, booking_id) == booking_before


def test_rescheduling_into_a_session_where_the_patient_already_has_a_place_is_refused(
    database, clinic
):
    monday = new_session(database, clinic)
    tuesday = new_session(database, clinic, start=MONDAY + dt.timedelta(days=1))
    (patient_id,) = new_patients(database)
    booking_id, _ = book(database, monday, patient_id) + book(database, tuesday, patient_id)
    before = state(database)
    booking_before = booking_snapshot(database, booking_id)
    move = request_for(database, booking_id, session_id=tuesday)

    with pytest.raises(AlreadyBooked):
        database.write(lambda db: update_booking(db, booking_id, move, STAFF))

    assert state(database) == before
    assert booking_snapshot(database, booking_id) == booking_before


def test_booking_a_blocked_session_is_refused(database, clinic):
    (patient_id,) = new_patients(database)
    spec = SessionSpec(clinic.schedule_id, MONDAY, MONDAY + dt.timedelta(hours=1), 5, blocked=True)
    blocked = database.write(lambda db: create_session(db, spec).id)

    with pytest.raises(SessionUnavailable):
        book(database, blocked, patient_id)

    assert booked(database, blocked) == 0
    assert state(database).appointments == 0


def test_a_cancelled_booking_cannot_be_reopened(database, clinic):
    session_id = new_session(database, clinic)
    (patient_id,) = new_patients(database)
    (booking_id,) = book(database, session_id, patient_id)
    cancel = request_for(database, booking_id, status=BookingStatus.CANCELLED)
    database.write(lambda db: update_booking(db, booking_id, cancel, STAFF))
    before = state(database)
    reopen = request_for(database, booking_id, status=BookingStatus.BOOKED)

    with pytest.raises(RuleViolation):
        database.write(lambda db: update_booking(db, booking_id, reopen, STAFF))

    assert state(database) == before
    assert booking_snapshot(database, booking_id)[0] == BookingStatus.CANCELLED


def test_capacity_cannot_be_lowered_below_the_places_booked(database, clinic):
    session_id = new_session(database, clinic, capacity=5)
    book(database, session_id, *new_patients(database, 3))
    too_small = spec_of(database, session_id, capacity=2)

    with pytest.raises(CapacityBelowBooked):
        database.write(lambda db: update_session(db, session_id, too_small))

    with database.reading() as db:
        session = db.get(GroupSession, session_id)
        assert (session.capacity, session.booked, session.version) == (5, 3, 4)


def test_capacity_may_be_lowered_to_exactly_the_places_booked(database, clinic):
    session_id = new_session(database, clinic, capacity=5)
    book(database, session_id, *new_patients(database, 3))
    exact = spec_of(database, session_id, capacity=3)

    database.write(lambda db: update_session(db, session_id, exact))

    with database.reading() as db:
        session = db.get(GroupSession, session_id)
        assert (session.capacity, session.booked, session.places_left) == (3, 3, 0)
    with pytest.raises(SessionFull):
        book(database, session_id, *new_patients(database))


def test_a_stale_version_refuses_a_booking_update(database, clinic):
    session_id = new_session(database, clinic)
    (patient_id,) = new_patients(database)
    (booking_id,) = book(database, session_id, patient_id)
    cancel = request_for(database, booking_id, status=BookingStatus.CANCELLED)
    before = state(database)

    with pytest.raises(VersionMismatch):
        database.write(lambda db: update_booking(db, booking_id, cancel, STAFF, expected_version=7))

    assert state(database) == before


def test_the_current_version_allows_a_booking_update(database, clinic):
    session_id = new_session(database, clinic)
    (patient_id,) = new_patients(database)
    (booking_id,) = book(database, session_id, patient_id)
    cancel = request_for(database, booking_id, status=BookingStatus.CANCELLED)

    database.write(lambda db: update_booking(db, booking_id, cancel, STAFF, expected_version=1))

    assert booked(database, session_id) == 0


def test_a_stale_version_refuses_a_session_update(database, clinic):
    session_id = new_session(database, clinic, capacity=5)
    bigger = spec_of(database, session_id, capacity=9)

    with pytest.raises(VersionMismatch):
        database.write(lambda db: update_session(db, session_id, bigger, expected_version=2))

    with database.reading() as db:
        assert db.get(GroupSession, session_id).capacity == 5


def test_booking_a_closed_session_succeeds_with_a_session_closed_notice(database, clinic):
    session_id = new_session(database, clinic, closed=True)
    (patient_id,) = new_patients(database)

    result = database.write(
        lambda db: book_patient(db, BookingRequest(patient_id, session_id), STAFF)
    )

    assert [n.code for n in result.warnings] == ["session-closed"]
    assert isinstance(result.warnings[0], Notice)
    assert booked(database, session_id) == 1


@pytest.mark.parametrize(
    ("providers", "department", "refused"),
    [
        (("other", "missing-a", "missing-b"), "dept", ("Practitioner", "missing-a")),
        (("provider", "other"), "missing-dept", ("Location", "missing-dept")),
        (("missing-a",), "missing-dept", ("Practitioner", "missing-a")),
        (("provider", "provider"), "dept", None),  # exists, but listed twice
    ],
)
def test_a_booking_naming_a_provider_or_department_that_does_not_exist_is_refused_by_name(
    database, clinic, providers, department, refused
):
    """The references are looked up together; a refusal names the first one missing, in
    the request's order, providers first; then a provider listed twice is refused."""
    session_id = new_session(database, clinic)
    (patient_id,) = new_patients(database)
    known = {"provider": clinic.provider_id, "other": clinic.other_provider_id}
    request = BookingRequest(
        patient_id,
        session_id,
        provider_ids=tuple(known.get(p, p) for p in providers),
        department_id=clinic.department_id if department == "dept" else department,
    )
    before = state(database)

    with pytest.raises((NotFound, RuleViolation)) as refusal:
        database.write(lambda db: book_patient(db, request, STAFF))

    if refused is None:
        assert isinstance(refusal.value, RuleViolation) and "twice" in str(refusal.value)
    else:
        assert isinstance(refusal.value, NotFound)
        assert (refusal.value.kind, refusal.value.ident) == refused
    assert state(database) == before


def test_a_booking_naming_existing_providers_and_its_department_is_stored_with_them(
    database, clinic
):
    session_id = new_session(database, clinic)
    (patient_id,) = new_patients(database)
    providers = (clinic.other_provider_id, clinic.provider_id)
    request = BookingRequest(
        patient_id, session_id, provider_ids=providers, department_id=clinic.department_id
    )

    booking_id = database.write(lambda db: book_patient(db, request, STAFF).booking.id)

    with database.reading() as db:
        stored = db.get(Booking, booking_id)
        assert [p.provider_id for p in stored.providers] == list(providers)
        assert stored.department_id == clinic.department_id

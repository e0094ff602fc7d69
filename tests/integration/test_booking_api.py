"""Booking, cancelling and rescheduling through the FHIR API, and managing sessions."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest

from store.models import GroupSession
from tests.conftest import ADMIN_SCOPE
from tests.factories import MONDAY, Clinic, make_clinic, make_patient, make_session
from tests.integration.helpers import (
    appointment,
    book,
    booked,
    capacity_of,
    fhir,
    instant,
    outcome,
    post,
    put,
    slot,
    state,
)

BASE = "http://testserver/fhir"


@dataclass
class World:
    clinic: Clinic
    session: str
    patients: list[str]


def world(database, *, capacity: int = 10, closed: bool = False, patients: int = 3) -> World:
    def build(db):
        clinic = make_clinic(db)
        session = make_session(db, clinic, capacity=capacity, closed=closed)
        return World(clinic, session.id, [make_patient(db).id for _ in range(patients)])

    return database.write(build)


def add_session(database, clinic: Clinic, **options) -> str:
    return database.write(lambda db: make_session(db, clinic, **options).id)


def read_slot(client, mint, session_id: str) -> dict:
    return fhir(client.get(f"/fhir/Slot/{session_id}", headers=mint()), 200)


# -- booking -------------------------------------------------------------------------


def test_booking_returns_201_with_the_stored_appointment_location_and_etag(client, database, mint):
    w = world(database)

    response = post(client, "/fhir/Appointment", appointment(w.session, w.patients[0]), mint())

    stored = fhir(response, 201)
    assert stored["resourceType"] == "Appointment"
    assert stored["status"] == "booked"
    assert stored["slot"] == [{"reference": f"Slot/{w.session}"}]
    assert stored["start"] == instant(MONDAY)
    assert stored["end"] == instant(MONDAY + dt.timedelta(minutes=90))
    assert stored["meta"]["versionId"] == "1"
    assert response.headers["Location"] == f"{BASE}/Appointment/{stored['id']}/_history/1"
    assert response.headers["ETag"] == 'W/"1"'
    assert "Warning" not in response.headers
    read = fhir(client.get(f"/fhir/Appointment/{stored['id']}", headers=mint()), 200)
    assert read == stored


def test_booking_raises_the_slots_booked_count_by_one(client, database, mint):
    w = world(database)
    book(database, w.session, w.patients[0])

    post(client, "/fhir/Appointment", appointment(w.session, w.patients[1]), mint())

    slot_resource = read_slot(client, mint, w.session)
    assert capacity_of(slot_resource) == "2/10"
    assert slot_resource["status"] == "free"


def test_booking_without_providers_or_location_takes_them_from_the_schedule(client, database, mint):
    w = world(database)

    stored = fhir(
        post(client, "/fhir/Appointment", appointment(w.session, w.patients[0]), mint()), 201
    )

    actors = [p["actor"]["reference"] for p in stored["participant"]]
    assert actors == [
        f"Patient/{w.patients[0]}",
        f"Practitioner/{w.clinic.provider_id}",
        f"Location/{w.clinic.department_id}",
    ]
    assert {p["status"] for p in stored["participant"]} == {"accepted"}
    assert stored["appointmentType"]["coding"][0]["code"] == "group-therapy"


def test_booking_the_last_place_turns_the_slot_busy_and_the_next_booking_gets_409(
    client, database, mint
):
    w = world(database, capacity=2)
    book(database, w.session, w.patients[0])

    fhir(post(client, "/fhir/Appointment", appointment(w.session, w.patients[1]), mint()), 201)
    full = read_slot(client, mint, w.session)
    before = state(database)
    refused = post(client, "/fhir/Appointment", appointment(w.session, w.patients[2]), mint())

    assert (capacity_of(full), full["status"]) == ("2/2", "busy")
    outcome(refused, 409, code="conflict", detail="session-full", expression="Appointment.slot")
    assert state(database) == before


def test_booking_the_same_patient_twice_in_a_session_gets_409(client, database, mint):
    w = world(database)
    body = appointment(w.session, w.patients[0])
    fhir(post(client, "/fhir/Appointment", body, mint()), 201)
    before = state(database)

    again = post(client, "/fhir/Appointment", body, mint())

    outcome(again, 409, code="duplicate", detail="already-booked")
    assert state(database) == before
    assert before.booked[w.session] == 1


def test_a_booking_keeps_extra_providers_the_department_and_its_own_appointment_type(
    client, database, mint
):
    w = world(database)
    body = appointment(
        w.session,
        w.patients[0],
        practitioners=(w.clinic.provider_id, w.clinic.other_provider_id),
        location=w.clinic.department_id,
        appointment_type="dbt-skills",
    )

    stored = fhir(post(client, "/fhir/Appointment", body, mint()), 201)

    read = fhir(client.get(f"/fhir/Appointment/{stored['id']}", headers=mint()), 200)
    for resource in (stored, read):
        actors = [p["actor"]["reference"] for p in resource["participant"]]
        assert actors == [
            f"Patient/{w.patients[0]}",
            f"Practitioner/{w.clinic.provider_id}",
            f"Practitioner/{w.clinic.other_provider_id}",
            f"Location/{w.clinic.department_id}",
        ]
        assert resource["appointmentType"]["coding"][0]["code"] == "dbt-skills"
    slot_type = read_slot(client, mint, w.session)["appointmentType"]["coding"][0]["code"]
    assert slot_type == "group-therapy"


def test_booking_a_closed_session_succeeds_with_a_warning_header(client, database, mint):
    w = world(database, closed=True)

    response = post(client, "/fhir/Appointment", appointment(w.session, w.patients[0]), mint())

    stored = fhir(response, 201)
    assert stored["resourceType"] == "Appointment"
    assert response.headers["Warning"].startswith('299 fhir-facade "')
    assert "closed" in response.headers["Warning"]
    assert booked(database, w.session) == 1


def test_booking_a_closed_session_can_answer_with_an_outcome_carrying_the_warning(
    client, database, mint
):
    w = world(database, closed=True)
    headers = mint() | {"Prefer": "return=OperationOutcome"}

    response = post(client, "/fhir/Appointment", appointment(w.session, w.patients[0]), headers)

    issue = outcome(
        response, 201, code="business-rule", detail="session-closed", severity="warning"
    )
    assert "closed" in issue["details"]["text"]
    assert "Warning" in response.headers
    assert response.headers["Location"].startswith(f"{BASE}/Appointment/")
    assert booked(database, w.session) == 1


def test_booking_an_open_session_with_prefer_outcome_reports_information_only(
    client, database, mint
):
    w = world(database)
    headers = mint() | {"Prefer": "return=OperationOutcome"}

    response = post(client, "/fhir/Appointment", appointment(w.session, w.patients[0]), headers)

    outcome(response, 201, code="informational", severity="information")
    assert "Warning" not in response.headers


# -- cancel and reschedule -----------------------------------------------------------


def booked_through_api(client, mint, session_id: str, patient_id: str, **options) -> dict:
    body = appointment(session_id, patient_id, **options)
    return fhir(post(client, "/fhir/Appointment", body, mint()), 201)


def test_cancelling_with_if_match_frees_the_place(client, database, mint):
    w = world(database, capacity=1)
    stored = booked_through_api(client, mint, w.session, w.patients[0])
    cancelled = stored | {"status": "cancelled", "cancelationReason": {"text": "patient ill"}}

    response = put(
        client, f"/fhir/Appointment/{stored['id']}", cancelled, mint() | {"If-Match": 'W/"1"'}
    )

    result = fhir(response, 200)
    assert result["status"] == "cancelled"
    assert result["meta"]["versionId"] == "2"
    assert response.headers["ETag"] == 'W/"2"'
    slot_resource = read_slot(client, mint, w.session)
    assert (capacity_of(slot_resource), slot_resource["status"]) == ("0/1", "free")
    fhir(post(client, "/fhir/Appointment", appointment(w.session, w.patients[1]), mint()), 201)


def test_rescheduling_by_changing_the_slot_moves_the_place(client, database, mint):
    w = world(database)
    later = add_session(database, w.clinic, start=MONDAY + dt.timedelta(days=7), minutes=60)
    stored = booked_through_api(client, mint, w.session, w.patients[0])
    moved = stored | {
        "slot": [{"reference": f"Slot/{later}"}],
        "start": instant(MONDAY + dt.timedelta(days=7)),
        "end": instant(MONDAY + dt.timedelta(days=7, minutes=60)),
    }

    response = put(
        client, f"/fhir/Appointment/{stored['id']}", moved, mint() | {"If-Match": 'W/"1"'}
    )

    result = fhir(response, 200)
    assert result["slot"] == [{"reference": f"Slot/{later}"}]
    assert result["start"] == instant(MONDAY + dt.timedelta(days=7))
    assert capacity_of(read_slot(client, mint, w.session)) == "0/10"
    assert capacity_of(read_slot(client, mint, later)) == "1/10"


def test_rescheduling_by_changing_only_the_slot_moves_the_old_times_with_it(client, database, mint):
    w = world(database)
    later = add_session(database, w.clinic, start=MONDAY + dt.timedelta(days=7), minutes=60)
    stored = booked_through_api(client, mint, w.session, w.patients[0])
    moved = stored | {"slot": [{"reference": f"Slot/{later}"}]}  # start/end: the old slot's

    response = put(
        client, f"/fhir/Appointment/{stored['id']}", moved, mint() | {"If-Match": 'W/"1"'}
    )

    result = fhir(response, 200)
    assert result["slot"] == [{"reference": f"Slot/{later}"}]
    assert (result["start"], result["end"]) == (
        instant(MONDAY + dt.timedelta(days=7)),
        instant(MONDAY + dt.timedelta(days=7, minutes=60)),
    )
    assert capacity_of(read_slot(client, mint, w.session)) == "0/10"
    assert capacity_of(read_slot(client, mint, later)) == "1/10"


def test_rescheduling_with_times_that_are_neither_the_old_nor_the_new_slots_gets_422(
    client, database, mint
):
    w = world(database)
    later = add_session(database, w.clinic, start=MONDAY + dt.timedelta(days=7), minutes=60)
    stored = booked_through_api(client, mint, w.session, w.patients[0])
    before = state(database)
    moved = stored | {
        "slot": [{"reference": f"Slot/{later}"}],
        "start": instant(MONDAY + dt.timedelta(days=7, minutes=30)),
        "end": instant(MONDAY + dt.timedelta(days=7, minutes=90)),
    }

    response = put(client, f"/fhir/Appointment/{stored['id']}", moved, mint())

    outcome(response, 422, code="business-rule", expression="Appointment.start")
    assert state(database) == before


def test_rescheduling_into_a_full_session_gets_409_and_moves_nothing(client, database, mint):
    w = world(database)
    full = add_session(database, w.clinic, start=MONDAY + dt.timedelta(days=7), capacity=1)
    book(database, full, w.patients[1])
    stored = booked_through_api(client, mint, w.session, w.patients[0])
    before = state(database)
    moved = stored | {"slot": [{"reference": f"Slot/{full}"}]}
    del moved["start"], moved["end"]

    response = put(client, f"/fhir/Appointment/{stored['id']}", moved, mint())

    outcome(response, 409, detail="session-full")
    assert state(database) == before
    read = fhir(client.get(f"/fhir/Appointment/{stored['id']}", headers=mint()), 200)
    assert read == stored


def test_rescheduling_into_a_session_the_patient_already_attends_gets_409_and_moves_nothing(
    client, database, mint
):
    w = world(database)
    tuesday = add_session(database, w.clinic, start=MONDAY + dt.timedelta(days=1))
    stored = booked_through_api(client, mint, w.session, w.patients[0])
    booked_through_api(client, mint, tuesday, w.patients[0])
    before = state(database)
    moved = stored | {"slot": [{"reference": f"Slot/{tuesday}"}]}
    del moved["start"], moved["end"]

    response = put(client, f"/fhir/Appointment/{stored['id']}", moved, mint())

    outcome(response, 409, code="duplicate", detail="already-booked")
    assert state(database) == before


def test_a_stale_if_match_on_cancel_gets_412_and_changes_nothing(client, database, mint):
    w = world(database)
    stored = booked_through_api(client, mint, w.session, w.patients[0])
    before = state(database)

    response = put(
        client,
        f"/fhir/Appointment/{stored['id']}",
        stored | {"status": "cancelled"},
        mint() | {"If-Match": 'W/"3"'},
    )

    outcome(response, 412, detail="version-mismatch")
    assert state(database) == before
    read = fhir(client.get(f"/fhir/Appointment/{stored['id']}", headers=mint()), 200)
    assert read["status"] == "booked"


def test_a_cancelled_appointment_cannot_be_rebooked_by_update(client, database, mint):
    w = world(database)
    stored = booked_through_api(client, mint, w.session, w.patients[0])
    cancelled = fhir(
        put(client, f"/fhir/Appointment/{stored['id']}", stored | {"status": "cancelled"}, mint()),
        200,
    )
    before = state(database)

    response = put(
        client, f"/fhir/Appointment/{stored['id']}", cancelled | {"status": "booked"}, mint()
    )

    outcome(response, 422, code="business-rule", expression="Appointment.status")
    assert state(database) == before


# -- conditional create --------------------------------------------------------------


def test_a_retried_post_with_if_none_exist_returns_the_first_booking_and_books_once(
    client, database, mint
):
    w = world(database)
    body = appointment(w.session, w.patients[0], identifier="visit-42")
    headers = mint() | {"If-None-Exist": "identifier=urn:example:ehr:booking|visit-42"}

    first = post(client, "/fhir/Appointment", body, headers)
    retry = post(client, "/fhir/Appointment", body, headers)

    created = fhir(first, 201)
    existing = fhir(retry, 200)
    assert existing["id"] == created["id"]
    assert existing["identifier"] == [{"system": "urn:example:ehr:booking", "value": "visit-42"}]
    assert retry.headers["ETag"] == 'W/"1"'
    after = state(database)
    assert (after.booked[w.session], after.appointments) == (1, 1)


def test_if_none_exist_is_a_search_and_needs_the_search_scope(client, database, mint):
    """The condition is a search, and a match is answered with the stored resource: a
    token that may only create must not read appointments through it."""
    w = world(database)
    body = appointment(w.session, w.patients[0], identifier="visit-43")
    fhir(post(client, "/fhir/Appointment", body, mint()), 201)
    before = state(database)
    create_only = mint("user/Appointment.c")
    condition = {"If-None-Exist": "identifier=urn:example:ehr:booking|visit-43"}

    response = post(client, "/fhir/Appointment", body, create_only | condition)

    issue = outcome(response, 403, code="forbidden")
    assert "search on Appointment" in issue["details"]["text"], issue
    assert state(database) == before
    other = appointment(w.session, w.patients[1])
    fhir(post(client, "/fhir/Appointment", other, create_only), 201)  # creating still works


def test_a_second_booking_of_the_patient_reusing_an_identifier_is_refused(client, database, mint):
    w = world(database)
    tuesday = add_session(database, w.clinic, start=MONDAY + dt.timedelta(days=1))
    first = appointment(w.session, w.patients[0], identifier="visit-7")
    fhir(post(client, "/fhir/Appointment", first, mint()), 201)
    before = state(database)

    response = post(
        client,
        "/fhir/Appointment",
        appointment(tuesday, w.patients[0], identifier="visit-7"),
        mint(),
    )

    outcome(response, 409, detail="duplicate-identifier", expression="Appointment.identifier")
    assert state(database) == before


def test_booking_identifiers_are_unique_per_patient_so_another_patient_may_carry_one(
    client, database, mint
):
    """Per patient, not clinic-wide: a clinic-wide rule would reveal restricted patients'
    hidden bookings (see store.models.BookingIdentifier and the leak walk)."""
    w = world(database)
    first = appointment(w.session, w.patients[0], identifier="visit-7")
    fhir(post(client, "/fhir/Appointment", first, mint()), 201)

    response = post(
        client,
        "/fhir/Appointment",
        appointment(w.session, w.patients[1], identifier="visit-7"),
        mint(),
    )

    assert fhir(response, 201)["identifier"][0]["value"] == "visit-7"
    assert booked(database, w.session) == 2


# -- managing sessions ---------------------------------------------------------------


def test_creating_a_session_without_the_schedule_admin_permission_gets_403(client, database, mint):
    w = world(database)
    before = state(database)

    response = post(client, "/fhir/Slot", slot(w.clinic.schedule_id, MONDAY), mint())

    outcome(response, 403, code="forbidden")
    assert state(database) == before


def test_a_schedule_admin_creates_a_session_with_its_capacity(client, database, mint):
    w = world(database)
    tuesday = MONDAY + dt.timedelta(days=1)
    body = slot(
        w.clinic.schedule_id,
        tuesday,
        capacity=8,
        closed=True,
        appointmentType={
            "coding": [
                {
                    "system": "http://fhir-facade.org/fhir/CodeSystem/group-appointment-type",
                    "code": "grief-support",
                }
            ]
        },
    )

    response = post(client, "/fhir/Slot", body, mint(ADMIN_SCOPE))

    created = fhir(response, 201)
    assert (capacity_of(created), created["status"], created["start"]) == (
        "0/8",
        "free",
        instant(tuesday),
    )
    assert created["appointmentType"]["coding"][0]["code"] == "grief-support"
    assert response.headers["Location"] == f"{BASE}/Slot/{created['id']}/_history/1"
    assert fhir(client.get(f"/fhir/Slot/{created['id']}", headers=mint()), 200) == created
    booking = post(client, "/fhir/Appointment", appointment(created["id"], w.patients[0]), mint())
    fhir(booking, 201)
    assert "Warning" in booking.headers


def test_changing_capacity_below_the_booked_count_gets_422(client, database, mint):
    w = world(database, capacity=5)
    book(database, w.session, *w.patients)
    current = read_slot(client, mint, w.session)
    smaller = current | {
        "extension": [
            {
                "url": "http://fhir-facade.org/fhir/StructureDefinition/group-capacity",
                "extension": [{"url": "capacity", "valueUnsignedInt": 2}],
            }
        ]
    }

    response = put(client, f"/fhir/Slot/{w.session}", smaller, mint(ADMIN_SCOPE))

    outcome(response, 422, code="business-rule", detail="capacity-below-booked")
    assert read_slot(client, mint, w.session) == current


@pytest.mark.parametrize(("capacity", "status"), [(3, "busy"), (12, "free")])
def test_changing_capacity_to_at_least_the_booked_count_is_accepted(
    client, database, mint, capacity, status
):
    w = world(database, capacity=5)
    book(database, w.session, *w.patients)
    current = read_slot(client, mint, w.session)
    changed = current | {
        "extension": [
            {
                "url": "http://fhir-facade.org/fhir/StructureDefinition/group-capacity",
                "extension": [{"url": "capacity", "valueUnsignedInt": capacity}],
            }
        ]
    }

    response = put(
        client,
        f"/fhir/Slot/{w.session}",
        changed,
        mint(ADMIN_SCOPE) | {"If-Match": f'W/"{current["meta"]["versionId"]}"'},
    )

    updated = fhir(response, 200)
    assert (capacity_of(updated), updated["status"]) == (f"3/{capacity}", status)
    with database.reading() as db:
        assert db.get(GroupSession, w.session).capacity == capacity


def test_changing_a_session_without_the_schedule_admin_permission_gets_403(client, database, mint):
    w = world(database, capacity=5)
    current = read_slot(client, mint, w.session)

    response = put(client, f"/fhir/Slot/{w.session}", current | {"comment": "moved room"}, mint())

    outcome(response, 403, code="forbidden")
    assert read_slot(client, mint, w.session) == current


def test_a_session_blocked_by_an_admin_shows_busy_unavailable_and_refuses_bookings(
    client, database, mint
):
    w = world(database)
    book(database, w.session, w.patients[0])
    current = read_slot(client, mint, w.session)

    blocked = fhir(
        put(
            client,
            f"/fhir/Slot/{w.session}",
            current | {"status": "busy-unavailable"},
            mint(ADMIN_SCOPE),
        ),
        200,
    )
    before = state(database)
    refused = post(client, "/fhir/Appointment", appointment(w.session, w.patients[1]), mint())

    assert (blocked["status"], capacity_of(blocked)) == ("busy-unavailable", "1/10")
    outcome(refused, 409, code="conflict", detail="session-unavailable")
    assert state(database) == before

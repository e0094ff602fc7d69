"""The clinic's "book a patient for a single group session" flow, over real HTTP.

Staff open a provider's calendar tab (Schedule by actor), look at that week's group
sessions (Slots with their "3/10"), book a patient, cancel, book again and move the
patient to another session. Every resource the server sends back is validated as R4.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import pytest
import requests
from sqlalchemy.orm import Session

from store.db import Database
from tests.e2e.conftest import Server
from tests.e2e.fhir import (
    FHIR_JSON,
    JSON,
    TIMEOUT_S,
    booking,
    cancelled,
    capacity,
    detail_codes,
    moved,
    places_left,
    resources,
    stored_booked,
    stored_places_held,
)
from tests.factories import MONDAY, make_clinic, make_patient, make_session
from tests.validation import assert_valid

WEEK = [("start", "ge2027-01-04"), ("start", "lt2027-01-11")]


# The tests build what they use under fresh ids, so they share one database per backend
# and the server on it (starting one takes seconds).
@pytest.fixture(scope="module")
def database_url(shared_database_url: str) -> str:
    return shared_database_url


@pytest.fixture
def server(shared_server: Server) -> Server:
    return shared_server


@dataclass
class Week:
    provider_id: str
    other_provider_id: str
    department_id: str
    schedule_id: str
    monday: str
    wednesday: str
    thursday_small: str
    sunday_before: str
    next_monday: str
    patients: list[str]


def _clinic_week(database: Database) -> Week:
    def build(db: Session) -> Week:
        clinic = make_clinic(db)
        day = dt.timedelta(days=1)
        sessions = [
            make_session(db, clinic, capacity=10, start=MONDAY),
            make_session(db, clinic, capacity=10, start=MONDAY + 2 * day),
            make_session(db, clinic, capacity=1, start=MONDAY + 3 * day),
            make_session(db, clinic, capacity=10, start=MONDAY - day),
            make_session(db, clinic, capacity=10, start=MONDAY + 7 * day),
        ]
        patients = [make_patient(db, given=g).id for g in ("Maria", "Luis", "Ana")]
        return Week(
            clinic.provider_id,
            clinic.other_provider_id,
            clinic.department_id,
            clinic.schedule_id,
            *(s.id for s in sessions),
            patients=patients,
        )

    return database.write(build)


def _ok(response: requests.Response, status: int = 200) -> JSON:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"].startswith(FHIR_JSON)
    body: JSON = response.json()
    assert_valid(body)
    return body


def _refused(response: requests.Response, status: int, detail: str) -> JSON:
    assert response.status_code == status, (response.status_code, response.text)
    outcome: JSON = response.json()
    assert outcome["resourceType"] == "OperationOutcome", outcome
    assert_valid(outcome)
    assert detail in detail_codes(outcome), outcome
    return outcome


def _slot(http: requests.Session, server: Server, slot_id: str) -> JSON:
    return _ok(http.get(f"{server.base}/Slot/{slot_id}", timeout=TIMEOUT_S))


def _booked_total(http: requests.Session, server: Server, slot_id: str) -> int:
    bundle = _ok(
        http.get(
            f"{server.base}/Appointment",
            params={"slot": f"Slot/{slot_id}", "status": "booked"},
            timeout=TIMEOUT_S,
        )
    )
    total: int = bundle["total"]
    return total


def test_staff_book_cancel_rebook_and_reschedule_a_patient_over_http(
    server: Server, http: requests.Session, database: Database
) -> None:
    week = _clinic_week(database)
    patient = week.patients[0]

    # The calendar tab: the provider's schedule, then that week's sessions with their "n/10".
    schedules = _ok(
        http.get(
            f"{server.base}/Schedule",
            params={"actor": f"Practitioner/{week.provider_id}"},
            timeout=TIMEOUT_S,
        )
    )
    assert [s["id"] for s in resources(schedules)] == [week.schedule_id]
    calendar = _ok(
        http.get(
            f"{server.base}/Slot",
            params=[("schedule", f"Schedule/{week.schedule_id}"), *WEEK],
            timeout=TIMEOUT_S,
        )
    )
    slots = resources(calendar, "Slot")
    assert [s["id"] for s in slots] == [week.monday, week.wednesday, week.thursday_small]
    assert calendar["total"] == 3
    assert [capacity(s) for s in slots] == [(10, 0), (10, 0), (1, 0)]
    assert {s["status"] for s in slots} == {"free"}
    monday, wednesday = slots[0], slots[1]

    # Book: 201, Location and ETag, the stored Appointment; the count rises by one.
    created = http.post(
        f"{server.base}/Appointment",
        json=booking(
            patient,
            week.monday,
            practitioner_ids=(week.provider_id, week.other_provider_id),
            location_id=week.department_id,
        ),
        headers={"Content-Type": FHIR_JSON},
        timeout=TIMEOUT_S,
    )
    appointment = _ok(created, 201)
    assert appointment["status"] == "booked"
    assert appointment["slot"] == [{"reference": f"Slot/{week.monday}"}]
    assert (appointment["start"], appointment["end"]) == (monday["start"], monday["end"])
    assert [p["actor"]["reference"] for p in appointment["participant"]] == [
        f"Patient/{patient}",
        f"Practitioner/{week.provider_id}",
        f"Practitioner/{week.other_provider_id}",
        f"Location/{week.department_id}",
    ]
    assert created.headers["ETag"] == 'W/"1"'
    assert re.fullmatch(
        rf"http://127\.0\.0\.1:{server.port}/fhir/Appointment/{appointment['id']}/_history/1",
        created.headers["Location"],
    ), created.headers["Location"]
    read = http.get(f"{server.base}/Appointment/{appointment['id']}", timeout=TIMEOUT_S)
    assert _ok(read) == appointment
    assert read.headers["ETag"] == 'W/"1"'

    monday = _slot(http, server, week.monday)
    assert capacity(monday) == (10, 1)
    assert places_left(monday) == 9
    assert monday["status"] == "free"
    assert stored_booked(database, week.monday) == 1

    # The same week with the schedule included and the bookings rev-included.
    with_bookings = _ok(
        http.get(
            f"{server.base}/Slot",
            params=[
                ("schedule", f"Schedule/{week.schedule_id}"),
                *WEEK,
                ("_include", "Slot:schedule"),
                ("_revinclude", "Appointment:slot"),
            ],
            timeout=TIMEOUT_S,
        )
    )
    assert [r["id"] for r in resources(with_bookings, "Schedule")] == [week.schedule_id]
    assert [r["id"] for r in resources(with_bookings, "Appointment")] == [appointment["id"]]

    # A stale If-Match is refused (412) and changes nothing.
    stale = http.put(
        f"{server.base}/Appointment/{appointment['id']}",
        json=cancelled(appointment),
        headers={"If-Match": 'W/"7"', "Content-Type": FHIR_JSON},
        timeout=TIMEOUT_S,
    )
    _refused(stale, 412, "version-mismatch")
    assert capacity(_slot(http, server, week.monday)) == (10, 1)

    # Cancel with If-Match: the place is freed.
    cancel = http.put(
        f"{server.base}/Appointment/{appointment['id']}",
        json=cancelled(appointment),
        headers={"If-Match": created.headers["ETag"], "Content-Type": FHIR_JSON},
        timeout=TIMEOUT_S,
    )
    gone = _ok(cancel)
    assert gone["status"] == "cancelled"
    assert cancel.headers["ETag"] == 'W/"2"'
    assert capacity(_slot(http, server, week.monday)) == (10, 0)
    assert _booked_total(http, server, week.monday) == 0

    # Book again, then reschedule to Wednesday: the place moves.
    again = http.post(
        f"{server.base}/Appointment", json=booking(patient, week.monday), timeout=TIMEOUT_S
    )
    rebooked = _ok(again, 201)
    assert rebooked["id"] != appointment["id"]
    assert capacity(_slot(http, server, week.monday)) == (10, 1)

    move = http.put(
        f"{server.base}/Appointment/{rebooked['id']}",
        json=moved(rebooked, wednesday),
        headers={"If-Match": again.headers["ETag"], "Content-Type": FHIR_JSON},
        timeout=TIMEOUT_S,
    )
    rescheduled = _ok(move)
    assert rescheduled["slot"] == [{"reference": f"Slot/{week.wednesday}"}]
    assert (rescheduled["start"], rescheduled["end"]) == (wednesday["start"], wednesday["end"])
    assert move.headers["ETag"] == 'W/"2"'
    assert capacity(_slot(http, server, week.monday)) == (10, 0)
    assert capacity(_slot(http, server, week.wednesday)) == (10, 1)
    assert _booked_total(http, server, week.monday) == 0
    assert _booked_total(http, server, week.wednesday) == 1
    for session_id in (week.monday, week.wednesday):
        assert stored_booked(database, session_id) == stored_places_held(database, session_id)


def test_a_full_session_and_a_second_booking_of_the_same_patient_are_refused(
    server: Server, http: requests.Session, database: Database
) -> None:
    week = _clinic_week(database)
    first, second, third = week.patients

    # The last place goes; the session turns busy; the next booking gets 409 session-full.
    last_place = http.post(
        f"{server.base}/Appointment", json=booking(first, week.thursday_small), timeout=TIMEOUT_S
    )
    _ok(last_place, 201)
    small = _slot(http, server, week.thursday_small)
    assert (capacity(small), places_left(small), small["status"]) == ((1, 1), 0, "busy")
    full = http.post(
        f"{server.base}/Appointment", json=booking(second, week.thursday_small), timeout=TIMEOUT_S
    )
    outcome = _refused(full, 409, "session-full")
    assert outcome["issue"][0]["expression"] == ["Appointment.slot"]

    # Moving someone into the full session is refused and the place stays where it was.
    wednesday = _slot(http, server, week.wednesday)
    placed = http.post(
        f"{server.base}/Appointment", json=booking(third, week.wednesday), timeout=TIMEOUT_S
    )
    appointment = _ok(placed, 201)
    refused_move = http.put(
        f"{server.base}/Appointment/{appointment['id']}",
        json=moved(appointment, small),
        headers={"If-Match": placed.headers["ETag"]},
        timeout=TIMEOUT_S,
    )
    _refused(refused_move, 409, "session-full")
    assert capacity(_slot(http, server, week.wednesday)) == (10, 1)
    assert capacity(_slot(http, server, week.thursday_small)) == (1, 1)
    unchanged = _ok(http.get(f"{server.base}/Appointment/{appointment['id']}", timeout=TIMEOUT_S))
    assert unchanged["slot"] == [{"reference": f"Slot/{week.wednesday}"}]
    assert unchanged["meta"]["versionId"] == "1"
    assert unchanged["start"] == wednesday["start"]

    # The same patient twice in one session: 409 already-booked, the count stays.
    twice = http.post(
        f"{server.base}/Appointment", json=booking(third, week.wednesday), timeout=TIMEOUT_S
    )
    _refused(twice, 409, "already-booked")
    assert capacity(_slot(http, server, week.wednesday)) == (10, 1)
    assert _booked_total(http, server, week.wednesday) == 1
    for session_id in (week.wednesday, week.thursday_small):
        assert stored_booked(database, session_id) == stored_places_held(database, session_id)

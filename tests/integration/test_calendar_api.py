"""The provider's week ("calendar tab") through the FHIR API."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.conftest import ADMIN_SCOPE
from tests.factories import MONDAY, make_clinic, make_patient, make_session
from tests.integration.helpers import (
    book,
    capacity_of,
    entries,
    fhir,
    ids,
    is_closed,
    places_left,
    post,
    slot,
)

DAY = dt.timedelta(days=1)
WEEK = "start=ge2027-01-04&start=lt2027-01-11"


@pytest.fixture
def week(database):
    """Rivera's week of 2027-01-04: Mon 3/10, Wed full, Fri closed; plus sessions just
    outside the week and another provider's session inside it."""

    def build(db):
        clinic = make_clinic(db)
        other = make_clinic(db)
        # Created out of order, so start order must come from the server.
        friday = make_session(db, clinic, start=MONDAY + 4 * DAY, closed=True, capacity=6)
        monday = make_session(db, clinic, capacity=10)
        wednesday = make_session(
            db, clinic, start=MONDAY + 2 * DAY, capacity=2, appointment_type="dbt-skills"
        )
        make_session(db, clinic, start=dt.datetime(2027, 1, 3, 23, 59, tzinfo=dt.UTC))
        make_session(db, clinic, start=dt.datetime(2027, 1, 11, 0, 0, tzinfo=dt.UTC))
        first_minute = make_session(db, clinic, start=dt.datetime(2027, 1, 4, tzinfo=dt.UTC))
        make_session(db, other, start=MONDAY)
        patients = [make_patient(db).id for _ in range(5)]
        return clinic, [first_minute.id, monday.id, wednesday.id, friday.id], patients

    clinic, sessions, patients = database.write(build)
    _, monday, wednesday, _ = sessions
    book(database, monday, *patients[:3])
    book(database, wednesday, *patients[3:5])
    return clinic, sessions


def test_a_providers_schedule_is_found_by_its_practitioner(client, mint, week):
    clinic, _ = week

    bundle = fhir(
        client.get(f"/fhir/Schedule?actor=Practitioner/{clinic.provider_id}", headers=mint()), 200
    )

    assert bundle["total"] == 1
    (schedule,) = entries(bundle)
    assert schedule["id"] == clinic.schedule_id
    actors = [a["reference"] for a in schedule["actor"]]
    assert actors == [f"Practitioner/{clinic.provider_id}", f"Location/{clinic.department_id}"]


def test_a_schedule_can_bring_its_sessions_along(client, mint, week):
    clinic, sessions = week

    bundle = fhir(
        client.get(
            f"/fhir/Schedule?_id={clinic.schedule_id}&_revinclude=Slot:schedule", headers=mint()
        ),
        200,
    )

    assert ids(bundle) == [clinic.schedule_id]
    included = entries(bundle, "include")
    assert {r["resourceType"] for r in included} == {"Slot"}
    assert set(sessions) <= {r["id"] for r in included}
    assert len(included) == 6  # the week's four and the two just outside it


def test_the_week_lists_exactly_that_weeks_sessions_in_start_order(client, mint, week):
    clinic, sessions = week

    bundle = fhir(
        client.get(f"/fhir/Slot?schedule=Schedule/{clinic.schedule_id}&{WEEK}", headers=mint()), 200
    )

    assert ids(bundle) == sessions
    assert bundle["total"] == 4
    starts = [s["start"] for s in entries(bundle)]
    assert starts == sorted(starts)


def test_each_session_of_the_week_shows_booked_of_capacity_status_type_and_closed_flag(
    client, mint, week
):
    clinic, _ = week

    bundle = fhir(
        client.get(f"/fhir/Slot?schedule=Schedule/{clinic.schedule_id}&{WEEK}", headers=mint()), 200
    )

    seen = [
        (
            capacity_of(s),
            places_left(s),
            s["status"],
            s["appointmentType"]["coding"][0]["code"],
            is_closed(s),
        )
        for s in entries(bundle)
    ]
    assert seen == [
        ("0/10", 10, "free", "group-therapy", False),
        ("3/10", 7, "free", "group-therapy", False),
        ("2/2", 0, "busy", "dbt-skills", False),
        ("0/6", 6, "free", "group-therapy", True),
    ]
    assert all(
        s["schedule"] == {"reference": f"Schedule/{clinic.schedule_id}"} for s in entries(bundle)
    )


def test_the_week_can_be_filtered_to_sessions_with_room(client, mint, week):
    clinic, sessions = week

    bundle = fhir(
        client.get(
            f"/fhir/Slot?schedule=Schedule/{clinic.schedule_id}&{WEEK}&status=free", headers=mint()
        ),
        200,
    )

    assert ids(bundle) == [sessions[0], sessions[1], sessions[3]]


def test_including_the_schedule_adds_it_once_as_an_include_entry(client, mint, week):
    clinic, sessions = week

    bundle = fhir(
        client.get(
            f"/fhir/Slot?schedule=Schedule/{clinic.schedule_id}&{WEEK}&_include=Slot:schedule",
            headers=mint(),
        ),
        200,
    )

    assert ids(bundle) == sessions
    assert [(r["resourceType"], r["id"]) for r in entries(bundle, "include")] == [
        ("Schedule", clinic.schedule_id)
    ]
    assert bundle["total"] == 4  # includes are not counted


def test_revincluding_appointments_adds_the_bookings_of_the_weeks_sessions(client, mint, week):
    clinic, sessions = week

    bundle = fhir(
        client.get(
            f"/fhir/Slot?schedule=Schedule/{clinic.schedule_id}&{WEEK}&_revinclude=Appointment:slot",
            headers=mint(),
        ),
        200,
    )

    included = entries(bundle, "include")
    assert {r["resourceType"] for r in included} == {"Appointment"}
    by_slot: dict[str, int] = {}
    for appointment in included:
        (ref,) = appointment["slot"]
        by_slot[ref["reference"]] = by_slot.get(ref["reference"], 0) + 1
    assert by_slot == {f"Slot/{sessions[1]}": 3, f"Slot/{sessions[2]}": 2}
    assert ids(bundle) == sessions


def test_a_sessions_slot_can_be_read_by_id_with_its_version(client, mint, week):
    _, sessions = week

    response = client.get(f"/fhir/Slot/{sessions[1]}", headers=mint())

    slot = fhir(response, 200)
    assert capacity_of(slot) == "3/10"
    assert response.headers["ETag"] == f'W/"{slot["meta"]["versionId"]}"'
    assert slot["meta"]["versionId"] == "4"  # created, then three bookings


def test_a_week_page_shows_each_slot_as_a_read_does(client, mint, week):
    """A page is read as plain rows, a read through the ORM: the two must not differ, for
    sessions made in the store or created through the API (the client's elements kept,
    a held one among them)."""
    clinic, _ = week
    admin = mint(ADMIN_SCOPE)
    specialty = [{"coding": [{"system": "http://snomed.info/sct", "code": "394913002"}]}]
    kept = slot(clinic.schedule_id, MONDAY + 3 * DAY, comment="Room 4", specialty=specialty)
    held = slot(clinic.schedule_id, MONDAY + 5 * DAY, status="busy")
    created = [fhir(post(client, "/fhir/Slot", body, admin), 201) for body in (kept, held)]

    page = entries(fhir(client.get(f"/fhir/Slot?{WEEK}&_count=100", headers=mint()), 200))

    assert {c["id"] for c in created} <= {r["id"] for r in page}
    for resource in page:
        read = fhir(client.get(f"/fhir/Slot/{resource['id']}", headers=mint()), 200)
        assert resource == read
    shown = {r["id"]: r for r in page}
    assert shown[created[0]["id"]]["comment"] == "Room 4"
    assert shown[created[0]["id"]]["specialty"] == specialty
    assert shown[created[1]["id"]]["status"] == "busy"

"""A schedule admin opens calendars (Schedule create) and holds sessions (a Slot created
`busy`); what the README promises about both, over the API."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.conftest import ADMIN_SCOPE, STAFF_SCOPE
from tests.factories import MONDAY, make_clinic, make_patient
from tests.integration.helpers import appointment, fhir, outcome, post, put, slot


@pytest.fixture
def clinic(database) -> Any:
    def work(db: Any) -> tuple[Any, str]:
        return make_clinic(db), make_patient(db).id

    return database.write(work)


def schedule(*actors: str, **elements: Any) -> dict[str, Any]:
    return {
        "resourceType": "Schedule",
        "actor": [{"reference": a} for a in actors],
        **elements,
    }


def test_a_department_calendar_is_created_and_takes_sessions(client, mint, clinic):
    place, patient = clinic
    admin = mint(ADMIN_SCOPE)
    body = schedule(f"Location/{place.department_id}", comment="Room 4 groups", active=True)
    created = fhir(post(client, "/fhir/Schedule", body, admin), 201)
    assert {k: v for k, v in created.items() if k not in ("id", "meta")} == {
        k: v for k, v in body.items() if k != "resourceType"
    } | {"resourceType": "Schedule"}
    found = fhir(
        client.get(f"/fhir/Schedule?actor=Location/{place.department_id}", headers=admin), 200
    )
    assert created["id"] in [e["resource"]["id"] for e in found["entry"]]
    session = fhir(post(client, "/fhir/Slot", slot(created["id"], MONDAY), admin), 201)
    booked = post(client, "/fhir/Appointment", appointment(session["id"], patient), admin)
    assert fhir(booked, 201)["status"] == "booked"


def test_a_provider_calendar_names_its_practitioner_and_department(client, mint, clinic):
    place, _ = clinic
    body = schedule(f"Practitioner/{place.other_provider_id}", f"Location/{place.department_id}")
    created = fhir(post(client, "/fhir/Schedule", body, mint(ADMIN_SCOPE)), 201)
    found = fhir(
        client.get(
            f"/fhir/Schedule?actor=Practitioner/{place.other_provider_id}",
            headers=mint(STAFF_SCOPE),
        ),
        200,
    )
    assert created["id"] in [e["resource"]["id"] for e in found["entry"]]


@pytest.mark.parametrize(
    ("actors", "status", "expression"),
    [
        ((), 422, "Schedule.actor"),
        (("Practitioner/{provider}",), 422, "Schedule.actor"),
        (("Location/{department}", "Location/{department}"), 422, "Schedule.actor"),
        (("Location/nowhere",), 404, "Schedule.actor"),
        (("Location/{department}", "Practitioner/nobody"), 404, "Schedule.actor"),
        (("Device/pump-1",), 422, "Schedule.actor[0]"),
    ],
)
def test_a_calendar_without_exactly_one_known_department_is_refused(
    client, mint, clinic, database, actors, status, expression
):
    place, _ = clinic
    named = [a.format(provider=place.provider_id, department=place.department_id) for a in actors]
    before = fhir(client.get("/fhir/Schedule?_summary=count", headers=mint(STAFF_SCOPE)), 200)
    response = post(client, "/fhir/Schedule", schedule(*named), mint(ADMIN_SCOPE))
    outcome(response, status, expression=expression)
    after = fhir(client.get("/fhir/Schedule?_summary=count", headers=mint(STAFF_SCOPE)), 200)
    assert after["total"] == before["total"]


def test_opening_a_calendar_needs_the_schedule_admin_permission(client, mint, clinic):
    place, _ = clinic
    body = schedule(f"Location/{place.department_id}")
    outcome(post(client, "/fhir/Schedule", body, mint(STAFF_SCOPE)), 403, code="forbidden")


def test_a_session_created_busy_is_held_until_an_update_frees_it(client, mint, clinic):
    place, patient = clinic
    admin = mint(ADMIN_SCOPE)
    held = fhir(
        post(client, "/fhir/Slot", slot(place.schedule_id, MONDAY, status="busy"), admin), 201
    )
    assert held["status"] == "busy"
    outcome(post(client, "/fhir/Appointment", appointment(held["id"], patient), admin), 409)
    freed = fhir(put(client, f"/fhir/Slot/{held['id']}", {**held, "status": "free"}, admin), 200)
    assert freed["status"] == "free"
    fhir(post(client, "/fhir/Appointment", appointment(held["id"], patient), admin), 201)


def test_busy_sent_back_for_an_open_session_does_not_hold_it(client, mint, clinic):
    # A read-modify-write of a session that happens to be full says `busy`; that is
    # our count speaking, not a hold, so a capacity change must not block the session.
    place, patient = clinic
    admin = mint(ADMIN_SCOPE)
    start = MONDAY + dt.timedelta(days=1)
    one = fhir(post(client, "/fhir/Slot", slot(place.schedule_id, start, capacity=1), admin), 201)
    fhir(post(client, "/fhir/Appointment", appointment(one["id"], patient), admin), 201)
    full = fhir(client.get(f"/fhir/Slot/{one['id']}", headers=admin), 200)
    assert full["status"] == "busy"
    grown = {**full, "extension": slot(place.schedule_id, start, capacity=2)["extension"]}
    changed = fhir(put(client, f"/fhir/Slot/{one['id']}", grown, admin), 200)
    assert changed["status"] == "free"

"""Booking into a session that has already ended (issue 11, "also" a).

A clinic records walk-ins after the group met, so such a booking is not refused; but a
client that picked the wrong week must hear about it. It succeeds with a warning coded
`session-ended`, the same way for a single booking, a rescheduling, a Bundle entry and
`$book`, as closed sessions do.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from tests.factories import MONDAY, make_clinic, make_patient, make_session
from tests.integration.helpers import (
    appointment,
    booked,
    fhir,
    monday_series_find,
    outcome,
    post,
    put,
)

#: A Monday 10:00 in New York (the test clinic's zone) that is over for good.
PAST_MONDAY = dt.datetime(2026, 11, 2, 15, 0, tzinfo=dt.UTC)
ENDED = "session-ended"


def _clinic(database) -> dict[str, Any]:
    def build(db):
        clinic = make_clinic(db)
        return {
            "clinic": clinic,
            "ended": make_session(db, clinic, start=PAST_MONDAY).id,
            "coming": make_session(db, clinic, start=MONDAY).id,
            "patient": make_patient(db).id,
        }

    return database.write(build)


def _warning_codes(resource: dict[str, Any]) -> list[str]:
    return [
        i["details"]["coding"][0]["code"] for i in resource["issue"] if i["severity"] == "warning"
    ]


def test_booking_a_session_that_has_ended_succeeds_with_a_warning(client, database, mint):
    w = _clinic(database)
    headers = mint() | {"Prefer": "return=OperationOutcome"}

    response = post(client, "/fhir/Appointment", appointment(w["ended"], w["patient"]), headers)

    issue = outcome(response, 201, code="business-rule", detail=ENDED, severity="warning")
    assert "ended" in issue["details"]["text"]
    assert response.headers["Warning"].startswith('299 fhir-facade "group session')
    assert booked(database, w["ended"]) == 1


def test_booking_a_session_still_to_come_carries_no_warning(client, database, mint):
    w = _clinic(database)

    response = post(client, "/fhir/Appointment", appointment(w["coming"], w["patient"]), mint())

    fhir(response, 201)
    assert "Warning" not in response.headers


def test_rescheduling_into_a_session_that_has_ended_warns_the_same_way(client, database, mint):
    w = _clinic(database)
    stored = fhir(
        post(client, "/fhir/Appointment", appointment(w["coming"], w["patient"]), mint()), 201
    )
    moved = stored | {"slot": [{"reference": f"Slot/{w['ended']}"}]}

    response = put(client, f"/fhir/Appointment/{stored['id']}", moved, mint())

    assert fhir(response, 200)["start"] == "2026-11-02T15:00:00Z"
    assert "ended" in response.headers["Warning"]


def test_a_bundle_booking_a_session_that_has_ended_carries_the_warning_in_its_entry(
    client, database, mint
):
    w = _clinic(database)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:5d1c1e8a-0000-4000-8000-000000000001",
                "resource": appointment(w["ended"], w["patient"]),
                "request": {"method": "POST", "url": "Appointment"},
            }
        ],
    }

    answer = fhir(post(client, "/fhir", bundle, mint()), 200)

    (entry,) = answer["entry"]
    assert entry["response"]["status"] == "201 Created"
    assert _warning_codes(entry["response"]["outcome"]) == [ENDED]
    assert booked(database, w["ended"]) == 1


def test_book_of_a_series_whose_session_has_ended_books_it_with_the_warning(client, database, mint):
    w = _clinic(database)
    find = monday_series_find(w["patient"], w["clinic"].provider_id, "2026-11-02", 1)
    preview = fhir(post(client, "/fhir/Appointment/$find", find, mint()), 200)
    (proposal,) = [e["resource"] for e in preview["entry"] if e["search"]["mode"] == "match"]
    assert proposal["slot"] == [{"reference": f"Slot/{w['ended']}"}]
    kept = {"resourceType": "Parameters", "parameter": [
        {"name": "appointment-resource", "resource": proposal}]}  # fmt: skip

    answer = fhir(post(client, "/fhir/Appointment/$book", kept, mint()), 200)

    (appointment_, outcome_) = [e["resource"] for e in answer["entry"]]
    assert appointment_["status"] == "booked"
    assert _warning_codes(outcome_) == [ENDED]
    assert booked(database, w["ended"]) == 1

"""The clinic's "book a patient for recurring group sessions" flow, over real HTTP.

Preview Mon/Wed/Fri for two weeks, remove two cards, book: the occurrences with a
session are booked (their Slots' counts move by exactly one), the others become
drafts. Resolve a draft with "Use this slot", then cancel this and all following.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import requests
from sqlalchemy.orm import Session

from store.db import Database
from tests.e2e.conftest import Server
from tests.e2e.fhir import FHIR_JSON, JSON, TIMEOUT_S, capacity, resources, stored_booked
from tests.factories import MONDAY, make_clinic, make_patient, make_session
from tests.validation import assert_valid

RECURRENCE_ID = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Appointment.recurrenceId"
ORIGINATING = (
    "http://hl7.org/fhir/5.0/StructureDefinition/extension-Appointment.originatingAppointment"
)
DAY = dt.timedelta(days=1)


@dataclass
class Clinic:
    patient: str
    provider: str
    sessions: list[str]  # Mon 4, Wed 6, Fri 8, Mon 11
    spare: str  # Thursday 14, for a draft


def _clinic(database: Database) -> Clinic:
    def build(db: Session) -> Clinic:
        clinic = make_clinic(db)
        sessions = [
            make_session(db, clinic, start=MONDAY + offset * DAY).id for offset in (0, 2, 4, 7)
        ]
        spare = make_session(db, clinic, start=MONDAY + 10 * DAY).id
        return Clinic(make_patient(db).id, clinic.provider_id, sessions, spare)

    return database.write(build)


def _ok(response: requests.Response, status: int = 200) -> JSON:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"].startswith(FHIR_JSON)
    body: JSON = response.json()
    assert_valid(body)
    return body


def _post(http: requests.Session, url: str, body: JSON, **headers: str) -> requests.Response:
    headers["Content-Type"] = FHIR_JSON
    return http.post(url, json=body, headers=headers, timeout=TIMEOUT_S)


def _booked_count(http: requests.Session, server: Server, slot_id: str) -> int:
    return capacity(_ok(http.get(f"{server.base}/Slot/{slot_id}", timeout=TIMEOUT_S)))[1]


def _recurrence_id(resource: JSON) -> int:
    (found,) = [e["valuePositiveInt"] for e in resource["extension"] if e["url"] == RECURRENCE_ID]
    value: int = found
    return value


def test_preview_book_resolve_and_cancel_a_recurring_series(
    server: Server, http: requests.Session, database: Database
) -> None:
    clinic = _clinic(database)
    every_slot = [*clinic.sessions, clinic.spare]
    counts = {s: _booked_count(http, server, s) for s in every_slot}
    find: dict[str, Any] = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueReference": {"reference": f"Patient/{clinic.patient}"}},
            {"name": "practitioner",
             "valueReference": {"reference": f"Practitioner/{clinic.provider}"}},
            {"name": "timing", "valueTiming": {"repeat": {
                "boundsPeriod": {"start": "2027-01-04"}, "count": 6, "period": 1,
                "periodUnit": "wk", "dayOfWeek": ["mon", "wed", "fri"],
                "timeOfDay": ["10:00:00"], "duration": 90, "durationUnit": "min",
            }}},
        ],
    }  # fmt: skip

    # Preview: six cards; Wed 13 and Fri 15 have no session (the "yellow icon").
    preview = _ok(_post(http, f"{server.base}/Appointment/$find", find))
    cards = [e["resource"] for e in preview["entry"] if e["search"]["mode"] == "match"]
    assert [_recurrence_id(c) for c in cards] == [1, 2, 3, 4, 5, 6]
    assert ["slot" in c for c in cards] == [True, True, True, True, False, False]
    assert {s: _booked_count(http, server, s) for s in every_slot} == counts  # nothing written

    # Remove two cards (Wed 6 and Fri 8), book the rest.
    kept = [c for c in cards if _recurrence_id(c) not in (2, 3)]
    book = {
        "resourceType": "Parameters",
        "parameter": [{"name": "appointment-resource", "resource": c} for c in kept],
    }
    stored = resources(_ok(_post(http, f"{server.base}/Appointment/$book", book)), "Appointment")
    assert [(_recurrence_id(a), a["status"]) for a in stored] == [
        (1, "booked"), (4, "booked"), (5, "proposed"), (6, "proposed"),
    ]  # fmt: skip
    expected = dict(counts)
    expected[clinic.sessions[0]] += 1
    expected[clinic.sessions[3]] += 1
    assert {s: _booked_count(http, server, s) for s in every_slot} == expected
    assert {s: stored_booked(database, s) for s in every_slot} == expected

    # The Quickview: the patient's drafts.
    drafts = _ok(
        http.get(
            f"{server.base}/Appointment",
            params={"patient": clinic.patient, "status": "proposed"},
            timeout=TIMEOUT_S,
        )
    )
    assert sorted(_recurrence_id(a) for a in resources(drafts)) == [5, 6]

    # "Use this slot": resolve the Wednesday 13 draft into Thursday 14's session.
    draft = stored[2]
    read = http.get(f"{server.base}/Appointment/{draft['id']}", timeout=TIMEOUT_S)
    etag = read.headers["ETag"]
    chosen = {**_ok(read), "status": "booked", "slot": [{"reference": f"Slot/{clinic.spare}"}]}
    resolved = _ok(
        http.put(
            f"{server.base}/Appointment/{draft['id']}",
            json=chosen,
            headers={"Content-Type": FHIR_JSON, "If-Match": etag},
            timeout=TIMEOUT_S,
        )
    )
    assert resolved["status"] == "booked"
    assert _recurrence_id(resolved) == 5
    assert any(e["url"] == ORIGINATING for e in resolved["extension"])
    expected[clinic.spare] += 1
    assert {s: _booked_count(http, server, s) for s in every_slot} == expected

    # Cancel "this and all following" from the Monday 11 occurrence.
    cancel = {"resourceType": "Parameters", "parameter": [
        {"name": "scope", "valueCode": "this-and-following"},
    ]}  # fmt: skip
    answer = _ok(_post(http, f"{server.base}/Appointment/{stored[1]['id']}/$cancel-series", cancel))
    cancelled = resources(answer, "Appointment")
    assert [(_recurrence_id(a), a["status"]) for a in cancelled] == [
        (4, "cancelled"), (5, "cancelled"), (6, "cancelled"),
    ]  # fmt: skip
    expected[clinic.sessions[3]] -= 1
    expected[clinic.spare] -= 1
    assert {s: _booked_count(http, server, s) for s in every_slot} == expected
    first = _ok(http.get(f"{server.base}/Appointment/{stored[0]['id']}", timeout=TIMEOUT_S))
    assert first["status"] == "booked"

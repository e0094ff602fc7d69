"""Small helpers for the integration tests: request bodies, response checks, store state."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import event, func, select
from werkzeug.test import TestResponse

from mappings.codes import (
    CS_APPOINTMENT_TYPE_LOCAL,
    EXT_CLOSED_SESSION,
    EXT_GROUP_CAPACITY,
    EXT_SLOT_CAPACITY_SMART,
)
from store.access import STAFF
from store.booking import BookingRequest, book_patient
from store.db import Database
from store.models import Booking, GroupSession
from tests.validation import assert_valid

FHIR_JSON = "application/fhir+json"
OUTCOME_SYSTEM = "http://fhir-facade.org/fhir/CodeSystem/outcome"
BOOKING_ID_SYSTEM = "urn:example:ehr:booking"


def fhir(response: TestResponse, status: int) -> dict[str, Any]:
    """The response's FHIR body, after checking its status, media type and validity."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert response.mimetype == FHIR_JSON, response.content_type
    body: dict[str, Any] = response.get_json(force=True)
    assert_valid(body)
    return body


def outcome(
    response: TestResponse,
    status: int,
    *,
    code: str | None = None,
    detail: str | None = None,
    expression: str | None = None,
    severity: str = "error",
) -> dict[str, Any]:
    """Check an OperationOutcome answer and return its first issue."""
    body = fhir(response, status)
    assert body["resourceType"] == "OperationOutcome", body
    issue: dict[str, Any] = body["issue"][0]
    assert issue["severity"] == severity, issue
    if code is not None:
        assert issue["code"] == code, issue
    if detail is not None:
        assert {"system": OUTCOME_SYSTEM, "code": detail} in issue["details"]["coding"], issue
    if expression is not None:
        assert issue.get("expression") == [expression], issue
    return issue


def post(client: FlaskClient, url: str, body: Any, headers: dict[str, str]) -> TestResponse:
    return client.post(url, data=json.dumps(body), content_type=FHIR_JSON, headers=headers)


def put(client: FlaskClient, url: str, body: Any, headers: dict[str, str]) -> TestResponse:
    return client.put(url, data=json.dumps(body), content_type=FHIR_JSON, headers=headers)


def appointment(
    slot_id: str,
    patient_id: str,
    *,
    practitioners: tuple[str, ...] = (),
    location: str | None = None,
    appointment_type: str | None = None,
    identifier: str | None = None,
    **elements: Any,
) -> dict[str, Any]:
    """A booking request as an EHR would send it."""
    participants = [{"actor": {"reference": f"Patient/{patient_id}"}, "status": "accepted"}]
    participants += [
        {"actor": {"reference": f"Practitioner/{p}"}, "status": "accepted"} for p in practitioners
    ]
    if location:
        participants.append({"actor": {"reference": f"Location/{location}"}, "status": "accepted"})
    body: dict[str, Any] = {"resourceType": "Appointment", "status": "booked"}
    if identifier:
        body["identifier"] = [{"system": BOOKING_ID_SYSTEM, "value": identifier}]
    if appointment_type:
        body["appointmentType"] = {
            "coding": [{"system": CS_APPOINTMENT_TYPE_LOCAL, "code": appointment_type}]
        }
    body["slot"] = [{"reference": f"Slot/{slot_id}"}]
    body["participant"] = participants
    body.update(elements)
    return body


def slot(
    schedule_id: str,
    start: dt.datetime,
    *,
    minutes: int = 90,
    capacity: int = 8,
    closed: bool | None = None,
    **elements: Any,
) -> dict[str, Any]:
    """A new group session as a schedule admin would send it."""
    extension: list[dict[str, Any]] = [
        {
            "url": EXT_GROUP_CAPACITY,
            "extension": [{"url": "capacity", "valueUnsignedInt": capacity}],
        }
    ]
    if closed is not None:
        extension.append({"url": EXT_CLOSED_SESSION, "valueBoolean": closed})
    body: dict[str, Any] = {
        "resourceType": "Slot",
        "extension": extension,
        "schedule": {"reference": f"Schedule/{schedule_id}"},
        "status": "free",
        "start": instant(start),
        "end": instant(start + dt.timedelta(minutes=minutes)),
    }
    body.update(elements)
    return body


def instant(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def capacity_of(slot_resource: dict[str, Any]) -> str:
    """The "booked/capacity" a scheduler sees, read from the group-capacity extension."""
    (group,) = [e for e in slot_resource["extension"] if e["url"] == EXT_GROUP_CAPACITY]
    parts = {p["url"]: p["valueUnsignedInt"] for p in group["extension"]}
    return f"{parts['booked']}/{parts['capacity']}"


def places_left(slot_resource: dict[str, Any]) -> int:
    (smart,) = [e for e in slot_resource["extension"] if e["url"] == EXT_SLOT_CAPACITY_SMART]
    value: int = smart["valueInteger"]
    return value


def is_closed(slot_resource: dict[str, Any]) -> bool:
    extensions = slot_resource["extension"]
    flags = [e["valueBoolean"] for e in extensions if e["url"] == EXT_CLOSED_SESSION]
    return flags == [True]


def book(database: Database, session_id: str, *patient_ids: str) -> list[str]:
    """Book patients straight through the store; returns the booking ids."""

    def work(db: Any) -> list[str]:
        return [
            book_patient(db, BookingRequest(patient_id=p, session_id=session_id), STAFF).booking.id
            for p in patient_ids
        ]

    return database.write(work)


@dataclass(frozen=True)
class State:
    """What a failed request must leave untouched."""

    booked: dict[str, int]
    appointments: int
    versions: dict[str, int]


def state(database: Database) -> State:
    with database.reading() as db:
        sessions = db.execute(select(GroupSession.id, GroupSession.booked)).all()
        bookings = db.execute(select(Booking.id, Booking.version)).all()
        count = db.scalar(select(func.count()).select_from(Booking)) or 0
    return State(
        booked={sid: booked for sid, booked in sessions},
        appointments=count,
        versions={bid: version for bid, version in bookings},
    )


def booked(database: Database, session_id: str) -> int:
    return state(database).booked[session_id]


def entries(bundle: dict[str, Any], mode: str = "match") -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


def ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    return [r["id"] for r in entries(bundle, mode)]


def monday_series_find(
    patient_id: str, practitioner_id: str, start: str, count: int, **repeat: Any
) -> dict[str, Any]:
    """`$find` Parameters for a weekly series on Mondays at 10:00 (90 minutes) from
    `start` (a date), `count` occurrences; `repeat` adds or overrides Timing.repeat."""
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueReference": {"reference": f"Patient/{patient_id}"}},
            {
                "name": "practitioner",
                "valueReference": {"reference": f"Practitioner/{practitioner_id}"},
            },
            {
                "name": "timing",
                "valueTiming": {
                    "repeat": {
                        "boundsPeriod": {"start": start},
                        "count": count,
                        "period": 1,
                        "periodUnit": "wk",
                        "dayOfWeek": ["mon"],
                        "timeOfDay": ["10:00:00"],
                        "duration": 90,
                        "durationUnit": "min",
                    }
                    | repeat
                },
            },
        ],
    }


@contextmanager
def recorded(engine: Any) -> Iterator[list[str]]:
    """The SQL `engine` runs while the block runs."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)

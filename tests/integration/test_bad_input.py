"""Bad requests: each gets the right status and an OperationOutcome, and changes nothing."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from mappings.codes import EXT_GROUP_CAPACITY
from tests.conftest import ADMIN_SCOPE
from tests.factories import MONDAY, make_clinic, make_patient, make_session
from tests.integration.helpers import FHIR_JSON, appointment, book, instant, outcome, slot, state

BOOKED_ONLY = {"url": "booked", "valueUnsignedInt": 0}


@dataclass
class Scene:
    schedule: str
    session: str
    patient: str
    other_patient: str
    booking: str
    mint: Callable[..., dict[str, str]]

    def new_booking(self, **elements: Any) -> dict[str, Any]:
        return appointment(self.session, self.other_patient, **elements)

    def existing(self, **changes: Any) -> dict[str, Any]:
        """The stored booking as a client would PUT it back."""
        body = appointment(self.session, self.patient, id=self.booking)
        body.update(changes)
        return body


@pytest.fixture
def scene(database, mint) -> Scene:
    def build(db):
        clinic = make_clinic(db)
        session = make_session(db, clinic, capacity=5)
        patients = [make_patient(db).id for _ in range(3)]
        return clinic.schedule_id, session.id, patients

    schedule, session, (patient, other, third) = database.write(build)
    booking, _ = book(database, session, patient, third)
    return Scene(schedule, session, patient, other, booking, mint)


def as_json(body: Any, **headers: str) -> dict[str, Any]:
    return {"data": json.dumps(body), "content_type": FHIR_JSON, "headers": headers}


@dataclass(frozen=True)
class Bad:
    name: str
    method: str
    url: str  # may name {session} or {booking}
    request: Callable[[Scene], dict[str, Any]]  # body, content type and headers
    status: int
    code: str
    expression: str | None = None
    auth: str | None = "user/*.cruds"  # None: send no Authorization header
    detail: str | None = None  # our outcome code in issue.details


BAD = [
    Bad(
        "malformed JSON",
        "POST",
        "/fhir/Appointment",
        lambda s: {"data": '{"resourceType": "Appointment", "status": ', "content_type": FHIR_JSON},
        400,
        "structure",
    ),
    Bad(
        "a JSON array instead of a resource",
        "POST",
        "/fhir/Appointment",
        lambda s: as_json([s.new_booking()]),
        400,
        "structure",
    ),
    Bad(
        "wrong resourceType",
        "POST",
        "/fhir/Appointment",
        lambda s: as_json(s.new_booking(resourceType="Patient")),
        400,
        "structure",
        "resourceType",
    ),
    Bad(
        "unknown element",
        "POST",
        "/fhir/Appointment",
        lambda s: as_json(s.new_booking(colour="blue")),
        400,
        "structure",
        "Appointment.colour",
    ),
    Bad(
        "unknown element inside a participant",
        "POST",
        "/fhir/Appointment",
        lambda s: as_json(
            s.new_booking(
                participant=[
                    {
                        "actor": {"reference": f"Patient/{s.other_patient}"},
                        "status": "accepted",
                        "role": "patient",
                    }
                ]
            )
        ),
        400,
        "structure",
    ),
    Bad(
        "bad date",
        "POST",
        "/fhir/Appointment",
        lambda s: as_json(s.new_booking(start="next tuesday")),
        400,
        "structure",
        "Appointment.start",
    ),
    Bad(
        "end before start",
        "POST",
        "/fhir/Appointment",
        lambda s: as_json(
            s.new_booking(start=instant(MONDAY), end=instant(MONDAY - dt.timedelta(hours=1)))
        ),
        422,
        "business-rule",
        "Appointment.end",
    ),
    Bad(
        "start differing from the slot's",
        "POST",
        "/fhir/Appointment",
        lambda s: as_json(
            s.new_booking(
                start=instant(MONDAY + dt.timedelta(hours=1)),
                end=instant(MONDAY + dt.timedelta(hours=2)),
            )
        ),
        422,
        "business-rule",
        "Appointment.start",
    ),
    Bad(
        "slot that does not exist",
        "POST",
        "/fhir/Appointment",
        lambda s: as_json(appointment("no-such-slot", s.other_patient)),
        404,
        "not-found",
        "Appointment.slot",
    ),
    Bad(
        "patient that does not exist",
        "POST",
        "/fhir/Appointment",
        lambda s: as_json(appointment(s.session, "no-such-patient")),
        404,
        "not-found",
        "Appointment.participant",
    ),
    Bad(
        "practitioner that does not exist",
        "POST",
        "/fhir/Appointment",
        lambda s: as_json(s.new_booking(practitioners=("no-such-practitioner",))),
        404,
        "not-found",
        "Appointment.participant",
    ),
    Bad(
        "no patient participant",
        "POST",
        "/fhir/Appointment",
        lambda s: as_json(s.new_booking(participant=[])),
        422,
        "processing",
        "Appointment.participant",
    ),
    Bad(
        "two slots",
        "POST",
        "/fhir/Appointment",
        lambda s: as_json(
            s.new_booking(
                slot=[{"reference": f"Slot/{s.session}"}, {"reference": f"Slot/{s.session}"}]
            )
        ),
        422,
        "processing",
        "Appointment.slot",
    ),
    Bad(
        "unknown appointment type",
        "POST",
        "/fhir/Appointment",
        lambda s: as_json(s.new_booking(appointment_type="yoga")),
        422,
        "processing",
        "Appointment.appointmentType",
    ),
    Bad(
        "a new booking that is only proposed",
        "POST",
        "/fhir/Appointment",
        lambda s: as_json(s.new_booking(status="proposed")),
        422,
        "business-rule",
        "Appointment.status",
    ),
    Bad(
        "missing token",
        "POST",
        "/fhir/Appointment",
        lambda s: as_json(s.new_booking()),
        401,
        "login",
        auth=None,
    ),
    Bad(
        "a token that is not ours",
        "POST",
        "/fhir/Appointment",
        lambda s: as_json(s.new_booking(), Authorization="Bearer not.a.token"),
        401,
        "login",
        auth=None,
    ),
    Bad(
        "a scope for slots only",
        "POST",
        "/fhir/Appointment",
        lambda s: as_json(s.new_booking()),
        403,
        "forbidden",
        auth="user/Slot.rs",
    ),
    Bad(
        "a read-only appointment scope",
        "POST",
        "/fhir/Appointment",
        lambda s: as_json(s.new_booking()),
        403,
        "forbidden",
        auth="user/Appointment.rs user/Patient.rs",
    ),
    Bad(
        "a patient/ scope without launch context",
        "POST",
        "/fhir/Appointment",
        lambda s: as_json(s.new_booking()),
        403,
        "forbidden",
        auth="patient/*.cruds",
    ),
    Bad(
        "text/plain body",
        "POST",
        "/fhir/Appointment",
        lambda s: {"data": json.dumps(s.new_booking()), "content_type": "text/plain"},
        415,
        "not-supported",
    ),
    Bad(
        "XML wanted",
        "POST",
        "/fhir/Appointment",
        lambda s: as_json(s.new_booking(), Accept="application/fhir+xml"),
        406,
        "not-supported",
    ),
    Bad(
        "body too large",
        "POST",
        "/fhir/Appointment",
        lambda s: as_json(s.new_booking(comment="x" * 1_100_000)),
        413,
        "too-long",
    ),
    Bad(
        "stale If-Match on cancel",
        "PUT",
        "/fhir/Appointment/{booking}",
        lambda s: as_json(s.existing(status="cancelled"), **{"If-Match": 'W/"9"'}),
        412,
        "conflict",
        "If-Match",
    ),
    Bad(
        "If-Match that is not an ETag",
        "PUT",
        "/fhir/Appointment/{booking}",
        lambda s: as_json(s.existing(status="cancelled"), **{"If-Match": "version one"}),
        400,
        "invalid",
        "If-Match",
    ),
    Bad(
        "body id differing from the URL id",
        "PUT",
        "/fhir/Appointment/{booking}",
        lambda s: as_json(s.existing(status="cancelled", id="someone-else")),
        400,
        "invalid",
        "Appointment.id",
    ),
    Bad(
        "body without id",
        "PUT",
        "/fhir/Appointment/{booking}",
        lambda s: as_json({k: v for k, v in s.existing(status="cancelled").items() if k != "id"}),
        400,
        "invalid",
        "Appointment.id",
    ),
    Bad(
        "update of an appointment that does not exist",
        "PUT",
        "/fhir/Appointment/no-such-appointment",
        lambda s: as_json(s.existing(status="cancelled", id="no-such-appointment")),
        404,
        "not-found",
    ),
    Bad(
        "moving an appointment to another patient",
        "PUT",
        "/fhir/Appointment/{booking}",
        lambda s: as_json(appointment(s.session, s.other_patient, id=s.booking)),
        422,
        "business-rule",
        "Appointment.participant",
    ),
    Bad(
        "update with a read-only scope",
        "PUT",
        "/fhir/Appointment/{booking}",
        lambda s: as_json(s.existing(status="cancelled")),
        403,
        "forbidden",
        auth="user/Appointment.rs",
    ),
    Bad(
        "a session ending before it starts",
        "POST",
        "/fhir/Slot",
        lambda s: as_json(slot(s.schedule, MONDAY, minutes=-30)),
        422,
        "business-rule",
        "Slot.end",
        auth=ADMIN_SCOPE,
    ),
    Bad(
        "a session whose capacity extension lacks the capacity",
        "POST",
        "/fhir/Slot",
        lambda s: as_json(
            slot(s.schedule, MONDAY)
            | {"extension": [{"url": EXT_GROUP_CAPACITY, "extension": [BOOKED_ONLY]}]}
        ),
        422,
        "processing",
        "Slot.extension[0]",
        auth=ADMIN_SCOPE,
    ),
    Bad(
        "a session in a schedule that does not exist",
        "POST",
        "/fhir/Slot",
        lambda s: as_json(slot("no-such-schedule", MONDAY)),
        404,
        "not-found",
        "Slot.schedule",
        auth=ADMIN_SCOPE,
    ),
    Bad(
        "a session with capacity below its bookings",
        "PUT",
        "/fhir/Slot/{session}",
        lambda s: as_json(slot(s.schedule, MONDAY, capacity=1, id=s.session)),
        422,
        "business-rule",
        "Slot.extension",
        auth=ADMIN_SCOPE,
        detail="capacity-below-booked",
    ),
    Bad(
        "a session with no capacity at all",
        "PUT",
        "/fhir/Slot/{session}",
        lambda s: as_json(slot(s.schedule, MONDAY, capacity=0, id=s.session)),
        422,
        "business-rule",
        "Slot.extension",
        auth=ADMIN_SCOPE,
    ),
    # -- hostile input (issue 11); tests/integration/test_hostile_input.py generates more
    Bad(
        "a NUL character in a JSON string",
        "POST",
        "/fhir/Appointment",
        lambda s: as_json(s.new_booking(comment="a\u0000b")),
        400,
        "structure",
        "Appointment.comment",
    ),
    Bad(
        "a unit separator (U+001F) in a JSON string",
        "POST",
        "/fhir/Appointment",
        lambda s: as_json(s.new_booking(comment="a\u001fb")),
        400,
        "structure",
        "Appointment.comment",
    ),
    Bad(
        "an identifier value longer than its column",
        "POST",
        "/fhir/Appointment",
        lambda s: as_json(s.new_booking(identifier="v" * 500)),
        400,
        "too-long",
        "Appointment.identifier[0].value",
    ),
    Bad(
        "an identifier system longer than its column",
        "POST",
        "/fhir/Appointment",
        lambda s: as_json(
            {**s.new_booking(), "identifier": [{"system": "urn:" + "s" * 1000, "value": "v"}]}
        ),
        400,
        "too-long",
        "Appointment.identifier[0].system",
    ),
    Bad(
        "a family name of 5,000 characters",
        "POST",
        "/fhir/Patient",
        lambda s: as_json({"resourceType": "Patient", "name": [{"family": "F" * 5000}]}),
        400,
        "too-long",
        "Patient.name[0].family",
    ),
    Bad(
        "a phone number of 300 characters",
        "POST",
        "/fhir/Patient",
        lambda s: as_json(
            {
                "resourceType": "Patient",
                "name": [{"family": "Okafor"}],
                "telecom": [{"system": "phone", "value": "5" * 300}],
            }
        ),
        400,
        "too-long",
        "Patient.telecom[0].value",
    ),
    Bad(
        "a NUL character in a path id",
        "GET",
        "/fhir/Appointment/a%00b",
        lambda s: {},
        400,
        "invalid",
        "Appointment.id",
    ),
    Bad(
        "a NUL character in a search value",
        "GET",
        "/fhir/Patient?family=a%00b",
        lambda s: {},
        400,
        "invalid",
        "family",
    ),
    Bad(
        "a NUL character in If-None-Exist",
        "POST",
        "/fhir/Appointment",
        lambda s: as_json(s.new_booking(), **{"If-None-Exist": "identifier=a\x00b"}),
        400,
        "invalid",
        "identifier",
    ),
    Bad(
        "a search from the calendar's last second on",
        "GET",
        "/fhir/Slot?start=ge9999-12-31T23:59:59Z",
        lambda s: {},
        400,
        "invalid",
        "start",
    ),
    Bad(
        "a search after the calendar's last day",
        "GET",
        "/fhir/Slot?start=gt9999-12-31",
        lambda s: {},
        400,
        "invalid",
        "start",
    ),
    Bad(
        "a search from before the calendar's first instant",
        "GET",
        "/fhir/Slot?start=0001-01-01T00:00:00%2B14:00",
        lambda s: {},
        400,
        "invalid",
        "start",
    ),
    Bad(
        "a booking starting before the calendar's first instant",
        "POST",
        "/fhir/Appointment",
        lambda s: as_json(
            s.new_booking(start="0001-01-01T00:00:00+14:00", end="0001-01-01T05:00:00Z")
        ),
        400,
        "structure",
        "Appointment.start",
    ),
    Bad(
        "1,500 alternatives for one parameter",
        "GET",
        "/fhir/Patient?family=" + ",".join(["a"] * 1500),
        lambda s: {},
        400,
        "too-costly",
        "family",
    ),
    Bad(
        "a duplicate resourceType key",
        "POST",
        "/fhir/Appointment",
        lambda s: {
            "data": '{"resourceType": "Patient", ' + json.dumps(s.new_booking())[1:],
            "content_type": FHIR_JSON,
        },
        400,
        "structure",
    ),
    Bad(
        "a duplicate key deep inside",
        "POST",
        "/fhir/Appointment",
        lambda s: {
            "data": json.dumps(s.new_booking()).replace(
                '"status": "accepted"', '"status": "accepted", "status": "declined"'
            ),
            "content_type": FHIR_JSON,
        },
        400,
        "structure",
    ),
    Bad(
        "a duplicate key deep inside compact JSON",
        "POST",
        "/fhir/Appointment",
        lambda s: {
            "data": json.dumps(s.new_booking(), separators=(",", ":")).replace(
                '"status":"accepted"', '"status":"accepted","status":"declined"'
            ),
            "content_type": FHIR_JSON,
        },
        400,
        "structure",
    ),
    Bad(
        "NaN in JSON",
        "POST",
        "/fhir/Appointment",
        lambda s: {
            "data": json.dumps(s.new_booking(minutesDuration=float("nan"))),
            "content_type": FHIR_JSON,
        },
        400,
        "structure",
    ),
    Bad(
        "trailing data after the document",
        "POST",
        "/fhir/Appointment",
        lambda s: {"data": json.dumps(s.new_booking()) + " {}", "content_type": FHIR_JSON},
        400,
        "structure",
    ),
    Bad(
        "a lone surrogate in an escape",
        "POST",
        "/fhir/Appointment",
        lambda s: as_json(s.new_booking(comment="\ud800")),
        400,
        "structure",
    ),
    Bad(
        "JSON nested 200 levels deep",
        "POST",
        "/fhir/Appointment",
        lambda s: {
            "data": json.dumps(s.new_booking(extension=[]))[:-1].replace(
                '"extension": []', '"extension": ' + "[" * 200 + "]" * 200
            ),
            "content_type": FHIR_JSON,
        },
        400,
        "structure",
    ),
    Bad(
        "an unknown resource type",
        "GET",
        "/fhir/Encounter",
        lambda s: {},
        404,
        "not-supported",
    ),
    Bad(
        "an unknown path",
        "GET",
        "/fhir/Appointment/x/y/z",
        lambda s: {},
        404,
        "not-found",
    ),
    Bad(
        "a DELETE, which no resource serves",
        "DELETE",
        "/fhir/Appointment/{booking}",
        lambda s: {},
        405,
        "not-supported",
    ),
    Bad(
        "a read of an unknown id",
        "GET",
        "/fhir/Appointment/never-booked",
        lambda s: {},
        404,
        "not-found",
        "Appointment.id",
    ),
    Bad(
        "a URL of 9,000 characters",
        "GET",
        "/fhir/Slot?_id=" + "a" * 9000,
        lambda s: {},
        414,
        "too-long",
    ),
    Bad(
        "headers of 40,000 bytes",
        "GET",
        "/fhir/Slot",
        lambda s: {"headers": {"X-Padding": "p" * 40_000}},
        431,
        "too-long",
    ),
    Bad(
        "a session changed without the schedule admin permission",
        "PUT",
        "/fhir/Slot/{session}",
        lambda s: as_json(slot(s.schedule, MONDAY, capacity=9, id=s.session)),
        403,
        "forbidden",
    ),
]


@pytest.mark.parametrize("bad", BAD, ids=[b.name for b in BAD])
def test_a_bad_request_gets_its_status_and_an_outcome_and_changes_nothing(
    client, database, scene, bad
):
    before = state(database)
    request = bad.request(scene)
    headers = dict(request.pop("headers", {}))
    if bad.auth is not None:
        headers |= scene.mint(bad.auth)
    url = bad.url.format(session=scene.session, booking=scene.booking)

    response = client.open(url, method=bad.method, headers=headers, **request)

    outcome(response, bad.status, code=bad.code, expression=bad.expression, detail=bad.detail)
    assert state(database) == before
    assert before.booked[scene.session] == 2


def test_a_missing_token_is_answered_with_a_bearer_challenge(client, database, scene):
    response = client.get(f"/fhir/Slot/{scene.session}")

    outcome(response, 401, code="login")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_full_session_refusal_names_the_slot_and_changes_nothing(client, database, scene):
    def fill(db):
        return [make_patient(db).id for _ in range(3)]

    book(database, scene.session, *database.write(fill))  # 2 + 3 of 5
    before = state(database)

    response = client.post(
        "/fhir/Appointment",
        data=json.dumps(scene.new_booking()),
        content_type=FHIR_JSON,
        headers=scene.mint(),
    )

    issue = outcome(response, 409, code="conflict", expression="Appointment.slot")
    assert issue["details"]["coding"][0]["code"] == "session-full"
    assert state(database) == before


@pytest.mark.parametrize("separator", ["\u00a0", "\u3000", "\u001f"])
def test_a_token_whose_scopes_are_split_by_odd_whitespace_is_refused(
    client, database, scene, separator
):
    headers = scene.mint(f"user/*.cruds x{separator}__patient.blocked")

    response = client.get(f"/fhir/Appointment/{scene.booking}", headers=headers)

    issue = outcome(response, 401, code="login")
    assert "RFC 6749" in issue["details"]["text"]

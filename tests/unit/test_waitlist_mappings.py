"""Waitlist entries, offers and a schedule's waitlist policy, as FHIR says them."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from mappings.appointment import appointment_from_fhir, appointment_to_fhir
from mappings.codes import EXT_OFFER_EXPIRES, EXT_WAITLIST_PASSED_OVER, EXT_WAITLIST_POLICY
from mappings.directory import schedule_from_fhir
from mappings.errors import Unprocessable
from store.models import BookingStatus
from store.promotion import Policy
from tests.unit.builders import MONDAY, actor, appointment_body, booking
from tests.validation import assert_valid

UCUM = "http://unitsofmeasure.org"


def schedule_body(*parts: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Schedule",
        "extension": [{"url": EXT_WAITLIST_POLICY, "extension": list(parts)}],
        "actor": [{"reference": "Location/dept-1"}],
    }


def duration(value: float, code: str) -> dict[str, Any]:
    return {
        "url": "offerDuration",
        "valueDuration": {"value": value, "unit": code, "system": UCUM, "code": code},
    }


def test_a_waitlist_entry_is_a_valid_appointment_on_its_full_sessions_slot():
    entry = appointment_to_fhir(booking(status="waitlist", priority=2))
    assert_valid(entry)
    assert entry["status"] == "waitlist"
    assert entry["priority"] == 2
    assert entry["slot"] == [{"reference": "Slot/session-1"}]
    assert entry["participant"][0] == actor("Patient/pat-1")


def test_an_offer_waits_on_the_patient_and_says_when_it_lapses():
    expires = MONDAY - dt.timedelta(days=1)
    offer = appointment_to_fhir(booking(status="pending", offer_expires=expires))
    assert_valid(offer)
    assert offer["participant"][0] == actor("Patient/pat-1", "needs-action")
    assert {"url": EXT_OFFER_EXPIRES, "valueInstant": "2027-01-03T15:00:00Z"} in offer["extension"]


def test_a_passed_over_entry_says_why():
    entry = appointment_to_fhir(booking(status="waitlist", waitlist_note="insurance: lapsed"))
    assert_valid(entry)
    assert entry["extension"] == [
        {"url": EXT_WAITLIST_PASSED_OVER, "valueString": "insurance: lapsed"}
    ]


def test_joining_reads_status_waitlist_and_priority_zero_as_none():
    request = appointment_from_fhir(appointment_body(status="waitlist", priority=0))
    assert (request.status, request.priority) == (BookingStatus.WAITLIST, None)
    assert appointment_from_fhir(appointment_body(priority=1)).priority == 1


def test_a_priority_past_nine_is_refused():
    with pytest.raises(Unprocessable) as refused:
        appointment_from_fhir(appointment_body(status="waitlist", priority=10))
    assert refused.value.expression == "Appointment.priority"


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        ([{"url": "mode", "valueCode": "book"}], (Policy.BOOK, None)),
        ([{"url": "mode", "valueCode": "offer"}], (Policy.OFFER, None)),
        ([{"url": "mode", "valueCode": "offer"}, duration(90, "min")], (Policy.OFFER, 5400)),
        ([{"url": "mode", "valueCode": "offer"}, duration(2, "h")], (Policy.OFFER, 7200)),
    ],
)
def test_a_schedule_reads_its_waitlist_policy(parts, expected):
    spec = schedule_from_fhir(schedule_body(*parts))
    assert (spec.waitlist_policy, spec.offer_seconds) == expected


def test_a_schedule_without_a_policy_books_the_first_waiting():
    body = schedule_body()
    body.pop("extension")
    assert schedule_from_fhir(body).waitlist_policy == Policy.BOOK


@pytest.mark.parametrize(
    "parts",
    [
        [],
        [{"url": "mode", "valueCode": "lottery"}],
        [{"url": "mode", "valueCode": "offer"}, duration(2, "wk")],
        [{"url": "mode", "valueCode": "offer"}, duration(0, "min")],
    ],
)
def test_a_policy_without_a_known_mode_or_with_a_bad_duration_is_refused(parts):
    with pytest.raises(Unprocessable) as refused:
        schedule_from_fhir(schedule_body(*parts))
    assert refused.value.expression == "Schedule.extension[0]"

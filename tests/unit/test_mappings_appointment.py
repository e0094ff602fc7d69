"""Appointment <-> booking: what a booking looks like, and which requests are refused."""

from __future__ import annotations

import datetime as dt

import pytest

from mappings.appointment import appointment_from_fhir, appointment_to_fhir
from mappings.errors import InvalidResource, Unprocessable
from store.errors import RuleViolation
from store.models import BookingStatus
from tests.unit.builders import MONDAY, actor, appointment_body, booking
from tests.validation import assert_valid

# -- output ---------------------------------------------------------------------------


def test_a_booking_maps_to_a_valid_booked_appointment_on_its_slot():
    appointment = appointment_to_fhir(booking())
    assert_valid(appointment)
    assert appointment["status"] == "booked"
    assert appointment["slot"] == [{"reference": "Slot/session-1"}]
    assert appointment["start"] == "2027-01-04T15:00:00Z"
    assert appointment["end"] == "2027-01-04T16:30:00Z"
    assert appointment["created"] == "2026-12-01T09:30:00Z"


def test_every_participant_of_a_booking_has_accepted():
    appointment = appointment_to_fhir(booking(providers=("prac-1", "prac-2")))
    assert appointment["participant"] == [
        actor("Patient/pat-1"),
        actor("Practitioner/prac-1"),
        actor("Practitioner/prac-2"),
        actor("Location/dept-1"),
    ]


def test_a_booking_codes_its_appointment_type():
    coding = appointment_to_fhir(booking())["appointmentType"]["coding"][0]
    assert coding["code"] == "group-therapy"
    assert coding["system"] == "http://fhir-facade.org/fhir/CodeSystem/group-appointment-type"


def test_business_identifiers_are_rendered_with_and_without_system():
    appointment = appointment_to_fhir(
        booking(identifiers=(("urn:ehr:appt", "A-1"), ("", "local-7")))
    )
    assert_valid(appointment)
    assert appointment["identifier"] == [
        {"system": "urn:ehr:appt", "value": "A-1"},
        {"value": "local-7"},
    ]


def test_a_cancelled_booking_maps_to_a_cancelled_appointment_with_its_reason():
    appointment = appointment_to_fhir(
        booking(status="cancelled", cancellation_reason="Patient request")
    )
    assert_valid(appointment)
    assert appointment["status"] == "cancelled"
    assert appointment["cancelationReason"] == {"text": "Patient request"}


def test_a_booking_without_department_or_providers_lists_only_the_patient():
    appointment = appointment_to_fhir(booking(providers=(), department_id=None, comment=None))
    assert_valid(appointment)
    assert appointment["participant"] == [actor("Patient/pat-1")]
    assert "comment" not in appointment


def test_a_draft_has_no_slot_and_its_patient_still_needs_to_act():
    draft = appointment_to_fhir(
        booking(status="proposed", session_id=None, start=None, end=None, providers=())
    )
    assert_valid(draft)
    assert "slot" not in draft
    assert draft["participant"][0] == actor("Patient/pat-1", "needs-action")


def test_a_draft_carries_its_intended_time_as_requested_period():
    # DESIGN §4: a draft is status=proposed, no slot, requestedPeriod = the intended time.
    draft = appointment_to_fhir(booking(status="proposed", session_id=None, providers=()))
    assert_valid(draft)
    assert draft["requestedPeriod"] == [
        {"start": "2027-01-04T15:00:00Z", "end": "2027-01-04T16:30:00Z"}
    ]
    assert "start" not in draft
    assert "end" not in draft


# -- input ----------------------------------------------------------------------------


def test_a_minimal_booking_request_reads_patient_and_slot():
    request = appointment_from_fhir(appointment_body())
    assert request.patient_id == "pat-1"
    assert request.session_id == "session-1"
    assert request.status is BookingStatus.BOOKED
    assert (request.provider_ids, request.department_id) == ((), None)
    assert (request.start, request.end, request.appointment_type) == (None, None, None)


def test_a_full_booking_request_reads_every_element():
    body = appointment_body(
        identifier=[{"system": "urn:ehr:appt", "value": "A-1"}],
        appointmentType={
            "coding": [{"system": "http://x/unknown", "code": "zz"}, {"code": "dbt-skills"}]
        },
        start="2027-01-04T10:00:00-05:00",
        end="2027-01-04T16:30:00Z",
        comment="first visit",
        participant=[
            actor("Patient/pat-1"),
            actor("Practitioner/prac-1"),
            actor("http://example.org/fhir/Practitioner/prac-2"),
            actor("Location/dept-1"),
        ],
    )
    request = appointment_from_fhir(body)
    assert request.provider_ids == ("prac-1", "prac-2")
    assert request.department_id == "dept-1"
    assert request.appointment_type == "dbt-skills"
    assert request.start == MONDAY
    assert request.end == MONDAY + dt.timedelta(minutes=90)
    assert request.comment == "first visit"
    assert request.identifiers == (("urn:ehr:appt", "A-1"),)


def test_a_cancellation_reads_its_reason_from_text_or_first_coding():
    by_text = appointment_from_fhir(
        appointment_body(status="cancelled", cancelationReason={"text": "Sick"})
    )
    by_code = appointment_from_fhir(
        appointment_body(status="cancelled", cancelationReason={"coding": [{"code": "pat"}]})
    )
    assert by_text.status is BookingStatus.CANCELLED
    assert (by_text.cancellation_reason, by_code.cancellation_reason) == ("Sick", "pat")


def test_a_booking_we_rendered_reads_back_as_the_same_request():
    request = appointment_from_fhir(appointment_to_fhir(booking()))
    assert (request.patient_id, request.session_id) == ("pat-1", "session-1")
    assert request.provider_ids == ("prac-1",)
    assert request.department_id == "dept-1"
    assert request.start == MONDAY


def _refusal(error: type[Exception], body: object) -> Exception:
    with pytest.raises(error) as caught:
        appointment_from_fhir(body)
    return caught.value


def test_a_body_that_is_not_an_object_is_invalid():
    assert _refusal(InvalidResource, []).expression == "Appointment"


def test_a_body_of_another_resource_type_is_invalid():
    body = appointment_body(resourceType="Slot")
    assert _refusal(InvalidResource, body).expression == "resourceType"


def test_an_unknown_element_is_invalid_and_named():
    body = appointment_body(seat=3)
    assert _refusal(InvalidResource, body).expression == "Appointment.seat"


def test_an_unknown_element_deep_inside_is_named_by_its_path():
    body = appointment_body(participant=[{**actor("Patient/pat-1"), "bogus": 1}])
    assert _refusal(InvalidResource, body).expression == "Appointment.participant[0].bogus"


def test_a_start_without_time_zone_is_invalid():
    body = appointment_body(start="2027-01-04T15:00:00", end="2027-01-04T16:30:00Z")
    assert _refusal(InvalidResource, body).expression == "Appointment.start"


def test_a_request_without_a_patient_participant_is_unprocessable():
    body = appointment_body(participant=[actor("Practitioner/prac-1")])
    assert _refusal(Unprocessable, body).expression == "Appointment.participant"


def test_a_request_for_two_patients_is_unprocessable():
    body = appointment_body(participant=[actor("Patient/pat-1"), actor("Patient/pat-2")])
    assert _refusal(Unprocessable, body).expression == "Appointment.participant[1].actor"


def test_a_request_with_two_departments_is_unprocessable():
    body = appointment_body(
        participant=[actor("Patient/pat-1"), actor("Location/a"), actor("Location/b")]
    )
    assert _refusal(Unprocessable, body).expression == "Appointment.participant[2].actor"


def test_a_participant_of_an_unsupported_type_is_unprocessable():
    body = appointment_body(participant=[actor("Patient/pat-1"), actor("Group/g-1")])
    assert _refusal(Unprocessable, body).expression == "Appointment.participant[1].actor"


def test_a_participant_without_actor_is_unprocessable():
    interpreter = {"type": [{"text": "interpreter"}], "status": "accepted"}
    body = appointment_body(participant=[actor("Patient/pat-1"), interpreter])
    assert _refusal(Unprocessable, body).expression == "Appointment.participant[1].actor"


def test_a_request_for_two_slots_is_unprocessable():
    body = appointment_body(slot=[{"reference": "Slot/a"}, {"reference": "Slot/b"}])
    assert _refusal(Unprocessable, body).expression == "Appointment.slot"


def test_a_slot_reference_to_another_resource_type_is_unprocessable():
    body = appointment_body(slot=[{"reference": "Schedule/sched-1"}])
    assert _refusal(Unprocessable, body).expression == "Appointment.slot[0]"


def test_an_end_before_the_start_is_refused_by_the_booking_rule():
    body = appointment_body(start="2027-01-04T15:00:00Z", end="2027-01-04T14:59:00Z")
    assert _refusal(RuleViolation, body).field == "booking.end"


def test_an_end_before_the_start_is_caught_across_time_zones():
    # 10:30 in New York is 15:30Z, after the 15:10Z end.
    body = appointment_body(start="2027-01-04T10:30:00-05:00", end="2027-01-04T15:10:00Z")
    assert _refusal(RuleViolation, body).field == "booking.end"


def test_an_unknown_appointment_type_code_is_unprocessable():
    body = appointment_body(appointmentType={"coding": [{"system": "http://x", "code": "yoga"}]})
    assert _refusal(Unprocessable, body).expression == "Appointment.appointmentType"


def test_a_known_code_from_the_wrong_system_is_unprocessable():
    body = appointment_body(
        appointmentType={"coding": [{"system": "http://x", "code": "group-therapy"}]}
    )
    assert _refusal(Unprocessable, body).expression == "Appointment.appointmentType"


def test_an_unsupported_status_is_unprocessable():
    body = appointment_body(status="pending")
    assert _refusal(Unprocessable, body).expression == "Appointment.status"

"""Appointment <-> booking (FHIR R4 §11.6 Appointment).

A booking is an Appointment with `status = booked` and `slot = [Slot]`; its
participants are the Patient, the provider(s) and the department, all
`accepted`. Start and end always equal the slot's (app-3 needs them once booked).
A draft is `proposed`, has no slot, and keeps its intended time in `requestedPeriod`.
Occurrences of a series carry R5's recurrenceId / originatingAppointment /
recurrenceTemplate as cross-version extensions (mappings.timing).
"""

from __future__ import annotations

from typing import Any

from mappings.codes import APPOINTMENT_TYPES, concept_code
from mappings.common import JSON, aware, codeable, instant, meta, parse_reference, parse_resource
from mappings.errors import Unprocessable
from mappings.timing import series_extensions
from store.booking import BookingRequest
from store.models import Booking, BookingStatus

_PARTICIPANT_TYPES = ("Patient", "Practitioner", "Location")


def appointment_to_fhir(booking: Booking) -> JSON:
    resource: JSON = {
        "resourceType": "Appointment",
        "id": booking.id,
        "meta": meta(booking.version, booking.last_updated),
    }
    if booking.series_id is not None:
        # R5 series elements as cross-version extensions (DESIGN §4).
        resource["extension"] = series_extensions(booking)
    if booking.identifiers:
        resource["identifier"] = [
            {"system": i.system, "value": i.value} if i.system else {"value": i.value}
            for i in booking.identifiers
        ]
    resource["status"] = booking.status
    if booking.cancellation_reason:
        resource["cancelationReason"] = {"text": booking.cancellation_reason}
    if booking.appointment_type and (kind := APPOINTMENT_TYPES.get(booking.appointment_type)):
        resource["appointmentType"] = codeable(kind.as_fhir())
    draft = booking.status == BookingStatus.PROPOSED and booking.session_id is None
    if draft and booking.start is not None:
        # A draft has no session yet: its intended time is a request, not a booking.
        period: JSON = {"start": instant(booking.start)}
        if booking.end is not None:
            period["end"] = instant(booking.end)
        resource["requestedPeriod"] = [period]
    else:
        if booking.start is not None:
            resource["start"] = instant(booking.start)
        if booking.end is not None:
            resource["end"] = instant(booking.end)
    if booking.session_id is not None:
        resource["slot"] = [{"reference": f"Slot/{booking.session_id}"}]
    if booking.coverages:
        # The insurance chosen for the visit, primary (or self-pay) first.
        resource["supportingInformation"] = [
            {"reference": f"Coverage/{c.coverage_id}"} for c in booking.coverages
        ]
    resource["created"] = instant(booking.created)
    if booking.comment:
        resource["comment"] = booking.comment
    participants: list[JSON] = [
        _participant("Patient", booking.patient_id, "needs-action" if draft else "accepted")
    ]
    participants.extend(_participant("Practitioner", p.provider_id) for p in booking.providers)
    if booking.department_id:
        participants.append(_participant("Location", booking.department_id))
    resource["participant"] = participants
    return resource


def _participant(resource_type: str, ident: str, status: str = "accepted") -> JSON:
    return {"actor": {"reference": f"{resource_type}/{ident}"}, "status": status}


def appointment_from_fhir(body: Any) -> BookingRequest:
    """Read a booking request: one Patient, any number of Practitioners, at most one
    Location, exactly one Slot."""
    appointment: Any = parse_resource(body, "Appointment")
    patient_id: str | None = None
    provider_ids: list[str] = []
    department_id: str | None = None
    for index, participant in enumerate(appointment.participant or []):
        expression = f"Appointment.participant[{index}].actor"
        if participant.actor is None:
            raise Unprocessable("a participant needs an actor", expression=expression)
        kind, ident = parse_reference(participant.actor.reference, _PARTICIPANT_TYPES, expression)
        if kind == "Patient":
            if patient_id is not None:
                raise Unprocessable("a booking is for exactly one patient", expression=expression)
            patient_id = ident
        elif kind == "Practitioner":
            provider_ids.append(ident)
        else:
            if department_id is not None:
                raise Unprocessable("a booking has at most one department", expression=expression)
            department_id = ident
    if patient_id is None:
        raise Unprocessable(
            "a booking needs a Patient participant", expression="Appointment.participant"
        )
    slots = appointment.slot or []
    if len(slots) > 1:
        raise Unprocessable("a booking takes exactly one slot", expression="Appointment.slot")
    session_id = (
        parse_reference(slots[0].reference, ("Slot",), "Appointment.slot[0]")[1] if slots else None
    )
    start = aware(appointment.start, "Appointment.start") if appointment.start else None
    end = aware(appointment.end, "Appointment.end") if appointment.end else None
    if start is None and end is None and appointment.requestedPeriod and not slots:
        # A draft's intended time travels in requestedPeriod (it has no start yet).
        period = appointment.requestedPeriod[0]
        at = "Appointment.requestedPeriod[0]"
        start = aware(period.start, f"{at}.start") if period.start else None
        end = aware(period.end, f"{at}.end") if period.end else None
    try:
        status = BookingStatus(appointment.status)
    except ValueError:
        raise Unprocessable(
            f"status {appointment.status!r} is not supported", expression="Appointment.status"
        ) from None
    coverage_ids = []
    for index, info in enumerate(appointment.supportingInformation or []):
        _, coverage_id = parse_reference(
            info.reference, ("Coverage",), f"Appointment.supportingInformation[{index}]"
        )
        coverage_ids.append(coverage_id)
    reason = appointment.cancelationReason
    return BookingRequest(
        patient_id=patient_id,
        session_id=session_id,
        status=status,
        provider_ids=tuple(provider_ids),
        department_id=department_id,
        appointment_type=concept_code(
            appointment.appointmentType, APPOINTMENT_TYPES, "Appointment.appointmentType"
        ),
        start=start,
        end=end,
        comment=appointment.comment,
        cancellation_reason=(reason.text or _first_code(reason)) if reason else None,
        coverage_ids=tuple(coverage_ids),
        identifiers=tuple(
            (i.system or "", i.value) for i in (appointment.identifier or []) if i.value is not None
        ),
    )


def _first_code(concept: Any) -> str | None:
    for coding in concept.coding or []:
        if coding.code:
            return str(coding.display or coding.code)
    return None

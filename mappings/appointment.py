"""Appointment <-> booking (FHIR R4 §11.6 Appointment).

A booking is an Appointment with `status = booked` and `slot = [Slot]`; its
participants are the Patient, the provider(s) and the department, all
`accepted`. Start and end always equal the slot's (app-3 needs them once booked).
A draft is `proposed`, has no slot, and keeps its intended time in `requestedPeriod`.
A waitlist entry is `waitlist` with its full session's slot (it holds no place); a
waitlist offer is `pending` and says when it lapses (`waitlist-offer-expires`); an
entry passed over for a freed place says why (`waitlist-passed-over`).
Occurrences of a series carry R5's recurrenceId / originatingAppointment /
recurrenceTemplate as cross-version extensions (mappings.timing).
"""

from __future__ import annotations

import operator
from typing import Any

from mappings.codes import (
    APPOINTMENT_TYPES,
    EXT_OFFER_EXPIRES,
    EXT_WAITLIST_PASSED_OVER,
    concept_code,
)
from mappings.common import (
    JSON,
    aware,
    codeable,
    held,
    instant,
    meta,
    parse_reference,
    parse_resource,
)
from mappings.errors import Unprocessable
from mappings.timing import series_extensions
from store.booking import BookingRequest
from store.models import Booking, BookingStatus

_PARTICIPANT_TYPES = ("Patient", "Practitioner", "Location")


#: The attributes an Appointment is rendered from, in this order.
_RENDERED = (
    "id",
    "version",
    "last_updated",
    "series_id",
    "recurrence_id",
    "offer_expires",
    "waitlist_note",
    "identifiers",
    "status",
    "cancellation_reason",
    "appointment_type",
    "priority",
    "session_id",
    "start",
    "end",
    "coverages",
    "created",
    "comment",
    "patient_id",
    "providers",
    "department_id",
)
_loaded_values = operator.itemgetter(*_RENDERED)
_attribute_values = operator.attrgetter(*_RENDERED)


def appointment_to_fhir(booking: Booking) -> JSON:
    # As the record holds them (through the ORM's attributes, half the rendering's cost).
    values: tuple[Any, ...] = held(booking, _loaded_values) or _attribute_values(booking)
    (
        ident,
        version,
        last_updated,
        series_id,
        recurrence_id,
        offer_expires,
        waitlist_note,
        identifiers,
        status,
        cancellation_reason,
        appointment_type,
        priority,
        session_id,
        start,
        end,
        coverages,
        created,
        comment,
        patient_id,
        providers,
        department_id,
    ) = values
    resource: JSON = {
        "resourceType": "Appointment",
        "id": ident,
        "meta": meta(version, last_updated),
    }
    extensions: list[JSON] = []
    if series_id is not None:
        # R5 series elements as cross-version extensions (DESIGN §4); the first stored
        # occurrence (its id is the series') carries the series' template.
        template = booking.series if series_id == ident else None
        extensions.extend(series_extensions(series_id, recurrence_id, template))
    if offer_expires is not None:
        extensions.append({"url": EXT_OFFER_EXPIRES, "valueInstant": instant(offer_expires)})
    if waitlist_note:
        extensions.append({"url": EXT_WAITLIST_PASSED_OVER, "valueString": waitlist_note})
    if extensions:
        resource["extension"] = extensions
    if identifiers:
        resource["identifier"] = [
            {"system": i.system, "value": i.value} if i.system else {"value": i.value}
            for i in identifiers
        ]
    resource["status"] = status
    if cancellation_reason:
        resource["cancelationReason"] = {"text": cancellation_reason}
    if appointment_type and (kind := APPOINTMENT_TYPES.get(appointment_type)):
        resource["appointmentType"] = codeable(kind.as_fhir())
    if priority is not None:
        resource["priority"] = priority
    draft = status == BookingStatus.PROPOSED and session_id is None
    if draft and start is not None:
        # A draft has no session yet: its intended time is a request, not a booking.
        period: JSON = {"start": instant(start)}
        if end is not None:
            period["end"] = instant(end)
        resource["requestedPeriod"] = [period]
    else:
        if start is not None:
            resource["start"] = instant(start)
        if end is not None:
            resource["end"] = instant(end)
    if session_id is not None:
        resource["slot"] = [{"reference": f"Slot/{session_id}"}]
    if coverages:
        # The insurance chosen for the visit, primary (or self-pay) first.
        resource["supportingInformation"] = [
            {"reference": f"Coverage/{c.coverage_id}"} for c in coverages
        ]
    resource["created"] = instant(created)
    if comment:
        resource["comment"] = comment
    # A draft and an offer wait on the patient's answer.
    answer = draft or status == BookingStatus.PENDING
    participants: list[JSON] = [
        _participant("Patient", patient_id, "needs-action" if answer else "accepted")
    ]
    participants.extend(_participant("Practitioner", p.provider_id) for p in providers)
    if department_id:
        participants.append(_participant("Location", department_id))
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
    if appointment.priority is not None and appointment.priority > 9:
        raise Unprocessable(
            "priority is 1 (highest) to 9 (lowest), or 0 for none",
            expression="Appointment.priority",
        )
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
        priority=appointment.priority or None,  # 0 means none (R4 Appointment.priority)
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

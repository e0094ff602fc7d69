"""Slot <-> group session (FHIR R4 §11.5 Slot, with the group-capacity extension).

A Slot "can have more than one appointment allocated to it" up to a number of
places; R4 has no element for that number, so `group-capacity` carries
`capacity` and `booked`, and SMART Scheduling Links' `slot-capacity` carries the
places still free for aggregators.
"""

from __future__ import annotations

from typing import Any

from mappings.codes import (
    APPOINTMENT_TYPES,
    EXT_CLOSED_SESSION,
    EXT_GROUP_CAPACITY,
    EXT_SLOT_CAPACITY_SMART,
    SERVICE_TYPES,
    concept_code,
)
from mappings.common import JSON, aware, codeable, instant, meta, parse_reference, parse_resource
from mappings.errors import Unprocessable
from store.models import Availability, GroupSession
from store.sessions import SessionSpec

SLOT_STATUS = {
    Availability.OPEN: "free",
    Availability.FULL: "busy",
    Availability.BLOCKED: "busy-unavailable",
}


def slot_to_fhir(session: GroupSession) -> JSON:
    resource: JSON = {
        "resourceType": "Slot",
        "id": session.id,
        "meta": meta(session.version, session.last_updated),
        "extension": [
            {
                "url": EXT_GROUP_CAPACITY,
                "extension": [
                    {"url": "capacity", "valueUnsignedInt": session.capacity},
                    {"url": "booked", "valueUnsignedInt": session.booked},
                ],
            },
            {"url": EXT_SLOT_CAPACITY_SMART, "valueInteger": session.places_left},
            {"url": EXT_CLOSED_SESSION, "valueBoolean": session.closed},
        ],
    }
    if session.service_type and (service := SERVICE_TYPES.get(session.service_type)):
        resource["serviceType"] = [codeable(service.as_fhir())]
    if session.appointment_type and (kind := APPOINTMENT_TYPES.get(session.appointment_type)):
        resource["appointmentType"] = codeable(kind.as_fhir())
    resource["schedule"] = {"reference": f"Schedule/{session.schedule_id}"}
    resource["status"] = SLOT_STATUS[session.availability]
    resource["start"] = instant(session.start)
    resource["end"] = instant(session.end)
    resource["overbooked"] = False
    if session.comment:
        resource["comment"] = session.comment
    return resource


def slot_from_fhir(body: Any) -> SessionSpec:
    """Read a Slot sent by a schedule admin. `booked` and `status` free/busy are ours to
    compute; `busy-unavailable` blocks the session."""
    slot: Any = parse_resource(body, "Slot")
    _, schedule_id = parse_reference(slot.schedule.reference, ("Schedule",), "Slot.schedule")
    start = aware(slot.start, "Slot.start")
    end = aware(slot.end, "Slot.end")
    if end <= start:
        raise Unprocessable("end must be after start", expression="Slot.end")
    if slot.status not in ("free", "busy", "busy-unavailable"):
        raise Unprocessable(
            f"status {slot.status!r} is not supported for a group session", expression="Slot.status"
        )
    capacity, closed = _extensions(slot.extension or [])
    return SessionSpec(
        schedule_id=schedule_id,
        start=start,
        end=end,
        capacity=capacity,
        appointment_type=concept_code(
            slot.appointmentType, APPOINTMENT_TYPES, "Slot.appointmentType"
        ),
        service_type=concept_code(
            slot.serviceType[0] if slot.serviceType else None, SERVICE_TYPES, "Slot.serviceType"
        ),
        closed=closed,
        blocked=slot.status == "busy-unavailable",
        comment=slot.comment,
    )


def _extensions(extensions: list[Any]) -> tuple[int, bool]:
    capacity: int | None = None
    closed = False
    for index, ext in enumerate(extensions):
        if ext.url == EXT_GROUP_CAPACITY:
            for part in ext.extension or []:
                if part.url == "capacity":
                    capacity = part.valueUnsignedInt
        elif ext.url == EXT_CLOSED_SESSION:
            closed = bool(ext.valueBoolean)
        elif ext.url != EXT_SLOT_CAPACITY_SMART:
            raise Unprocessable(
                f"unsupported extension {ext.url!r}", expression=f"Slot.extension[{index}]"
            )
    if capacity is None:
        raise Unprocessable(
            f"a group session needs its capacity: extension {EXT_GROUP_CAPACITY} "
            "with a 'capacity' valueUnsignedInt",
            expression="Slot.extension",
        )
    return capacity, closed

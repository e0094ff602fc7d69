"""Small helpers for talking FHIR to a real server: request bodies and reading answers."""

from __future__ import annotations

import copy
from typing import Any

from sqlalchemy import func, select

from store.db import Database
from store.models import HOLDS_PLACE, Booking, GroupSession

JSON = dict[str, Any]
FHIR_JSON = "application/fhir+json"
GROUP_CAPACITY = "http://fhir-facade.org/fhir/StructureDefinition/group-capacity"
SLOT_CAPACITY_SMART = "http://fhir-registry.smarthealthit.org/StructureDefinition/slot-capacity"
TIMEOUT_S = 60


def booking(
    patient_id: str,
    slot_id: str,
    *,
    practitioner_ids: tuple[str, ...] = (),
    location_id: str | None = None,
) -> JSON:
    """An Appointment as an EHR sends it to book a patient into a session."""
    participants: list[JSON] = [
        {"actor": {"reference": f"Patient/{patient_id}"}, "status": "accepted"}
    ]
    participants += [
        {"actor": {"reference": f"Practitioner/{p}"}, "status": "accepted"}
        for p in practitioner_ids
    ]
    if location_id is not None:
        location = {"actor": {"reference": f"Location/{location_id}"}, "status": "accepted"}
        participants.append(location)
    return {
        "resourceType": "Appointment",
        "status": "booked",
        "slot": [{"reference": f"Slot/{slot_id}"}],
        "participant": participants,
    }


def moved(appointment: JSON, slot: JSON) -> JSON:
    """The appointment rescheduled into `slot` (slot reference, start and end follow)."""
    body = copy.deepcopy(appointment)
    body["slot"] = [{"reference": f"Slot/{slot['id']}"}]
    body["start"], body["end"] = slot["start"], slot["end"]
    return body


def cancelled(appointment: JSON, reason: str = "patient asked to cancel") -> JSON:
    body = copy.deepcopy(appointment)
    body["status"] = "cancelled"
    body["cancelationReason"] = {"text": reason}
    return body


def capacity(slot: JSON) -> tuple[int, int]:
    """(capacity, booked) from the Slot's group-capacity extension: the "3/10"."""
    (ext,) = [e for e in slot["extension"] if e["url"] == GROUP_CAPACITY]
    parts = {p["url"]: p["valueUnsignedInt"] for p in ext["extension"]}
    return parts["capacity"], parts["booked"]


def places_left(slot: JSON) -> int:
    (ext,) = [e for e in slot["extension"] if e["url"] == SLOT_CAPACITY_SMART]
    value: int = ext["valueInteger"]
    return value


def detail_codes(outcome: JSON) -> list[str]:
    """The `details.coding.code`s of an OperationOutcome's issues (e.g. "session-full")."""
    return [
        coding["code"]
        for issue in outcome.get("issue", [])
        for coding in issue.get("details", {}).get("coding", [])
    ]


def resources(bundle: JSON, resource_type: str | None = None) -> list[JSON]:
    return [
        e["resource"]
        for e in bundle.get("entry", [])
        if resource_type is None or e["resource"]["resourceType"] == resource_type
    ]


def stored_booked(database: Database, session_id: str) -> int:
    """The session's booked count as the database holds it."""
    with database.reading() as db:
        booked = db.scalar(select(GroupSession.booked).where(GroupSession.id == session_id))
    assert booked is not None, f"session {session_id} not in the database"
    return booked


def stored_places_held(database: Database, session_id: str) -> int:
    """How many bookings actually hold a place in the session, counted in the database."""
    with database.reading() as db:
        count = db.scalar(
            select(func.count())
            .select_from(Booking)
            .where(Booking.session_id == session_id, Booking.status.in_(list(HOLDS_PLACE)))
        )
    return int(count or 0)

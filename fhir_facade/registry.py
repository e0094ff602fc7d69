"""The resource types we serve: their internal kind, how they render, what they allow.

The CapabilityStatement is generated from this table and `mappings.search.SEARCHES`,
so what we declare is what the routes do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from fhir_facade.auth import AUDIT_READ
from mappings.appointment import appointment_to_fhir
from mappings.audit import audit_event_to_fhir
from mappings.coverage import coverage_to_fhir
from mappings.directory import (
    location_to_fhir,
    organization_to_fhir,
    practitioner_to_fhir,
    schedule_to_fhir,
)
from mappings.patient import patient_to_fhir
from mappings.slot import slot_to_fhir
from store.models import (
    AuditRecord,
    Base,
    Booking,
    Coverage,
    Department,
    GroupSession,
    Patient,
    Provider,
    ProviderGroup,
    ProviderSchedule,
)


@dataclass(frozen=True)
class ResourceType:
    name: str
    kind: type[Base]
    to_fhir: Callable[[Any], dict[str, Any]]
    interactions: tuple[str, ...]  # FHIR TypeRestfulInteraction codes
    conditional_create: bool = False
    documentation: str = ""
    permission: str | None = None  # needed on top of the SMART scope


AUDIT_EVENT = ResourceType(
    "AuditEvent",
    AuditRecord,
    audit_event_to_fhir,
    ("read", "vread", "history-instance", "search-type"),
    documentation=(
        "The audit trail: every write and every read of a restricted patient's data. "
        "Needs the __audit.read permission."
    ),
    permission=AUDIT_READ,
)

RESOURCE_TYPES: dict[str, ResourceType] = {
    r.name: r
    for r in (
        ResourceType(
            "Organization",
            ProviderGroup,
            organization_to_fhir,
            ("read", "vread", "history-instance", "search-type", "create", "update"),
            conditional_create=True,
            documentation=(
                "Provider groups (read-only in bookings) and payers (type organization-type#ins). "
                "Create and update need the __schedule.manage permission."
            ),
        ),
        ResourceType(
            "Location",
            Department,
            location_to_fhir,
            ("read", "vread", "history-instance", "search-type", "create", "update"),
            conditional_create=True,
            documentation=(
                "Departments, each with its IANA time zone (timezone extension, required) and "
                "its provider group (managingOrganization). Create and update need the "
                "__schedule.manage permission; the time zone cannot change while sessions that "
                "have not ended hold bookings (422). An inactive or suspended department takes "
                "no new sessions."
            ),
        ),
        ResourceType(
            "Practitioner",
            Provider,
            practitioner_to_fhir,
            ("read", "vread", "history-instance", "search-type", "create", "update"),
            conditional_create=True,
            documentation=(
                "Providers who run group sessions. Create and update need the "
                "__schedule.manage permission; an inactive provider takes no new sessions."
            ),
        ),
        ResourceType(
            "Schedule",
            ProviderSchedule,
            schedule_to_fhir,
            ("read", "vread", "history-instance", "search-type", "create", "update"),
            conditional_create=True,
            documentation=(
                "A provider's calendar in one department (actor: one Location, at most one "
                "Practitioner). Create and update need the __schedule.manage permission; its "
                "Location and Practitioner cannot change while sessions that have not ended "
                "hold bookings (422). The waitlist-policy extension says what a freed place in "
                "a full session does: book the first eligible waitlist entry (the default), or "
                "offer it the place for a while (offerDuration)."
            ),
        ),
        ResourceType(
            "Slot",
            GroupSession,
            slot_to_fhir,
            ("read", "vread", "history-instance", "search-type", "create", "update"),
            conditional_create=True,
            documentation=(
                "Group sessions. Capacity and booked count in the group-capacity extension "
                "(a Slot created without it has one place); create and update need the "
                "__schedule.manage permission; capacity never drops below the booked count. "
                "free/busy are counted; busy-unavailable blocks a session, as does busy on "
                "a new one."
            ),
        ),
        ResourceType(
            "Patient",
            Patient,
            patient_to_fhir,
            ("read", "vread", "history-instance", "search-type", "create", "update"),
            conditional_create=True,
            documentation=(
                "Patients. Restricted ones (meta.security R) exist only for callers with "
                "__patient.blocked. SSNs are stored as keyed hashes and shown masked."
            ),
        ),
        ResourceType(
            "Coverage",
            Coverage,
            coverage_to_fhir,
            ("read", "vread", "history-instance", "search-type", "create", "update"),
            conditional_create=True,
            documentation=(
                "Insurance plans and self-pay (type coverage-selfpay#pay, payor = the Patient); "
                "primary/secondary by order."
            ),
        ),
        ResourceType(
            "Appointment",
            Booking,
            appointment_to_fhir,
            ("read", "vread", "history-instance", "search-type", "create", "update"),
            conditional_create=True,
            documentation=(
                "Bookings into group sessions. Create = book (409 when the session is full "
                "or the patient already holds a place); update = cancel, reschedule or edit "
                "(If-Match honoured). Booking into a closed session succeeds with a warning. "
                "Create with status waitlist joins a full session's waitlist (409 "
                "session-has-room when it has a place: book it); status=waitlist searches list "
                "entries in queue order (priority 1-9 first, then first come, first served). A "
                "place that frees (cancel, move away, capacity raised) goes to the first "
                "eligible entry in the same transaction: booked, or pending with the "
                "waitlist-offer-expires extension under the schedule's offer policy; update a "
                "pending offer to booked to accept it. Passed-over entries say why "
                "(waitlist-passed-over); each promotion and lapse writes an AuditEvent."
            ),
        ),
        AUDIT_EVENT,
    )
}

_BY_KIND: dict[type[Base], ResourceType] = {r.kind: r for r in RESOURCE_TYPES.values()}


def snapshot(record: Base) -> str:
    """A record as the API shows it, as JSON text: what `store.history` keeps per version."""
    return orjson.dumps(_BY_KIND[type(record)].to_fhir(record)).decode()

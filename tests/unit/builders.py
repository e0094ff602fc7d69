"""Transient model objects and small FHIR bodies for unit tests: nothing touches a database."""

from __future__ import annotations

import datetime as dt
from typing import Any

from store.models import (
    Booking,
    BookingIdentifier,
    BookingProvider,
    Department,
    GroupSession,
    Patient,
    PatientIdentifier,
    PatientPhone,
    Provider,
    ProviderGroup,
    ProviderSchedule,
)
from store.text import fold, phone_digits

MONDAY = dt.datetime(2027, 1, 4, 15, 0, tzinfo=dt.UTC)  # 10:00 in New York
UPDATED = dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC)
MRN = "http://fhir-facade.org/fhir/sid/mrn"
NPI = "http://hl7.org/fhir/sid/us-npi"
GROUP_CAPACITY = "http://fhir-facade.org/fhir/StructureDefinition/group-capacity"
CLOSED_SESSION = "http://fhir-facade.org/fhir/StructureDefinition/closed-session"
SMART_CAPACITY = "http://fhir-registry.smarthealthit.org/StructureDefinition/slot-capacity"
TIMEZONE = "http://hl7.org/fhir/StructureDefinition/timezone"

_VERSIONED = {"version": 1, "last_updated": UPDATED}


def provider_group(**overrides: Any) -> ProviderGroup:
    values: dict[str, Any] = {"id": "org-1", "name": "Harbor Group", **_VERSIONED}
    return ProviderGroup(**(values | overrides))


def department(**overrides: Any) -> Department:
    values: dict[str, Any] = {
        "id": "dept-1",
        "name": "Brooklyn Behavioral Health",
        "timezone": "America/New_York",
        "provider_group_id": "org-1",
        **_VERSIONED,
    }
    return Department(**(values | overrides))


def provider(**overrides: Any) -> Provider:
    values: dict[str, Any] = {
        "id": "prac-1",
        "prefix": "Dr.",
        "given": "Ana",
        "family": "Rivera",
        "identifier_system": NPI,
        "identifier_value": "1487654321",
        **_VERSIONED,
    }
    return Provider(**(values | overrides))


def schedule(**overrides: Any) -> ProviderSchedule:
    values: dict[str, Any] = {
        "id": "sched-1",
        "provider_id": "prac-1",
        "department_id": "dept-1",
        "name": "Rivera groups",
        "active": True,
        **_VERSIONED,
    }
    built = ProviderSchedule(**(values | overrides))
    built.provider = provider(id=built.provider_id)
    built.department = department(id=built.department_id)
    return built


def session(**overrides: Any) -> GroupSession:
    values: dict[str, Any] = {
        "id": "session-1",
        "schedule_id": "sched-1",
        "start": MONDAY,
        "end": MONDAY + dt.timedelta(minutes=90),
        "capacity": 10,
        "booked": 3,
        "appointment_type": "group-therapy",
        "service_type": "behavioral-health-group",
        "closed": False,
        "blocked": False,
        **_VERSIONED,
    }
    return GroupSession(**(values | overrides))


def scheduled_session(ident: str, start: dt.datetime) -> GroupSession:
    """A 90-minute session on prac-1's calendar in dept-1, as `$find` loads it."""
    built = session(id=ident, start=start, end=start + dt.timedelta(minutes=90))
    built.schedule = schedule()
    return built


def patient(**overrides: Any) -> Patient:
    values: dict[str, Any] = {
        "id": "pat-1",
        "family": "García",
        "given": "Maria Luisa",
        "birth_date": dt.date(1980, 5, 17),
        "gender": "female",
        "phone": "(555) 010-2233",
        "restricted": False,
        **_VERSIONED,
    }
    values |= overrides
    values.setdefault("family_folded", fold(values["family"]))
    values.setdefault("given_folded", fold(values["given"]))
    phone = values.pop("phone")
    built = Patient(**values)
    built.identifiers = [PatientIdentifier(system=MRN, value="MRN100001", position=0)]
    if phone:
        built.phones = [
            PatientPhone(value=phone, digits=phone_digits(phone), use="mobile", position=0)
        ]
    return built


def booking(
    *,
    providers: tuple[str, ...] = ("prac-1",),
    identifiers: tuple[tuple[str, str], ...] = (),
    **overrides: Any,
) -> Booking:
    values: dict[str, Any] = {
        "id": "appt-1",
        "patient_id": "pat-1",
        "session_id": "session-1",
        "status": "booked",
        "start": MONDAY,
        "end": MONDAY + dt.timedelta(minutes=90),
        "appointment_type": "group-therapy",
        "department_id": "dept-1",
        "created": UPDATED,
        **_VERSIONED,
    }
    built = Booking(**(values | overrides))
    built.providers = [
        BookingProvider(provider_id=pid, position=i) for i, pid in enumerate(providers)
    ]
    built.identifiers = [BookingIdentifier(system=s, value=v) for s, v in identifiers]
    return built


def extension(resource: dict[str, Any], url: str) -> dict[str, Any]:
    """The one extension with `url` on a resource."""
    (found,) = [e for e in resource.get("extension", []) if e["url"] == url]
    return found


def capacity_parts(slot: dict[str, Any]) -> dict[str, int]:
    parts = extension(slot, GROUP_CAPACITY)["extension"]
    return {p["url"]: p["valueUnsignedInt"] for p in parts}


def appointment_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Appointment",
        "status": "booked",
        "slot": [{"reference": "Slot/session-1"}],
        "participant": [actor("Patient/pat-1")],
    }
    return body | overrides


def actor(reference: str, status: str = "accepted") -> dict[str, Any]:
    return {"actor": {"reference": reference}, "status": status}


def capacity_extension(capacity: int) -> dict[str, Any]:
    return {"url": GROUP_CAPACITY, "extension": [{"url": "capacity", "valueUnsignedInt": capacity}]}


def slot_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Slot",
        "extension": [capacity_extension(10)],
        "schedule": {"reference": "Schedule/sched-1"},
        "status": "free",
        "start": "2027-01-04T15:00:00Z",
        "end": "2027-01-04T16:30:00Z",
    }
    return body | overrides

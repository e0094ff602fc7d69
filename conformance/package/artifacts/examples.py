"""The package's examples: what the mappings render for fixed records."""

from __future__ import annotations

import datetime as dt

from conformance.package.artifacts.common import JSON
from mappings.appointment import appointment_to_fhir
from mappings.coverage import CS_SELF_PAY, coverage_to_fhir
from mappings.slot import slot_to_fhir
from store.models import Booking, BookingCoverage, BookingProvider, Coverage, GroupSession

# -- examples: what the mappings render for fixed records ----------------------------

_AT = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
_START = dt.datetime(2027, 1, 4, 15, 0, tzinfo=dt.UTC)  # Monday 10:00 in New York
_END = _START + dt.timedelta(minutes=90)
_PATIENT = "example-patient"


def example_slot() -> JSON:
    session = GroupSession(
        id="example-group-session",
        schedule_id="sched-rivera-bk",
        start=_START,
        end=_END,
        capacity=10,
        booked=3,
        appointment_type="group-therapy",
        service_type="behavioral-health-group",
        closed=False,
        blocked=False,
        version=4,
        last_updated=_AT,
    )
    return slot_to_fhir(session)


def example_coverage() -> JSON:
    coverage = Coverage(
        id="example-self-pay",
        beneficiary_id=_PATIENT,
        payor_kind="patient",
        payor_id=_PATIENT,
        status="active",
        type_system=CS_SELF_PAY,
        type_code="pay",
        self_pay=True,
        order=1,
        version=1,
        last_updated=_AT,
    )
    return coverage_to_fhir(coverage)


def example_booked_appointment() -> JSON:
    booking = Booking(
        id="example-booked",
        session_id="example-group-session",
        patient_id=_PATIENT,
        status="booked",
        start=_START,
        end=_END,
        appointment_type="group-therapy",
        department_id="dept-brooklyn",
        created=_AT,
        version=1,
        last_updated=_AT,
        providers=[BookingProvider(provider_id="prac-rivera", position=0)],
        coverages=[BookingCoverage(coverage_id="example-self-pay", rank=1)],
    )
    return appointment_to_fhir(booking)


def example_draft_appointment() -> JSON:
    booking = Booking(
        id="example-draft",
        patient_id=_PATIENT,
        status="proposed",
        start=_START + dt.timedelta(weeks=1),
        end=_END + dt.timedelta(weeks=1),
        appointment_type="group-therapy",
        department_id="dept-brooklyn",
        created=_AT,
        version=1,
        last_updated=_AT,
        providers=[BookingProvider(provider_id="prac-rivera", position=0)],
        coverages=[BookingCoverage(coverage_id="example-self-pay", rank=1)],
    )
    return appointment_to_fhir(booking)


def examples() -> list[JSON]:
    return [
        example_slot(),
        example_booked_appointment(),
        example_draft_appointment(),
        example_coverage(),
    ]

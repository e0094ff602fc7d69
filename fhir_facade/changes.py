"""What each create and update does to the store, per resource type, apart from HTTP.

A `Change` reads a body into the store's request (mappings) and applies it inside the
caller's transaction, answering with the stored resource and any warnings. The
registry wires one per interaction a resource type supports; `fhir_facade.writes`
runs them for single requests and Bundles alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session

from fhir_facade.auth import Grants
from fhir_facade.references import document_keeping_hidden
from mappings.appointment import appointment_to_fhir
from mappings.coverage import coverage_to_fhir
from mappings.directory import (
    location_to_fhir,
    organization_to_fhir,
    practitioner_to_fhir,
    schedule_to_fhir,
)
from mappings.patient import patient_to_fhir
from mappings.slot import slot_to_fhir
from store.booking import BookingRequest, Notice, book_patient, update_booking
from store.directory import (
    DepartmentSpec,
    OrganizationSpec,
    ProviderSpec,
    create_department,
    create_provider,
    create_provider_group,
)
from store.insurance import CoverageSpec, create_coverage, update_coverage
from store.models import Base, Coverage, Patient
from store.patients import PatientSpec, register_patient, update_patient
from store.sessions import ScheduleSpec, SessionSpec, create_schedule, create_session
from store.ssn import SsnHasher

Spec = TypeVar("Spec")
Record = TypeVar("Record", bound=Base)
Rendered = tuple[dict[str, Any], list[Notice]]  # the stored resource, warnings


@dataclass(frozen=True)
class WriteContext:
    grants: Grants
    hasher: SsnHasher
    ident: str | None = None  # the resource updated, or the id a new one receives
    expected_version: int | None = None  # If-Match


@dataclass(frozen=True)
class Change(Generic[Spec]):
    """One write interaction of one resource type: parse the body, apply it."""

    parse: Callable[[Any], Spec]  # body -> the store's request (mappings)
    apply: Callable[[Session, Spec, WriteContext], Rendered]  # inside a transaction
    patient: Callable[[Spec], str | None] = lambda spec: None  # for failure audits
    permission: str | None = None  # needed on top of the SMART scope


def book(db: Session, spec: BookingRequest, ctx: WriteContext) -> Rendered:
    result = book_patient(db, spec, ctx.grants.access, booking_id=ctx.ident)
    return appointment_to_fhir(result.booking), result.warnings


def rebook(db: Session, spec: BookingRequest, ctx: WriteContext) -> Rendered:
    assert ctx.ident is not None
    result = update_booking(
        db, ctx.ident, spec, ctx.grants.access, expected_version=ctx.expected_version
    )
    return appointment_to_fhir(result.booking), result.warnings


def updating(
    change: Callable[..., Record], render: Callable[[Record], dict[str, Any]]
) -> Callable[[Session, Any, WriteContext], Rendered]:
    """An update whose store function is `change(db, id, spec, *, expected_version)`."""

    def apply(db: Session, spec: Any, ctx: WriteContext) -> Rendered:
        assert ctx.ident is not None
        return render(change(db, ctx.ident, spec, expected_version=ctx.expected_version)), []

    return apply


def new_schedule(db: Session, spec: ScheduleSpec, ctx: WriteContext) -> Rendered:
    return schedule_to_fhir(create_schedule(db, spec, schedule_id=ctx.ident)), []


def new_organization(db: Session, spec: OrganizationSpec, ctx: WriteContext) -> Rendered:
    return organization_to_fhir(create_provider_group(db, spec, group_id=ctx.ident)), []


def new_location(db: Session, spec: DepartmentSpec, ctx: WriteContext) -> Rendered:
    return location_to_fhir(create_department(db, spec, department_id=ctx.ident)), []


def new_practitioner(db: Session, spec: ProviderSpec, ctx: WriteContext) -> Rendered:
    return practitioner_to_fhir(create_provider(db, spec, provider_id=ctx.ident)), []


def new_slot(db: Session, spec: SessionSpec, ctx: WriteContext) -> Rendered:
    return slot_to_fhir(create_session(db, spec, session_id=ctx.ident)), []


def register(db: Session, spec: PatientSpec, ctx: WriteContext) -> Rendered:
    patient = register_patient(db, spec, ctx.hasher, ctx.grants.access, patient_id=ctx.ident)
    return patient_to_fhir(patient), []


def change_patient(db: Session, spec: PatientSpec, ctx: WriteContext) -> Rendered:
    assert ctx.ident is not None
    spec = _keeping_hidden(db, db.get(Patient, ctx.ident, with_for_update=True), spec, ctx)
    patient = update_patient(
        db, ctx.ident, spec, ctx.hasher, ctx.grants.access, expected_version=ctx.expected_version
    )
    return patient_to_fhir(patient), []


def new_coverage(db: Session, spec: CoverageSpec, ctx: WriteContext) -> Rendered:
    coverage = create_coverage(db, spec, ctx.grants.access, coverage_id=ctx.ident)
    return coverage_to_fhir(coverage), []


def change_coverage(db: Session, spec: CoverageSpec, ctx: WriteContext) -> Rendered:
    assert ctx.ident is not None
    spec = _keeping_hidden(db, db.get(Coverage, ctx.ident, with_for_update=True), spec, ctx)
    coverage = update_coverage(
        db, ctx.ident, spec, ctx.grants.access, expected_version=ctx.expected_version
    )
    return coverage_to_fhir(coverage), []


Kept = TypeVar("Kept", PatientSpec, CoverageSpec)


def _keeping_hidden(
    db: Session, current: Patient | Coverage | None, spec: Kept, ctx: WriteContext
) -> Kept:
    """The update's spec, its kept document still holding what names hidden records."""
    kept = current.document if current is not None else None
    resource_type = "Patient" if isinstance(current, Patient) else "Coverage"
    document = document_keeping_hidden(db, resource_type, kept, spec.document, ctx.grants.access)
    return replace(spec, document=document)


def booked_patient(spec: BookingRequest) -> str | None:
    return str(spec.patient_id)


def covered_patient(spec: CoverageSpec) -> str | None:
    return str(spec.beneficiary_id)

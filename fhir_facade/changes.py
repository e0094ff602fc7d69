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

from fhir_facade.auth import Grants
from fhir_facade.references import Vouched, chosen_coverages, document_keeping_hidden
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
from store.booking import BookingRequest, Notice
from store.directory import DepartmentSpec, OrganizationSpec, ProviderSpec
from store.insurance import CoverageSpec
from store.models import Base, BookingStatus, Coverage, Patient
from store.patients import PatientSpec
from store.scope import Store
from store.sessions import ScheduleSpec, SessionSpec
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
    apply: Callable[[Store, Spec, WriteContext], Rendered]  # inside a transaction
    patient: Callable[[Spec], str | None] = lambda spec: None  # for failure audits
    permission: str | None = None  # needed on top of the SMART scope


def book(store: Store, spec: BookingRequest, ctx: WriteContext) -> Rendered:
    """Book, or (status waitlist) join a full session's waitlist."""
    if spec.status == BookingStatus.WAITLIST:
        entry = store.join_waitlist(spec, booking_id=ctx.ident)
        return appointment_to_fhir(entry.booking), entry.warnings
    result = store.book(spec, booking_id=ctx.ident)
    # The answer's check for hidden references need not ask about its coverages again.
    seen = chosen_coverages([result.booking])
    return Vouched(appointment_to_fhir(result.booking), seen), result.warnings


def rebook(store: Store, spec: BookingRequest, ctx: WriteContext) -> Rendered:
    assert ctx.ident is not None
    result = store.rebook(ctx.ident, spec, expected_version=ctx.expected_version)
    return appointment_to_fhir(result.booking), result.warnings


def updating(
    change: Callable[..., Record], render: Callable[[Record], dict[str, Any]]
) -> Callable[[Store, Any, WriteContext], Rendered]:
    """An update whose Store method is `change(store, id, spec, *, expected_version)`
    (e.g. `Store.update_session`)."""

    def apply(store: Store, spec: Any, ctx: WriteContext) -> Rendered:
        assert ctx.ident is not None
        return render(change(store, ctx.ident, spec, expected_version=ctx.expected_version)), []

    return apply


def new_schedule(store: Store, spec: ScheduleSpec, ctx: WriteContext) -> Rendered:
    return schedule_to_fhir(store.create_schedule(spec, schedule_id=ctx.ident)), []


def new_organization(store: Store, spec: OrganizationSpec, ctx: WriteContext) -> Rendered:
    return organization_to_fhir(store.create_provider_group(spec, group_id=ctx.ident)), []


def new_location(store: Store, spec: DepartmentSpec, ctx: WriteContext) -> Rendered:
    return location_to_fhir(store.create_department(spec, department_id=ctx.ident)), []


def new_practitioner(store: Store, spec: ProviderSpec, ctx: WriteContext) -> Rendered:
    return practitioner_to_fhir(store.create_provider(spec, provider_id=ctx.ident)), []


def new_slot(store: Store, spec: SessionSpec, ctx: WriteContext) -> Rendered:
    return slot_to_fhir(store.create_session(spec, session_id=ctx.ident)), []


def register(store: Store, spec: PatientSpec, ctx: WriteContext) -> Rendered:
    patient = store.register_patient(spec, ctx.hasher, patient_id=ctx.ident)
    return patient_to_fhir(patient), []


def change_patient(store: Store, spec: PatientSpec, ctx: WriteContext) -> Rendered:
    assert ctx.ident is not None
    spec = _keeping_hidden(store, store.locked(Patient, ctx.ident), spec)
    patient = store.update_patient(
        ctx.ident, spec, ctx.hasher, expected_version=ctx.expected_version
    )
    return patient_to_fhir(patient), []


def new_coverage(store: Store, spec: CoverageSpec, ctx: WriteContext) -> Rendered:
    coverage = store.create_coverage(spec, coverage_id=ctx.ident)
    return coverage_to_fhir(coverage), []


def change_coverage(store: Store, spec: CoverageSpec, ctx: WriteContext) -> Rendered:
    assert ctx.ident is not None
    spec = _keeping_hidden(store, store.locked(Coverage, ctx.ident), spec)
    coverage = store.update_coverage(ctx.ident, spec, expected_version=ctx.expected_version)
    return coverage_to_fhir(coverage), []


Kept = TypeVar("Kept", PatientSpec, CoverageSpec)


def _keeping_hidden(store: Store, current: Patient | Coverage | None, spec: Kept) -> Kept:
    """The update's spec, its kept document still holding what names hidden records."""
    kept = current.document if current is not None else None
    resource_type = "Patient" if isinstance(current, Patient) else "Coverage"
    document = document_keeping_hidden(store, resource_type, kept, spec.document)
    return replace(spec, document=document)


def booked_patient(spec: BookingRequest) -> str | None:
    return str(spec.patient_id)


def covered_patient(spec: CoverageSpec) -> str | None:
    return str(spec.beneficiary_id)

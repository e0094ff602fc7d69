"""Create and update interactions (R4 §3.1.0 create, update; conditional create).

Each write is a `Writer`: how to read the body, and what to do inside a
transaction. The same writers serve single requests and Bundles. Every write
runs with its AuditEvent in one transaction; a refused write rolls back and its
failure is audited on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from typing import Any
from urllib.parse import parse_qsl

from flask import Response, request
from sqlalchemy.orm import Session

from fhir_facade.auth import SCHEDULE_MANAGE, Forbidden, Grants
from fhir_facade.context import caller, database, ssn
from fhir_facade.http import (
    base_url,
    fhir_response,
    if_match_version,
    prefer,
    read_json_body,
    resource_headers,
)
from fhir_facade.outcomes import FhirError, information, operation_outcome, warning
from fhir_facade.reads import authorize, run_search
from fhir_facade.references import document_keeping_hidden
from mappings.appointment import appointment_from_fhir, appointment_to_fhir
from mappings.audit import patient_of
from mappings.coverage import coverage_from_fhir, coverage_to_fhir
from mappings.directory import (
    location_from_fhir,
    location_to_fhir,
    organization_from_fhir,
    organization_to_fhir,
    practitioner_from_fhir,
    practitioner_to_fhir,
    schedule_from_fhir,
    schedule_to_fhir,
)
from mappings.patient import patient_from_fhir, patient_to_fhir
from mappings.search import SEARCHES, parse_search
from mappings.slot import slot_from_fhir, slot_to_fhir
from store.audit import MINOR_FAILURE, AuditEntry, record, record_many
from store.booking import Notice, book_patient, update_booking
from store.directory import (
    create_department,
    create_provider,
    create_provider_group,
    update_department,
    update_provider,
    update_provider_group,
)
from store.errors import DuplicateIdentifier, NotFound, StoreError
from store.insurance import create_coverage, update_coverage
from store.models import BookingStatus, Coverage, Patient
from store.patients import register_patient, update_patient
from store.promotion import sweep_expired_offers
from store.search import get_one, narrowed
from store.sessions import create_schedule, create_session, update_schedule, update_session
from store.ssn import SsnHasher
from store.waitlist import join_waitlist

Rendered = tuple[dict[str, Any], list[Notice]]  # the stored resource, warnings

_ACTIONS = {"create": "C", "update": "U"}
_LETTERS = {"create": "c", "update": "u"}


@dataclass(frozen=True)
class WriteContext:
    grants: Grants
    hasher: SsnHasher
    ident: str | None = None  # the resource updated, or the id a new one receives
    expected_version: int | None = None  # If-Match


@dataclass(frozen=True)
class Writer:
    """One write interaction of one resource type, apart from HTTP."""

    resource_type: str
    interaction: str  # create | update
    parse: Callable[[Any], Any]  # body -> the store's request (mappings)
    apply: Callable[[Session, Any, WriteContext], Rendered]  # inside a transaction
    patient: Callable[[Any], str | None] = lambda spec: None  # for failure audits
    permission: str | None = None

    def authorize(self, grants: Grants) -> None:
        authorize(grants, self.resource_type, _LETTERS[self.interaction])
        if self.permission is not None:
            grants.require_permission(self.permission)

    def audited(self, db: Session, spec: Any, ctx: WriteContext) -> Rendered:
        """Apply and record the AuditEvent, in the caller's transaction."""
        access = ctx.grants.access_for(_LETTERS[self.interaction])
        kind = SEARCHES[self.resource_type].kind
        scoped = narrowed(kind, access)
        if scoped and ctx.ident is not None and self.interaction == "update":
            exists = db.get(kind, ctx.ident) is not None
            if exists and get_one(db, kind, ctx.ident, access) is None:
                raise NotFound(self.resource_type, ctx.ident)
        resource, warnings = self.apply(db, spec, ctx)
        if scoped and get_one(db, kind, resource["id"], access) is None:
            # A granular scope (e.g. Coverage.cu?payor=…) does not reach the result.
            raise Forbidden(
                f"the token's scopes do not allow this {self.resource_type}: "
                "it does not match their query"
            )
        entry = AuditEntry(
            _ACTIONS[self.interaction],
            self.interaction,
            ctx.grants.subject,
            self.resource_type,
            resource["id"],
            patient_of(resource),
        )
        record(db, entry)
        return resource, warnings


def _book(db: Session, spec: Any, ctx: WriteContext) -> Rendered:
    """Book, or (status waitlist) join a full session's waitlist."""
    join = spec.status == BookingStatus.WAITLIST
    result = (join_waitlist if join else book_patient)(
        db, spec, ctx.grants.access, booking_id=ctx.ident
    )
    return appointment_to_fhir(result.booking), result.warnings


def _rebook(db: Session, spec: Any, ctx: WriteContext) -> Rendered:
    assert ctx.ident is not None
    result = update_booking(
        db, ctx.ident, spec, ctx.grants.access, expected_version=ctx.expected_version
    )
    return appointment_to_fhir(result.booking), result.warnings


def _new_schedule(db: Session, spec: Any, ctx: WriteContext) -> Rendered:
    return schedule_to_fhir(create_schedule(db, spec, schedule_id=ctx.ident)), []


def _updating(
    change: Callable[..., Any], render: Callable[[Any], dict[str, Any]]
) -> Callable[[Session, Any, WriteContext], Rendered]:
    """An update whose store function is `change(db, id, spec, *, expected_version)`."""

    def apply(db: Session, spec: Any, ctx: WriteContext) -> Rendered:
        assert ctx.ident is not None
        return render(change(db, ctx.ident, spec, expected_version=ctx.expected_version)), []

    return apply


def _new_organization(db: Session, spec: Any, ctx: WriteContext) -> Rendered:
    return organization_to_fhir(create_provider_group(db, spec, group_id=ctx.ident)), []


def _new_location(db: Session, spec: Any, ctx: WriteContext) -> Rendered:
    return location_to_fhir(create_department(db, spec, department_id=ctx.ident)), []


def _new_practitioner(db: Session, spec: Any, ctx: WriteContext) -> Rendered:
    return practitioner_to_fhir(create_provider(db, spec, provider_id=ctx.ident)), []


def _new_slot(db: Session, spec: Any, ctx: WriteContext) -> Rendered:
    return slot_to_fhir(create_session(db, spec, session_id=ctx.ident)), []


def _register(db: Session, spec: Any, ctx: WriteContext) -> Rendered:
    patient = register_patient(db, spec, ctx.hasher, ctx.grants.access, patient_id=ctx.ident)
    return patient_to_fhir(patient), []


def _change_patient(db: Session, spec: Any, ctx: WriteContext) -> Rendered:
    assert ctx.ident is not None
    spec = _keeping_hidden(db, db.get(Patient, ctx.ident, with_for_update=True), spec, ctx)
    patient = update_patient(
        db, ctx.ident, spec, ctx.hasher, ctx.grants.access, expected_version=ctx.expected_version
    )
    return patient_to_fhir(patient), []


def _new_coverage(db: Session, spec: Any, ctx: WriteContext) -> Rendered:
    coverage = create_coverage(db, spec, ctx.grants.access, coverage_id=ctx.ident)
    return coverage_to_fhir(coverage), []


def _change_coverage(db: Session, spec: Any, ctx: WriteContext) -> Rendered:
    assert ctx.ident is not None
    spec = _keeping_hidden(db, db.get(Coverage, ctx.ident, with_for_update=True), spec, ctx)
    coverage = update_coverage(
        db, ctx.ident, spec, ctx.grants.access, expected_version=ctx.expected_version
    )
    return coverage_to_fhir(coverage), []


def _keeping_hidden(
    db: Session, current: Patient | Coverage | None, spec: Any, ctx: WriteContext
) -> Any:
    """The update's spec, its kept document still holding what names hidden records."""
    kept = current.document if current is not None else None
    resource_type = "Patient" if isinstance(current, Patient) else "Coverage"
    document = document_keeping_hidden(db, resource_type, kept, spec.document, ctx.grants.access)
    return replace(spec, document=document)


def _booked_patient(spec: Any) -> str | None:
    return str(spec.patient_id)


def _covered_patient(spec: Any) -> str | None:
    return str(spec.beneficiary_id)


WRITERS: dict[tuple[str, str], Writer] = {
    (w.resource_type, w.interaction): w
    for w in (
        Writer("Appointment", "create", appointment_from_fhir, _book, _booked_patient),
        Writer("Appointment", "update", appointment_from_fhir, _rebook, _booked_patient),
        Writer(
            "Organization",
            "create",
            organization_from_fhir,
            _new_organization,
            permission=SCHEDULE_MANAGE,
        ),
        Writer(
            "Organization",
            "update",
            organization_from_fhir,
            _updating(update_provider_group, organization_to_fhir),
            permission=SCHEDULE_MANAGE,
        ),
        Writer("Location", "create", location_from_fhir, _new_location, permission=SCHEDULE_MANAGE),
        Writer(
            "Location",
            "update",
            location_from_fhir,
            _updating(update_department, location_to_fhir),
            permission=SCHEDULE_MANAGE,
        ),
        Writer(
            "Practitioner",
            "create",
            practitioner_from_fhir,
            _new_practitioner,
            permission=SCHEDULE_MANAGE,
        ),
        Writer(
            "Practitioner",
            "update",
            practitioner_from_fhir,
            _updating(update_provider, practitioner_to_fhir),
            permission=SCHEDULE_MANAGE,
        ),
        Writer("Schedule", "create", schedule_from_fhir, _new_schedule, permission=SCHEDULE_MANAGE),
        Writer(
            "Schedule",
            "update",
            schedule_from_fhir,
            _updating(update_schedule, schedule_to_fhir),
            permission=SCHEDULE_MANAGE,
        ),
        Writer("Slot", "create", slot_from_fhir, _new_slot, permission=SCHEDULE_MANAGE),
        Writer(
            "Slot",
            "update",
            slot_from_fhir,
            _updating(update_session, slot_to_fhir),
            permission=SCHEDULE_MANAGE,
        ),
        Writer("Patient", "create", patient_from_fhir, _register),
        Writer("Patient", "update", patient_from_fhir, _change_patient),
        Writer("Coverage", "create", coverage_from_fhir, _new_coverage, _covered_patient),
        Writer("Coverage", "update", coverage_from_fhir, _change_coverage, _covered_patient),
    )
}


def create(resource_type: str) -> Response:
    """Create (for Appointment: book). `If-None-Exist` makes a retried POST create once."""
    writer = WRITERS[(resource_type, "create")]
    grants = caller()
    writer.authorize(grants)
    spec = writer.parse(read_json_body())
    condition = request.headers.get("If-None-Exist")
    if condition and (existing := conditional_match(resource_type, condition)) is not None:
        return _respond(existing, [], 200)
    ctx = WriteContext(grants, ssn())
    try:
        resource, warnings = _store(writer, spec, ctx)
    except DuplicateIdentifier:
        # A concurrent retry won the race on the identifier: answer as it would have.
        if condition and (existing := conditional_match(resource_type, condition)) is not None:
            return _respond(existing, [], 200)
        raise
    return _respond(resource, warnings, 201)


def update(resource_type: str, ident: str) -> Response:
    """Update (for Appointment: cancel, reschedule, resolve a draft); `If-Match` honoured."""
    writer = WRITERS[(resource_type, "update")]
    grants = caller()
    writer.authorize(grants)
    spec = writer.parse(body_for(ident, read_json_body()))
    ctx = WriteContext(grants, ssn(), ident, if_match_version())
    resource, warnings = _store(writer, spec, ctx)
    return _respond(resource, warnings, 200)


WRITES: dict[tuple[str, str], Callable[..., Response]] = {
    key: partial(create if key[1] == "create" else update, key[0]) for key in WRITERS
}


def _store(writer: Writer, spec: Any, ctx: WriteContext) -> Rendered:
    """Apply a write and its audit record in one transaction."""
    action = _ACTIONS[writer.interaction]
    with failures_audited(
        action, writer.interaction, writer.resource_type, ctx.ident, writer.patient(spec)
    ):
        return database().write(lambda db: writer.audited(db, spec, ctx))


@contextmanager
def failures_audited(
    action: str,
    interaction: str,
    resource_type: str,
    ident: str | None = None,
    patient: str | None = None,
) -> Iterator[None]:
    """A refused change rolled back with its audit record: record the failure on its own.

    Offers that lapsed are let go in that transaction too: the refused change reclaimed
    them first (and may have been refused because of it), and the lapse stands whatever
    became of the change."""
    try:
        yield
    except StoreError as exc:
        failure = AuditEntry(
            action,
            interaction,
            caller().subject,
            resource_type,
            ident,
            patient,
            outcome=MINOR_FAILURE,
            description=exc.message,
        )
        database().write(lambda db: (record(db, failure), sweep_expired_offers(db)))
        raise


def audit_bookings(db: Session, action: str, interaction: str, bookings: list[Any]) -> None:
    """One AuditEvent per booking an operation created or changed, in its transaction."""
    agent = caller().subject
    record_many(
        db,
        [
            AuditEntry(action, interaction, agent, "Appointment", b.id, b.patient_id)
            for b in bookings
        ],
    )


def body_for(ident: str, body: Any) -> Any:
    """An update's body, whose id must equal the id in the URL."""
    if isinstance(body, dict) and body.get("id") != ident:
        raise FhirError(
            400,
            "invalid",
            f"the resource id ({body.get('id')!r}) must equal the id in the URL ({ident!r})",
            expression=f"{body.get('resourceType', 'Resource')}.id",
        )
    return body


def conditional_match(
    resource_type: str, condition: str, db: Session | None = None
) -> dict[str, Any] | None:
    """The single resource matching an If-None-Exist query; 412 when several match.
    Inside a transaction, pass its session so the match sees what it wrote."""
    grants = caller()
    params = parse_qsl(condition.lstrip("?"), keep_blank_values=True)
    parsed = parse_search(resource_type, params, grants.access, ssn=ssn())
    parsed.query.limit = 2
    if db is not None:
        matches, _, _ = run_search(db, parsed, grants)
    else:
        with database().reading() as reading:
            matches, _, _ = run_search(reading, parsed, grants)
    if len(matches) > 1:
        raise FhirError(
            412, "multiple-matches", f"If-None-Exist matches several {resource_type} resources"
        )
    return matches[0] if matches else None


def _respond(resource: dict[str, Any], warnings: list[Notice], status: int) -> Response:
    """Answer a write as the client prefers (return=minimal|representation|OperationOutcome).

    Warnings (e.g. a closed session) travel in a `Warning: 299` header always, and in the
    OperationOutcome when the client asks for one.
    """
    headers = resource_headers(resource)
    location = f"{base_url()}/{resource['resourceType']}/{resource['id']}"
    headers["Location"] = f"{location}/_history/{resource['meta']['versionId']}"
    if warnings:
        headers["Warning"] = ", ".join(
            '299 fhir-facade "{}"'.format(w.text.replace('"', "'")) for w in warnings
        )
    wanted = prefer("return")
    if wanted == "minimal":
        return fhir_response(None, status, headers)
    if wanted == "OperationOutcome":
        return fhir_response(write_outcome(resource, warnings), status, headers)
    return fhir_response(resource, status, headers)


def write_outcome(resource: dict[str, Any], warnings: list[Notice]) -> dict[str, Any]:
    issues = [warning(w.text, w.code) for w in warnings] or [
        information(f"{resource['resourceType']}/{resource['id']} stored")
    ]
    return operation_outcome(*issues)

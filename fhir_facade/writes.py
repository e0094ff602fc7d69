"""Create and update interactions (R4 §3.1.0 create, update; conditional create).

Every write runs with its AuditEvent in one transaction (`_store`); a refused
write rolls back and its failure is audited on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl

from flask import Response, request
from sqlalchemy.orm import Session

from fhir_facade.auth import SCHEDULE_MANAGE
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
from mappings.appointment import appointment_from_fhir, appointment_to_fhir
from mappings.audit import patient_of
from mappings.coverage import coverage_from_fhir, coverage_to_fhir
from mappings.patient import patient_from_fhir, patient_to_fhir
from mappings.search import parse_search
from mappings.slot import slot_from_fhir, slot_to_fhir
from store.audit import MINOR_FAILURE, AuditEntry, record, record_many
from store.booking import Notice, book_patient, update_booking
from store.errors import DuplicateIdentifier, StoreError
from store.insurance import create_coverage, update_coverage
from store.patients import register_patient, update_patient
from store.sessions import create_session, update_session

Rendered = tuple[dict[str, Any], list[Notice]]  # the stored resource, warnings
Work = Callable[[Session], Rendered]

_ACTIONS = {"create": "C", "update": "U"}


def create_appointment() -> Response:
    """Book a patient into a group session. `If-None-Exist` makes a retried POST book once."""
    authorize(caller(), "Appointment", "c")
    booking = appointment_from_fhir(read_json_body())
    condition = request.headers.get("If-None-Exist")
    if condition and (existing := _conditional_match("Appointment", condition)) is not None:
        return _respond(existing, [], 200)

    def work(db: Session) -> Rendered:
        result = book_patient(db, booking, caller().access)
        return appointment_to_fhir(result.booking), result.warnings

    try:
        resource, warnings = _store("Appointment", "create", work, patient=booking.patient_id)
    except DuplicateIdentifier:
        # A concurrent retry won the race on the identifier: answer as it would have.
        if condition and (existing := _conditional_match("Appointment", condition)) is not None:
            return _respond(existing, [], 200)
        raise
    return _respond(resource, warnings, 201)


def update_appointment(ident: str) -> Response:
    """Cancel, reschedule (change the slot) or edit a booking; `If-Match` is honoured."""
    authorize(caller(), "Appointment", "u")
    booking = appointment_from_fhir(_body_for(ident))
    expected = if_match_version()

    def work(db: Session) -> Rendered:
        result = update_booking(db, ident, booking, caller().access, expected_version=expected)
        return appointment_to_fhir(result.booking), result.warnings

    resource, warnings = _store("Appointment", "update", work, ident, booking.patient_id)
    return _respond(resource, warnings, 200)


def create_slot() -> Response:
    _require_schedule_admin("c")
    spec = slot_from_fhir(read_json_body())
    resource, _ = _store("Slot", "create", lambda db: (slot_to_fhir(create_session(db, spec)), []))
    return _respond(resource, [], 201)


def update_slot(ident: str) -> Response:
    _require_schedule_admin("u")
    spec = slot_from_fhir(_body_for(ident))
    expected = if_match_version()

    def work(db: Session) -> Rendered:
        return slot_to_fhir(update_session(db, ident, spec, expected_version=expected)), []

    resource, _ = _store("Slot", "update", work, ident)
    return _respond(resource, [], 200)


def create_patient() -> Response:
    """Register a patient. `If-None-Exist` (e.g. identifier=MRN system|value) avoids twins."""
    authorize(caller(), "Patient", "c")
    spec = patient_from_fhir(read_json_body())
    condition = request.headers.get("If-None-Exist")
    if condition and (existing := _conditional_match("Patient", condition)) is not None:
        return _respond(existing, [], 200)
    hasher, access = ssn(), caller().access
    resource, _ = _store(
        "Patient",
        "create",
        lambda db: (patient_to_fhir(register_patient(db, spec, hasher, access)), []),
    )
    return _respond(resource, [], 201)


def update_patient_view(ident: str) -> Response:
    authorize(caller(), "Patient", "u")
    spec = patient_from_fhir(_body_for(ident))
    expected = if_match_version()
    hasher, access = ssn(), caller().access

    def work(db: Session) -> Rendered:
        patient = update_patient(db, ident, spec, hasher, access, expected_version=expected)
        return patient_to_fhir(patient), []

    resource, _ = _store("Patient", "update", work, ident, ident)
    return _respond(resource, [], 200)


def create_coverage_view() -> Response:
    authorize(caller(), "Coverage", "c")
    spec = coverage_from_fhir(read_json_body())
    condition = request.headers.get("If-None-Exist")
    if condition and (existing := _conditional_match("Coverage", condition)) is not None:
        return _respond(existing, [], 200)
    access = caller().access
    resource, _ = _store(
        "Coverage",
        "create",
        lambda db: (coverage_to_fhir(create_coverage(db, spec, access)), []),
        patient=spec.beneficiary_id,
    )
    return _respond(resource, [], 201)


def update_coverage_view(ident: str) -> Response:
    authorize(caller(), "Coverage", "u")
    spec = coverage_from_fhir(_body_for(ident))
    expected = if_match_version()
    access = caller().access

    def work(db: Session) -> Rendered:
        coverage = update_coverage(db, ident, spec, access, expected_version=expected)
        return coverage_to_fhir(coverage), []

    resource, _ = _store("Coverage", "update", work, ident, spec.beneficiary_id)
    return _respond(resource, [], 200)


WRITES: dict[tuple[str, str], Callable[..., Response]] = {
    ("Appointment", "create"): create_appointment,
    ("Appointment", "update"): update_appointment,
    ("Slot", "create"): create_slot,
    ("Slot", "update"): update_slot,
    ("Patient", "create"): create_patient,
    ("Patient", "update"): update_patient_view,
    ("Coverage", "create"): create_coverage_view,
    ("Coverage", "update"): update_coverage_view,
}


def _store(
    resource_type: str,
    interaction: str,
    work: Work,
    ident: str | None = None,
    patient: str | None = None,
) -> Rendered:
    """Run `work` and its audit record in one transaction."""
    agent = caller().subject
    action = _ACTIONS[interaction]

    def audited(db: Session) -> Rendered:
        resource, warnings = work(db)
        entry = AuditEntry(
            action, interaction, agent, resource_type, resource["id"], patient_of(resource)
        )
        record(db, entry)
        return resource, warnings

    with failures_audited(action, interaction, resource_type, ident, patient):
        return database().write(audited)


@contextmanager
def failures_audited(
    action: str,
    interaction: str,
    resource_type: str,
    ident: str | None = None,
    patient: str | None = None,
) -> Iterator[None]:
    """A refused change rolled back with its audit record: record the failure on its own."""
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
        database().write(lambda db: record(db, failure))
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


def _require_schedule_admin(letter: str) -> None:
    grants = caller()
    authorize(grants, "Slot", letter)
    grants.require_permission(SCHEDULE_MANAGE)


def _body_for(ident: str) -> Any:
    """An update's body, whose id must equal the id in the URL."""
    body = read_json_body()
    if isinstance(body, dict) and body.get("id") != ident:
        raise FhirError(
            400,
            "invalid",
            f"the resource id ({body.get('id')!r}) must equal the id in the URL ({ident!r})",
            expression=f"{body.get('resourceType', 'Resource')}.id",
        )
    return body


def _conditional_match(resource_type: str, condition: str) -> dict[str, Any] | None:
    """The single resource matching an If-None-Exist query; 412 when several match."""
    grants = caller()
    params = parse_qsl(condition.lstrip("?"), keep_blank_values=True)
    parsed = parse_search(resource_type, params, grants.access, ssn=ssn())
    parsed.query.limit = 2
    with database().reading() as db:
        matches, _, _ = run_search(db, parsed, grants.access)
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
        issues = [warning(w.text, w.code) for w in warnings] or [
            information(f"{resource['resourceType']}/{resource['id']} stored")
        ]
        return fhir_response(operation_outcome(*issues), status, headers)
    return fhir_response(resource, status, headers)

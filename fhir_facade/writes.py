"""Create and update interactions (R4 §3.1.0 create, update; conditional create)."""

from __future__ import annotations

from collections.abc import Callable
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
from fhir_facade.reads import run_search
from mappings.appointment import appointment_from_fhir, appointment_to_fhir
from mappings.coverage import coverage_from_fhir, coverage_to_fhir
from mappings.patient import patient_from_fhir, patient_to_fhir
from mappings.search import parse_search
from mappings.slot import slot_from_fhir, slot_to_fhir
from store.booking import Notice, book_patient, update_booking
from store.errors import DuplicateIdentifier
from store.insurance import create_coverage as store_create_coverage
from store.insurance import update_coverage
from store.patients import register_patient, update_patient
from store.sessions import create_session, update_session

Rendered = tuple[dict[str, Any], list[Notice]]  # the stored resource, warnings


def create_appointment() -> Response:
    """Book a patient into a group session. `If-None-Exist` makes a retried POST book once."""
    grants = caller()
    grants.require("Appointment", "c")
    booking = appointment_from_fhir(read_json_body())
    condition = request.headers.get("If-None-Exist")
    if condition and (existing := _conditional_match("Appointment", condition)) is not None:
        return _respond(existing, [], 200)

    def work(db: Session) -> Rendered:
        result = book_patient(db, booking, grants.access)
        return appointment_to_fhir(result.booking), result.warnings

    try:
        resource, warnings = database().write(work)
    except DuplicateIdentifier:
        # A concurrent retry won the race on the identifier: answer as it would have.
        if condition and (existing := _conditional_match("Appointment", condition)) is not None:
            return _respond(existing, [], 200)
        raise
    return _respond(resource, warnings, 201)


def update_appointment(ident: str) -> Response:
    """Cancel, reschedule (change the slot) or edit a booking; `If-Match` is honoured."""
    grants = caller()
    grants.require("Appointment", "u")
    body = read_json_body()
    _check_body_id(body, ident)
    booking = appointment_from_fhir(body)
    expected = if_match_version()

    def work(db: Session) -> Rendered:
        result = update_booking(db, ident, booking, grants.access, expected_version=expected)
        return appointment_to_fhir(result.booking), result.warnings

    resource, warnings = database().write(work)
    return _respond(resource, warnings, 200)


def create_slot() -> Response:
    grants = caller()
    grants.require("Slot", "c")
    grants.require_permission(SCHEDULE_MANAGE)
    spec = slot_from_fhir(read_json_body())
    resource = database().write(lambda db: slot_to_fhir(create_session(db, spec)))
    return _respond(resource, [], 201)


def update_slot(ident: str) -> Response:
    grants = caller()
    grants.require("Slot", "u")
    grants.require_permission(SCHEDULE_MANAGE)
    body = read_json_body()
    _check_body_id(body, ident)
    spec = slot_from_fhir(body)
    expected = if_match_version()
    resource = database().write(
        lambda db: slot_to_fhir(update_session(db, ident, spec, expected_version=expected))
    )
    return _respond(resource, [], 200)


def create_patient() -> Response:
    """Register a patient. `If-None-Exist` (e.g. identifier=MRN system|value) avoids twins."""
    grants = caller()
    grants.require("Patient", "c")
    spec = patient_from_fhir(read_json_body())
    condition = request.headers.get("If-None-Exist")
    if condition and (existing := _conditional_match("Patient", condition)) is not None:
        return _respond(existing, [], 200)
    hasher = ssn()
    resource = database().write(
        lambda db: patient_to_fhir(register_patient(db, spec, hasher, grants.access))
    )
    return _respond(resource, [], 201)


def update_patient_view(ident: str) -> Response:
    grants = caller()
    grants.require("Patient", "u")
    body = read_json_body()
    _check_body_id(body, ident)
    spec = patient_from_fhir(body)
    expected = if_match_version()
    hasher = ssn()
    resource = database().write(
        lambda db: patient_to_fhir(
            update_patient(db, ident, spec, hasher, grants.access, expected_version=expected)
        )
    )
    return _respond(resource, [], 200)


def update_coverage_view(ident: str) -> Response:
    grants = caller()
    grants.require("Coverage", "u")
    body = read_json_body()
    _check_body_id(body, ident)
    spec = coverage_from_fhir(body)
    expected = if_match_version()
    resource = database().write(
        lambda db: coverage_to_fhir(
            update_coverage(db, ident, spec, grants.access, expected_version=expected)
        )
    )
    return _respond(resource, [], 200)


def create_coverage() -> Response:
    grants = caller()
    grants.require("Coverage", "c")
    spec = coverage_from_fhir(read_json_body())
    condition = request.headers.get("If-None-Exist")
    if condition and (existing := _conditional_match("Coverage", condition)) is not None:
        return _respond(existing, [], 200)
    resource = database().write(
        lambda db: coverage_to_fhir(store_create_coverage(db, spec, grants.access))
    )
    return _respond(resource, [], 201)


WRITES: dict[tuple[str, str], Callable[..., Response]] = {
    ("Appointment", "create"): create_appointment,
    ("Appointment", "update"): update_appointment,
    ("Slot", "create"): create_slot,
    ("Slot", "update"): update_slot,
    ("Patient", "create"): create_patient,
    ("Patient", "update"): update_patient_view,
    ("Coverage", "create"): create_coverage,
    ("Coverage", "update"): update_coverage_view,
}


def _check_body_id(body: Any, ident: str) -> None:
    if isinstance(body, dict) and body.get("id") != ident:
        raise FhirError(
            400,
            "invalid",
            f"the resource id ({body.get('id')!r}) must equal the id in the URL ({ident!r})",
            expression=f"{body.get('resourceType', 'Resource')}.id",
        )


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

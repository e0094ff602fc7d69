"""Create and update interactions (R4 §3.1.0 create, update; conditional create).

Each write is a `Writer`: the registry's `Change` for one resource type and
interaction (how to read the body, what to do inside a transaction), authorized and
audited here. The same writers serve single requests and Bundles. Every write
runs with its AuditEvent in one transaction; a refused write rolls back and its
failure is audited on its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from flask import Response, request
from sqlalchemy.orm import Session

from fhir_facade.auth import Grants
from fhir_facade.changes import Change, Rendered, WriteContext
from fhir_facade.context import caller, database, ssn
from fhir_facade.http import (
    base_url,
    fhir_response,
    if_match_version,
    prefer,
    read_json_body,
    resource_headers,
)
from fhir_facade.outcomes import BadRequest, MultipleMatches
from fhir_facade.reads import authorize, run_search
from fhir_facade.registry import RESOURCE_TYPES
from mappings.audit import patient_of
from mappings.outcome import information, operation_outcome, warning
from mappings.search import parse_search
from store.audit import MINOR_FAILURE, AuditEntry, record, record_many
from store.booking import Notice
from store.errors import DuplicateIdentifier, NotFound, PermissionRequired, StoreError
from store.search import get_one, narrowed

_ACTIONS = {"create": "C", "update": "U"}
_LETTERS = {"create": "c", "update": "u"}


@dataclass(frozen=True)
class Writer:
    """One write interaction of one resource type, as the registry wires it."""

    resource_type: str
    interaction: str  # create | update
    change: Change[Any]

    def parse(self, body: Any) -> Any:
        return self.change.parse(body)

    def patient(self, spec: Any) -> str | None:
        return self.change.patient(spec)

    def authorize(self, grants: Grants) -> None:
        authorize(grants, self.resource_type, _LETTERS[self.interaction])
        if self.change.permission is not None:
            grants.require_permission(self.change.permission)

    def audited(self, db: Session, spec: Any, ctx: WriteContext) -> Rendered:
        """Apply and record the AuditEvent, in the caller's transaction."""
        access = ctx.grants.access_for(_LETTERS[self.interaction])
        kind = RESOURCE_TYPES[self.resource_type].kind
        scoped = narrowed(kind, access)
        if scoped and ctx.ident is not None and self.interaction == "update":
            exists = db.get(kind, ctx.ident) is not None
            if exists and get_one(db, kind, ctx.ident, access) is None:
                raise NotFound(self.resource_type, ctx.ident)
        resource, warnings = self.change.apply(db, spec, ctx)
        if scoped and get_one(db, kind, resource["id"], access) is None:
            # A granular scope (e.g. Coverage.cu?payor=…) does not reach the result.
            raise PermissionRequired(
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


def writer(resource_type: str, interaction: str) -> Writer | None:
    """The registry's create or update of a resource type, or None where none is wired."""
    served = RESOURCE_TYPES.get(resource_type)
    change = served.change(interaction) if served is not None else None
    return Writer(resource_type, interaction, change) if change is not None else None


def _wired(resource_type: str, interaction: str) -> Writer:
    wired = writer(resource_type, interaction)
    assert wired is not None, "routes exist only for wired writes"
    return wired


def create(resource_type: str) -> Response:
    """Create (for Appointment: book). `If-None-Exist` makes a retried POST create once."""
    writer = _wired(resource_type, "create")
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
    writer = _wired(resource_type, "update")
    grants = caller()
    writer.authorize(grants)
    spec = writer.parse(body_for(ident, read_json_body()))
    ctx = WriteContext(grants, ssn(), ident, if_match_version())
    resource, warnings = _store(writer, spec, ctx)
    return _respond(resource, warnings, 200)


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


def body_for(ident: str, body: Any) -> Any:
    """An update's body, whose id must equal the id in the URL."""
    if isinstance(body, dict) and body.get("id") != ident:
        raise BadRequest(
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
        raise MultipleMatches(f"If-None-Exist matches several {resource_type} resources")
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

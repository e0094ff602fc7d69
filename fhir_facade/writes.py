"""Create and update interactions (R4 §3.1.0 create, update; conditional create).

The views: read the body, run the registry's `Writer` (fhir_facade.interactions) in a
write transaction of the caller's Store, answer as the client prefers. The same
writers serve Bundle entries and the bulk import. Every write runs with its AuditEvent
in one transaction; a refused write rolls back and its failure is audited on its own.
"""

from __future__ import annotations

from typing import Any

from flask import Response, request

from fhir_facade import interactions
from fhir_facade.audit import failures_audited
from fhir_facade.changes import Rendered, WriteContext
from fhir_facade.context import caller, database, ssn
from fhir_facade.http import (
    base_url,
    fhir_response,
    if_match_version,
    prefer,
    read_json_body,
    resource_headers,
)
from fhir_facade.interactions import Writer
from fhir_facade.outcomes import BadRequest
from fhir_facade.references import checked_in
from mappings.outcome import information, operation_outcome, warning
from store.booking import Notice
from store.errors import DuplicateIdentifier
from store.scope import Store

_ACTIONS = {"create": "C", "update": "U"}


def _wired(resource_type: str, interaction: str) -> Writer:
    wired = interactions.writer(resource_type, interaction)
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


class _LapsedOffers(Exception):
    """A write found lapsed waitlist offers before changing anything: it steps back so they
    are let go first."""


def _store(writer: Writer, spec: Any, ctx: WriteContext) -> Rendered:
    """Apply a write and its audit record in one transaction.

    Lapsed waitlist offers are let go first, in a short transaction of their own, so a
    write that is then refused does not hold (and roll back) that hand-over: the write
    looks for them first (one indexed lookup, in its own transaction) and, finding some,
    rolls back, lets them go, and starts again. Finding none, that lookup stands for the
    write's own reclaiming (store.promotion.has_lapsed_offers): it runs as of the lookup,
    with no second one; the write after a sweep reclaims as usual."""

    def work(store: Store, look_first: bool) -> Rendered:
        if look_first and store.has_lapsed_offers():
            raise _LapsedOffers
        resource, warnings = writer.audited(store, spec, ctx)
        # Checked here, before the commit, not in a transaction of its own when sent.
        return checked_in(store, resource), warnings

    action = _ACTIONS[writer.interaction]
    patient = writer.patient(spec)
    try:
        with failures_audited(action, writer.interaction, writer.resource_type, ctx.ident, patient):
            return database().write_as(ctx.grants.access, lambda store: work(store, True))
    except _LapsedOffers:
        database().write_as(ctx.grants.access, lambda store: store.sweep_expired_offers())
    with failures_audited(action, writer.interaction, writer.resource_type, ctx.ident, patient):
        return database().write_as(ctx.grants.access, lambda store: work(store, False))


def body_for(ident: str, body: Any) -> Any:
    """An update's body, whose id must equal the id in the URL."""
    if isinstance(body, dict) and body.get("id") != ident:
        raise BadRequest(
            f"the resource id ({body.get('id')!r}) must equal the id in the URL ({ident!r})",
            expression=f"{body.get('resourceType', 'Resource')}.id",
        )
    return body


def conditional_match(resource_type: str, condition: str) -> dict[str, Any] | None:
    """The If-None-Exist match, read in a transaction of its own."""
    grants = caller()
    with database().read_as(grants.access) as store:
        return interactions.conditional_match(store, grants, resource_type, condition, ssn())


def _respond(resource: dict[str, Any], warnings: list[Notice], status: int) -> Response:
    """Answer a write as the client prefers (return=minimal|representation|OperationOutcome).

    Warnings (e.g. a closed session) travel in a `Warning: 299` header always, and in the
    OperationOutcome when the client asks for one.
    """
    headers = resource_headers(resource)
    headers["Location"] = f"{base_url()}/{version_path(resource)}"
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


def version_path(resource: dict[str, Any]) -> str:
    """Where the version a write stored is read: `Type/id/_history/n` (R4 §3.1.0.7: the
    Location of a create or update, and a Bundle entry's response.location)."""
    return f"{resource['resourceType']}/{resource['id']}/_history/{resource['meta']['versionId']}"


def write_outcome(resource: dict[str, Any], warnings: list[Notice]) -> dict[str, Any]:
    issues = [warning(w.text, w.code) for w in warnings] or [
        information(f"{resource['resourceType']}/{resource['id']} stored")
    ]
    return operation_outcome(*issues)

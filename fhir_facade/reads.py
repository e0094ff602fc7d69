"""Read and search interactions, the same for every resource type (R4 §3.1.0 read, search).

Reading a restricted patient's data (only possible with the privacy permission)
leaves an AuditEvent per patient.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response
from sqlalchemy.orm import Session

from fhir_facade.auth import Grants
from fhir_facade.context import caller, database, ssn
from fhir_facade.http import base_url, fhir_response, prefer, resource_headers
from fhir_facade.registry import RESOURCE_TYPES
from fhir_facade.searchset import history as history_bundle
from fhir_facade.searchset import searchset
from mappings.audit import patient_of
from mappings.search import SearchRequest, parse_history, parse_read, parse_search
from store import history as store_history
from store import search as store_search
from store.audit import AuditEntry, record_many, restricted_among
from store.errors import NotFound
from store.search import AnyOf, Condition, Page, Query


def authorize(grants: Grants, resource_type: str, letter: str) -> None:
    grants.require(resource_type, letter)
    permission = RESOURCE_TYPES[resource_type].permission
    if permission is not None:
        grants.require_permission(permission)


def read(resource_type: str, ident: str, params: list[tuple[str, str]]) -> Response:
    """Read, whole or in part (`_summary`, `_elements`: marked SUBSETTED)."""
    grants = caller()
    authorize(grants, resource_type, "r")
    subset = parse_read(resource_type, params)
    with database().reading() as db:
        resource = _visible(db, resource_type, ident, grants)
    audit_restricted_reads(grants, [resource], "R", "read")
    headers = resource_headers(resource)
    return fhir_response(subset.apply(resource) if subset else resource, headers=headers)


def vread(resource_type: str, ident: str, version: str) -> Response:
    """A version of a resource (R4 §3.1.0.3). Visibility follows the record as it is now:
    a patient restricted today hides every version of their data."""
    grants = caller()
    authorize(grants, resource_type, "r")
    with database().reading() as db:
        current = _visible(db, resource_type, ident, grants)
        resource = current if current["meta"]["versionId"] == version else None
        # Versions are INTEGER columns: a longer number names no version (and PostgreSQL
        # would refuse to compare with it).
        if resource is None and version.isascii() and version.isdigit() and len(version) < 10:
            kept = store_history.version_of(
                db, RESOURCE_TYPES[resource_type].kind, ident, int(version)
            )
            resource = orjson.loads(kept.document) if kept is not None else None
        if resource is None:
            raise NotFound(resource_type, f"{ident}/_history/{version}")
    audit_restricted_reads(grants, [resource], "R", "vread")
    return fhir_response(resource, headers=resource_headers(resource))


def history(resource_type: str, ident: str, params: list[tuple[str, str]]) -> Response:
    """Every kept version of a resource, newest first (R4 §3.1.0.4, history-instance)."""
    grants = caller()
    authorize(grants, resource_type, "r")
    page = parse_history(params, lenient=prefer("handling") == "lenient")
    with database().reading() as db:
        current = _visible(db, resource_type, ident, grants)
        kept = store_history.versions_of(db, RESOURCE_TYPES[resource_type].kind, ident)
        older = [
            orjson.loads(v.document) for v in kept if v.version < int(current["meta"]["versionId"])
        ]
    versions = [current, *older]
    audit_restricted_reads(grants, versions[page], "R", "history-instance")
    return fhir_response(history_bundle(base_url(), resource_type, ident, versions, page))


def _visible(db: Session, resource_type: str, ident: str, grants: Grants) -> dict[str, Any]:
    """The resource as it is now, rendered; NotFound when unknown or hidden from the caller."""
    spec = RESOURCE_TYPES[resource_type]
    record_ = store_search.get_one(db, spec.kind, ident, grants.access)
    if record_ is None:
        raise NotFound(resource_type, ident)
    return spec.read_fhir(record_)


def search(resource_type: str, params: list[tuple[str, str]]) -> Response:
    grants = caller()
    authorize(grants, resource_type, "s")
    lenient = prefer("handling") == "lenient"
    parsed = parse_search(resource_type, params, grants.access, lenient=lenient, ssn=ssn())
    with database().reading() as db:
        matches, included, page = run_search(db, parsed, grants)
    audit_restricted_reads(grants, matches + included, "E", "search-type")
    bundle = searchset(base_url(), parsed, matches, included, page.total, page.more)
    return fhir_response(bundle)


def audit_restricted_reads(
    grants: Grants, resources: list[dict[str, Any]], action: str, subtype: str
) -> None:
    """One AuditEvent per restricted patient whose data is about to be returned."""
    if not grants.access.restricted_patients:
        return  # without the permission no restricted data can be in `resources`
    owners = {p for r in resources if (p := patient_of(r)) is not None}
    if not owners:
        return

    def work(db: Session) -> None:
        entries = [
            AuditEntry(
                action,
                subtype,
                grants.subject,
                entity_kind="Patient",
                entity_id=patient_id,
                patient_id=patient_id,
                description="restricted patient's data disclosed",
            )
            for patient_id in restricted_among(db, owners)
        ]
        if entries:
            record_many(db, entries)

    database().write(work)


def run_search(
    db: Session, parsed: SearchRequest, grants: Grants
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Page]:
    """Matches, then `_include`d and `_revinclude`d resources (each once), rendered; and
    the page (its total, and whether more matches follow). Included types the token may
    not read are left out, and a chain into a type it may not search is refused: neither
    widens a scope (and what they reach passes the same visibility as a read)."""
    for target in sorted(parsed.chained):  # a chain searches its target type too
        grants.require(target, "s")
    access = grants.access
    spec = RESOURCE_TYPES[parsed.resource_type]
    page = store_search.run(db, parsed.query)
    render = spec.read_fhir
    matches = [render(row) for row in page.rows]
    seen = {(parsed.resource_type, r["id"]) for r in matches}
    included: list[dict[str, Any]] = []

    def add(resource_type: str, rows: list[Any]) -> None:
        render_included = RESOURCE_TYPES[resource_type].read_fhir
        for row in rows:
            if (resource_type, row.id) not in seen:
                seen.add((resource_type, row.id))
                included.append(render_included(row))

    for include in parsed.includes:
        wanted: dict[str, set[str]] = {}
        for row in page.rows:
            for resource_type, ident in include.refs(row):
                wanted.setdefault(resource_type, set()).add(ident)
        for resource_type, targets in sorted(wanted.items()):
            if not grants.allows(resource_type, "r"):
                continue
            kind = RESOURCE_TYPES[resource_type].kind
            add(resource_type, store_search.get_many(db, kind, sorted(targets), access))
    for revinclude in parsed.revincludes:
        ids = [row.id for row in page.rows]
        if not ids or not grants.allows(revinclude.source, "r"):
            continue
        source = RESOURCE_TYPES[revinclude.source]
        query = Query(
            kind=source.kind,
            where=[AnyOf((Condition(revinclude.field, "in", tuple(ids)),))],
            limit=10_000,
            access=access,
            count_total=False,
        )
        add(revinclude.source, list(store_search.run(db, query).rows))
    return matches, included, page

"""Read and search interactions, the same for every resource type (R4 §3.1.0 read, search)."""

from __future__ import annotations

from typing import Any

from flask import Response
from sqlalchemy.orm import Session

from fhir_facade.bundle import searchset
from fhir_facade.context import caller, database, ssn
from fhir_facade.http import base_url, fhir_response, prefer, resource_headers
from fhir_facade.registry import RESOURCE_TYPES
from mappings.search import SearchRequest, parse_search
from store import search as store_search
from store.access import Access
from store.errors import NotFound
from store.search import AnyOf, Condition, Query


def read(resource_type: str, ident: str) -> Response:
    grants = caller()
    grants.require(resource_type, "r")
    spec = RESOURCE_TYPES[resource_type]
    with database().reading() as db:
        record = store_search.get_one(db, spec.kind, ident, grants.access)
        if record is None:
            raise NotFound(resource_type, ident)
        resource = spec.to_fhir(record)
    return fhir_response(resource, headers=resource_headers(resource))


def search(resource_type: str, params: list[tuple[str, str]]) -> Response:
    grants = caller()
    grants.require(resource_type, "s")
    lenient = prefer("handling") == "lenient"
    parsed = parse_search(resource_type, params, grants.access, lenient=lenient, ssn=ssn())
    with database().reading() as db:
        matches, included, total = run_search(db, parsed, grants.access)
    return fhir_response(searchset(base_url(), parsed, matches, included, total))


def run_search(
    db: Session, parsed: SearchRequest, access: Access
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int | None]:
    """Matches, then `_include`d and `_revinclude`d resources (each once), rendered."""
    spec = RESOURCE_TYPES[parsed.resource_type]
    page = store_search.run(db, parsed.query)
    matches = [spec.to_fhir(row) for row in page.rows]
    seen = {(parsed.resource_type, r["id"]) for r in matches}
    included: list[dict[str, Any]] = []

    def add(resource_type: str, rows: list[Any]) -> None:
        render = RESOURCE_TYPES[resource_type].to_fhir
        for row in rows:
            if (resource_type, row.id) not in seen:
                seen.add((resource_type, row.id))
                included.append(render(row))

    for include in parsed.includes:
        wanted: dict[str, set[str]] = {}
        for row in page.rows:
            for resource_type, ident in include.refs(row):
                wanted.setdefault(resource_type, set()).add(ident)
        for resource_type, targets in sorted(wanted.items()):
            kind = RESOURCE_TYPES[resource_type].kind
            add(resource_type, store_search.get_many(db, kind, sorted(targets), access))
    for revinclude in parsed.revincludes:
        ids = [row.id for row in page.rows]
        if not ids:
            continue
        source = RESOURCE_TYPES[revinclude.source]
        query = Query(
            kind=source.kind,
            where=[AnyOf(tuple(Condition(revinclude.field, "eq", i) for i in ids))],
            limit=10_000,
            access=access,
            count_total=False,
        )
        add(revinclude.source, list(store_search.run(db, query).rows))
    return matches, included, page.total

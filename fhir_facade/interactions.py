"""The FHIR interactions apart from HTTP: read, vread, history, search, create and
update, and the conditional create's match (R4 §3.1.0).

Each is a function of the caller's store (store.scope: already limited to what the
caller may see), the caller's grants and the parsed input, and returns resources. The
views (reads, writes), Bundle entries (bundles) and the bulk import call these; none
of them touches a Flask request or response, so a Bundle's GET is the same read as a
single request's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson

from fhir_facade.auth import Grants
from fhir_facade.changes import Change, Rendered, WriteContext
from fhir_facade.outcomes import MultipleMatches
from fhir_facade.registry import RESOURCE_TYPES
from mappings.audit import patient_of
from mappings.search import SearchRequest, parse_search
from store.audit import AuditEntry
from store.errors import NotFound, PermissionRequired
from store.scope import Store
from store.search import AnyOf, Condition, Page, Query
from store.ssn import SsnHasher


@dataclass
class Found:
    """A search's page: matches, the `_include`d and `_revinclude`d resources (each once)
    and the page (its total, and whether more matches follow)."""

    matches: list[dict[str, Any]]
    included: list[dict[str, Any]]
    page: Page


def read(store: Store, grants: Grants, resource_type: str, ident: str) -> dict[str, Any]:
    """The resource as it is now; NotFound when unknown or hidden from the caller."""
    spec = RESOURCE_TYPES[resource_type]
    grants.authorize(resource_type, "r", spec.permission)
    return current(store, resource_type, ident)


def vread(
    store: Store, grants: Grants, resource_type: str, ident: str, version: str
) -> dict[str, Any]:
    """A version of a resource (R4 §3.1.0.3). Visibility follows the record as it is now:
    a patient restricted today hides every version of their data."""
    resource = read(store, grants, resource_type, ident)
    if resource["meta"]["versionId"] == version:
        return resource
    # Versions are INTEGER columns: a longer number names no version (and PostgreSQL
    # would refuse to compare with it).
    if version.isascii() and version.isdigit() and len(version) < 10:
        kept = store.version(RESOURCE_TYPES[resource_type].kind, ident, int(version))
        if kept is not None:
            older: dict[str, Any] = orjson.loads(kept.document)
            return older
    raise NotFound(resource_type, f"{ident}/_history/{version}")


def history(store: Store, grants: Grants, resource_type: str, ident: str) -> list[dict[str, Any]]:
    """Every kept version of a resource, newest first (R4 §3.1.0.4, history-instance)."""
    resource = read(store, grants, resource_type, ident)
    now = int(resource["meta"]["versionId"])
    kept = store.versions(RESOURCE_TYPES[resource_type].kind, ident)
    return [resource, *(orjson.loads(v.document) for v in kept if v.version < now)]


def current(store: Store, resource_type: str, ident: str) -> dict[str, Any]:
    """The resource as it is now, rendered, without a scope check (a write's answer)."""
    spec = RESOURCE_TYPES[resource_type]
    record = store.get(spec.kind, ident)
    if record is None:
        raise NotFound(resource_type, ident)
    return spec.to_fhir(record)


def search(store: Store, grants: Grants, parsed: SearchRequest) -> Found:
    """Matches, then included and revincluded resources, rendered (R4 §3.1.0.8)."""
    spec = RESOURCE_TYPES[parsed.resource_type]
    grants.authorize(parsed.resource_type, "s", spec.permission)
    return matching(store, grants, parsed)


def matching(store: Store, grants: Grants, parsed: SearchRequest) -> Found:
    """A search the caller is already allowed (a search, or a conditional create's query).
    Included types the token may not read are left out, and a chain into a type it may
    not search is refused: neither widens a scope (and what they reach passes the same
    visibility)."""
    spec = RESOURCE_TYPES[parsed.resource_type]
    for target in sorted(parsed.chained):  # a chain searches its target type too
        grants.require(target, "s")
    page = store.search(parsed.query)
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
            if grants.allows(resource_type, "r"):
                kind = RESOURCE_TYPES[resource_type].kind
                add(resource_type, store.get_many(kind, sorted(targets)))
    for revinclude in parsed.revincludes:
        ids = [row.id for row in page.rows]
        if not ids or not grants.allows(revinclude.source, "r"):
            continue
        query = Query(
            kind=RESOURCE_TYPES[revinclude.source].kind,
            where=[AnyOf((Condition(revinclude.field, "in", tuple(ids)),))],
            limit=10_000,
            count_total=False,
        )
        add(revinclude.source, list(store.search(query).rows))
    return Found(matches, included, page)


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
        grants.authorize(self.resource_type, _LETTERS[self.interaction], self.change.permission)

    def audited(self, store: Store, spec: Any, ctx: WriteContext) -> Rendered:
        """Apply and record the AuditEvent, in the store's transaction (R4 §3.1.0.4 update,
        §3.1.0.7 create). Under a granular scope for this interaction the record updated
        must be one the scope reaches (else NotFound), and so must the result (else
        PermissionRequired: nothing is written)."""
        scoped = store.as_(ctx.grants.access_for(_LETTERS[self.interaction]))
        kind = RESOURCE_TYPES[self.resource_type].kind
        narrowed = scoped.narrowed(kind)
        updated = ctx.ident if self.interaction == "update" else None
        if narrowed and updated is not None and scoped.get(kind, updated) is None:
            raise NotFound(self.resource_type, updated)
        resource, warnings = self.change.apply(store, spec, ctx)
        if narrowed and scoped.get(kind, resource["id"]) is None:
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
        store.record(entry)
        return resource, warnings


_ACTIONS = {"create": "C", "update": "U"}
_LETTERS = {"create": "c", "update": "u"}


def writer(resource_type: str, interaction: str) -> Writer | None:
    """The registry's create or update of a resource type, or None where none is wired."""
    served = RESOURCE_TYPES.get(resource_type)
    change = served.change(interaction) if served is not None else None
    return Writer(resource_type, interaction, change) if change is not None else None


def conditional_match(
    store: Store, grants: Grants, resource_type: str, condition: str, hasher: SsnHasher
) -> dict[str, Any] | None:
    """The single resource matching an If-None-Exist query (R4 §3.1.0.8 conditional
    create); MultipleMatches (412) when several match. Inside a write transaction, its
    store sees what the transaction wrote. The condition is a search, and a match is
    answered with the stored resource: it needs the search scope, as a search does."""
    grants.authorize(resource_type, "s", RESOURCE_TYPES[resource_type].permission)
    params = parse_qsl(condition.lstrip("?"), keep_blank_values=True)
    parsed = parse_search(resource_type, params, grants.access, ssn=hasher)
    parsed.query.limit = 2
    matches = matching(store, grants, parsed).matches
    if len(matches) > 1:
        raise MultipleMatches(f"If-None-Exist matches several {resource_type} resources")
    return matches[0] if matches else None

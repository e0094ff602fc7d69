"""Batch and transaction Bundles at `POST /fhir` (R4 http.html#transaction).

A transaction is all or nothing: every entry runs in one database transaction
(capacity rules included — a full session fails the whole Bundle with its
OperationOutcome), `urn:uuid` fullUrls are resolved to the ids the new resources
receive, and `ifNoneExist` is honoured inside it. Entries run in the order the
spec prescribes (POST, then PUT, then GET); the response lists them in request
order. A batch runs each entry on its own and reports each entry's outcome.

Subscription entries may create one (POST, committed with the Bundle); its other
interactions are served at /fhir/Subscription only (owner-scoped, with operations of
their own: fhir_facade.notify.api), and such entries are refused by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from flask import Response

from fhir_facade import interactions
from fhir_facade.audit import disclosures, failures_audited, record_disclosures
from fhir_facade.auth import Grants
from fhir_facade.changes import WriteContext
from fhir_facade.context import caller, database, ssn
from fhir_facade.http import base_url, etag_version, fhir_response, prefer, read_json_body
from fhir_facade.interactions import Writer, conditional_match, writer
from fhir_facade.notify.api import new_subscription
from fhir_facade.notify.conformance import RESOURCE_TYPE as SUBSCRIPTION
from fhir_facade.outcomes import BadRequest, MethodNotAllowed, describe
from fhir_facade.registry import RESOURCE_TYPES
from fhir_facade.searchset import searchset
from fhir_facade.writes import body_for, version_path, write_outcome
from mappings.common import ID_PATTERN, TYPE_PATTERN, parse_resource
from mappings.locations import Where, located
from mappings.search import parse_search
from store.audit import AuditEntry
from store.common import new_id
from store.errors import DatabaseUnavailable
from store.scope import Store
from store.ssn import SsnHasher

#: An entry's request.url: [base/fhir/]Type[/id][?query].
_URL = re.compile(rf"^(?:.*/fhir/)?({TYPE_PATTERN})(?:/({ID_PATTERN}))?(?:\?(.*))?$")
_ORDER = {"POST": 0, "PUT": 1, "GET": 2}
_STATUS_TEXT = {200: "200 OK", 201: "201 Created"}


@dataclass
class Entry:
    index: int
    method: str
    resource_type: str
    ident: str | None
    query: str | None
    resource: dict[str, Any] | None
    full_url: str | None
    if_none_exist: str | None
    if_match: int | None
    response: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    disclosed: list[AuditEntry] = field(default_factory=list)  # a GET's restricted reads


def process() -> Response:
    """Run a batch or transaction Bundle; answer with its -response Bundle."""
    body = read_json_body()
    parse_resource(body, "Bundle")
    kind = body.get("type")
    if kind not in ("batch", "transaction"):
        raise BadRequest(
            "POST /fhir takes a Bundle of type batch or transaction",
            expression="Bundle.type",
        )
    entries = [_entry(i, e) for i, e in enumerate(body.get("entry") or [])]
    grants = caller()
    if kind == "transaction":
        _transaction(entries, grants)
    else:
        for entry in entries:
            _batch_entry(entry, grants)
    minimal = prefer("return") == "minimal"
    return fhir_response(
        {
            "resourceType": "Bundle",
            "type": f"{kind}-response",
            "entry": [_response_entry(e, minimal) for e in entries],
        }
    )


def _entry(index: int, raw: Any) -> Entry:
    where = f"Bundle.entry[{index}]"
    request = raw.get("request") if isinstance(raw, dict) else None
    if not isinstance(request, dict):
        raise BadRequest("each entry needs a request", code="required", expression=where)
    method = str(request.get("method", ""))
    match = _URL.match(str(request.get("url", "")))
    if match is not None and match.group(1) == SUBSCRIPTION:
        _subscription_entry(index, method, match.group(2) or match.group(3), request)
    elif method not in _ORDER or match is None or match.group(1) not in RESOURCE_TYPES:
        raise BadRequest(
            f"entry {index}: {method} {request.get('url')!r} is not supported here "
            "(POST [type], PUT [type]/[id], GET [type]/[id] or [type]?[search])",
            code="not-supported",
            expression=f"{where}.request",
        )
    resource_type, ident, query = match.groups()
    interaction = {"POST": "create", "PUT": "update"}.get(method)
    if interaction and resource_type != SUBSCRIPTION and writer(resource_type, interaction) is None:
        raise MethodNotAllowed(
            f"entry {index}: {resource_type} does not support {interaction}",
            expression=f"{where}.request",
        )
    if method == "PUT" and (ident is None or query):
        raise BadRequest(
            f"entry {index}: PUT needs [type]/[id] (conditional update is not supported)",
            code="not-supported",
            expression=f"{where}.request.url",
        )
    resource = raw.get("resource")
    if interaction and not isinstance(resource, dict):
        raise BadRequest(f"entry {index}: no resource", code="required", expression=where)
    if_match = request.get("ifMatch")
    version = etag_version(str(if_match), f"{where}.request.ifMatch") if if_match else None
    return Entry(
        index,
        method,
        resource_type,
        ident,
        query,
        resource if isinstance(resource, dict) else None,
        raw.get("fullUrl"),
        request.get("ifNoneExist"),
        version,
    )


def _subscription_entry(
    index: int, method: str, beyond: str | None, request: dict[str, Any]
) -> None:
    """A Subscription entry may create one (POST Subscription), nothing else. `beyond`:
    an id or query after the type."""
    where = f"Bundle.entry[{index}].request"
    if method != "POST" or beyond is not None:
        raise MethodNotAllowed(
            f"entry {index}: a Bundle may only create a Subscription (POST Subscription); "
            "read, search, update and delete it at /fhir/Subscription",
            expression=where,
        )
    if request.get("ifNoneExist"):
        raise BadRequest(
            f"entry {index}: ifNoneExist is not supported for Subscription",
            code="not-supported",
            expression=f"{where}.ifNoneExist",
        )


def _transaction(entries: list[Entry], grants: Grants) -> None:
    for entry in entries:
        _authorize(entry, grants)
    hasher = ssn()

    def work(store: Store) -> None:
        assigned: dict[str, str] = {}
        for entry in entries:
            if entry.method != "POST":
                continue
            existing = (
                conditional_match(store, grants, entry.resource_type, entry.if_none_exist, hasher)
                if entry.if_none_exist
                else None
            )
            if existing is not None:
                entry.result, entry.response = existing, {"status": "200 OK"}
            else:
                entry.ident = new_id()
            if entry.full_url:
                ident = entry.ident if existing is None else existing["id"]
                assigned[entry.full_url] = f"{entry.resource_type}/{ident}"
        for entry in in_order(entries):
            if entry.result is not None:
                continue
            with located(_in_entry(entry)):
                if entry.resource is not None:
                    entry.resource = resolve_references(entry.resource, assigned)
                _run(store, entry, grants, hasher)
            if entry.disclosed:
                store.record_many(entry.disclosed)

    with failures_audited("E", "transaction", "Bundle"):
        database().write_as(grants.access, work)


def _in_entry(entry: Entry) -> Where:
    """A transaction's failure names its entry: `Bundle.entry[i].resource.…`, "entry i: …"."""
    at = f"Bundle.entry[{entry.index}]"
    return Where({entry.resource_type: f"{at}.resource"}, f"entry {entry.index}", at)


def _batch_entry(entry: Entry, grants: Grants) -> None:
    """Run one batch entry on its own; its failure becomes its response."""
    hasher = ssn()
    try:
        _authorize(entry, grants)
        if entry.method == "POST" and entry.if_none_exist:
            with database().read_as(grants.access) as store:
                existing = conditional_match(
                    store, grants, entry.resource_type, entry.if_none_exist, hasher
                )
            if existing is not None:
                entry.result, entry.response = existing, {"status": "200 OK"}
                return
        if entry.method == "POST":
            entry.ident = new_id()
        if entry.method == "GET":
            with database().read_as(grants.access) as store:
                _run(store, entry, grants, hasher)
            record_disclosures(grants, entry.disclosed)
        elif entry.resource_type == SUBSCRIPTION:  # not audited, as at /fhir/Subscription
            database().write_as(grants.access, lambda store: _run(store, entry, grants, hasher))
        else:
            wired = _writer(entry)
            with failures_audited(
                "C" if entry.method == "POST" else "U",
                wired.interaction,
                entry.resource_type,
                entry.ident,
            ):
                database().write_as(grants.access, lambda store: _run(store, entry, grants, hasher))
    except DatabaseUnavailable:
        raise  # the next entries would wait on the same database: the whole batch is 503
    except Exception as exc:  # each entry answers for itself in a batch
        status, outcome = describe(exc)
        entry.result = None
        entry.response = {"status": str(status), "outcome": outcome}


def _run(store: Store, entry: Entry, grants: Grants, hasher: SsnHasher) -> None:
    if entry.resource_type == SUBSCRIPTION:
        assert entry.resource is not None and entry.method == "POST"
        created = new_subscription(store, grants, entry.resource, base_url(), entry.ident)
        _record(entry, created, [], 201)
        return
    if entry.method == "GET":
        entry.result = _get(store, entry, grants)
        entry.response = {"status": "200 OK"}
        entry.disclosed = disclosures(store, grants, _resources_in(entry.result), "R", "read")
        return
    wired = _writer(entry)
    assert entry.resource is not None
    body = entry.resource if entry.method == "POST" else body_for(entry.ident or "", entry.resource)
    spec = wired.parse(body)
    ctx = WriteContext(grants, hasher, entry.ident, entry.if_match)
    resource, warnings = wired.audited(store, spec, ctx)
    _record(entry, resource, warnings, 201 if entry.method == "POST" else 200)


def _get(store: Store, entry: Entry, grants: Grants) -> dict[str, Any]:
    """The entry's read or search (authorized with the others, before any ran)."""
    if entry.ident is not None:
        return interactions.current(store, entry.resource_type, entry.ident)
    params = parse_qsl(entry.query or "", keep_blank_values=True)
    parsed = parse_search(entry.resource_type, params, grants.access, ssn=ssn())
    found = interactions.matching(store, grants, parsed)
    page = found.page
    return searchset(base_url(), parsed, found.matches, found.included, page.total, page.more)


def _record(entry: Entry, resource: dict[str, Any], warnings: list[Any], status: int) -> None:
    """The entry's response: what a single write answers in its headers, as elements."""
    entry.result = resource
    entry.response = {
        "status": _STATUS_TEXT[status],
        "location": version_path(resource),
        "etag": f'W/"{resource["meta"]["versionId"]}"',
        "lastModified": resource["meta"]["lastUpdated"],
    }
    if warnings:
        entry.response["outcome"] = write_outcome(resource, warnings)


def _writer(entry: Entry) -> Writer:
    wired = writer(entry.resource_type, "create" if entry.method == "POST" else "update")
    assert wired is not None, "_entry refused writes that are not wired"
    return wired


def _authorize(entry: Entry, grants: Grants) -> None:
    if entry.resource_type == SUBSCRIPTION:
        grants.require(SUBSCRIPTION, "c")
    elif entry.method == "GET":
        letter = "r" if entry.ident else "s"
        grants.authorize(
            entry.resource_type, letter, RESOURCE_TYPES[entry.resource_type].permission
        )
    else:
        _writer(entry).authorize(grants)


def in_order(entries: list[Entry]) -> list[Entry]:
    """POSTs, then PUTs, then GETs; a created resource before those that refer to it."""
    posts = [e for e in entries if e.method == "POST"]
    by_url = {e.full_url: e for e in posts if e.full_url}
    ordered: list[Entry] = []
    placed: set[int] = set()

    def place(entry: Entry, path: tuple[int, ...]) -> None:
        if entry.index in placed:
            return
        if entry.index in path:
            raise BadRequest(
                "the Bundle's new resources refer to each other in a cycle",
                expression=f"Bundle.entry[{entry.index}]",
            )
        for ref in references(entry.resource):
            if ref in by_url:
                place(by_url[ref], (*path, entry.index))
        placed.add(entry.index)
        ordered.append(entry)

    for entry in posts:
        place(entry, ())
    rest = sorted(
        (e for e in entries if e.method != "POST"), key=lambda e: (_ORDER[e.method], e.index)
    )
    return ordered + rest


def references(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["reference"]] if isinstance(value.get("reference"), str) else []
        return found + [r for v in value.values() for r in references(v)]
    if isinstance(value, list):
        return [r for v in value for r in references(v)]
    return []


def resolve_references(value: Any, assigned: dict[str, str]) -> Any:
    """The resource with every reference to a fullUrl of this Bundle made local."""
    if isinstance(value, dict):
        resolved = {k: resolve_references(v, assigned) for k, v in value.items()}
        ref = resolved.get("reference")
        if isinstance(ref, str) and ref in assigned:
            resolved["reference"] = assigned[ref]
        return resolved
    if isinstance(value, list):
        return [resolve_references(v, assigned) for v in value]
    return value


def _resources_in(result: dict[str, Any]) -> list[dict[str, Any]]:
    if result.get("resourceType") == "Bundle":
        return [e["resource"] for e in result.get("entry", [])]
    return [result]


def _response_entry(entry: Entry, minimal: bool) -> dict[str, Any]:
    response: dict[str, Any] = {"response": entry.response or {"status": "200 OK"}}
    if entry.result is not None and not minimal:
        kind = entry.result["resourceType"]
        if kind != "Bundle":
            response = {"fullUrl": f"{base_url()}/{kind}/{entry.result['id']}", **response}
        response["resource"] = entry.result
    return response

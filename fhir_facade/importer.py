"""`fhir-facade import FILE`: a clinic's resources from a Bundle or NDJSON, idempotently.

Each resource is matched on its first identifier (system|value), the way a conditional
create would: a new one is created, a known one is updated when it says something new
and left alone when it does not, so importing the same file twice changes nothing. The
resources go through the same writers as the API (parsed with the R4B models, checked
by the store's rules, audited), in an order where every resource comes after those it
refers to; references between them (a Bundle's fullUrls, or `Type/id` in NDJSON) are
pointed at the ids the server gave. Without `--atomic` every resource is its own
transaction and a refused one stops nothing else (except those that refer to it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import orjson

from fhir_facade.audit import failures_audited
from fhir_facade.auth import Grants
from fhir_facade.bundles import Entry, in_order, references, resolve_references
from fhir_facade.changes import WriteContext
from fhir_facade.context import database, ssn
from fhir_facade.interactions import conditional_match, writer
from fhir_facade.outcomes import describe
from store.common import new_id
from store.scope import Store

CREATED, UPDATED, UNCHANGED = "created", "updated", "unchanged"


class Refused(Exception):
    """A resource the import cannot take, with the reason."""


@dataclass
class Item:
    """One resource of the file: where it was, and the key others refer to it by."""

    where: str  # "line 3" or "entry 2"
    resource: dict[str, Any] | None
    key: str | None = None
    problem: str | None = None  # unreadable: why

    @property
    def label(self) -> str:
        if not isinstance(self.resource, dict):
            return self.where
        return f"{self.where} ({self.key or self.resource.get('resourceType', '?')})"


@dataclass
class ImportReport:
    outcomes: dict[str, list[str]] = field(
        default_factory=lambda: {CREATED: [], UPDATED: [], UNCHANGED: []}
    )  # what happened -> "Location/abc" ...
    refused: list[str] = field(default_factory=list)  # "line 3 (Location): why"

    def summary(self) -> str:
        counts = ", ".join(f"{len(v)} {k}" for k, v in self.outcomes.items())
        return f"{counts}, {len(self.refused)} refused"


def read_items(text: str) -> list[Item]:
    """A Bundle's entries (any Bundle type; their requests are not needed), or NDJSON:
    one resource per line, blank lines skipped."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            whole = orjson.loads(stripped)
        except orjson.JSONDecodeError:
            whole = None
        if isinstance(whole, dict) and whole.get("resourceType") == "Bundle":
            return [_bundle_item(i, e) for i, e in enumerate(whole.get("entry") or [])]
    items = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            resource = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            items.append(Item(f"line {number}", None, problem=f"malformed JSON: {exc}"))
            continue
        items.append(Item(f"line {number}", resource, _local_key(resource)))
    return items


def _bundle_item(index: int, entry: Any) -> Item:
    resource = entry.get("resource") if isinstance(entry, dict) else None
    if not isinstance(resource, dict):
        return Item(f"entry {index}", None, problem="the entry has no resource")
    key = entry.get("fullUrl") or _local_key(resource)
    return Item(f"entry {index}", resource, key)


def _local_key(resource: Any) -> str | None:
    if isinstance(resource, dict) and resource.get("id") and resource.get("resourceType"):
        return f"{resource['resourceType']}/{resource['id']}"
    return None


def import_items(
    items: list[Item],
    grants: Grants,
    *,
    atomic: bool = False,
    tick: Callable[[], None] = lambda: None,
) -> ImportReport:
    """Import in dependency order; `tick` is called once per resource (progress)."""
    report = ImportReport()
    readable = [i for i in items if i.resource is not None]
    for item in items:
        if item.problem:
            report.refused.append(f"{item.label}: {item.problem}")
            tick()
    ordered = _ordered(readable)
    if atomic and report.refused:
        report.refused.append("nothing was imported (--atomic)")
        return report
    if atomic:
        _import_atomically(ordered, grants, report, tick)
    else:
        _import_one_by_one(ordered, grants, report, tick)
    return report


def _ordered(items: list[Item]) -> list[Item]:
    """Every resource after the resources of the file it refers to (file order otherwise)."""
    entries = [
        Entry(n, "POST", str(i.resource and i.resource.get("resourceType")), None, None,
              i.resource, i.key, None, None)
        for n, i in enumerate(items)
    ]  # fmt: skip
    return [items[e.index] for e in in_order(entries)]


def _import_one_by_one(
    items: list[Item], grants: Grants, report: ImportReport, tick: Callable[[], None]
) -> None:
    assigned: dict[str, str] = {}
    refused: dict[str, str] = {}  # key -> where
    for item in items:
        assert item.resource is not None
        try:
            if blocked := [r for r in references(item.resource) if r in refused]:
                raise Refused(f"refers to {blocked[0]} ({refused[blocked[0]]}), which was refused")
            kind = str(item.resource.get("resourceType"))
            with failures_audited("E", "import", kind):
                what, stored = database().write_as(
                    grants.access,
                    partial(_import, resource=item.resource, assigned=assigned, grants=grants),
                )
        except Exception as exc:  # each resource answers for itself
            report.refused.append(f"{item.label}: {_reason(exc)}")
            if item.key:
                refused[item.key] = item.where
        else:
            report.outcomes[what].append(f"{stored['resourceType']}/{stored['id']}")
            assigned.update(_assignment(item, stored))
        tick()


def _import_atomically(
    items: list[Item], grants: Grants, report: ImportReport, tick: Callable[[], None]
) -> None:
    assigned: dict[str, str] = {}
    done: list[tuple[Item, str, dict[str, Any]]] = []
    running: list[Item] = []

    def work(store: Store) -> None:
        assigned.clear()
        done.clear()
        for item in items:
            running[:] = [item]
            what, stored = _import(store, resource=item.resource, assigned=assigned, grants=grants)
            done.append((item, what, stored))
            assigned.update(_assignment(item, stored))
            tick()

    try:
        with failures_audited("E", "import", "Bundle"):
            database().write_as(grants.access, work)
    except Exception as exc:
        where = running[0].label if running else "the file"
        report.refused.append(f"{where}: {_reason(exc)}")
        report.refused.append("nothing was imported (--atomic)")
        return
    for _, what, stored in done:
        report.outcomes[what].append(f"{stored['resourceType']}/{stored['id']}")


def _assignment(item: Item, stored: dict[str, Any]) -> dict[str, str]:
    return {item.key: f"{stored['resourceType']}/{stored['id']}"} if item.key else {}


def _import(
    store: Store, *, resource: Any, assigned: dict[str, str], grants: Grants
) -> tuple[str, dict[str, Any]]:
    """Create the resource, or update the one carrying its identifier; (what, stored)."""
    body = resolve_references(resource, assigned)
    kind = str(body.get("resourceType"))
    creator, updater = writer(kind, "create"), writer(kind, "update")
    if creator is None:
        raise Refused(f"{kind} cannot be imported (the server does not create it)")
    creator.authorize(grants)
    hasher = ssn()
    existing = conditional_match(store, grants, kind, _identifier_condition(body), hasher)
    body = {k: v for k, v in body.items() if k not in ("id", "meta")}
    if existing is None:
        ctx = WriteContext(grants, hasher, new_id())
        stored, _ = creator.audited(store, creator.parse(body), ctx)
        return CREATED, stored
    if updater is None:
        return UNCHANGED, existing
    updater.authorize(grants)
    body["id"] = existing["id"]
    spec = updater.parse(body)
    try:
        with store.savepoint():  # rolled back when the update says nothing new
            stored, _ = updater.audited(store, spec, WriteContext(grants, hasher, existing["id"]))
            if _without_meta(stored) == _without_meta(existing):
                raise _Unchanged
    except _Unchanged:
        return UNCHANGED, existing  # no new version, no audit record
    return UPDATED, stored


class _Unchanged(Exception):
    pass


def _identifier_condition(body: dict[str, Any]) -> str:
    for identifier in body.get("identifier") or []:
        if isinstance(identifier, dict) and identifier.get("system") and identifier.get("value"):
            return f"identifier={identifier['system']}|{identifier['value']}"
    raise Refused(
        "an imported resource needs an identifier with a system and a value, so that "
        "importing it again finds it instead of creating it twice"
    )


def _without_meta(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "meta"}


def _reason(exc: Exception) -> str:
    if isinstance(exc, Refused):
        return str(exc)
    status, outcome = describe(exc)
    issue = outcome["issue"][0]
    where = f" [{issue['expression'][0]}]" if issue.get("expression") else ""
    return f"{status} {issue['code']}: {issue['details']['text']}{where}"

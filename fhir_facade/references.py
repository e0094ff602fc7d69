"""References from a record the caller sees to one they may not (README, Security).

A visible patient's Appointment may name a Coverage the caller cannot see (a family
plan whose subscriber is restricted, now or since the booking), a kept Patient or
Coverage document may name a restricted patient. Such references are left out of
every response body as it is sent, whatever path rendered the record (read, search,
include, vread and history snapshots, writes, Bundles, operations), so they follow the
restriction as it is at that moment, both ways.
"""

from __future__ import annotations

from typing import Any

from fhir_facade.context import caller, database
from fhir_facade.registry import RESOURCE_TYPES
from mappings.references import checked_references, resources_in, without_references
from store.search import visible_ids


def without_hidden_references(body: Any) -> None:
    """Remove, in place, the references in `body` to records the caller may not see."""
    named = {id(r): (r, checked_references(r)) for r in resources_in(body)}
    wanted: dict[str, set[str]] = {}
    for _, references in named.values():
        for kind, ident in references:
            wanted.setdefault(kind, set()).add(ident)
    if not wanted:
        return
    access = caller().access
    with database().reading() as db:
        hidden = {
            (kind, ident)
            for kind, ids in wanted.items()
            for ident in ids - visible_ids(db, RESOURCE_TYPES[kind].kind, ids, access)
        }
    for resource, references in named.values():
        if references & hidden:
            without_references(resource, hidden)

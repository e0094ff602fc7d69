"""References from a record the caller sees to one they may not (README, Security).

A visible patient's Appointment may name a Coverage the caller cannot see (a family
plan whose subscriber is restricted, now or since the booking), a kept Patient or
Coverage document may name a restricted patient. Such references are left out of
every response body as it is sent, whatever path rendered the record (read, search,
include, vread and history snapshots, writes, Bundles, operations), so they follow the
restriction as it is at that moment, both ways.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from fhir_facade.context import caller, database
from mappings.references import (
    NamesNoRecord,
    Unchecked,
    checked_references,
    resources_in,
    with_hidden_kept,
    without_references,
)
from mappings.search_params import SEARCHES
from store.models import Booking
from store.scope import Store


class Checked(dict[str, Any]):
    """A write's answer whose references were checked in the write's own transaction
    (`checked_in`): sending it needs no second transaction to check them again."""


class Vouched(dict[str, Any]):
    """A write's answer with the references the write itself found visible to its caller,
    in its own transaction (`seen`: e.g. the coverages a booking chose among the ones the
    caller sees): `checked_in` does not look them up again."""

    def __init__(self, resource: dict[str, Any], seen: set[tuple[str, str]]) -> None:
        super().__init__(resource)
        self.seen = frozenset(seen)


def chosen_coverages(bookings: Iterable[Booking]) -> set[tuple[str, str]]:
    """What new bookings' writes vouch for (`Vouched`): their coverages, chosen among those
    the caller sees (store.booking), in the write's own transaction."""
    return {("Coverage", c.coverage_id) for booking in bookings for c in booking.coverages}


def checked_in(store: Store, resource: dict[str, Any]) -> Checked:
    """`resource` without its references to records `store`'s caller may not see, as the
    transaction that wrote it sees them (so at commit, not a moment later)."""
    seen = resource.seen if isinstance(resource, Vouched) else frozenset()
    drop_hidden_references(store, resource, seen=seen)
    return Checked(resource)


def without_hidden_references(body: Any) -> None:
    """Remove, in place, the references in `body` to records the caller may not see."""
    if not any(checked_references(r) for r in _checked(body)):
        return
    with database().read_as(caller().access) as store:
        drop_hidden_references(store, body)


def drop_hidden_references(
    store: Store, body: Any, *, seen: frozenset[tuple[str, str]] = frozenset()
) -> None:
    """Remove, in place, the references in `body` to records `store`'s caller may not see
    (also for a notification, sent outside any request, as its subscriber). References
    in `seen` are known to be visible to that caller in `store`'s transaction."""
    named = {id(r): (r, checked_references(r)) for r in _checked(body)}
    named_refs = {ref for _, references in named.values() for ref in references} - seen
    if not named_refs:
        return
    hidden = _hidden(store, named_refs)
    for resource, references in named.values():
        if references & hidden:
            without_references(resource, hidden)


def document_keeping_hidden(
    store: Store, resource_type: str, kept: str | None, sent: str | None
) -> str | None:
    """An update's kept document (JSON text) with the elements of the old one that name
    records the caller may not see put back (see `mappings.references.with_hidden_kept`)."""
    if not kept or sent is None:
        return sent
    old = {"resourceType": resource_type, **orjson.loads(kept)}
    hidden = _hidden(store, checked_references(old))
    if not hidden:
        return sent
    return orjson.dumps(with_hidden_kept(old, orjson.loads(sent), hidden)).decode()


def _hidden(store: Store, references: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of these (kind, id) references name a record the caller may not see."""
    wanted: dict[str, set[str]] = {}
    for kind, ident in references:
        wanted.setdefault(kind, set()).add(ident)
    return {
        (kind, ident)
        for kind, ids in wanted.items()
        for ident in ids - store.visible_ids(SEARCHES[kind].kind, ids)
    }


def _checked(body: Any) -> list[Any]:
    """The resources in `body` that may name hidden records (a shared rendering, or one
    made of elements without references, names none; a write's answer, a resource or a
    Bundle of them, was checked before its commit)."""
    passed = Unchecked | NamesNoRecord | Checked
    if isinstance(body, passed):
        return []
    return [r for r in resources_in(body) if not isinstance(r, passed)]

"""References inside rendered resources, and leaving out the ones a reader may not follow.

A record the caller sees may name one they may not: a visible patient's Appointment
booked on a plan whose subscriber is restricted (`supportingInformation`), or what an
EHR sent and we keep as sent (`Patient.link`, `Coverage.policyHolder`, a reference in
an extension). The element holding such a reference is left out: a list item, or the
element itself. The elements that make a record what it is (an Appointment's
participants, a Coverage's beneficiary, subscriber and payor, an AuditEvent's
entities) are never touched: the record itself is hidden when they name hidden ones.
"""

from __future__ import annotations

from typing import Any

import orjson

from mappings.common import JSON

#: The kinds of record a reference may name that can be hidden from a caller.
CHECKED = ("Patient", "Coverage", "Appointment")
#: Elements whose references decide whether the record itself is visible.
_DEFINING: dict[str, frozenset[str]] = {
    "Appointment": frozenset({"participant"}),
    "Coverage": frozenset({"beneficiary", "subscriber", "payor"}),
    "AuditEvent": frozenset({"entity"}),
}
_OWN = frozenset({"resourceType", "id", "meta"})
_CONTAINERS = ("Bundle", "Parameters", "OperationOutcome")


class NamesNoRecord(dict[str, Any]):
    """A fresh rendering made only of elements that cannot hold a reference (a Patient
    from its columns, not from a kept document): the check for hidden references passes
    it by (on a page of 50 patients it cost more than rendering them). Unlike `Unchecked`
    it is not shared: it may change, but nothing that names a record may be put in it."""


class Unchecked(dict[str, Any]):
    """A rendered resource that names no `CHECKED` record, shared between requests and
    callers: the same for everyone, so the check for hidden references passes it by
    (checking the 500 Slots of a page cost more than rendering them), and closed to
    changes of its elements (copy it to change it)."""

    def _refuse(self, *_: Any, **__: Any) -> Any:
        raise TypeError("a shared rendering cannot be changed; copy it")

    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = _refuse
    __ior__ = _refuse

    def json(self) -> orjson.Fragment:
        """Its JSON, serialised the first time it is sent and kept with it: a shared
        rendering is sent many times, and copying kept bytes costs a quarter of
        serialising the dicts again (`fhir_facade.http.json_bytes`)."""
        kept: orjson.Fragment | None = self.__dict__.get("_json")
        if kept is None:
            kept = self.__dict__["_json"] = orjson.Fragment(orjson.dumps(dict(self)))
        return kept

    def entry(self, base: str, mode: str) -> Unchecked:
        """Its searchset entry (`fhir_facade.searchset`), shared and written once like
        the rendering itself: a 500-Slot page built 500 entries per request. One is kept,
        the last asked for (base URL and search mode), so no Host header can grow it."""
        kept: tuple[str, str, Unchecked] | None = self.__dict__.get("_entry")
        if kept is not None and kept[0] == base and kept[1] == mode:
            return kept[2]
        url = f"{base}/{self['resourceType']}/{self['id']}"
        search = {"mode": mode}
        made = Unchecked(fullUrl=url, resource=self, search=search)
        written = orjson.dumps({"fullUrl": url, "resource": self.json(), "search": search})
        made.__dict__["_json"] = orjson.Fragment(written)
        self.__dict__["_entry"] = (base, mode, made)
        return made


def resources_in(body: Any) -> list[JSON]:
    """Every resource inside a response body (the body itself, Bundle entries, nested
    Bundles of a batch response, operation outputs), outermost containers excepted."""
    found: list[JSON] = []
    stack = [body]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            kind = item.get("resourceType")
            if isinstance(kind, str) and kind not in _CONTAINERS:
                found.append(item)
            else:
                stack.extend(v for v in item.values() if isinstance(v, (dict, list)))
    return found


def checked_references(resource: JSON) -> set[tuple[str, str]]:
    """(kind, id) of each reference to a `CHECKED` kind outside the defining elements."""
    return {ref for _, value in _elements(resource) for ref in _references(value)}


def without_references(resource: JSON, hidden: set[tuple[str, str]]) -> None:
    """Leave out, in place, each element (or list item) naming one of `hidden`."""
    for name, value in _elements(resource):
        if isinstance(value, list):
            kept = [item for item in value if not _references(item) & hidden]
            if not kept:
                del resource[name]
            elif len(kept) < len(value):
                resource[name] = kept
        elif _references(value) & hidden:
            del resource[name]


def _elements(resource: JSON) -> list[tuple[str, Any]]:
    defining = _DEFINING.get(resource.get("resourceType", ""), frozenset())
    skipped = _OWN | defining
    return [(k, v) for k, v in resource.items() if k not in skipped]


def _references(value: Any) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            reference = item.get("reference")
            if isinstance(reference, str):
                kind, _, ident = reference.rpartition("/")
                kind = kind.rpartition("/")[2]  # an absolute URL ends in Type/id too
                if kind in CHECKED and ident:
                    found.add((kind, ident))
            stack.extend(v for v in item.values() if isinstance(v, (dict, list)))
    return found


def with_hidden_kept(kept: JSON, sent: JSON, hidden: set[tuple[str, str]]) -> JSON:
    """A client's new document (`sent`) with what the old one (`kept`) held that names a
    `hidden` record put back: the caller could not see it, so neither sent it nor may
    remove or replace it. A list keeps its hidden items after the sent ones; an element
    naming a hidden record stays as it was."""
    merged = dict(sent)
    for name, value in _elements(kept):
        if isinstance(value, list):
            keep = [item for item in value if _references(item) & hidden]
            if keep:
                merged[name] = [*merged.get(name, []), *keep]
        elif _references(value) & hidden:
            merged[name] = value
    return merged

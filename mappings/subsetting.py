"""`_summary` and `_elements` (R4 search.html#summary, #elements): return part of each
resource, marked `SUBSETTED` in `meta.tag`.

What is kept comes from the R4 definitions (mappings.r4_elements): `_summary=true` keeps
the isSummary elements, `text` keeps the narrative, `data` drops it, and `_elements`
keeps the elements named. Each also keeps `id`, `meta`, every mandatory (min >= 1) and
modifier element, and the elements a resource-level invariant needs, so what is
returned is still a valid resource whose meaning no missing element changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mappings.errors import InvalidSearch
from mappings.r4_elements import ELEMENTS

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
SUMMARY_MODES = ("true", "text", "data", "count", "false")
_ALWAYS = frozenset({"resourceType", "id", "meta"})
#: Elements a resource-level R4 invariant needs, kept like the mandatory ones so a subset
#: still validates: app-3 (a booked Appointment has start and end), org-1 (an
#: Organization has a name or an identifier).
_INVARIANTS = {
    "Appointment": frozenset({"start", "end"}),
    "Organization": frozenset({"name", "identifier"}),
}


@dataclass(frozen=True)
class Subset:
    """Top-level elements to keep (`keep`), or, with `keep` None, to leave out (`drop`)."""

    keep: frozenset[str] | None = None
    drop: frozenset[str] = frozenset()

    def apply(self, resource: dict[str, Any]) -> dict[str, Any]:
        kept = {k: v for k, v in resource.items() if self._kept(resource["resourceType"], k)}
        meta = dict(kept.get("meta", {}))
        meta["tag"] = [*meta.get("tag", []), SUBSETTED]
        kept["meta"] = meta
        return kept

    def _kept(self, resource_type: str, key: str) -> bool:
        name = _element_of(resource_type, key.removeprefix("_"))
        flags = ELEMENTS[resource_type].get(name, "")
        if name in _ALWAYS or "R" in flags or "M" in flags:
            return True
        if name in _INVARIANTS.get(resource_type, ()):
            return True
        if self.keep is not None:
            return name in self.keep
        return name not in self.drop


def summary(resource_type: str, mode: str) -> Subset | None:
    """The subset `_summary=mode` returns; None for `false` (and `count`: no resources)."""
    if mode == "true":
        elements = ELEMENTS[resource_type]
        return Subset(keep=frozenset(n for n, f in elements.items() if "S" in f))
    if mode == "text":
        return Subset(keep=frozenset({"text"}))
    if mode == "data":
        return Subset(drop=frozenset({"text"}))
    if mode in ("count", "false"):
        return None
    raise InvalidSearch(
        f"_summary must be one of {', '.join(SUMMARY_MODES)}, not {mode!r}", expression="_summary"
    )


def elements(resource_type: str, value: str) -> Subset:
    """`_elements=a,b` (base names, or `Type.name`): the named elements, plus the mandatory."""
    known = ELEMENTS[resource_type]
    names = set()
    for raw in value.split(","):
        name = raw.strip().removeprefix(f"{resource_type}.")
        if name == "resourceType":  # always there; clients (fhirpy's .elements()) name it
            continue
        if name not in known:
            raise InvalidSearch(
                f"_elements: {resource_type} has no element {raw.strip()!r}",
                expression="_elements",
            )
        names.add(name)
    return Subset(keep=frozenset(names))


def _element_of(resource_type: str, key: str) -> str:
    """The element a JSON key belongs to: itself, or a choice's base (deceasedBoolean)."""
    known = ELEMENTS[resource_type]
    if key in known:
        return key
    for name in known:
        if key.startswith(name) and key[len(name) : len(name) + 1].isupper():
            return name
    return key

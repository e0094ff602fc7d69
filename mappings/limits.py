"""What input the store can keep, checked where input is parsed, the same on every backend.

Characters. FHIR strings may hold no control character but tab, CR and LF (R4
datatypes, `string`), and a lone surrogate is no character at all: PostgreSQL refuses
NUL and psycopg cannot encode a surrogate, while SQLite would store both. So every
string a client sends is held to that rule, in bodies (keys and values, at any depth),
search values and ids, and refused with a 400 naming where it was found.

Lengths. An element kept in a column is at most as long as the column (`LIMITS`,
read off `store.models`), and so are the forms derived from it (a folded name, a
phone's digits). Longer ones get a 400 `too-long` naming the element. Elements the
store keeps only inside the resource's JSON document have no limit of their own;
the body's size bounds them.

Nesting. A body may nest at most `MAX_DEPTH` levels (FHIR resources need a few
dozen at most; deeper input only serves to exhaust a parser's stack).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import InstrumentedAttribute

from mappings.errors import InvalidResource, InvalidSearch, MappingError, TooLong
from store.models import (
    Booking,
    BookingIdentifier,
    Coverage,
    CoverageIdentifier,
    Department,
    GroupSession,
    Patient,
    PatientIdentifier,
    PatientPhone,
    Provider,
    ProviderGroup,
    ProviderSchedule,
)
from store.text import fold, phone_digits

MAX_DEPTH = 64

#: What a FHIR string may not hold: C0 controls but tab, LF and CR; lone surrogates.
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def forbidden_character(text: str) -> str | None:
    """The first character of `text` no FHIR string may hold, as U+XXXX, or None."""
    found = _FORBIDDEN.search(text)
    return None if found is None else f"U+{ord(found.group()):04X}"


def check_text(text: str, expression: str | None, error: type[MappingError]) -> None:
    """Refuse `text` if it holds a forbidden character; `expression` names where."""
    if (bad := forbidden_character(text)) is not None:
        raise error(
            f"{expression or 'a name'}: character {bad} is not allowed (FHIR strings hold "
            "no control characters but tab, CR and LF, and no lone surrogates)",
            expression=expression,
        )


def check_id(ident: str, resource_type: str, element: str = "id") -> None:
    """A logical or version id in a URL: FHIR's id syntax, 1-64 of [A-Za-z0-9-.]."""
    if not _ID.fullmatch(ident):
        raise InvalidSearch(
            f"{resource_type} {element}s are 1-64 letters, digits, '-' or '.' (FHIR id)",
            expression=f"{resource_type}.{element}",
        )


@dataclass(frozen=True)
class Limit:
    """An element stored in `column`, after `transform` (a derived search form)."""

    column: InstrumentedAttribute[Any]
    transform: Callable[[str], str] | None = None

    @property
    def length(self) -> int:
        kind = self.column.property.columns[0].type
        assert isinstance(kind, String) and kind.length is not None
        return kind.length

    def exceeded(self, text: str) -> bool:
        return len(self.transform(text) if self.transform else text) > self.length


@dataclass(frozen=True)
class Element:
    limits: tuple[Limit, ...]
    #: A repeated string the store keeps joined by spaces (given names).
    joined: bool = False


def _plain(*columns: InstrumentedAttribute[Any]) -> Element:
    return Element(tuple(Limit(c) for c in columns))


def _identifier(system: InstrumentedAttribute[Any], value: InstrumentedAttribute[Any]) -> Any:
    return {"identifier.system": _plain(system), "identifier.value": _plain(value)}


#: Per resource type: element path (without indexes) -> the columns that keep it.
LIMITS: dict[str, dict[str, Element]] = {
    "Patient": {
        "name.family": Element((Limit(Patient.family), Limit(Patient.family_folded, fold))),
        "name.given": Element(
            (Limit(Patient.given), Limit(Patient.given_folded, fold)), joined=True
        ),
        "telecom.value": Element(
            (Limit(PatientPhone.value), Limit(PatientPhone.digits, phone_digits))
        ),
        **_identifier(PatientIdentifier.system, PatientIdentifier.value),
    },
    "Coverage": {
        "subscriberId": _plain(Coverage.subscriber_id),
        "type.coding.system": _plain(Coverage.type_system),
        "type.coding.code": _plain(Coverage.type_code),
        **_identifier(CoverageIdentifier.system, CoverageIdentifier.value),
    },
    "Appointment": {
        "cancelationReason.text": _plain(Booking.cancellation_reason),
        "cancelationReason.coding.code": _plain(Booking.cancellation_reason),
        "appointmentType.coding.code": _plain(Booking.appointment_type),
        **_identifier(BookingIdentifier.system, BookingIdentifier.value),
    },
    "Slot": {
        "appointmentType.coding.code": _plain(GroupSession.appointment_type),
        "serviceType.coding.code": _plain(GroupSession.service_type),
    },
    "Schedule": {
        "comment": _plain(ProviderSchedule.name),
        **_identifier(ProviderSchedule.identifier_system, ProviderSchedule.identifier_value),
    },
    "Organization": {
        "name": _plain(ProviderGroup.name),
        **_identifier(ProviderGroup.identifier_system, ProviderGroup.identifier_value),
    },
    "Location": {
        "name": _plain(Department.name),
        **_identifier(Department.identifier_system, Department.identifier_value),
    },
    "Practitioner": {
        "name.family": _plain(Provider.family),
        "name.given": Element((Limit(Provider.given),), joined=True),
        "name.prefix": _plain(Provider.prefix),
        **_identifier(Provider.identifier_system, Provider.identifier_value),
    },
}


#: A position in the body: (parent, key or index), None at the root; spelled out as an
#: expression only when something there is refused.
_Path = tuple[Any, Any] | None

#: Per resource type, its limited elements as a tree of their names: name -> (the
#: element's limits if it has some, the tree below it if it has one). The walk carries
#: the subtree it is in, so it names no path it does not refuse.
_Tree = dict[str, tuple[Element | None, "_Tree | None"]]


def _tree(elements: dict[str, Element]) -> _Tree:
    tree: _Tree = {}
    for path, element in elements.items():
        *parents, last = path.split(".")
        level = tree
        for name in parents:
            limits, below = level.get(name, (None, None))
            level[name] = (limits, below if below is not None else {})
            level = level[name][1]  # type: ignore[assignment]
        level[last] = (element, level.get(last, (None, None))[1])
    return tree


_TREES: dict[str, _Tree] = {kind: _tree(elements) for kind, elements in LIMITS.items()}


def check_body(body: Any, *, characters: bool = True) -> None:
    """Refuse a parsed JSON body nested too deep, holding a forbidden character
    anywhere, or with an element longer than the store keeps (see the module doc).

    Resources nested in Bundles, Parameters or `contained` are held to their own
    type's limits; expressions name the full path (`Bundle.entry[0].resource.…`).
    `characters=False` skips the character check, for a caller that knows the text
    holds none (JSON text without a `\u0000`-`\u001f` escape cannot).
    """
    root = body.get("resourceType") if isinstance(body, dict) else None
    start = root if isinstance(root, str) and _ID.fullmatch(root) else "$"
    if isinstance(body, str) and characters:
        _text(body, start, None)
    # (container, where it is, the limits tree its keys or items are in, the limits of
    # a list's items, depth)
    stack: list[tuple[Any, _Path, _Tree | None, Element | None, int]] = [
        (body, None, _TREES.get(root) if isinstance(root, str) else None, None, 0)
    ]
    while stack:
        value, path, tree, limit, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InvalidResource(
                f"the body nests deeper than {MAX_DEPTH} levels", expression=start
            )
        if isinstance(value, list):
            if limit is not None and limit.joined and all(isinstance(v, str) for v in value):
                _check_length(" ".join(value), start, path, limit)
            for index, item in enumerate(value):
                if isinstance(item, str):
                    if characters:
                        _text(item, start, (path, index))
                    if limit is not None and not limit.joined:
                        _check_length(item, start, (path, index), limit)
                elif isinstance(item, (dict, list)):
                    stack.append((item, (path, index), tree, limit, depth + 1))
            continue
        if not isinstance(value, dict):
            continue
        if depth and isinstance(kind := value.get("resourceType"), str) and kind in _TREES:
            tree = _TREES[kind]
        # Without a forbidden character's escape in the text there is none to look for
        # (`characters`): a Bundle of 156 Appointments has 6,000 keys.
        for key, item in value.items():
            if characters:
                _text(key, start, path)
            below = tree.get(key) if tree else None
            if isinstance(item, str):
                if characters:
                    _text(item, start, (path, key))
                if below is not None and below[0] is not None:
                    _check_length(item, start, (path, key), below[0])
            elif isinstance(item, (dict, list)):
                if below is None:
                    stack.append((item, (path, key), None, None, depth + 1))
                else:
                    stack.append((item, (path, key), below[1], below[0], depth + 1))


def _expression(start: str, path: _Path) -> str:
    parts: list[Any] = []
    while path is not None:
        path, part = path
        parts.append(part)
    return start + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in reversed(parts))


def _text(text: str, start: str, path: _Path) -> None:
    if _FORBIDDEN.search(text):
        check_text(text, _expression(start, path), InvalidResource)


def _check_length(text: str, start: str, path: _Path, element: Element) -> None:
    for limit in element.limits:
        if limit.exceeded(text):
            expression = _expression(start, path)
            raise TooLong(
                f"{expression} is longer than the {limit.length} characters kept"
                + (" (in its search form)" if limit.transform else ""),
                expression=expression,
            )

"""Slot <-> group session (FHIR R4 §11.5 Slot, with the group-capacity extension).

A Slot "can have more than one appointment allocated to it" up to a number of
places; R4 has no element for that number, so `group-capacity` carries
`capacity` and `booked`, and SMART Scheduling Links' `slot-capacity` carries the
places still free for aggregators.
"""

from __future__ import annotations

import datetime as dt
import operator
import threading
from collections.abc import Callable
from typing import Any, cast

import orjson

from mappings.codes import (
    APPOINTMENT_TYPES,
    EXT_CLOSED_SESSION,
    EXT_GROUP_CAPACITY,
    EXT_SLOT_CAPACITY_SMART,
    IDENTIFIER_USES,
    SERVICE_TYPES,
    check_required_codes,
    concept_code,
)
from mappings.common import (
    JSON,
    aware,
    codeable,
    held,
    instant,
    kept_document,
    meta,
    parse_reference,
    parse_resource,
)
from mappings.errors import Unprocessable
from mappings.references import Unchecked
from store.models import Availability, GroupSession, availability_of
from store.search import GroupSessionRow
from store.sessions import SessionSpec

SLOT_STATUS = {
    Availability.OPEN: "free",
    Availability.FULL: "busy",
    Availability.BLOCKED: "busy-unavailable",
}


#: What a Slot says that is ours to say, whatever a client sent: the counts, the
#: status derived from them, and where and when the session is.
_SERVER_OWNED = ("extension", "schedule", "status", "start", "end", "overbooked")
#: Kept in columns, so left out of the client's document.
_COLUMNS = ("extension", "schedule", "start", "end")


#: Statuses that hold a new session (no bookings: it cannot be full): not bookable,
#: and read back as declared until an update says free or busy-unavailable.
HELD = ("busy", "busy-tentative")


#: Each code's CodeableConcept, built once: a 500-Slot page renders the same few
#: thousands of times (the dicts are shared and never changed).
_SERVICE_TYPES = {code: codeable(c.as_fhir()) for code, c in SERVICE_TYPES.items()}
_APPOINTMENT_TYPES = {code: codeable(c.as_fhir()) for code, c in APPOINTMENT_TYPES.items()}


#: The columns a Slot is rendered from, in this order: id, version, last updated,
#: schedule, start, end, capacity, booked, blocked, closed, service type, appointment
#: type, comment (the client's kept document aside).
_Columns = tuple[
    str,
    int,
    dt.datetime,
    str,
    dt.datetime,
    dt.datetime,
    int,
    int,
    bool,
    bool,
    str | None,
    str | None,
    str | None,
]

#: Renderings a process keeps for reads (a Slot is about 2 KB): the week views staff
#: open all day and the pages around them.
SHARED_SLOTS = 8192


def slot_to_fhir(session: GroupSession | GroupSessionRow) -> JSON:
    """The Slot as a new dict, the caller's to change."""
    loaded = None if isinstance(session, GroupSessionRow) else _loaded(session)
    columns, stored = loaded or (_columns(session), session.document)
    return _render(columns, orjson.loads(stored) if stored else {})


def shared_slot(session: GroupSession | GroupSessionRow) -> JSON:
    """The Slot for a search: the same rendering as `slot_to_fhir`, shared
    between requests and closed to changes (subsets copy what they change). It is kept
    by every column it is rendered from, so a booking, a block or an edit (which change
    a column) can never return a stale one. Slots with a client's kept document are
    rendered each time: their elements may name records some callers may not see, and
    hiding those changes the resource in place."""
    if isinstance(session, GroupSessionRow):  # a search page's plain row: its columns first
        return (
            _shared(cast(_Columns, session[:_ROW_COLUMNS]))
            if session.document is None
            else slot_to_fhir(session)
        )
    # An expired or unloaded column is read through the ORM by `slot_to_fhir`.
    loaded = _loaded(session)
    if loaded is None or loaded[1] is not None:
        return slot_to_fhir(session)
    return _shared(loaded[0])


def _loaded(session: GroupSession) -> tuple[_Columns, str | None] | None:
    """The columns a Slot is rendered from and the client's kept document, as the record
    holds them (`mappings.common.held`: through the ORM's attributes the fourteen reads
    cost more than rendering); None when one is not loaded."""
    found = held(session, _loaded_values)
    return None if found is None else (found[:-1], found[-1])


_COLUMN_NAMES = (
    "id",
    "version",
    "last_updated",
    "schedule_id",
    "start",
    "end",
    "capacity",
    "booked",
    "blocked",
    "closed",
    "service_type",
    "appointment_type",
    "comment",
)
_loaded_values: Callable[[dict[str, Any]], tuple[Any, ...]] = operator.itemgetter(
    *_COLUMN_NAMES, "document"
)


#: A search page's row starts with the columns, in this order (a slice of a tuple is
#: cheaper than reading them by name: 360 shared Slots 0.15 -> 0.1 ms in a micro-benchmark,
#: 0.22 -> 0.19 ms in the 500-Slot page's).
_ROW_COLUMNS = len(_COLUMN_NAMES)
assert GroupSessionRow._fields[:_ROW_COLUMNS] == _COLUMN_NAMES

#: The columns of a session or of a search page's row, read in one call.
_columns: Callable[[GroupSession | GroupSessionRow], _Columns] = operator.attrgetter(*_COLUMN_NAMES)


#: id -> (the columns rendered, the rendering): a session's latest rendering, kept only
#: while every column (its version among them) is equal. Hashing the three timestamps of
#: each of a page's rows, as a key of all the columns, cost more than everything else in
#: a look-up; keyed by id alone, a look-up builds and hashes no tuple.
_SHARED: dict[str, tuple[_Columns, Unchecked]] = {}
_SHARED_LOCK = threading.Lock()


def _shared(columns: _Columns) -> JSON:
    key = columns[0]
    kept = _SHARED.get(key)
    if kept is not None and kept[0] == columns:
        return kept[1]
    rendering = Unchecked(_render(columns, {}))  # its one reference names its Schedule
    with _SHARED_LOCK:
        if key not in _SHARED and len(_SHARED) >= SHARED_SLOTS:
            del _SHARED[next(iter(_SHARED))]  # the oldest kept goes first
        _SHARED[key] = (columns, rendering)  # a session's new version takes its place
    return rendering


def _render(columns: _Columns, document: JSON) -> JSON:
    (
        ident,
        version,
        last_updated,
        schedule_id,
        start,
        end,
        capacity,
        booked,
        blocked,
        closed,
        service_type,
        appointment_type,
        comment,
    ) = columns
    declared = document.get("status")
    held = blocked and declared in HELD
    status = declared if held else SLOT_STATUS[availability_of(capacity, booked, blocked)]
    resource: JSON = {
        "resourceType": "Slot",
        "id": ident,
        "meta": meta(version, last_updated),
        "extension": [
            {
                "url": EXT_GROUP_CAPACITY,
                "extension": [
                    {"url": "capacity", "valueUnsignedInt": capacity},
                    {"url": "booked", "valueUnsignedInt": booked},
                ],
            },
            {
                "url": EXT_SLOT_CAPACITY_SMART,
                "valueInteger": 0 if blocked else max(capacity - booked, 0),
            },
            {"url": EXT_CLOSED_SESSION, "valueBoolean": closed},
        ],
    }
    if document:  # created through the API: the client's other elements as sent
        resource.update(document)
    else:
        if service_type and (service := _SERVICE_TYPES.get(service_type)):
            resource["serviceType"] = [service]
        if appointment_type and (kind := _APPOINTMENT_TYPES.get(appointment_type)):
            resource["appointmentType"] = kind
    resource["schedule"] = {"reference": f"Schedule/{schedule_id}"}
    # Status is counted, except that a held session says the status it was created
    # with (busy, busy-tentative); `overbooked` only ever echoes such a hold.
    resource["status"] = status
    resource["start"] = instant(start)
    resource["end"] = instant(end)
    if not document:
        resource["overbooked"] = False
        if comment:
            resource["comment"] = comment
    elif "overbooked" in document:
        resource["overbooked"] = bool(held and document["overbooked"])
    return resource


def slot_from_fhir(body: Any) -> SessionSpec:
    """Read a Slot sent by a schedule admin. `booked` and `status` free/busy are ours to
    compute; `busy-unavailable` blocks the session, and `busy`/`busy-tentative` hold a new
    one (an empty session cannot be full: the client is holding it). Without the group-capacity
    extension a Slot is what FHIR means by default: one place."""
    slot: Any = parse_resource(body, "Slot")
    check_required_codes(body, "Slot", {"identifier.use": IDENTIFIER_USES})
    _, schedule_id = parse_reference(slot.schedule.reference, ("Schedule",), "Slot.schedule")
    start = aware(slot.start, "Slot.start")
    end = aware(slot.end, "Slot.end")
    if slot.status == "entered-in-error":
        raise Unprocessable(
            "a group session cannot be created or changed as entered-in-error",
            expression="Slot.status",
        )
    capacity, closed = _extensions(slot.extension or [])
    return SessionSpec(
        schedule_id=schedule_id,
        start=start,
        end=end,
        capacity=capacity,
        appointment_type=concept_code(
            slot.appointmentType, APPOINTMENT_TYPES, "Slot.appointmentType"
        ),
        service_type=concept_code(
            slot.serviceType[0] if slot.serviceType else None, SERVICE_TYPES, "Slot.serviceType"
        ),
        closed=closed,
        blocked={"free": False, "busy-unavailable": True}.get(slot.status),
        comment=slot.comment,
        identifier_system=slot.identifier[0].system if slot.identifier else None,
        identifier_value=slot.identifier[0].value if slot.identifier else None,
        document=kept_document(body, without=_COLUMNS) if _unmodelled(body) else None,
    )


def _unmodelled(body: JSON) -> bool:
    """Whether the client sent more than we keep in columns, or a hold to remember."""
    modelled = {"resourceType", "id", "meta", "serviceType", "appointmentType", "comment"}
    return bool(set(body) - modelled - set(_SERVER_OWNED)) or body.get("status") in HELD


def _extensions(extensions: list[Any]) -> tuple[int, bool]:
    capacity: int | None = None
    closed = False
    for index, ext in enumerate(extensions):
        if ext.url == EXT_GROUP_CAPACITY:
            parts = {part.url: part.valueUnsignedInt for part in ext.extension or []}
            capacity = parts.get("capacity")
            if capacity is None:
                raise Unprocessable(
                    f"{EXT_GROUP_CAPACITY} needs its 'capacity' valueUnsignedInt",
                    expression=f"Slot.extension[{index}]",
                )
        elif ext.url == EXT_CLOSED_SESSION:
            closed = bool(ext.valueBoolean)
        elif ext.url != EXT_SLOT_CAPACITY_SMART:
            raise Unprocessable(
                f"unsupported extension {ext.url!r}", expression=f"Slot.extension[{index}]"
            )
    return (1 if capacity is None else capacity), closed

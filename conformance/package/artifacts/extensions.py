"""The package's StructureDefinitions: our extensions and the group-session Slot profile."""

from __future__ import annotations

from typing import Any

from conformance.package.artifacts.common import BASE, FHIR_VERSION, JSON, canonical, tail
from mappings.codes import (
    EXT_CLOSED_SESSION,
    EXT_GROUP_CAPACITY,
)
from mappings.timing import EXT_DAY_OF_MONTH, EXT_SERIES_TIMING, EXT_WEEK_OF_MONTH

# -- StructureDefinitions ------------------------------------------------------------


def _extension(
    url: str,
    name: str,
    title: str,
    description: str,
    context: list[str],
    elements: list[JSON],
) -> JSON:
    sd = canonical("StructureDefinition", tail(url), url, name, title)
    sd["description"] = description
    sd.update(
        {
            "fhirVersion": FHIR_VERSION,
            "kind": "complex-type",
            "abstract": False,
            "context": [{"type": "element", "expression": c} for c in context],
            "type": "Extension",
            "baseDefinition": f"{BASE}/Extension",
            "derivation": "constraint",
        }
    )
    root = {
        "id": "Extension",
        "path": "Extension",
        "short": title,
        "definition": description,
        "min": 0,
        "max": "1",
    }
    sd["differential"] = {"element": [root, *elements]}
    return sd


def _simple_extension(
    url: str,
    name: str,
    title: str,
    description: str,
    context: list[str],
    value_type: str,
    **value: Any,
) -> JSON:
    elements = [
        {"id": "Extension.extension", "path": "Extension.extension", "max": "0"},
        {"id": "Extension.url", "path": "Extension.url", "fixedUri": url},
        {
            "id": "Extension.value[x]",
            "path": "Extension.value[x]",
            "min": 1,
            "type": [{"code": value_type}],
            **value,
        },
    ]
    return _extension(url, name, title, description, context, elements)


def _part(name: str, value_type: str, short: str, definition: str, minimum: int) -> list[JSON]:
    """One sub-extension slice of a complex extension."""
    at = f"Extension.extension:{name}"
    return [
        {
            "id": at,
            "path": "Extension.extension",
            "sliceName": name,
            "short": short,
            "definition": definition,
            "min": minimum,
            "max": "1",
        },
        {"id": f"{at}.extension", "path": "Extension.extension.extension", "max": "0"},
        {"id": f"{at}.url", "path": "Extension.extension.url", "fixedUri": name},
        {
            "id": f"{at}.value[x]",
            "path": "Extension.extension.value[x]",
            "min": 1,
            "type": [{"code": value_type}],
        },
    ]


def group_capacity() -> JSON:
    elements: list[JSON] = [
        {
            "id": "Extension.extension",
            "path": "Extension.extension",
            "slicing": {"discriminator": [{"type": "value", "path": "url"}], "rules": "closed"},
            "min": 1,
        },
        *_part(
            "capacity",
            "unsignedInt",
            "Places in the session",
            "How many patients the group session takes. Required when a schedule admin creates "
            "or updates a session; never below the booked count.",
            1,
        ),
        *_part(
            "booked",
            "unsignedInt",
            "Places taken",
            "How many places active bookings hold. Computed by the server (always present in "
            "what it returns) and ignored on input.",
            0,
        ),
        {"id": "Extension.url", "path": "Extension.url", "fixedUri": EXT_GROUP_CAPACITY},
        {"id": "Extension.value[x]", "path": "Extension.value[x]", "max": "0"},
    ]
    return _extension(
        EXT_GROUP_CAPACITY,
        "GroupCapacity",
        "Group session capacity",
        "The capacity of a group session (a Slot that several patients book) and the number of "
        "places already booked: '3/10' is booked 3 of capacity 10. R4 Slot has no element for "
        "the number of places a slot offers.",
        ["Slot"],
        elements,
    )


def closed_session() -> JSON:
    return _simple_extension(
        EXT_CLOSED_SESSION,
        "ClosedSession",
        "Closed group session",
        "True when the provider prefers no new patients once the session (or its group's first "
        "session) has started. Booking into a closed session still succeeds, with a warning "
        "(OperationOutcome detail session-closed).",
        ["Slot"],
        "boolean",
    )


def recurrence_day_of_month() -> JSON:
    return _simple_extension(
        EXT_DAY_OF_MONTH,
        "RecurrenceDayOfMonth",
        "Day of the month of a monthly series",
        "The day of the month (1 to 31) a monthly series (repeat.periodUnit mo) falls on; past "
        "a month's end, the last day of that month. Without it a monthly series falls on "
        "boundsPeriod.start's day.",
        ["Timing.repeat"],
        "positiveInt",
        maxValuePositiveInt=31,
    )


def recurrence_week_of_month() -> JSON:
    sd = _simple_extension(
        EXT_WEEK_OF_MONTH,
        "RecurrenceWeekOfMonth",
        "Week of the month of a monthly series",
        "With exactly one repeat.dayOfWeek, the week of the month a monthly series falls on: "
        "'the second Tuesday'. Codes as R5's week-of-month: first | second | third | fourth | "
        "last.",
        ["Timing.repeat"],
        "code",
    )
    sd["differential"]["element"][0]["constraint"] = [
        {
            "key": "rwm-1",
            "severity": "error",
            "human": "The week of the month is first, second, third, fourth or last",
            "expression": (
                "value.ofType(code) in ('first' | 'second' | 'third' | 'fourth' | 'last')"
            ),
            "source": EXT_WEEK_OF_MONTH,
        }
    ]
    return sd


def series_timing() -> JSON:
    return _simple_extension(
        EXT_SERIES_TIMING,
        "SeriesTiming",
        "Recurrence settings of a series",
        "The normalised R4 Timing of the recurring series an Appointment belongs to: on the "
        "proposals $find returns (which $book takes back) and on the series' originating "
        "Appointment. periodUnit d | wk | mo, frequency 1, one timeOfDay (the department's local "
        "time), duration in min, boundsPeriod.start and count or boundsPeriod.end.",
        ["Appointment"],
        "Timing",
    )


def group_session_profile(url: str) -> JSON:
    sd = canonical("StructureDefinition", tail(url), url, "GroupSession", "Group session (Slot)")
    sd["description"] = (
        "A group session: a Slot that several patients book, up to its capacity. Every Slot "
        "this server returns conforms; a Slot sent to it needs the group-capacity extension "
        "with a capacity. status is free while places remain, busy when full, busy-unavailable "
        "when blocked; overbooked stays false."
    )
    sd.update(
        {
            "fhirVersion": FHIR_VERSION,
            "kind": "resource",
            "abstract": False,
            "type": "Slot",
            "baseDefinition": f"{BASE}/Slot",
            "derivation": "constraint",
        }
    )
    sd["differential"] = {
        "element": [
            {"id": "Slot", "path": "Slot", "short": "A group session"},
            {
                "id": "Slot.extension",
                "path": "Slot.extension",
                "slicing": {
                    "discriminator": [{"type": "value", "path": "url"}],
                    "rules": "open",
                },
                "min": 1,
            },
            {
                "id": "Slot.extension:groupCapacity",
                "path": "Slot.extension",
                "sliceName": "groupCapacity",
                "min": 1,
                "max": "1",
                "type": [{"code": "Extension", "profile": [EXT_GROUP_CAPACITY]}],
            },
            {
                "id": "Slot.extension:closedSession",
                "path": "Slot.extension",
                "sliceName": "closedSession",
                "min": 0,
                "max": "1",
                "type": [{"code": "Extension", "profile": [EXT_CLOSED_SESSION]}],
            },
            {
                "id": "Slot.status",
                "path": "Slot.status",
                "short": "free | busy | busy-unavailable",
            },
        ]
    }
    return sd


def definitions(profile: str) -> list[JSON]:
    return [
        group_capacity(),
        closed_session(),
        recurrence_day_of_month(),
        recurrence_week_of_month(),
        series_timing(),
        group_session_profile(profile),
    ]

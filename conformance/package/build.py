"""Write the conformance package (FHIR NPM layout) from the code, so it cannot drift.

This folder is the `package/` folder of a FHIR NPM package: `package.json`,
`.index.json`, one JSON file per conformance resource, and `example/` (with its own
`.index.json`). Every file is generated here from the tables the server runs on:
the CapabilityStatement is `fhir_facade.capability.capability_statement`, the code
systems are `mappings.codes` tables, the examples are what `mappings` renders for
fixed records, and each URL is the constant the server emits.

    python -m conformance.package.build           # rewrite the files
    python -m conformance.package.build --check   # exit 1 if a committed file is stale
"""

from __future__ import annotations

import datetime as dt
import html
import json
import sys
from pathlib import Path
from typing import Any

from fhir_facade.capability import (
    RELEASE_DATE,
    SEARCH_PARAMETER_DEFINITIONS,
    SOFTWARE_VERSION,
    SUPPORTED_PROFILES,
    capability_statement,
)
from fhir_facade.notify.conformance import BACKPORT_OPERATIONS
from fhir_facade.notify.conformance import OPERATION_DOCS as SUBSCRIPTION_OPERATION_DOCS
from fhir_facade.notify.conformance import OPERATIONS as SUBSCRIPTION_OPERATIONS
from fhir_facade.operations import OPERATION_DEFINITIONS, OPERATION_DOCS
from fhir_facade.outcomes import CS_OUTCOME
from mappings.appointment import appointment_to_fhir
from mappings.audit import AGENT_SYSTEM
from mappings.codes import (
    APPOINTMENT_TYPES,
    CANONICAL,
    CS_APPOINTMENT_TYPE_LOCAL,
    CS_SERVICE_TYPE_LOCAL,
    EXT_CLOSED_SESSION,
    EXT_GROUP_CAPACITY,
    SERVICE_TYPES,
    SYSTEM_MRN,
    Coding,
)
from mappings.coverage import CS_SELF_PAY, coverage_to_fhir
from mappings.slot import slot_to_fhir
from mappings.subscription import TOPICS, topic_basic
from mappings.timing import EXT_DAY_OF_MONTH, EXT_SERIES_TIMING, EXT_WEEK_OF_MONTH
from store.models import Booking, BookingCoverage, BookingProvider, Coverage, GroupSession

HERE = Path(__file__).resolve().parent
PACKAGE_NAME = "fhir-facade.conformance"
PUBLISHER = "fhir-facade"
FHIR_VERSION = "4.0.1"
BASE = "http://hl7.org/fhir/StructureDefinition"
JSON = dict[str, Any]


# -- common --------------------------------------------------------------------------


def _canonical(resource_type: str, ident: str, url: str, name: str, title: str) -> JSON:
    """The metadata every canonical resource of this package starts with."""
    return {
        "resourceType": resource_type,
        "id": ident,
        "url": url,
        "version": SOFTWARE_VERSION,
        "name": name,
        "title": title,
        "status": "active",
        "experimental": False,
        "date": RELEASE_DATE,
        "publisher": PUBLISHER,
    }


def _tail(url: str) -> str:
    return url.rsplit("/", 1)[1]


# -- StructureDefinitions ------------------------------------------------------------


def _extension(
    url: str,
    name: str,
    title: str,
    description: str,
    context: list[str],
    elements: list[JSON],
) -> JSON:
    sd = _canonical("StructureDefinition", _tail(url), url, name, title)
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
    sd = _canonical("StructureDefinition", _tail(url), url, "GroupSession", "Group session (Slot)")
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


# -- terminology and identifier systems ----------------------------------------------


def _code_system(url: str, name: str, title: str, description: str, concepts: list[JSON]) -> JSON:
    cs = _canonical("CodeSystem", _tail(url), url, name, title)
    cs["description"] = description
    cs.update(
        {
            "caseSensitive": True,
            "content": "complete",
            "count": len(concepts),
            "concept": concepts,
        }
    )
    return cs


def _table_concepts(table: dict[str, Coding], system: str) -> list[JSON]:
    return [{"code": c.code, "display": c.display} for c in table.values() if c.system == system]


#: Every `details.coding` code of our OperationOutcomes, with its meaning.
OUTCOME_CODES: dict[str, tuple[str, str]] = {
    "session-full": (
        "Session full",
        "The group session has no place left; nothing was booked.",
    ),
    "session-unavailable": (
        "Session unavailable",
        "The group session is blocked (busy-unavailable) and takes no booking.",
    ),
    "session-blocked": (
        "Session blocked",
        "The session at an occurrence's time is blocked: the occurrence is (or would be) stored "
        "as a draft.",
    ),
    "session-closed": (
        "Session closed",
        "The session is closed (the provider prefers no new patients once it has started); the "
        "booking succeeds with this warning.",
    ),
    "session-ended": (
        "Session ended",
        "The session has already ended; the booking is recorded after the fact (e.g. a walk-in) "
        "and succeeds with this warning.",
    ),
    "already-booked": (
        "Already booked",
        "The patient already holds a place in that session.",
    ),
    "duplicate-identifier": (
        "Duplicate identifier",
        "Another resource already carries this business identifier.",
    ),
    "version-mismatch": (
        "Version mismatch",
        "If-Match (or meta.versionId in $book) names a version that is not the current one.",
    ),
    "capacity-below-booked": (
        "Capacity below booked",
        "A session's capacity cannot drop below the places already booked.",
    ),
    "booked-sessions-would-move": (
        "Booked sessions would move",
        "Re-zoning a department, or giving a schedule another department or provider, would "
        "move sessions that hold bookings and have not ended; nothing was changed.",
    ),
    "inactive": (
        "Inactive",
        "The provider, department, provider group or schedule is inactive: it keeps its history "
        "but takes no new sessions.",
    ),
    "series-too-long": (
        "Series too long",
        "The recurrence has more occurrences, or spans more years, than the server allows.",
    ),
    "invalid-recurrence": (
        "Invalid recurrence",
        "The recurrence settings are inconsistent (e.g. end before start, weekdays on a "
        "monthly series).",
    ),
    "no-session": (
        "No session",
        "No group session of the provider at an occurrence's time: it is (or would be) stored "
        "as a draft.",
    ),
    "other-appointment-type": (
        "Other appointment type",
        "The session at an occurrence's time has another appointment type than the one asked for.",
    ),
    "stored-as-draft": (
        "Stored as a draft",
        "The occurrence had no session to book and was stored as a draft (status proposed, "
        "requestedPeriod).",
    ),
    "dst-gap": (
        "Time skipped by daylight saving",
        "The occurrence's local time does not exist (the clocks jump forward over it); nothing "
        "was shifted.",
    ),
    "database-unavailable": (
        "Database unavailable",
        "The database cannot be reached or stopped answering within the configured bounds "
        "(503); nothing is known to have changed. Retry later.",
    ),
    "dst-ambiguous": (
        "Time repeated by daylight saving",
        "The occurrence's local time happens twice (the clocks fall back); the first instant is "
        "used.",
    ),
}


def outcome_code_system() -> JSON:
    return _code_system(
        CS_OUTCOME,
        "FhirFacadeOutcome",
        "fhir-facade OperationOutcome details",
        "Stable codes in OperationOutcome.issue.details.coding: why a request was refused, or "
        "what a warning is about. The text beside them is for people.",
        [
            {"code": code, "display": display, "definition": definition}
            for code, (display, definition) in OUTCOME_CODES.items()
        ],
    )


def _naming_system(ident: str, name: str, description: str, value: str) -> JSON:
    return {
        "resourceType": "NamingSystem",
        "id": ident,
        "name": name,
        "status": "active",
        "kind": "identifier",
        "date": RELEASE_DATE,
        "publisher": PUBLISHER,
        "description": description,
        "uniqueId": [{"type": "uri", "value": value, "preferred": True}],
    }


def agent_search_parameter(url: str) -> JSON:
    sp = _canonical("SearchParameter", _tail(url), url, "AuditEventAgentSubject", "")
    del sp["title"]  # R4 SearchParameter has no title
    sp.update(
        {
            "description": (
                "The user who acted: the token subject, as AuditEvent.agent.who.identifier "
                f"({AGENT_SYSTEM}). A token, where the base spec's agent is a reference: our "
                "users are token subjects, not FHIR resources."
            ),
            "code": "agent",
            "base": ["AuditEvent"],
            "type": "token",
            "expression": "AuditEvent.agent.who.identifier",
            "xpathUsage": "normal",
        }
    )
    return sp


# -- OperationDefinitions ------------------------------------------------------------


def _parameter(
    name: str,
    use: str,
    minimum: int,
    maximum: str,
    kind: str,
    documentation: str,
    target: str | None = None,
) -> JSON:
    parameter: JSON = {"name": name, "use": use, "min": minimum, "max": maximum}
    parameter["documentation"] = documentation
    parameter["type"] = kind
    if target:
        parameter["targetProfile"] = [f"{BASE}/{target}"]
    return parameter


def _operation(op: str, name: str, title: str, instance: bool, affects_state: bool) -> JSON:
    url = OPERATION_DEFINITIONS[op]
    od = _canonical("OperationDefinition", _tail(url), url, name, title)
    od.update(
        {
            "kind": "operation",
            "description": OPERATION_DOCS[op],
            "affectsState": affects_state,
            "code": op,
            "resource": ["Appointment"],
            "system": False,
            "type": not instance,
            "instance": instance,
        }
    )
    return od


def find_operation() -> JSON:
    od = _operation("find", "AppointmentFind", "Preview a recurring series", False, False)
    od["parameter"] = [
        _parameter("patient", "in", 1, "1", "Reference", "The patient to book.", "Patient"),
        _parameter(
            "practitioner",
            "in",
            0,
            "1",
            "Reference",
            "The provider whose group sessions to match. Give practitioner or schedule.",
            "Practitioner",
        ),
        _parameter(
            "schedule",
            "in",
            0,
            "1",
            "Reference",
            "The provider schedule whose group sessions to match. Give practitioner or schedule.",
            "Schedule",
        ),
        _parameter(
            "location",
            "in",
            0,
            "1",
            "Reference",
            "The department (its time zone expands the series).",
            "Location",
        ),
        _parameter(
            "appointment-type",
            "in",
            0,
            "1",
            "CodeableConcept",
            "Only sessions of this appointment type match. Sent as valueCodeableConcept, "
            "valueCoding or valueCode.",
        ),
        _parameter(
            "timing",
            "in",
            1,
            "1",
            "Timing",
            "The recurrence: repeat.periodUnit d | wk | mo, period, frequency 1, dayOfWeek, one "
            "timeOfDay, duration (min | h), boundsPeriod.start and count or boundsPeriod.end; "
            "monthly series may carry recurrence-day-of-month or recurrence-week-of-month on "
            "repeat.",
        ),
        _parameter(
            "return",
            "out",
            1,
            "1",
            "Bundle",
            "A searchset: one proposed Appointment per occurrence (with its Slot, start and end "
            "when a session matches; requestedPeriod only when none does), each carrying "
            "recurrenceId and series-timing, then an OperationOutcome (search.mode outcome) "
            "naming the unmatched occurrences.",
        ),
    ]
    return od


def book_operation() -> JSON:
    od = _operation("book", "AppointmentBook", "Book a recurring series", False, True)
    od["parameter"] = [
        _parameter(
            "appointment-resource",
            "in",
            1,
            "*",
            "Appointment",
            "The proposals kept, as $find returned them (with recurrenceId and series-timing); "
            "or drafts to resolve (Appointments with an id, meta.versionId and the chosen slot).",
        ),
        _parameter(
            "coverage",
            "in",
            0,
            "2",
            "Reference",
            "The insurance for every occurrence, primary (or self-pay) first.",
            "Coverage",
        ),
        _parameter(
            "return",
            "out",
            1,
            "1",
            "Bundle",
            "A collection of the Appointments stored, in series order (booked ones and drafts), "
            "then an OperationOutcome with a summary and one warning per occurrence not booked.",
        ),
    ]
    return od


def cancel_series_operation() -> JSON:
    od = _operation("cancel-series", "AppointmentCancelSeries", "Cancel a series", True, True)
    od["parameter"] = [
        _parameter(
            "scope",
            "in",
            0,
            "1",
            "code",
            "this-and-following (the default): this occurrence and all later ones; all: the "
            "whole series.",
        ),
        _parameter("reason", "in", 0, "1", "string", "Why (Appointment.cancelationReason)."),
        _parameter(
            "return",
            "out",
            1,
            "1",
            "Bundle",
            "A collection of the Appointments cancelled, then an OperationOutcome.",
        ),
    ]
    return od


# -- examples: what the mappings render for fixed records ----------------------------

_AT = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
_START = dt.datetime(2027, 1, 4, 15, 0, tzinfo=dt.UTC)  # Monday 10:00 in New York
_END = _START + dt.timedelta(minutes=90)
_PATIENT = "example-patient"


def subscription_operation(code: str) -> JSON:
    """Our $status / $events: the Backport IG's operations (named as `base`), as served."""
    url = SUBSCRIPTION_OPERATIONS[code]
    name = f"Subscription{code.capitalize()}"
    od = _canonical("OperationDefinition", _tail(url), url, name, f"Subscription ${code}")
    od.update(
        {
            "kind": "operation",
            "description": SUBSCRIPTION_OPERATION_DOCS[code],
            "affectsState": False,
            "code": code,
            "base": f"{BACKPORT_OPERATIONS}/backport-subscription-{code}",
            "resource": ["Subscription"],
            "system": False,
            "type": False,
            "instance": True,
        }
    )
    if code == "events":
        od["parameter"] = [
            _parameter(
                "eventsSinceNumber", "in", 0, "1", "string", "The first event number (default 1)."
            ),
            _parameter(
                "eventsUntilNumber",
                "in",
                0,
                "1",
                "string",
                "The last event number (default the latest).",
            ),
            _parameter(
                "content",
                "in",
                0,
                "1",
                "code",
                "empty | id-only | full-resource (default the subscription's own).",
            ),
            _parameter(
                "return",
                "out",
                1,
                "1",
                "Bundle",
                "A notification Bundle (history), the SubscriptionStatus first (type query-event).",
            ),
        ]
    else:
        od["parameter"] = [
            _parameter(
                "return",
                "out",
                1,
                "1",
                "Bundle",
                "A searchset Bundle of SubscriptionStatus Parameters (type query-status).",
            )
        ]
    return od


def subscription_topics() -> list[JSON]:
    """The topics a Subscription's criteria may name, as R4 Basic resources."""
    topics = []
    for topic in TOPICS.values():
        basic = topic_basic(topic, SOFTWARE_VERSION, RELEASE_DATE)
        title = html.escape(topic.title, quote=False)
        text = html.escape(f"{topic.url}: {topic.description}", quote=False)
        div = f'<div xmlns="http://www.w3.org/1999/xhtml"><p><b>{title}</b></p><p>{text}</p></div>'
        head = {k: basic[k] for k in ("resourceType", "id")}
        topics.append({**head, "text": {"status": "generated", "div": div}, **basic})
    return topics


def example_slot() -> JSON:
    session = GroupSession(
        id="example-group-session",
        schedule_id="sched-rivera-bk",
        start=_START,
        end=_END,
        capacity=10,
        booked=3,
        appointment_type="group-therapy",
        service_type="behavioral-health-group",
        closed=False,
        blocked=False,
        version=4,
        last_updated=_AT,
    )
    return slot_to_fhir(session)


def example_coverage() -> JSON:
    coverage = Coverage(
        id="example-self-pay",
        beneficiary_id=_PATIENT,
        payor_kind="patient",
        payor_id=_PATIENT,
        status="active",
        type_system=CS_SELF_PAY,
        type_code="pay",
        self_pay=True,
        order=1,
        version=1,
        last_updated=_AT,
    )
    return coverage_to_fhir(coverage)


def example_booked_appointment() -> JSON:
    booking = Booking(
        id="example-booked",
        session_id="example-group-session",
        patient_id=_PATIENT,
        status="booked",
        start=_START,
        end=_END,
        appointment_type="group-therapy",
        department_id="dept-brooklyn",
        created=_AT,
        version=1,
        last_updated=_AT,
        providers=[BookingProvider(provider_id="prac-rivera", position=0)],
        coverages=[BookingCoverage(coverage_id="example-self-pay", rank=1)],
    )
    return appointment_to_fhir(booking)


def example_draft_appointment() -> JSON:
    booking = Booking(
        id="example-draft",
        patient_id=_PATIENT,
        status="proposed",
        start=_START + dt.timedelta(weeks=1),
        end=_END + dt.timedelta(weeks=1),
        appointment_type="group-therapy",
        department_id="dept-brooklyn",
        created=_AT,
        version=1,
        last_updated=_AT,
        providers=[BookingProvider(provider_id="prac-rivera", position=0)],
        coverages=[BookingCoverage(coverage_id="example-self-pay", rank=1)],
    )
    return appointment_to_fhir(booking)


# -- the package ---------------------------------------------------------------------


def _narrative(resource: JSON) -> JSON:
    """The resource with a generated narrative (dom-6) from its title and description."""
    title = html.escape(resource.get("title") or resource["name"], quote=False)
    description = html.escape(resource["description"], quote=False)
    div = (
        f'<div xmlns="http://www.w3.org/1999/xhtml"><p><b>{title}</b></p><p>{description}</p></div>'
    )
    head = {k: resource[k] for k in ("resourceType", "id")}
    return {**head, "text": {"status": "generated", "div": div}, **resource}


def definitions() -> list[JSON]:
    """The conformance resources, in the package's root folder."""
    (profile,) = SUPPORTED_PROFILES["Slot"]
    (agent,) = SEARCH_PARAMETER_DEFINITIONS.values()
    return [
        capability_statement(CANONICAL),
        *map(_narrative, _described(profile, agent)),
        *subscription_topics(),
    ]


def _described(profile: str, agent: str) -> list[JSON]:
    return [
        group_capacity(),
        closed_session(),
        recurrence_day_of_month(),
        recurrence_week_of_month(),
        series_timing(),
        group_session_profile(profile),
        find_operation(),
        book_operation(),
        cancel_series_operation(),
        subscription_operation("status"),
        subscription_operation("events"),
        _code_system(
            CS_APPOINTMENT_TYPE_LOCAL,
            "GroupAppointmentType",
            "Group session appointment types",
            "The kinds of group session we run (Slot and Appointment appointmentType, beside HL7 "
            "v2 table 0276).",
            _table_concepts(APPOINTMENT_TYPES, CS_APPOINTMENT_TYPE_LOCAL),
        ),
        _code_system(
            CS_SERVICE_TYPE_LOCAL,
            "GroupServiceType",
            "Group session service types",
            "The services group sessions provide (Slot.serviceType).",
            _table_concepts(SERVICE_TYPES, CS_SERVICE_TYPE_LOCAL),
        ),
        outcome_code_system(),
        agent_search_parameter(agent),
        _naming_system(
            "mrn",
            "FhirFacadeMrn",
            "Medical record numbers the clinic assigns (Patient.identifier, type MR).",
            SYSTEM_MRN,
        ),
        _naming_system(
            "token-subject",
            "FhirFacadeTokenSubject",
            "The subject (sub claim) of the bearer token of a user who acted "
            "(AuditEvent.agent.who.identifier).",
            AGENT_SYSTEM,
        ),
    ]


def examples() -> list[JSON]:
    return [
        example_slot(),
        example_booked_appointment(),
        example_draft_appointment(),
        example_coverage(),
    ]


def filename(resource: JSON) -> str:
    return f"{resource['resourceType']}-{resource['id']}.json"


def index(resources: list[JSON]) -> JSON:
    """`.index.json` as FHIR packages carry it (index-version 1)."""
    files = []
    for resource in resources:
        entry: JSON = {
            "filename": filename(resource),
            "resourceType": resource["resourceType"],
            "id": resource["id"],
        }
        for key in ("url", "version", "kind", "type"):
            if isinstance(resource.get(key), str):
                entry[key] = resource[key]
        files.append(entry)
    return {"index-version": 1, "files": files}


def manifest() -> JSON:
    return {
        "name": PACKAGE_NAME,
        "version": SOFTWARE_VERSION,
        "tools-version": 3,
        "type": "fhir.ig",
        "date": RELEASE_DATE.replace("-", "") + "000000",
        "title": "fhir-facade conformance resources",
        "description": (
            "What the fhir-facade group-session scheduling server declares and emits: its "
            "CapabilityStatement, the group-capacity, closed-session and series extensions, the "
            "group-session Slot profile, the $find, $book and $cancel-series operations, its "
            "code systems, and examples rendered by the server's own mappings."
        ),
        "author": PUBLISHER,
        "canonical": CANONICAL,
        "url": CANONICAL,
        "fhirVersions": [FHIR_VERSION],
        "dependencies": {"hl7.fhir.r4.core": FHIR_VERSION},
        "directories": {"example": "example"},
    }


def render(content: JSON) -> str:
    return json.dumps(content, indent=2, ensure_ascii=False) + "\n"


def files() -> dict[str, str]:
    """Every file of the package, by path relative to this folder."""
    out = {"package.json": render(manifest())}
    defined, shown = definitions(), examples()
    out[".index.json"] = render(index(defined))
    out.update({filename(r): render(r) for r in defined})
    out["example/.index.json"] = render(index(shown))
    out.update({f"example/{filename(r)}": render(r) for r in shown})
    return out


def stale(folder: Path = HERE) -> list[str]:
    """Files missing or different from what the code generates."""
    problems = []
    for path, text in files().items():
        target = folder / path
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            problems.append(path)
    return problems


def main(argv: list[str]) -> int:
    if "--check" in argv:
        problems = stale()
        for path in problems:
            print(f"stale: conformance/package/{path} (run python -m conformance.package.build)")
        return 1 if problems else 0
    for path, text in files().items():
        target = HERE / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""FHIR search (R4 §3.1.1.5 / search.html) -> store queries.

A query string becomes `store.search.Query`: each parameter occurrence is one
`AnyOf` (its comma-separated values are alternatives), occurrences are ANDed.
Two tables drive the translation: the parameters each resource type supports,
and the prefixes/modifiers each parameter type understands.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mappings.codes import APPOINTMENT_TYPES, SERVICE_TYPES, Coding
from mappings.errors import InvalidSearch, TooCostly, TooLong
from mappings.limits import check_text
from mappings.subsetting import Subset, elements, summary
from store.access import Access
from store.models import (
    AuditRecord,
    Base,
    Booking,
    BookingStatus,
    Coverage,
    Department,
    GroupSession,
    Patient,
    Provider,
    ProviderGroup,
    ProviderSchedule,
)
from store.search import AnyOf, Condition, Query
from store.ssn import SSN_SYSTEM, SsnHasher, link_safe
from store.text import fold, phone_digits

DEFAULT_COUNT = 50
COVERAGE_STATUSES = ("active", "cancelled", "draft", "entered-in-error")
MAX_COUNT = 1000
#: Largest _offset (and _count before capping) accepted: beyond it the database refuses.
MAX_OFFSET = 2**31 - 1
#: Most comma-separated values (alternatives) one parameter may have, and most
#: parameters one search may have: beyond them SQLite refuses the statement
#: (expression depth) while PostgreSQL grinds through it, so both answer 400.
MAX_ALTERNATIVES = 100
MAX_PARAMETERS = 50
#: Longest search value (one alternative): longer than any stored value it could match.
MAX_VALUE_CHARS = 500

Translate = Callable[[str | None, str], list[Condition]]


@dataclass(frozen=True)
class SearchParam:
    name: str
    type: str  # FHIR search parameter type: token, reference, date, string
    documentation: str
    translate: Translate
    modifiers: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Include:
    """`_include=Source:param`: follow a reference from the matches; `refs` gives
    (resource type, id) pairs for one match."""

    refs: Callable[[Any], list[tuple[str, str]]]


@dataclass(frozen=True)
class RevInclude:
    """`_revinclude=Source:param`: bring resources of `source` pointing at the matches."""

    source: str
    field: str


@dataclass(frozen=True)
class ResourceSearch:
    kind: type[Base]
    params: Mapping[str, SearchParam]
    sorts: Mapping[str, str]
    default_sort: tuple[tuple[str, bool], ...]
    includes: Mapping[str, Include] = field(default_factory=dict)
    revincludes: Mapping[str, RevInclude] = field(default_factory=dict)
    #: Chained parameters into Patient: reference parameter -> store chain field.
    chains: Mapping[str, str] = field(default_factory=dict)


@dataclass
class SearchRequest:
    resource_type: str
    query: Query
    includes: list[Include]
    revincludes: list[RevInclude]
    canonical: list[tuple[str, str]]  # the parameters honoured, for self/next links
    subset: Subset | None = None  # _summary=true|text|data or _elements: part of each match
    #: Types searched through chained parameters (the caller must be allowed to search them).
    chained: set[str] = field(default_factory=set)


# -- value parsers -------------------------------------------------------------------

_DATE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
_DATE_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


def date_range(text: str, name: str) -> tuple[dt.datetime, dt.datetime]:
    """The half-open UTC range [lo, hi) a FHIR date/dateTime value stands for."""
    match = _DATE.match(text)
    if match is None:
        raise InvalidSearch(f"{name}: {text!r} is not a FHIR date or dateTime", expression=name)
    year, month, day, hour, minute, second, zone = match.groups()
    try:
        if month is None:
            lo = dt.datetime(int(year), 1, 1, tzinfo=dt.UTC)
            return lo, lo.replace(year=lo.year + 1)
        if day is None:
            lo = dt.datetime(int(year), int(month), 1, tzinfo=dt.UTC)
            hi = (
                lo.replace(year=lo.year + 1, month=1)
                if lo.month == 12
                else lo.replace(month=lo.month + 1)
            )
            return lo, hi
        if hour is None:
            lo = dt.datetime(int(year), int(month), int(day), tzinfo=dt.UTC)
            return lo, lo + dt.timedelta(days=1)
        tz = dt.UTC if zone in (None, "Z") else dt.datetime.strptime(zone, "%z").tzinfo
        lo = dt.datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0), tzinfo=tz
        ).astimezone(dt.UTC)
        return lo, lo + (dt.timedelta(seconds=1) if second else dt.timedelta(minutes=1))
    except ValueError as exc:
        raise InvalidSearch(
            f"{name}: {text!r} is not a valid date ({exc})", expression=name
        ) from None
    except OverflowError:
        # The value, or the range it stands for, reaches past 0001-01-01 or 9999-12-31 UTC.
        raise InvalidSearch(
            f"{name}: {text!r} reaches beyond the calendar (years 0001 to 9999 in UTC)",
            expression=name,
        ) from None


def _split_prefix(value: str) -> tuple[str, str]:
    if len(value) > 2 and value[:2] in _DATE_PREFIXES and not value[:2].isdigit():
        return value[:2], value[2:]
    return "eq", value


def _date(field_name: str, param: str, as_date: bool = False) -> Translate:
    def translate(modifier: str | None, value: str) -> list[Condition]:
        prefix, text = _split_prefix(value)
        lo, hi = date_range(text, param)
        lo_v: Any = lo.date() if as_date else lo
        hi_v: Any = hi.date() if as_date else hi
        if as_date and hi.time() != dt.time(0):
            hi_v = hi.date() + dt.timedelta(days=1)
        op_value: dict[str, tuple[str, Any]] = {
            "eq": ("within", (lo_v, hi_v)),
            "ap": ("within", (lo_v, hi_v)),
            "ne": ("outside", (lo_v, hi_v)),
            "lt": ("lt", lo_v),
            "eb": ("lt", lo_v),
            "le": ("lt", hi_v),
            "gt": ("ge", hi_v),
            "sa": ("ge", hi_v),
            "ge": ("ge", lo_v),
        }
        op, bound = op_value[prefix]
        return [Condition(field_name, op, bound)]

    return translate


def _period_overlap(field_name: str, param: str) -> Translate:
    def translate(modifier: str | None, value: str) -> list[Condition]:
        prefix, text = _split_prefix(value)
        lo, hi = date_range(text, param)
        ranges: dict[str, tuple[Any, Any]] = {
            "eq": (lo, hi),
            "ap": (lo, hi),
            "ge": (lo, None),
            "gt": (hi, None),
            "sa": (hi, None),
            "le": (None, hi),
            "lt": (None, lo),
            "eb": (None, lo),
        }
        if prefix not in ranges:
            raise InvalidSearch(f"{param}: prefix {prefix!r} is not supported", expression=param)
        return [Condition(field_name, "eq", ranges[prefix])]

    return translate


def _string(field_name: str, folded: bool = False) -> Translate:
    """Default: starts-with, ignoring case (and accents where the field is folded).
    `:exact` compares with the value as stored (`<field>_exact` for folded fields)."""

    def translate(modifier: str | None, value: str) -> list[Condition]:
        if modifier == "exact":
            return [Condition(f"{field_name}_exact" if folded else field_name, "eq", value)]
        text = fold(value) if folded else value
        op = "contains" if modifier == "contains" else "startswith"
        return [Condition(field_name, op, text)]

    return translate


def _token_code(field_name: str, allowed: Mapping[str, Any], param: str) -> Translate:
    """A token over a fixed set of codes (status): unknown codes are a client error."""

    def translate(modifier: str | None, value: str) -> list[Condition]:
        code = value.split("|", 1)[-1]
        if code not in allowed:
            raise InvalidSearch(
                f"{param}: unknown code {code!r}; known: {', '.join(allowed)}", expression=param
            )
        return [Condition(field_name, "ne" if modifier == "not" else "eq", allowed[code])]

    return translate


def _coded(field_name: str, table: Mapping[str, Coding]) -> Translate:
    """A token over a coded concept: an unknown code simply matches nothing."""

    def translate(modifier: str | None, value: str) -> list[Condition]:
        system, _, code = value.rpartition("|")
        coding = table.get(code)
        if coding is None or (system and system != coding.system):
            return [Condition("id", "eq", None)]
        return [Condition(field_name, "eq", coding.code)]

    return translate


def _identifier(field_name: str) -> Translate:
    def translate(modifier: str | None, value: str) -> list[Condition]:
        if "|" in value:
            system, ident = value.split("|", 1)
            return [Condition(field_name, "eq", (system, ident or None))]
        return [Condition(field_name, "eq", (None, value))]

    return translate


def _identifier_value(field_name: str) -> Translate:
    """A token compared on its code/value only (system ignored)."""

    def translate(modifier: str | None, value: str) -> list[Condition]:
        return [Condition(field_name, "eq", value.rpartition("|")[2])]

    return translate


def _boolean(field_name: str, param: str) -> Translate:
    def translate(modifier: str | None, value: str) -> list[Condition]:
        if value not in ("true", "false"):
            raise InvalidSearch(f"{param}: expected true or false", expression=param)
        return [Condition(field_name, "eq", value == "true")]

    return translate


def _plain(field_name: str) -> Translate:
    def translate(modifier: str | None, value: str) -> list[Condition]:
        return [Condition(field_name, "eq", value)]

    return translate


_REF = re.compile(r"^(?:(?:.*/)?([A-Z][A-Za-z]+)/)?([A-Za-z0-9\-.]{1,64})$")


def _reference(targets: Mapping[str, str], param: str) -> Translate:
    """targets: FHIR type -> internal field. A bare id searches every target type."""

    def translate(modifier: str | None, value: str) -> list[Condition]:
        match = _REF.match(value)
        kind = modifier or (match.group(1) if match else None)
        if match is None or (kind is not None and kind not in targets):
            raise InvalidSearch(
                f"{param}: expected a reference to {' or '.join(targets)}, got {value!r}",
                expression=param,
            )
        ident = match.group(2)
        if kind is None:
            return [Condition(f, "eq", ident) for f in targets.values()]
        return [Condition(targets[kind], "eq", ident)]

    return translate


def _payor(param: str) -> Translate:
    kinds = {"Organization": "organization", "Patient": "patient"}

    def translate(modifier: str | None, value: str) -> list[Condition]:
        match = _REF.match(value)
        kind = modifier or (match.group(1) if match else None)
        if match is None or (kind is not None and kind not in kinds):
            raise InvalidSearch(
                f"{param}: expected a reference to Organization or Patient, got {value!r}",
                expression=param,
            )
        return [Condition("payor", "eq", (kinds.get(kind or ""), match.group(2)))]

    return translate


def _any_reference(field_name: str, param: str) -> Translate:
    def translate(modifier: str | None, value: str) -> list[Condition]:
        match = _REF.match(value)
        if match is None:
            raise InvalidSearch(f"{param}: {value!r} is not a reference", expression=param)
        return [Condition(field_name, "eq", (modifier or match.group(1), match.group(2)))]

    return translate


def _phone(field_name: str, param: str) -> Translate:
    def translate(modifier: str | None, value: str) -> list[Condition]:
        number = phone_digits(value.split("|", 1)[-1])
        return [Condition(field_name, "eq", number or None)]

    return translate


# -- the tables ----------------------------------------------------------------------

_STRING = frozenset({"exact", "contains"})
_TOKEN = frozenset({"not"})


def _p(
    name: str, kind: str, doc: str, translate: Translate, modifiers: frozenset[str] = frozenset()
) -> SearchParam:
    return SearchParam(name, kind, doc, translate, modifiers)


def _id(kind: str) -> SearchParam:
    return _p("_id", "token", f"Logical id of the {kind}", _plain("id"))


def _last_updated(kind: str) -> SearchParam:
    return _p(
        "_lastUpdated",
        "date",
        f"When the {kind} last changed, meta.lastUpdated (eq, ne, gt, ge, lt, le, sa, eb)",
        _date("last_updated", "_lastUpdated"),
    )


_SLOT_STATUS = {
    "free": "open",
    "busy": "full",
    "busy-unavailable": "blocked",
    "busy-tentative": "none",
    "entered-in-error": "none",
}

SEARCHES: dict[str, ResourceSearch] = {
    "Organization": ResourceSearch(
        ProviderGroup,
        {
            "_id": _id("Organization"),
            "_lastUpdated": _last_updated("Organization"),
            "name": _p(
                "name",
                "string",
                "Name of the provider group (starts with, any case)",
                _string("name"),
                _STRING,
            ),
            "identifier": _p(
                "identifier", "token", "Identifier (system|value)", _identifier("identifier")
            ),
        },
        {"name": "name", "identifier": "identifier", "_id": "id", "_lastUpdated": "last_updated"},
        (("name", False),),
    ),
    "Location": ResourceSearch(
        Department,
        {
            "_id": _id("Location"),
            "_lastUpdated": _last_updated("Location"),
            "name": _p("name", "string", "Name of the department", _string("name"), _STRING),
            "identifier": _p(
                "identifier", "token", "Identifier (system|value)", _identifier("identifier")
            ),
            "organization": _p(
                "organization",
                "reference",
                "The provider group managing it",
                _reference({"Organization": "provider_group"}, "organization"),
            ),
        },
        {
            "name": "name",
            "identifier": "identifier",
            "organization": "provider_group",
            "_id": "id",
            "_lastUpdated": "last_updated",
        },
        (("name", False),),
    ),
    "Practitioner": ResourceSearch(
        Provider,
        {
            "_id": _id("Practitioner"),
            "_lastUpdated": _last_updated("Practitioner"),
            "name": _p(
                "name", "string", "Any part of the provider's name", _string("name"), _STRING
            ),
            "family": _p("family", "string", "Family name", _string("family"), _STRING),
            "given": _p("given", "string", "Given name", _string("given"), _STRING),
            "identifier": _p(
                "identifier", "token", "Identifier, e.g. NPI", _identifier("identifier")
            ),
        },
        {
            "name": "name",
            "family": "family",
            "given": "given",
            "identifier": "identifier",
            "_id": "id",
            "_lastUpdated": "last_updated",
        },
        (("family", False), ("given", False)),
    ),
    "Schedule": ResourceSearch(
        ProviderSchedule,
        {
            "_id": _id("Schedule"),
            "_lastUpdated": _last_updated("Schedule"),
            "actor": _p(
                "actor",
                "reference",
                "The provider (Practitioner) or department (Location)",
                _reference({"Practitioner": "provider", "Location": "department"}, "actor"),
            ),
            "active": _p(
                "active", "token", "Whether the schedule is in use", _boolean("active", "active")
            ),
            "date": _p(
                "date",
                "date",
                "Planning horizon overlaps the date",
                _period_overlap("horizon", "date"),
            ),
            "identifier": _p(
                "identifier", "token", "Identifier (system|value)", _identifier("identifier")
            ),
        },
        {
            "active": "active",
            "date": "horizon",
            "identifier": "identifier",
            "_id": "id",
            "_lastUpdated": "last_updated",
        },
        (),
        revincludes={"Slot:schedule": RevInclude("Slot", "schedule")},
    ),
    "Slot": ResourceSearch(
        GroupSession,
        {
            "_id": _id("Slot"),
            "_lastUpdated": _last_updated("Slot"),
            "schedule": _p(
                "schedule",
                "reference",
                "The provider schedule",
                _reference({"Schedule": "schedule"}, "schedule"),
            ),
            "start": _p(
                "start",
                "date",
                "Session start (eq, ne, gt, ge, lt, le, sa, eb)",
                _date("start", "start"),
            ),
            "status": _p(
                "status",
                "token",
                "free | busy | busy-unavailable",
                _token_code("availability", _SLOT_STATUS, "status"),
                _TOKEN,
            ),
            "appointment-type": _p(
                "appointment-type",
                "token",
                "Appointment type of the session",
                _coded("appointment_type", APPOINTMENT_TYPES),
            ),
            "service-type": _p(
                "service-type",
                "token",
                "Service type of the session",
                _coded("service_type", SERVICE_TYPES),
            ),
            "identifier": _p(
                "identifier", "token", "Identifier (system|value)", _identifier("identifier")
            ),
        },
        {
            "start": "start",
            "schedule": "schedule",
            "appointment-type": "appointment_type",
            "service-type": "service_type",
            "_id": "id",
            "_lastUpdated": "last_updated",
        },
        (("start", False),),
        includes={"Slot:schedule": Include(lambda s: [("Schedule", s.schedule_id)])},
        revincludes={"Appointment:slot": RevInclude("Appointment", "session")},
    ),
    "Patient": ResourceSearch(
        Patient,
        {
            "_id": _id("Patient"),
            "_lastUpdated": _last_updated("Patient"),
            "identifier": _p(
                "identifier",
                "token",
                "MRN or any identifier (system|value)",
                _identifier("identifier"),
            ),
            "family": _p(
                "family",
                "string",
                "Family name (starts with; case and accents ignored)",
                _string("family", folded=True),
                _STRING,
            ),
            "given": _p(
                "given",
                "string",
                "Given name (starts with; case and accents ignored)",
                _string("given", folded=True),
                _STRING,
            ),
            "name": _p(
                "name", "string", "Family or given name", _string("name", folded=True), _STRING
            ),
            "birthdate": _p(
                "birthdate", "date", "Date of birth", _date("birth_date", "birthdate", as_date=True)
            ),
            "gender": _p(
                "gender",
                "token",
                "male | female | other | unknown",
                _token_code(
                    "gender", {g: g for g in ("male", "female", "other", "unknown")}, "gender"
                ),
            ),
            "telecom": _p(
                "telecom",
                "token",
                "Phone number (phone|number or number), any formatting",
                _phone("phone_digits", "telecom"),
            ),
            "phone": _p(
                "phone", "token", "Phone number, any formatting", _phone("phone_digits", "phone")
            ),
        },
        {
            "family": "family",
            "given": "given",
            "name": "name",
            "birthdate": "birth_date",
            "gender": "gender",
            "_id": "id",
            "_lastUpdated": "last_updated",
        },
        (("family", False), ("given", False)),
    ),
    "Appointment": ResourceSearch(
        Booking,
        {
            "_id": _id("Appointment"),
            "_lastUpdated": _last_updated("Appointment"),
            "patient": _p(
                "patient",
                "reference",
                "The patient booked",
                _reference({"Patient": "patient"}, "patient"),
            ),
            "actor": _p(
                "actor",
                "reference",
                "Any participant: Patient, Practitioner or Location",
                _reference(
                    {"Patient": "patient", "Practitioner": "provider", "Location": "department"},
                    "actor",
                ),
            ),
            "practitioner": _p(
                "practitioner",
                "reference",
                "A provider taking part",
                _reference({"Practitioner": "provider"}, "practitioner"),
            ),
            "location": _p(
                "location",
                "reference",
                "The department",
                _reference({"Location": "department"}, "location"),
            ),
            "date": _p("date", "date", "Appointment start", _date("start", "date")),
            "status": _p(
                "status",
                "token",
                "Appointment status",
                _token_code(
                    "status",
                    {s.value: s.value for s in BookingStatus}
                    | {"pending": "pending", "waitlist": "waitlist"},
                    "status",
                ),
                _TOKEN,
            ),
            "slot": _p(
                "slot", "reference", "The group session", _reference({"Slot": "session"}, "slot")
            ),
            "appointment-type": _p(
                "appointment-type",
                "token",
                "Appointment type",
                _coded("appointment_type", APPOINTMENT_TYPES),
            ),
            "identifier": _p(
                "identifier",
                "token",
                "Business identifier (system|value)",
                _identifier("identifier"),
            ),
        },
        {
            "date": "start",
            "status": "status",
            "patient": "patient",
            "slot": "session",
            "location": "department",
            "appointment-type": "appointment_type",
            "_id": "id",
            "_lastUpdated": "last_updated",
        },
        # Waitlist entries of a session share its start: they come in queue order.
        (("start", False), ("queue", False)),
        includes={
            "Appointment:patient": Include(lambda b: [("Patient", b.patient_id)]),
            "Appointment:slot": Include(lambda b: [("Slot", b.session_id)] if b.session_id else []),
            "Appointment:practitioner": Include(
                lambda b: [("Practitioner", p.provider_id) for p in b.providers]
            ),
            "Appointment:location": Include(
                lambda b: [("Location", b.department_id)] if b.department_id else []
            ),
        },
        chains={"patient": "patient_chain"},
    ),
    "AuditEvent": ResourceSearch(
        AuditRecord,
        {
            "_id": _id("AuditEvent"),
            "_lastUpdated": _last_updated("AuditEvent"),
            "date": _p("date", "date", "When the event was recorded", _date("recorded", "date")),
            "patient": _p(
                "patient",
                "reference",
                "The patient whose data was touched",
                _reference({"Patient": "patient"}, "patient"),
            ),
            "entity": _p(
                "entity", "reference", "The record acted on", _any_reference("entity", "entity")
            ),
            "agent": _p(
                "agent", "token", "Token subject of the user (value)", _identifier_value("agent")
            ),
            "action": _p(
                "action",
                "token",
                "C | R | U | D | E",
                _token_code("action", {a: a for a in "CRUDE"}, "action"),
            ),
            "subtype": _p(
                "subtype",
                "token",
                "FHIR interaction, e.g. create, read, search-type",
                _identifier_value("subtype"),
            ),
        },
        {
            "date": "recorded",
            "patient": "patient",
            "entity": "entity",
            "agent": "agent",
            "action": "action",
            "subtype": "subtype",
            "_id": "id",
            "_lastUpdated": "last_updated",
        },
        (("recorded", True),),
    ),
    "Coverage": ResourceSearch(
        Coverage,
        {
            "_id": _id("Coverage"),
            "_lastUpdated": _last_updated("Coverage"),
            "patient": _p(
                "patient",
                "reference",
                "The patient covered",
                _reference({"Patient": "beneficiary"}, "patient"),
            ),
            "beneficiary": _p(
                "beneficiary",
                "reference",
                "The patient covered",
                _reference({"Patient": "beneficiary"}, "beneficiary"),
            ),
            "subscriber": _p(
                "subscriber",
                "reference",
                "The subscriber (policy holder) when a patient",
                _reference({"Patient": "subscriber"}, "subscriber"),
            ),
            "payor": _p(
                "payor",
                "reference",
                "Who pays: the payer Organization, or the Patient (self-pay)",
                _payor("payor"),
            ),
            "status": _p(
                "status",
                "token",
                "active | cancelled | draft | entered-in-error",
                _token_code("status", {s: s for s in COVERAGE_STATUSES}, "status"),
                _TOKEN,
            ),
            "type": _p(
                "type",
                "token",
                "Coverage type (system|code), e.g. coverage-selfpay|pay",
                _identifier("type"),
            ),
            "identifier": _p(
                "identifier",
                "token",
                "Member or policy identifier (system|value)",
                _identifier("identifier"),
            ),
        },
        {
            "status": "status",
            "patient": "beneficiary",
            "beneficiary": "beneficiary",
            "subscriber": "subscriber",
            "payor": "payor",
            "type": "type",
            "_id": "id",
            "_lastUpdated": "last_updated",
        },
        (("order", False),),
        includes={
            "Coverage:payor": Include(
                lambda c: [("Patient" if c.payor_kind == "patient" else "Organization", c.payor_id)]
            ),
            "Coverage:beneficiary": Include(lambda c: [("Patient", c.beneficiary_id)]),
        },
        chains={
            "patient": "beneficiary_chain",
            "beneficiary": "beneficiary_chain",
            "subscriber": "subscriber_chain",
        },
    ),
}

#: Result parameters understood everywhere (besides the resource's own parameters).
RESULT_PARAMS = frozenset(
    {
        "_count",
        "_offset",
        "_include",
        "_revinclude",
        "_sort",
        "_format",
        "_summary",
        "_elements",
        "_total",
    }
)
TOTAL_MODES = ("none", "estimate", "accurate")


def parse_search(
    resource_type: str,
    params: list[tuple[str, str]],
    access: Access,
    *,
    lenient: bool = False,
    ssn: SsnHasher | None = None,
) -> SearchRequest:
    """Turn query-string pairs into a store query plus includes.

    Unknown parameters raise InvalidSearch unless `lenient` (Prefer: handling=lenient),
    in which case they are ignored and left out of the canonical parameters.
    """
    spec = SEARCHES[resource_type]
    query = Query(kind=spec.kind, access=access, limit=DEFAULT_COUNT, ssn=ssn)
    includes: list[Include] = []
    revincludes: list[RevInclude] = []
    canonical: list[tuple[str, str]] = []
    chained_types: set[str] = set()
    sort: list[tuple[str, bool]] = []
    if len(params) > MAX_PARAMETERS:
        raise TooCostly(f"a search takes at most {MAX_PARAMETERS} parameters")
    shaping = _Shaping(resource_type)
    for raw_name, value in params:
        check_text(raw_name, None, InvalidSearch)
        name, _, modifier = raw_name.partition(":")
        check_text(value, name, InvalidSearch)
        if name in RESULT_PARAMS:
            if name in _Shaping.PARAMS:
                shaping.take(name, value, query)
            else:
                _result_param(
                    spec, name, raw_name, value, query, includes, revincludes, sort, lenient
                )
            if name != "_offset":
                canonical.append((raw_name, value))
            continue
        head, dot, tail = name.partition(".")
        if dot and head in spec.chains:
            inner = parse_search(
                "Patient",
                [(tail + (f":{modifier}" if modifier else ""), value)],
                access,
                lenient=False,
                ssn=ssn,
            )
            chained = Condition(spec.chains[head], "eq", (access, tuple(inner.query.where), ssn))
            chained_types.add("Patient")
            query.where.append(AnyOf((chained,)))
            canonical.append((raw_name, _without_clear_ssn(tail, value, ssn)))
            continue
        param = spec.params.get(name)
        if param is None:
            if lenient:
                continue
            known = ", ".join(sorted(spec.params))
            raise InvalidSearch(
                f"unknown search parameter {name!r} for {resource_type}; supported: {known}",
                expression=name,
            )
        if modifier and modifier not in param.modifiers and param.type != "reference":
            raise InvalidSearch(
                f"{name}: modifier {modifier!r} is not supported", expression=raw_name
            )
        if value == "":
            raise InvalidSearch(f"{name}: empty value", expression=name)
        conditions: list[Condition] = []
        for alternative in _alternatives(name, value):
            conditions.extend(param.translate(modifier or None, alternative))
        query.where.append(AnyOf(tuple(conditions)))
        canonical.append((raw_name, _without_clear_ssn(name, value, ssn)))
    query.sort = sort or list(spec.default_sort)
    if shaping.total == "none" and query.limit > 0:
        query.count_total = False  # a next link still comes when more matches follow
    return SearchRequest(
        resource_type, query, includes, revincludes, canonical, shaping.subset, chained_types
    )


class _Shaping:
    """`_summary`, `_elements` and `_total`: how much of each match, and of the total."""

    PARAMS = frozenset({"_summary", "_elements", "_total"})

    def __init__(self, resource_type: str) -> None:
        self.resource_type = resource_type
        self.subset: Subset | None = None
        self.total = "accurate"

    def take(self, name: str, value: str, query: Query) -> None:
        if name == "_total":
            if value not in TOTAL_MODES:
                raise InvalidSearch(
                    f"_total must be one of {', '.join(TOTAL_MODES)}", expression="_total"
                )
            self.total = value  # estimate: our totals are exact and cost no more
            return
        if name == "_summary" and value == "count":
            query.limit = 0
            query.count_total = True
            return
        subset = (
            summary(self.resource_type, value)
            if name == "_summary"
            else elements(self.resource_type, value)
        )
        if subset is not None and self.subset is not None:
            raise InvalidSearch(
                "give one of _summary (true, text, data) and _elements, not both", expression=name
            )
        self.subset = subset or self.subset


def parse_read(resource_type: str, params: list[tuple[str, str]]) -> Subset | None:
    """The part of a read resource to return (`_summary`, `_elements`); `_format` is the
    HTTP layer's, and a read ignores other parameters, as it always has."""
    shaping = _Shaping(resource_type)
    for name, value in params:
        if name in ("_summary", "_elements"):
            shaping.take(name, value, Query(kind=SEARCHES[resource_type].kind))
    return shaping.subset


def _paging_integer(name: str, value: str) -> int:
    if not value.isascii() or not value.isdigit() or int(value) > MAX_OFFSET:
        raise InvalidSearch(f"{name} must be an integer from 0 to {MAX_OFFSET}", expression=name)
    return int(value)


def parse_history(params: list[tuple[str, str]], *, lenient: bool = False) -> slice:
    """The page of an instance history (`_count`, `_offset`; `_format` as anywhere), as a
    slice of the versions, newest first. Other parameters are refused unless `lenient`."""
    count, offset = DEFAULT_COUNT, 0
    for name, value in params:
        if name == "_count":
            count = min(_paging_integer(name, value), MAX_COUNT)
        elif name == "_offset":
            offset = _paging_integer(name, value)
        elif name == "_format":
            _check_format(value)
        elif not lenient:
            raise InvalidSearch(
                f"unknown history parameter {name!r}; supported: _count, _offset, _format",
                expression=name,
            )
    return slice(offset, offset + count)


def _without_clear_ssn(name: str, value: str, ssn: SsnHasher | None) -> str:
    """The value as it may appear in self/next links: SSNs replaced by their keyed hash."""
    if name != "identifier" or SSN_SYSTEM not in value:
        return value
    parts = []
    for alternative in _split_values(value):
        system, bar, ident = alternative.partition("|")
        if bar and system == SSN_SYSTEM:
            alternative = f"{system}|{link_safe(ssn, ident)}"
        parts.append(alternative.replace(",", "\\,"))
    return ",".join(parts)


def _alternatives(name: str, value: str) -> list[str]:
    """A parameter's values, within the bounds above."""
    values = _split_values(value)
    if len(values) > MAX_ALTERNATIVES:
        raise TooCostly(
            f"{name}: at most {MAX_ALTERNATIVES} comma-separated values", expression=name
        )
    if any(len(v) > MAX_VALUE_CHARS for v in values):
        raise TooLong(
            f"{name}: a value is longer than {MAX_VALUE_CHARS} characters", expression=name
        )
    return values


def _split_values(value: str) -> list[str]:
    """Comma separates alternatives; backslash escapes a literal comma."""
    parts = re.split(r"(?<!\\),", value)
    return [p.replace("\\,", ",") for p in parts]


def _result_param(
    spec: ResourceSearch,
    name: str,
    raw_name: str,
    value: str,
    query: Query,
    includes: list[Include],
    revincludes: list[RevInclude],
    sort: list[tuple[str, bool]],
    lenient: bool,
) -> None:
    if name in ("_count", "_offset"):
        if name == "_count":
            query.limit = min(_paging_integer(name, value), MAX_COUNT)
            query.count_total = True
        else:
            query.offset = _paging_integer(name, value)
    elif name == "_include":
        include = spec.includes.get(value)
        if include is None:
            if lenient:
                return
            raise InvalidSearch(
                f"_include={value} is not supported; "
                f"supported: {', '.join(spec.includes) or 'none'}",
                expression="_include",
            )
        includes.append(include)
    elif name == "_revinclude":
        revinclude = spec.revincludes.get(value)
        if revinclude is None:
            if lenient:
                return
            raise InvalidSearch(
                f"_revinclude={value} is not supported; supported: "
                f"{', '.join(spec.revincludes) or 'none'}",
                expression="_revinclude",
            )
        revincludes.append(revinclude)
    elif name == "_sort":
        for key in value.split(","):
            descending = key.startswith("-")
            field_name = spec.sorts.get(key.lstrip("-"))
            if field_name is None:
                raise InvalidSearch(
                    f"_sort by {key!r} is not supported; "
                    f"supported: {', '.join(spec.sorts) or 'none'}",
                    expression="_sort",
                )
            sort.append((field_name, descending))
    elif name == "_format":
        _check_format(value)


def _check_format(value: str) -> None:
    """JSON in any spelling (json, application/json, application/fhir+json, with
    parameters); the HTTP layer has already refused other versions and charsets."""
    media_type = value.partition(";")[0].strip().lower()
    if media_type not in (
        "json",
        "application/json",
        "application/fhir+json",
        "application/json+fhir",
    ):
        raise InvalidSearch("only JSON is served (_format=json)", expression="_format")


def scope_conditions(resource_type: str, query: Sequence[tuple[str, str]]) -> tuple[AnyOf, ...]:
    """The conditions of a SMART v2 granular scope's query (`Coverage.rs?payor=…`): any
    search parameter the type declares, with its modifiers and comma alternatives. Result
    parameters, chains and unknown names raise InvalidSearch, as do malformed values."""
    spec = SEARCHES[resource_type]
    for name, _ in query:
        if name.partition(":")[0] not in spec.params:
            raise InvalidSearch(
                f"{name!r} is not a search parameter of {resource_type}", expression=name
            )
    if not query:
        raise InvalidSearch("a granular scope needs a query")
    return tuple(parse_search(resource_type, list(query), Access()).query.where)

"""The search parameters each resource type supports (R4 search.html), as one table.

`SEARCHES[type]` says, per resource type, which parameters it takes and how each
value becomes store conditions (its translator), how results sort, and which
`_include`/`_revinclude` and chained parameters it has. `mappings.search` parses a
query string against it; the CapabilityStatement and the OpenAPI document list it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mappings.codes import APPOINTMENT_TYPES, SERVICE_TYPES, Coding
from mappings.common import split_reference
from mappings.errors import InvalidSearch
from mappings.slot import SLOT_STATUS
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
from store.search import Condition
from store.text import fold, phone_digits

COVERAGE_STATUSES = ("active", "cancelled", "draft", "entered-in-error")

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


def _reference(targets: Mapping[str, str], param: str) -> Translate:
    """targets: FHIR type -> internal field. A bare id searches every target type."""

    def translate(modifier: str | None, value: str) -> list[Condition]:
        match = split_reference(value)
        kind = modifier or (match[0] if match else None)
        if match is None or (kind is not None and kind not in targets):
            raise InvalidSearch(
                f"{param}: expected a reference to {' or '.join(targets)}, got {value!r}",
                expression=param,
            )
        ident = match[1]
        if kind is None:
            return [Condition(f, "eq", ident) for f in targets.values()]
        return [Condition(targets[kind], "eq", ident)]

    return translate


def _payor(param: str) -> Translate:
    kinds = {"Organization": "organization", "Patient": "patient"}

    def translate(modifier: str | None, value: str) -> list[Condition]:
        match = split_reference(value)
        kind = modifier or (match[0] if match else None)
        if match is None or (kind is not None and kind not in kinds):
            raise InvalidSearch(
                f"{param}: expected a reference to Organization or Patient, got {value!r}",
                expression=param,
            )
        return [Condition("payor", "eq", (kinds.get(kind or ""), match[1]))]

    return translate


def _any_reference(field_name: str, param: str) -> Translate:
    def translate(modifier: str | None, value: str) -> list[Condition]:
        match = split_reference(value)
        if match is None:
            raise InvalidSearch(f"{param}: {value!r} is not a reference", expression=param)
        return [Condition(field_name, "eq", (modifier or match[0], match[1]))]

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


#: Slot.status -> availability: `SLOT_STATUS` inverted; no session shows the others.
_SLOT_STATUS = {status: a.value for a, status in SLOT_STATUS.items()} | dict.fromkeys(
    ("busy-tentative", "entered-in-error"), "none"
)

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
        (("start", False),),
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

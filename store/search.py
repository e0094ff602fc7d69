"""Generic, typed queries over the store: conditions ANDed, alternatives ORed, paged.

Callers name fields, never columns; each record kind lists its searchable
fields below. Values are always bound parameters (LIKE wildcards escaped), so
any string a client sends is treated as data. A condition on a child table is
`id IN (SELECT parent_id ... WHERE indexed = :value)`, not a correlated EXISTS:
SQLite would otherwise probe the child index once per parent row.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import orjson
from sqlalchemy import (
    ColumnElement,
    Select,
    Text,
    and_,
    cast,
    exists,
    false,
    func,
    literal_column,
    or_,
    select,
    true,
)
from sqlalchemy.orm import InstrumentedAttribute, Session, lazyload

from store.access import Access
from store.common import on_postgresql
from store.models import (
    WAITLIST_ORDER,
    AuditRecord,
    Availability,
    Base,
    Booking,
    BookingIdentifier,
    BookingProvider,
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
from store.ssn import SSN_SYSTEM, SsnHasher
from store.visibility import sees_all, visibility

M = TypeVar("M", bound=Base)


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class AnyOf:
    """Alternatives for one search parameter: at least one must hold."""

    conditions: tuple[Condition, ...]


@dataclass
class Query:
    kind: type[Base]
    where: list[AnyOf] = field(default_factory=list)
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (field, descending)
    offset: int = 0
    limit: int = 50
    access: Access = field(default_factory=Access)
    count_total: bool = True
    #: Count exactly up to this many matches; beyond, the total is PostgreSQL's planner
    #: estimate (never below the bound). None: always count exactly.
    exact_up_to: int | None = None
    ssn: SsnHasher | None = None  # to search SSNs, which are stored only as keyed hashes


@dataclass
class Page:
    rows: Sequence[Any]
    total: int | None
    more: bool = False  # matches follow this page


Builder = Callable[[str, Any], ColumnElement[bool]]


def _column(attr: InstrumentedAttribute[Any]) -> Builder:
    def build(op: str, value: Any) -> ColumnElement[bool]:
        return _compare(attr, op, value)

    return build


def _compare(col: Any, op: str, value: Any) -> ColumnElement[bool]:
    if op == "eq":
        return col == value  # type: ignore[no-any-return]
    if op == "ne":
        return or_(col != value, col.is_(None))
    if op == "lt":
        return col < value  # type: ignore[no-any-return]
    if op == "le":
        return col <= value  # type: ignore[no-any-return]
    if op == "gt":
        return col > value  # type: ignore[no-any-return]
    if op == "ge":
        return col >= value  # type: ignore[no-any-return]
    if op == "startswith":
        return func.lower(col).startswith(str(value).lower(), autoescape=True)
    if op == "contains":
        return func.lower(col).contains(str(value).lower(), autoescape=True)
    if op == "within":
        lo, hi = value
        return and_(col >= lo, col < hi)
    if op == "outside":
        lo, hi = value
        return or_(col < lo, col >= hi)
    if op == "in":
        return col.in_(value)  # type: ignore[no-any-return]
    raise ValueError(f"unknown operator {op!r}")


def _folded(attr: InstrumentedAttribute[Any]) -> Builder:
    """A name column kept folded (lower case, no accents), as is the value searched,
    and compared bytewise (store.models): a prefix is the index range
    `prefix <= column < successor`, where LIKE or lower() would scan."""

    def build(op: str, value: Any) -> ColumnElement[bool]:
        if op != "startswith" or not value or ord(value[-1]) >= 0x10FFFF:
            return _compare(attr, op, value)
        successor = value[:-1] + chr(ord(value[-1]) + 1)
        return and_(attr >= value, attr < successor)

    return build


def _single_identifier(system_col: Any, value_col: Any) -> Builder:
    """Value is (system or None, value or None)."""

    def build(op: str, value: Any) -> ColumnElement[bool]:
        system, ident = value
        parts = []
        if system is not None:
            parts.append(system_col == system if system else system_col.is_(None))
        if ident is not None:
            parts.append(value_col == ident)
        return and_(true(), *parts)

    return build


def _patient_identifier(op: str, value: Any) -> ColumnElement[bool]:
    system, ident = value
    parts = []
    if system is not None:
        parts.append(PatientIdentifier.system == system)
    if ident is not None:
        parts.append(PatientIdentifier.value == ident)
    return Patient.id.in_(select(PatientIdentifier.patient_id).where(true(), *parts))


def _patient_ssn(op: str, value: Any) -> ColumnElement[bool]:
    """Value: the keyed hashes an SSN may be stored as (one per configured key)."""
    if not value:
        return false()
    return Patient.id.in_(
        select(PatientIdentifier.patient_id).where(
            PatientIdentifier.system == SSN_SYSTEM, PatientIdentifier.value.in_(value)
        )
    )


def _coverage_identifier(op: str, value: Any) -> ColumnElement[bool]:
    system, ident = value
    parts = []
    if system is not None:
        parts.append(CoverageIdentifier.system == (system or ""))
    if ident is not None:
        parts.append(CoverageIdentifier.value == ident)
    return Coverage.id.in_(select(CoverageIdentifier.coverage_id).where(true(), *parts))


def _coverage_payor(op: str, value: Any) -> ColumnElement[bool]:
    """Value: (kind or None, id)."""
    kind, ident = value
    if kind is None:
        return Coverage.payor_id == ident  # type: ignore[no-any-return]
    return and_(Coverage.payor_kind == kind, Coverage.payor_id == ident)


def _audit_entity(op: str, value: Any) -> ColumnElement[bool]:
    """Value: (resource kind or None, id)."""
    kind, ident = value
    if kind is None:
        return AuditRecord.entity_id == ident  # type: ignore[no-any-return]
    return and_(AuditRecord.entity_kind == kind, AuditRecord.entity_id == ident)


def _patient_chain(reference: Any) -> Builder:
    """Chained search into the referenced Patient; value: the Patient's AnyOf list.
    The Patient's own visibility applies inside, so a chain never reaches a hidden one."""

    def build(op: str, value: Any) -> ColumnElement[bool]:
        inner = Query(kind=Patient, where=list(value[1]), access=value[0], ssn=value[2])
        return exists().where(Patient.id == reference, where_clause(inner))

    return build


def _patient_phone(op: str, value: Any) -> ColumnElement[bool]:
    return Patient.id.in_(select(PatientPhone.patient_id).where(PatientPhone.digits == value))


def _booking_identifier(op: str, value: Any) -> ColumnElement[bool]:
    system, ident = value
    parts = []
    if system is not None:
        parts.append(BookingIdentifier.system == (system or ""))
    if ident is not None:
        parts.append(BookingIdentifier.value == ident)
    return Booking.id.in_(select(BookingIdentifier.booking_id).where(true(), *parts))


def _booking_provider(op: str, value: Any) -> ColumnElement[bool]:
    return Booking.id.in_(
        select(BookingProvider.booking_id).where(BookingProvider.provider_id == value)
    )


def _session_availability(op: str, value: Any) -> ColumnElement[bool]:
    """Value is an `Availability` name: open, full or blocked."""
    if str(value) not in set(Availability):
        return false()
    return GroupSession.availability == str(value)


def _overlaps(start: Any, end: Any) -> Builder:
    """Value is a half-open range (lo, hi); matches records whose [start, end] meets it."""

    def build(op: str, value: Any) -> ColumnElement[bool]:
        lo, hi = value
        parts = []
        if hi is not None:
            parts.append(or_(start.is_(None), start < hi))
        if lo is not None:
            parts.append(or_(end.is_(None), end >= lo))
        return and_(true(), *parts)

    return build


def _name_parts(*parts: Any) -> Builder:
    """Any of the name's parts: columns, or builders of their own."""
    builders = [_column(p) if isinstance(p, InstrumentedAttribute) else p for p in parts]

    def build(op: str, value: Any) -> ColumnElement[bool]:
        return or_(*(b(op, value) for b in builders))

    return build


FIELDS: dict[type[Base], dict[str, Builder]] = {
    ProviderGroup: {
        "id": _column(ProviderGroup.id),
        "name": _column(ProviderGroup.name),
        "identifier": _single_identifier(
            ProviderGroup.identifier_system, ProviderGroup.identifier_value
        ),
    },
    Department: {
        "id": _column(Department.id),
        "name": _column(Department.name),
        "identifier": _single_identifier(Department.identifier_system, Department.identifier_value),
        "provider_group": _column(Department.provider_group_id),
    },
    Provider: {
        "id": _column(Provider.id),
        "name": _name_parts(Provider.family, Provider.given, Provider.prefix),
        "family": _column(Provider.family),
        "given": _column(Provider.given),
        "identifier": _single_identifier(Provider.identifier_system, Provider.identifier_value),
    },
    ProviderSchedule: {
        "id": _column(ProviderSchedule.id),
        "provider": _column(ProviderSchedule.provider_id),
        "department": _column(ProviderSchedule.department_id),
        "active": _column(ProviderSchedule.active),
        "horizon": _overlaps(ProviderSchedule.horizon_start, ProviderSchedule.horizon_end),
        "identifier": _single_identifier(
            ProviderSchedule.identifier_system, ProviderSchedule.identifier_value
        ),
    },
    GroupSession: {
        "id": _column(GroupSession.id),
        "schedule": _column(GroupSession.schedule_id),
        "start": _column(GroupSession.start),
        "availability": _session_availability,
        "appointment_type": _column(GroupSession.appointment_type),
        "service_type": _column(GroupSession.service_type),
        "identifier": _single_identifier(
            GroupSession.identifier_system, GroupSession.identifier_value
        ),
    },
    Patient: {
        "id": _column(Patient.id),
        "family": _folded(Patient.family_folded),
        "given": _folded(Patient.given_folded),
        "name": _name_parts(_folded(Patient.family_folded), _folded(Patient.given_folded)),
        "family_exact": _column(Patient.family),
        "given_exact": _column(Patient.given),
        "name_exact": _name_parts(Patient.family, Patient.given),
        "birth_date": _column(Patient.birth_date),
        "gender": _column(Patient.gender),
        "phone_digits": _patient_phone,
        "identifier": _patient_identifier,
        "ssn_hashes": _patient_ssn,
    },
    AuditRecord: {
        "id": _column(AuditRecord.id),
        "recorded": _column(AuditRecord.recorded),
        "patient": _column(AuditRecord.patient_id),
        "entity": _audit_entity,
        "agent": _column(AuditRecord.agent),
        "action": _column(AuditRecord.action),
        "subtype": _column(AuditRecord.subtype),
    },
    Coverage: {
        "id": _column(Coverage.id),
        "beneficiary": _column(Coverage.beneficiary_id),
        "subscriber": _column(Coverage.subscriber_patient_id),
        "payor": _coverage_payor,
        "status": _column(Coverage.status),
        "type": _single_identifier(Coverage.type_system, Coverage.type_code),
        "identifier": _coverage_identifier,
        "beneficiary_chain": _patient_chain(Coverage.beneficiary_id),
        "subscriber_chain": _patient_chain(Coverage.subscriber_patient_id),
    },
    Booking: {
        "id": _column(Booking.id),
        "patient": _column(Booking.patient_id),
        "provider": _booking_provider,
        "department": _column(Booking.department_id),
        "session": _column(Booking.session_id),
        "start": _column(Booking.start),
        "status": _column(Booking.status),
        "appointment_type": _column(Booking.appointment_type),
        "identifier": _booking_identifier,
        "patient_chain": _patient_chain(Booking.patient_id),
    },
}

#: Sort keys per kind: a column, or several (a name sorts by family, then given).
_SORT_COLUMNS: dict[type[Base], dict[str, Any]] = {
    ProviderGroup: {
        "name": ProviderGroup.name,
        "identifier": (ProviderGroup.identifier_system, ProviderGroup.identifier_value),
    },
    Department: {
        "name": Department.name,
        "identifier": (Department.identifier_system, Department.identifier_value),
        "provider_group": Department.provider_group_id,
    },
    Provider: {
        "family": Provider.family,
        "given": Provider.given,
        "name": (Provider.family, Provider.given),
        "identifier": (Provider.identifier_system, Provider.identifier_value),
    },
    ProviderSchedule: {
        "active": ProviderSchedule.active,
        "horizon": ProviderSchedule.horizon_start,
        "identifier": (ProviderSchedule.identifier_system, ProviderSchedule.identifier_value),
    },
    GroupSession: {
        "start": GroupSession.start,
        "schedule": GroupSession.schedule_id,
        "appointment_type": GroupSession.appointment_type,
        "service_type": GroupSession.service_type,
    },
    Patient: {
        "family": Patient.family_folded,
        "given": Patient.given_folded,
        "name": (Patient.family_folded, Patient.given_folded),
        "birth_date": Patient.birth_date,
        "gender": Patient.gender,
    },
    Booking: {
        "start": Booking.start,
        "patient": Booking.patient_id,
        "session": Booking.session_id,
        "department": Booking.department_id,
        "status": Booking.status,
        "appointment_type": Booking.appointment_type,
        "queue": WAITLIST_ORDER,
    },
    Coverage: {
        "order": Coverage.order,
        "beneficiary": Coverage.beneficiary_id,
        "subscriber": Coverage.subscriber_patient_id,
        "payor": (Coverage.payor_kind, Coverage.payor_id),
        "status": Coverage.status,
        "type": (Coverage.type_system, Coverage.type_code),
    },
    AuditRecord: {
        "recorded": AuditRecord.recorded,
        "last_updated": AuditRecord.recorded,  # an audit record never changes
        "patient": AuditRecord.patient_id,
        "agent": AuditRecord.agent,
        "action": AuditRecord.action,
        "subtype": AuditRecord.subtype,
        "entity": (AuditRecord.entity_kind, AuditRecord.entity_id),
    },
}
for _kind, _columns in _SORT_COLUMNS.items():
    _columns.setdefault("id", _kind.id)  # type: ignore[attr-defined]
    if "last_updated" not in _columns:
        _columns["last_updated"] = _kind.last_updated  # type: ignore[attr-defined]


def _ordered(column: Any, descending: bool) -> Any:
    """One ORDER BY term: missing values last either way, the same on SQLite and
    PostgreSQL. A column that cannot be missing is ordered without NULLS LAST, which
    would keep an index from giving the order where the backend puts NULLs first (SQLite
    always, PostgreSQL descending): the page would be sorted apart. An expression (not a
    column) may be NULL: it keeps NULLS LAST."""
    ordered = column.desc() if descending else column.asc()
    return ordered.nulls_last() if getattr(column, "nullable", True) else ordered


#: Each kind's sort keys as ORDER BY terms, ascending and descending, built once (SQL
#: expressions are immutable: one serves every statement).
_ORDERINGS: dict[type[Base], dict[str, dict[bool, tuple[Any, ...]]]] = {
    kind: {
        name: {
            descending: tuple(
                _ordered(column, descending)
                for column in (chosen if isinstance(chosen, tuple) else (chosen,))
            )
            for descending in (False, True)
        }
        for name, chosen in columns.items()
    }
    for kind, columns in _SORT_COLUMNS.items()
}


def _order_by(kind: type[Base], sort: list[tuple[str, bool]]) -> list[Any]:
    """ORDER BY for (key, descending) pairs, then the id."""
    orderings = _ORDERINGS[kind]
    order = [term for name, descending in sort for term in orderings[name][descending]]
    order.extend(orderings["id"][False])
    return order


for _kind, _fields in FIELDS.items():
    _fields.setdefault("last_updated", _column(_SORT_COLUMNS[_kind]["last_updated"]))


def where_clause(query: Query) -> ColumnElement[bool]:
    return and_(visibility(query.kind, query.access), all_of(query.kind, query.where, query.ssn))


def all_of(kind: type[Base], where: Sequence[AnyOf], ssn: SsnHasher | None) -> ColumnElement[bool]:
    """Every parameter holds (each by one of its alternatives)."""
    fields = FIELDS[kind]
    clauses = []
    for alternatives in where:
        conditions = [_hash_ssn(kind, ssn, c) for c in alternatives.conditions]
        clauses.append(or_(*(fields[c.field](c.op, c.value) for c in conditions)))
    return and_(true(), *clauses)


def _hash_ssn(kind: type[Base], ssn: SsnHasher | None, condition: Condition) -> Condition:
    """An SSN identifier search becomes a search for its keyed hashes (none without keys)."""
    if kind is not Patient or condition.field != "identifier":
        return condition
    system, value = condition.value
    if system != SSN_SYSTEM:
        return condition
    hashes = ssn.candidates(value or "") if ssn is not None else []
    return Condition("ssn_hashes", "eq", hashes)


def run(db: Session, query: Query) -> Page:
    """Execute a query: one SELECT for the page, one COUNT for the total (for a kind read
    as plain rows, the COUNT rides in the page's SELECT)."""
    condition = where_clause(query)
    statement: Select[Any] = select(query.kind).where(condition)
    # Without a total, one row past the page tells whether another page follows.
    peek = 0 if query.count_total or query.limit == 0 else 1
    order = _order_by(query.kind, query.sort)
    statement = statement.order_by(*order).offset(query.offset).limit(query.limit + peek)
    counter = _Counter(db, query, condition) if query.count_total else None
    counted: int | None = None
    load = _PAGE_LOADERS.get(query.kind)
    if load is not None:
        rows, counted = load(db, statement, order, counter)
    else:
        rows = db.scalars(statement.options(*_PAGE_LOADING.get(query.kind, ()))).unique().all()
    total = None
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    if counter is not None:
        if len(rows) < query.limit and (rows or query.offset == 0):
            total = query.offset + len(rows)  # a page that is not full is the last one
            more = False
        else:
            total = counter.total(counted)
            bound = query.exact_up_to
            if total is None and bound is not None and query.offset + len(rows) <= bound:
                more = True  # past the bound: more than `bound` match, more than this page
            elif total is None:  # past the bound, no estimate may be given: look ahead
                beyond: Select[Any] = statement.with_only_columns(literal_column("1")).offset(
                    query.offset + query.limit
                )
                more = db.scalar(beyond.limit(1)) is not None
            else:
                more = query.offset + len(rows) < total
    return Page(rows, total, more)


class _Counter:
    """The number of matches: exact, or, past `query.exact_up_to` matches on PostgreSQL,
    the planner's estimate (a COUNT walks every match, so it grows with them). The
    estimate comes from statistics over the whole table, hidden records included, so a
    caller from whom anything of the kind is hidden gets none past the bound (None)."""

    def __init__(self, db: Session, query: Query, condition: ColumnElement[bool]) -> None:
        self.db = db
        self.query = query
        self.condition = condition
        self.bound = query.exact_up_to if on_postgresql(db) else None

    @functools.cached_property
    def matches(self) -> Select[Any]:
        return select(literal_column("1")).select_from(self.query.kind).where(self.condition)

    @functools.cached_property
    def statement(self) -> Select[Any]:
        """The COUNT: of the matches up to the bound + 1 when bounded, else of all."""
        if self.bound is None:
            return select(func.count()).select_from(self.query.kind).where(self.condition)
        bounded = self.matches.limit(self.bound + 1).subquery()
        return select(func.count()).select_from(bounded)

    def total(self, counted: int | None = None) -> int | None:
        """The total from the count (`counted`, when the page's statement brought it)."""
        if counted is None:
            counted = self.db.scalar(self.statement) or 0
        if self.bound is None or counted <= self.bound:
            return counted
        if not sees_all(self.query.kind, self.query.access):
            return None
        return max(counted, _planned_rows(self.db, self.matches))


def _planned_rows(db: Session, statement: Select[Any]) -> int:
    """How many rows PostgreSQL's planner expects `statement` to return (EXPLAIN: from the
    table's statistics, without running it)."""
    compiled = statement.compile(
        dialect=db.get_bind().dialect, compile_kwargs={"render_postcompile": True}
    )
    plan = db.connection().exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}", compiled.params)
    document = plan.scalar_one()
    if isinstance(document, str):
        document = json.loads(document)
    return int(document[0]["Plan"]["Plan Rows"])


#: Relationships a rendering does not need: not joined into the SELECT of the records an
#: `_include` reads (`get_many`) or of a page read as ORM objects (a 500-Slot page, before
#: it was read as plain rows, spent more time loading schedules, providers and
#: departments than anything).
_PAGE_LOADING: dict[type[Base], tuple[Any, ...]] = {
    GroupSession: (lazyload(GroupSession.schedule),),
}


class IdentifierRow(NamedTuple):
    system: str
    value: str
    last4: str | None


class PhoneRow(NamedTuple):
    value: str
    use: str | None


@dataclass(frozen=True, slots=True)
class PatientRow:
    """A patient as a search page shows it: the columns and the identifiers and phones
    `mappings.patient` renders, read as plain rows (ORM objects cost about twice as much)."""

    id: str
    version: int
    last_updated: dt.datetime
    family: str
    given: str
    birth_date: dt.date | None
    gender: str | None
    restricted: bool
    document: str | None
    identifiers: tuple[IdentifierRow, ...]
    phones: tuple[PhoneRow, ...]


_PATIENT_COLUMNS = (
    Patient.id,
    Patient.version,
    Patient.last_updated,
    Patient.family,
    Patient.given,
    Patient.birth_date,
    Patient.gender,
    Patient.restricted,
    Patient.document,
)


def _patient_page(
    db: Session, statement: Select[Any], order: Sequence[Any], counter: _Counter | None
) -> tuple[list[PatientRow], int | None]:
    """The page in one statement. Its ids come first, off the name index alone (an
    index-only scan in name order stops at the page, however rare the planner thinks the
    name is: reading the patients too, it chose a bitmap scan and sort of every match
    when it expected fewer than a page); then each patient's columns, with identifiers
    and phones as JSON arrays of [position, ...] (order restored here: SQLite's
    json_group_array takes no ORDER BY)."""
    ids = statement.with_only_columns(Patient.id).subquery("page")
    identifier_json, phone_json = _held_json(db.get_bind().dialect.name)
    # The count, when asked for, in the same statement: evaluated once (uncorrelated).
    count = counter.statement.scalar_subquery() if counter else literal_column("NULL")
    found = db.execute(
        select(*_PATIENT_COLUMNS, identifier_json, phone_json, count)
        .join_from(Patient, ids, Patient.id == ids.c.id)
        .order_by(*order)
    ).all()
    page = []
    for *columns, held, numbers, _ in found:
        identifiers = tuple(IdentifierRow(*i[1:]) for i in _positioned(held))
        phones = tuple(PhoneRow(*p[1:]) for p in _positioned(numbers))
        page.append(PatientRow(*(*columns, identifiers, phones)))
    return page, found[0][-1] if found else None


class GroupSessionRow(NamedTuple):
    """A group session as a Slot search page shows it: the columns `mappings.slot`
    renders from, and the client's kept document, read as a plain row. Loading a
    500-Slot page as ORM objects cost more than its query and its rendering together."""

    id: str
    version: int
    last_updated: dt.datetime
    schedule_id: str
    start: dt.datetime
    end: dt.datetime
    capacity: int
    booked: int
    blocked: bool
    closed: bool
    service_type: str | None
    appointment_type: str | None
    comment: str | None
    document: str | None


_GROUP_SESSION_COLUMNS = tuple(getattr(GroupSession, name) for name in GroupSessionRow._fields)


def _group_session_page(
    db: Session, statement: Select[Any], _order: Sequence[Any], _counter: _Counter | None
) -> tuple[list[GroupSessionRow], None]:
    """The page alone: a Slot page (a week, a day) is seldom full, so its count, needed
    only for a full page, is not asked with it."""
    found = db.execute(statement.with_only_columns(*_GROUP_SESSION_COLUMNS))
    return [GroupSessionRow._make(row) for row in found], None


@functools.cache
def _held_json(dialect: str) -> tuple[Any, Any]:
    """A patient's identifiers and phones, each as JSON (built once per dialect: SQL
    expressions are immutable, one serves every statement that embeds it)."""
    identifiers = _json_rows(
        dialect,
        PatientIdentifier.patient_id,
        PatientIdentifier.position,
        PatientIdentifier.system,
        PatientIdentifier.value,
        PatientIdentifier.last4,
    )
    phones = _json_rows(
        dialect,
        PatientPhone.patient_id,
        PatientPhone.position,
        PatientPhone.value,
        PatientPhone.use,
    )
    return identifiers, phones


def _json_rows(dialect: str, owner: Any, *columns: Any) -> Any:
    """A patient's rows of a child table as one JSON array of arrays, as text (NULL when
    none): parsed by orjson here, not by psycopg's loader (the stdlib's, several times
    slower)."""
    rows: ColumnElement[Any]
    if dialect == "postgresql":
        rows = cast(func.json_agg(func.json_build_array(*columns)), Text)
    else:
        rows = func.json_group_array(func.json_array(*columns))
    return select(rows).where(owner == Patient.id).scalar_subquery()


def _positioned(rows: str | None) -> list[list[Any]]:
    """JSON arrays of [position, ...], in position order."""
    if rows is None:
        return []
    parsed: list[list[Any]] = orjson.loads(rows)
    return sorted(parsed, key=lambda r: r[0])


#: Kinds whose search pages are read as plain rows, not ORM objects. A loader reads the
#: page, and may bring the count with it when a total is asked for (the count is None
#: when it did not, or when the page is empty: the page's rows carry it).
_PAGE_LOADERS: dict[
    type[Base],
    Callable[
        [Session, Select[Any], Sequence[Any], _Counter | None],
        tuple[Sequence[Any], int | None],
    ],
] = {
    Patient: _patient_page,
    GroupSession: _group_session_page,
}


def get_many(db: Session, kind: type[M], ids: Sequence[str], access: Access) -> list[M]:
    """Fetch records by id in one query, honouring visibility; order not guaranteed."""
    if not ids:
        return []
    id_col: Any = kind.id  # type: ignore[attr-defined]
    statement = select(kind).where(id_col.in_(set(ids)), visibility(kind, access))
    statement = statement.options(*_PAGE_LOADING.get(kind, ()))
    return list(db.scalars(statement).unique().all())


def visible_ids(db: Session, kind: type[Base], ids: Iterable[str], access: Access) -> set[str]:
    """Which of these ids name a record of `kind` the caller may see (one query)."""
    wanted = set(ids)
    if not wanted:
        return set()
    id_col: Any = kind.id  # type: ignore[attr-defined]
    return set(db.scalars(select(id_col).where(id_col.in_(wanted), visibility(kind, access))))


def get_one(db: Session, kind: type[M], ident: str, access: Access) -> M | None:
    found = get_many(db, kind, [ident], access)
    return found[0] if found else None

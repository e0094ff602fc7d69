"""Booking rules: places in group sessions, taken and given back inside one transaction.

Places are taken and given back only by `store.places` (one conditional UPDATE,
`booked < capacity`, so two concurrent bookings can never both take the last
place); the partial unique index on `booking` refuses a patient's second active
booking in the same session. A place given back goes first to the session's
waitlist, in the same transaction (`store.promotion`).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import bindparam, func, insert, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import ReturningInsert

from store.access import Access
from store.audit import Audited, audit_rows
from store.common import (
    Listing,
    held,
    insert_from_json,
    new_id,
    on_postgresql,
    plain,
    table_of,
)
from store.direct import IN_BACKGROUND, Direct
from store.errors import (
    AlreadyBooked,
    DuplicateIdentifier,
    NotFound,
    RuleViolation,
    SessionFull,
    SessionUnavailable,
    VersionMismatch,
)
from store.history import created, reloaded
from store.insurance import CoverageChooser, choose_coverages, keeping_hidden
from store.models import (
    HOLDS_PLACE,
    AuditRecord,
    Base,
    Booking,
    BookingCoverage,
    BookingIdentifier,
    BookingProvider,
    BookingStatus,
    Department,
    GroupSession,
    Provider,
    Series,
    utcnow,
)
from store.places import Place, give_back_place, lock_sessions, take_places_read
from store.promotion import check_change, fill_freed_places, reclaim_expired, settle
from store.visibility import visible_patient

ENDED_STATUSES = frozenset({BookingStatus.CANCELLED, BookingStatus.ENTERED_IN_ERROR})


@dataclass(frozen=True)
class BookingRequest:
    """What staff chose in "Book Appointment" (and, on update, the whole new state)."""

    patient_id: str
    session_id: str | None
    status: BookingStatus = BookingStatus.BOOKED
    provider_ids: tuple[str, ...] = ()
    department_id: str | None = None
    appointment_type: str | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    comment: str | None = None
    cancellation_reason: str | None = None
    priority: int | None = None  # 1 (highest) to 9; moves a waitlist entry ahead
    identifiers: tuple[tuple[str, str], ...] = ()
    coverage_ids: tuple[str, ...] = ()  # primary (or self-pay) first; empty = the default

    def __post_init__(self) -> None:
        if self.start is not None and self.end is not None and self.end < self.start:
            raise RuleViolation("end is before start", field="booking.end")


@dataclass(frozen=True)
class Notice:
    """A warning that does not stop the booking; `code` is stable, `text` is for people."""

    code: str
    text: str


@dataclass
class BookingResult:
    booking: Booking
    warnings: list[Notice] = field(default_factory=list)


@dataclass(frozen=True)
class SeriesLink:
    """An occurrence's place in a recurring series (see store.series)."""

    series_id: str
    recurrence_id: int


def book_patient(
    db: Session,
    request: BookingRequest,
    access: Access,
    *,
    booking_id: str | None = None,
    series_link: SeriesLink | None = None,
) -> BookingResult:
    """Book a patient into a group session: the session's booked count rises by one.
    The coverages recorded on the booking are ones `access` sees (chosen under the
    visibility rule, in `db`'s transaction).

    Raises NotFound (session, patient, provider, department), SessionFull,
    SessionUnavailable, AlreadyBooked, DuplicateIdentifier, RuleViolation.
    """
    (result,) = book_patients(db, [Placement(request, booking_id, series_link)], access)
    if isinstance(result, BookingResult):
        return result
    raise result


@dataclass(frozen=True)
class Placement:
    """One booking of a batch: the request, and where it sits in a series."""

    request: BookingRequest
    booking_id: str | None = None
    series_link: SeriesLink | None = None


def book_patients(
    db: Session,
    placements: list[Placement],
    access: Access,
    *,
    checks: Checks | None = None,
    audited: Audited | None = None,
) -> list[BookingResult | SessionFull | SessionUnavailable]:
    """Book many places at once (a series' occurrences) with a bounded number of
    statements, whatever their number: one conditional UPDATE takes every place that
    is free (the same rule as `book_patient`) and reads the sessions, one INSERT per
    table stores the bookings and their links (`_insert_new`). A session without room
    comes back as its refusal, with nothing written for it; every other refusal raises.
    `checks`: those of an earlier batch of the same request, for the same `access`;
    `audited`: who books, for an audit record of each booking in the same INSERT.
    """
    ids = [p.request.session_id for p in placements]
    if any(
        p.request.status not in HOLDS_PLACE or p.request.status == BookingStatus.PENDING
        for p in placements
    ):
        raise RuleViolation(
            "a new booking needs status 'booked' (drafts are made by $book; a full "
            "session's waitlist is joined with status 'waitlist')",
            field="booking.status",
        )
    if None in ids:
        raise RuleViolation(
            "a new booking needs the Slot of its group session", field="booking.slot"
        )
    session_ids = [i for i in ids if i is not None]
    if len(set(session_ids)) != len(session_ids):
        raise RuleViolation("a session appears twice in one batch", field="booking.slot")
    checks = checks or Checks(db, access)
    for placement in placements:
        checks.request(placement.request)
    reclaim_expired(db, session_ids)  # a lapsed offer's place is the waitlist's first
    lock_sessions(db, session_ids)
    taken = take_places_read(db, session_ids)
    missed = [i for i in session_ids if i not in taken]
    refused = {  # read only when some session had no room (or does not exist)
        s.id: s
        for s in (
            db.scalars(select(GroupSession).where(GroupSession.id.in_(missed))) if missed else ()
        )
    }
    outcomes: list[_New | SessionFull | SessionUnavailable] = []
    with _saving(db, session_ids[0] if len(session_ids) == 1 else None):
        for placement, session_id in zip(placements, session_ids, strict=True):
            place = taken.get(session_id)
            if place is None:
                if session_id not in refused:
                    raise NotFound("Slot", session_id, field="booking.slot")
                outcomes.append(_no_place(refused[session_id]))
                continue
            session = place.session
            request = placement.request
            _check_times(request, session)
            coverage_ids = checks.coverages(request.patient_id).choose(
                request.coverage_ids, session.start
            )
            new = _new(placement, session, place, coverage_ids)
            new.warnings = _session_warnings(session)
            outcomes.append(new)
        bookings = iter(_insert_new(db, [o for o in outcomes if isinstance(o, _New)], audited))
    return [
        BookingResult(next(bookings), o.warnings) if isinstance(o, _New) else o for o in outcomes
    ]


@dataclass
class _New:
    """A new booking not yet written: its row (every column, by attribute) and its links'
    rows (`_insert_new` writes them)."""

    values: dict[str, Any]
    providers: list[dict[str, Any]]
    coverages: list[dict[str, Any]]
    identifiers: list[dict[str, Any]]
    warnings: list[Notice] = field(default_factory=list)


def _new(
    placement: Placement,
    session: GroupSession | None,
    place: Place | None,
    coverage_ids: list[str],
) -> _New:
    """A new booking of `placement.request`, in `session` (a draft: None): every column is
    set here, none is left to a default or to be loaded."""
    request, link = placement.request, placement.series_link
    ident = placement.booking_id or new_id()
    now = utcnow()
    details, provider_ids = _details(request, session, place)
    values = {
        "id": ident,
        "patient_id": request.patient_id,
        **details,
        "created": now,
        "series_id": link.series_id if link is not None else None,
        "recurrence_id": link.recurrence_id if link is not None else None,
        "queue_position": None,
        "offer_expires": None,
        "waitlist_note": None,
        "version": 1,
        "last_updated": now,
    }
    return _New(
        values,
        [
            {"booking_id": ident, "provider_id": pid, "position": i}
            for i, pid in enumerate(provider_ids)
        ],
        [
            {"booking_id": ident, "coverage_id": cid, "rank": rank}
            for rank, cid in enumerate(coverage_ids, 1)
        ],
        [
            {"booking_id": ident, "patient_id": request.patient_id, "system": s, "value": v}
            for s, v in request.identifiers
        ],
    )


def _insert_new(db: Session, new: list[_New], audited: Audited | None = None) -> list[Booking]:
    """Write new bookings and their links with Core INSERTs, one per table with rows
    however many bookings (a series stores 156), and answer them as plain records
    (`store.common.plain`), every column and link set, and the series they start: no
    unit of work, no records of the session (building and attaching those cost more
    than the rest of a booking's writing). Their version snapshots are taken at commit,
    as for any new record (`store.history.created`); a later change in the transaction
    loads the booking afresh."""
    if not new:
        return []
    rows = [_row(n.values, _BOOKING_COLUMNS) for n in new]
    links: dict[str, list[dict[str, Any]]] = {
        table.collection: [
            _row(row, table.columns) for n in new for row in getattr(n, table.collection)
        ]
        for table in _LINKS
    }
    audit = audit_rows(
        [audited.of("Appointment", n.values["id"], n.values["patient_id"]) for n in new]
        if audited is not None
        else []
    )
    # The links as plain records, each numbered when its INSERT returns its new id (by
    # its natural key: RETURNING's rows need not come in the parameters' order on every
    # backend; SQLite would insert row by row to keep it).
    made = {
        table.collection: [
            [plain(table.kind, {"id": None, **row}) for row in getattr(n, table.collection)]
            for n in new
        ]
        for table in _LINKS
    }

    def numbered(returned: Iterable[Iterable[Sequence[Any]] | None]) -> None:
        for table, rows_back in zip(_LINKS, returned, strict=True):
            ids = {tuple(row[1:]): row[0] for row in rows_back or ()}
            for per_booking in made[table.collection]:
                for record in per_booking:
                    held = vars(record)
                    held["id"] = ids[tuple(held[a] for a in table.key)]

    if on_postgresql(db):
        # One statement: the bookings, every link and the audit records, the links' ids
        # back as JSON arrays; a long one runs while the request goes on (nothing reads a
        # link's id before the commit, which waits for it).
        statement, params = _INSERT_ALL[bool(audit)], _parameters(rows, links, audit)
        if len(new) >= IN_BACKGROUND:
            statement.start(db, params, lambda found: numbered(found[0]), _refused_batch)
        else:
            found = statement.first(db, params)
            assert found is not None
            numbered(found)
    else:
        connection = db.connection()
        connection.execute(insert(_BOOKING_TABLE), rows)
        numbered(
            [
                connection.execute(table.insert, links[table.collection]).all()
                if links[table.collection]
                else []
                for table in _LINKS
            ]
        )
        if audit:
            connection.execute(insert(_AUDIT_TABLE), audit)
    return _answered(db, new, made)


def _refused_batch(exc: Exception) -> Exception:
    return _refusal(exc, None)


def _parameters(
    rows: list[dict[str, Any]], links: dict[str, list[Any]], audit: list[dict[str, Any]]
) -> dict[str, Any]:
    """The parameters of `_INSERT_ALL`'s statement (audited or not)."""
    return {"rows": rows, **links, **({"audit": audit} if audit else {})}


def _answered(db: Session, new: list[_New], made: dict[str, list[list[Any]]]) -> list[Booking]:
    """The new bookings as plain records, with their links (`made`, per booking) and the
    series they start; their first versions are taken at commit."""
    series = {ident: _series_of(db, ident) for ident in {n.values["series_id"] for n in new}}
    bookings = [
        plain(
            Booking,
            {
                **n.values,
                "series": series[n.values["series_id"]],
                **{name: per_booking[i] for name, per_booking in made.items()},
            },
        )
        for i, n in enumerate(new)
    ]
    created(db, bookings)
    return bookings


def _series_of(db: Session, series_id: str | None) -> Series | None:
    """The series an occurrence belongs to (the answer renders its template): just
    stored in this transaction, so in the session, read without a query."""
    return None if series_id is None else db.get(Series, series_id)


def _columns(kind: type[Base]) -> tuple[tuple[str, str], ...]:
    """(column name, attribute name) of each column of `kind` that a new row sets
    (not an autoincrement id)."""
    return tuple(
        (attr.columns[0].name, attr.key)
        for attr in sa_inspect(kind).column_attrs
        if not (attr.columns[0].primary_key and attr.columns[0].autoincrement is True)
    )


def _row(values: dict[str, Any], columns: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    return {column: values[attr] for column, attr in columns}


_BOOKING_COLUMNS = _columns(Booking)
_BOOKING_TABLE = table_of(Booking)
_AUDIT_TABLE = table_of(AuditRecord)


@dataclass(frozen=True)
class _LinkTable:
    """A booking's links of one kind: its collection, the columns a new row sets, and the
    INSERT that returns each new row's id with its natural key (`key`, the attributes of
    a unique constraint)."""

    kind: type[Base]
    collection: str
    key: tuple[str, ...]

    @functools.cached_property
    def columns(self) -> tuple[tuple[str, str], ...]:
        return _columns(self.kind)

    @functools.cached_property
    def insert(self) -> ReturningInsert[Any]:
        table = table_of(self.kind)
        return insert(table).returning(table.c.id, *(table.c[attr] for attr in self.key))


_LINKS = (
    _LinkTable(BookingProvider, "providers", ("booking_id", "provider_id")),
    _LinkTable(BookingCoverage, "coverages", ("booking_id", "rank")),
    _LinkTable(BookingIdentifier, "identifiers", ("booking_id", "system", "value")),
)


def _inserting_all(audited: bool) -> Direct:
    """PostgreSQL: new bookings, all their links and (`audited`) their audit records in
    one statement, each table's rows one JSON parameter (`insert_from_json`: the
    bookings `rows`, the links by their collection's name, the audit records `audit`,
    empty for none); it returns, per link table, a JSON array of the new rows' ids with
    their natural keys. The links' foreign keys are checked at the statement's end, when
    the bookings beside them are in."""
    ctes = [insert_from_json(_BOOKING_TABLE, [c for c, _ in _BOOKING_COLUMNS]).cte("new_bookings")]
    if audited:
        names = [c.name for c in _AUDIT_TABLE.columns]
        ctes.append(insert_from_json(_AUDIT_TABLE, names, "audit").cte("new_audit"))
    returned = []
    for link in _LINKS:
        table = table_of(link.kind)
        names = [column for column, _ in link.columns]
        made = (
            insert_from_json(table, names, link.collection)
            .returning(table.c.id, *(table.c[attr] for attr in link.key))
            .cte(f"new_{link.collection}")
        )
        returned.append(select(func.json_agg(func.json_build_array(*made.c))).scalar_subquery())
    return Direct(select(*returned).add_cte(*ctes))


#: The bookings' statement, without and with their audit records (a single booking is
#: audited by its interaction, after the fact; a series' occurrences in it).
_INSERT_ALL = {False: _inserting_all(False), True: _inserting_all(True)}


class Checks:
    """Visibility, references and coverage choice for the batches of one request (a
    series' booked occurrences, then its drafts), each looked up once, for `access`."""

    def __init__(self, db: Session, access: Access) -> None:
        self.db = db
        self.access = access
        self._patients: set[str] = set()
        self._references: set[tuple[tuple[str, ...], str | None]] = set()
        self._choosers: dict[str, CoverageChooser] = {}

    def visible(self, patient_id: str, *, choosing: bool) -> bool:
        """Whether the caller sees the patient, asked once; when the default coverage
        choice will be made (`choosing`), asked with loading the coverages it picks from."""
        if patient_id not in self._patients:
            if choosing:
                seen = self.coverages(patient_id).patient_visible()
            else:
                seen = visible_patient(self.db, patient_id, self.access)
            if not seen:
                return False
            self._patients.add(patient_id)
        return True

    def request(self, request: BookingRequest) -> None:
        if not self.visible(request.patient_id, choosing=not request.coverage_ids):
            raise NotFound("Patient", request.patient_id, field="booking.participant")
        key = (request.provider_ids, request.department_id)
        if key not in self._references:
            _check_references(self.db, request)
            self._references.add(key)

    def coverages(self, patient_id: str) -> CoverageChooser:
        if patient_id not in self._choosers:
            self._choosers[patient_id] = CoverageChooser(self.db, patient_id, self.access)
        return self._choosers[patient_id]


def store_drafts(
    db: Session,
    placements: list[Placement],
    access: Access,
    *,
    checks: Checks | None = None,
    audited: Audited | None = None,
) -> list[BookingResult]:
    """Store occurrences that have no session yet as drafts: status proposed, no slot,
    the intended time kept (DESIGN §4). They hold no place; resolving one later
    (`update_booking` to booked with a slot) takes one under the capacity rule.

    An explicit coverage choice is checked against the intended date and recorded;
    without one the default choice is made when the draft is resolved. One INSERT per
    table stores them all (`_insert_new`). `checks`, `audited`: as for `book_patients`.
    """
    checks = checks or Checks(db, access)
    drafts: list[_New] = []
    with _saving(db, None):
        for placement in placements:
            request = placement.request
            if request.status != BookingStatus.PROPOSED or request.session_id is not None:
                raise RuleViolation(
                    "a draft has status 'proposed' and no slot", field="booking.status"
                )
            checks.request(request)
            coverage_ids: list[str] = []
            if request.coverage_ids:
                on = request.start or utcnow()
                coverage_ids = checks.coverages(request.patient_id).choose(request.coverage_ids, on)
            drafts.append(_new(placement, None, None, coverage_ids))
        results = [BookingResult(booking) for booking in _insert_new(db, drafts, audited)]
    return results


def _new_booking(
    request: BookingRequest, booking_id: str | None, series_link: SeriesLink | None
) -> Booking:
    # Empty collections set up front: a new booking never needs to load them.
    booking = Booking(
        id=booking_id or new_id(),
        patient_id=request.patient_id,
        created=utcnow(),
        providers=[],
        identifiers=[],
        coverages=[],
    )
    if series_link is not None:
        booking.series_id = series_link.series_id
        booking.recurrence_id = series_link.recurrence_id
    return booking


def update_booking(
    db: Session,
    booking_id: str,
    request: BookingRequest,
    access: Access,
    *,
    expected_version: int | None = None,
) -> BookingResult:
    """Replace a booking's state: cancel, reschedule (move the place), or edit details.

    A place moves atomically: the new session's place is taken before the old one
    is given back, in the same transaction, so a full target leaves everything as it was.
    A place given back goes down the old session's waitlist in the same transaction.
    """
    placed = db.scalar(select(Booking.session_id).where(Booking.id == booking_id))
    # Lapsed offers go first (before this booking's row is locked: one lock order).
    reclaim_expired(db, [s for s in (placed, request.session_id) if s is not None])
    booking = db.get(Booking, booking_id, with_for_update=True, populate_existing=True)
    if booking is None or not visible_patient(db, booking.patient_id, access):
        raise NotFound("Appointment", booking_id)
    # Before the version check: an offer that just lapsed says so, not "reload and retry".
    check_change(booking, request.status, request.session_id)
    if expected_version is not None and booking.version != expected_version:
        raise VersionMismatch("Appointment", booking_id, expected_version, booking.version)
    if request.patient_id != booking.patient_id:
        raise RuleViolation(
            "an appointment cannot be moved to another patient; cancel it and book anew",
            field="booking.participant",
        )
    if booking.status in ENDED_STATUSES and request.status != booking.status:
        raise RuleViolation(
            f"a {booking.status} appointment cannot be reopened; book a new one",
            field="booking.status",
        )
    if request.status in HOLDS_PLACE and request.session_id is None:
        raise RuleViolation(f"status '{request.status}' needs a slot", field="booking.slot")
    _check_references(db, request)

    old_place = booking.session_id if booking.holds_place else None
    new_place = request.session_id if request.status in HOLDS_PLACE else None
    session, place, warnings = _move_place(db, booking, new_place, request.session_id)
    if request.status in HOLDS_PLACE and session is not None:
        _check_times(_times_moved_with_slot(request, booking, session), session)
    coverage_ids: list[str] | None = None
    # A resolved draft may carry no insurance yet: it gets the default choice, as a new booking.
    gains_place = new_place is not None and not booking.coverages
    if request.coverage_ids or gains_place:
        on = session.start if session is not None else (request.start or booking.created)
        coverage_ids = choose_coverages(db, booking.patient_id, request.coverage_ids, on, access)
        current = [c.coverage_id for c in booking.coverages]
        coverage_ids = keeping_hidden(db, current, coverage_ids, access)
    with _saving(db, request.session_id):
        _apply(db, booking, request, session, place)
        settle(booking)
        if coverage_ids is not None:
            _record_coverages(db, booking, coverage_ids)
        booking.touch()
        _record_identifiers(booking, request)
    if old_place is not None and old_place != new_place:
        fill_freed_places(db, [old_place])
    return BookingResult(booking, warnings)


def _move_place(
    db: Session, booking: Booking, new_place: str | None, named: str | None
) -> tuple[GroupSession | None, Place | None, list[Notice]]:
    """Move the place `booking` holds to `new_place` (None: it holds none any more): the
    new place is taken before the old one is given back, so a full target changes
    nothing. The session the booking names afterwards (`named`), the place taken in it
    if one was, and then its warnings."""
    old_place = booking.session_id if booking.holds_place else None
    if old_place is not None and new_place is not None and new_place != old_place:
        lock_sessions(db, [old_place, new_place])
    session: GroupSession | None = None
    place: Place | None = None
    warnings: list[Notice] = []
    if new_place is not None and new_place != old_place:
        place = _take_place(db, new_place)
        session = place.session
        warnings = _session_warnings(session)
    elif named is not None:
        session = _get_session(db, named)
    if old_place is not None and old_place != new_place:
        give_back_place(db, old_place)
    return session, place, warnings


def _take_place(db: Session, session_id: str) -> Place:
    """The place taken in the session, read back by the UPDATE that took it; a session
    without room is read to say why (full, blocked, or no such session)."""
    taken = take_places_read(db, [session_id])
    if session_id in taken:
        return taken[session_id]
    raise _no_place(_get_session(db, session_id))


def _no_place(session: GroupSession) -> SessionFull | SessionUnavailable:
    if session.blocked:
        return SessionUnavailable(session.id, field="booking.slot")
    return SessionFull(session.id, field="booking.slot")


def _get_session(db: Session, session_id: str) -> GroupSession:
    session = db.get(GroupSession, session_id, populate_existing=True)
    if session is None:
        raise NotFound("Slot", session_id, field="booking.slot")
    reloaded(db, [session])
    return session


def _visible_patient(db: Session, patient_id: str, access: Access) -> None:
    if not visible_patient(db, patient_id, access):
        raise NotFound("Patient", patient_id, field="booking.participant")


def _check_references(db: Session, request: BookingRequest) -> None:
    """The providers and department a request names exist: those the session does not
    hold yet are looked up together, in one statement, not one `get` each."""
    providers = [p for p in dict.fromkeys(request.provider_ids) if held(db, Provider, p) is None]
    department = request.department_id
    if department is not None and held(db, Department, department) is not None:
        department = None
    if providers or department is not None:
        found = _REFERENCES.first(db, {"providers": providers, "department": department})
        assert found is not None
        if found[0] != len(providers):
            missing = next(p for p in providers if db.get(Provider, p) is None)
            raise NotFound("Practitioner", missing, field="booking.participant")
        if department is not None and not found[1]:
            raise NotFound("Location", department, field="booking.participant")
    if len(set(request.provider_ids)) != len(request.provider_ids):
        raise RuleViolation("a provider is listed twice", field="booking.participant")


#: How many of the named providers exist, and whether the named department does.
_REFERENCES = Listing(
    lambda listed: select(
        select(func.count()).where(listed(Provider.id, "providers")).scalar_subquery(),
        select(func.count())
        .where(Department.id == bindparam("department", type_=Department.id.type))
        .scalar_subquery(),
    )
)


def _check_times(request: BookingRequest, session: GroupSession) -> None:
    if request.start is not None and request.start != session.start:
        raise RuleViolation(
            f"start {request.start.isoformat()} differs from the slot's start "
            f"{session.start.isoformat()}; leave start out or copy it from the slot",
            field="booking.start",
        )
    if request.end is not None and request.end != session.end:
        raise RuleViolation(
            f"end {request.end.isoformat()} differs from the slot's end "
            f"{session.end.isoformat()}; leave end out or copy it from the slot",
            field="booking.end",
        )


def _times_moved_with_slot(
    request: BookingRequest, booking: Booking, session: GroupSession
) -> BookingRequest:
    """A client that changes only the slot sends the old start/end back unchanged: those
    times are the old slot's, not a wish, so they move with the slot. Only a time that is
    neither the old one nor the new slot's contradicts the slot (and is refused)."""
    if session.id == booking.session_id:
        return request
    start = None if request.start == booking.start else request.start
    end = None if request.end == booking.end else request.end
    return replace(request, start=start, end=end)


def _apply(
    db: Session,
    booking: Booking,
    request: BookingRequest,
    session: GroupSession | None,
    place: Place | None = None,
) -> None:
    details, provider_ids = _details(request, session, place)
    for name, value in details.items():
        setattr(booking, name, value)
    current = [p.provider_id for p in booking.providers]
    if current != list(provider_ids):
        if booking.providers:
            booking.providers.clear()
            db.flush()  # old rows go before the same providers are added again
        booking.providers.extend(
            BookingProvider(provider_id=pid, position=i) for i, pid in enumerate(provider_ids)
        )


def _details(
    request: BookingRequest, session: GroupSession | None, place: Place | None
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The columns `request` gives a booking in `session` (a draft: None), by attribute,
    and its providers. `place`: the place just taken in `session`, with its calendar's
    defaults (read with the place; `session.schedule` is then not loaded)."""
    default_department, default_providers = (
        (place.department_id, place.provider_ids)
        if place is not None
        else (session.schedule.department_id, session.schedule.provider_ids)
        if session is not None
        else (None, ())
    )
    details = {
        "status": request.status,
        "session_id": session.id if session is not None else None,
        "start": session.start if session is not None else request.start,
        "end": session.end if session is not None else request.end,
        "appointment_type": request.appointment_type
        or (session.appointment_type if session is not None else None),
        "department_id": request.department_id or default_department,
        "comment": request.comment,
        "cancellation_reason": request.cancellation_reason,
        "priority": request.priority,
    }
    return details, tuple(request.provider_ids or default_providers)


def _record_coverages(db: Session, booking: Booking, coverage_ids: list[str]) -> None:
    if [c.coverage_id for c in booking.coverages] == coverage_ids:
        return
    if booking.coverages:
        booking.coverages.clear()
        db.flush()  # old rows go before new ones take their ranks
    booking.coverages.extend(
        BookingCoverage(coverage_id=cid, rank=rank) for rank, cid in enumerate(coverage_ids, 1)
    )


def _record_identifiers(booking: Booking, request: BookingRequest) -> None:
    wanted = set(request.identifiers)
    have = {(i.system, i.value) for i in booking.identifiers}
    if wanted == have:
        return
    booking.identifiers[:] = [i for i in booking.identifiers if (i.system, i.value) in wanted]
    booking.identifiers.extend(
        BookingIdentifier(system=s, value=v, patient_id=booking.patient_id)
        for s, v in request.identifiers
        if (s, v) not in have
    )


@contextmanager
def _saving(db: Session, session_id: str | None) -> Iterator[None]:
    """Write what the block changed (one flush) and turn the database's uniqueness
    refusals into the errors they stand for. (`session_id` is passed in: after a failed
    flush the booking cannot be read.)"""
    try:
        yield
        db.flush()
    except IntegrityError as exc:
        raise _refusal(exc, session_id) from exc


def _refusal(exc: Exception, session_id: str | None) -> Exception:
    """The error a uniqueness refusal of the database stands for (others as they are)."""
    if not isinstance(exc, IntegrityError):
        return exc
    if "booking_identifier" in str(exc.orig):
        return DuplicateIdentifier(
            "another appointment already carries this identifier", field="booking.identifier"
        )
    return AlreadyBooked(session_id or "?", field="booking.slot")


def _session_warnings(session: GroupSession) -> list[Notice]:
    """What a booking into this session should tell the client, though it succeeded.

    A session that has already ended is booked with a warning, not refused: clinics
    record a walk-in after the group met, and a refusal would push that into a second
    system; the warning catches the client that picked the wrong week. (Closed sessions
    work the same way, DESIGN §1.)
    """
    notices: list[Notice] = []
    if session.end <= utcnow():
        notices.append(
            Notice(
                "session-ended",
                f"group session {session.id!r} ended at {session.end.isoformat()}: the "
                "booking was recorded after the fact",
            )
        )
    if session.closed:
        notices.append(
            Notice(
                "session-closed",
                f"group session {session.id!r} is closed: the provider prefers no new patients "
                "once the session has started; the booking was made anyway",
            )
        )
    return notices

"""Recurring series: preview, book, resolve drafts, cancel (DESIGN §4, §5, §8).

A patient's recurrence settings expand (store.recurrence) into occurrences in the
department's time zone. Previewing matches each occurrence to a group session of
the chosen provider's schedule(s); booking stores the occurrences the user kept in
one transaction: matched ones take a place through `book_patient` (the capacity
rule lives there, once), the others become drafts (`store_drafts`). All of them
are linked to one `Series`, whose id is the id of the first stored occurrence.

Matching occurrences to sessions lives in store.matching.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import Session

from store.access import Access
from store.audit import Audited
from store.booking import (
    BookingRequest,
    BookingResult,
    Checks,
    Notice,
    Placement,
    SeriesLink,
    book_patients,
    store_drafts,
    update_booking,
)
from store.common import Listing, new_id
from store.errors import (
    Inactive,
    NotFound,
    RuleViolation,
    SessionFull,
    SessionUnavailable,
    VersionMismatch,
)
from store.matching import (
    SESSION_BLOCKED,
    SESSION_FULL,
    Defaults,
    Proposal,
    candidate_sessions,
    label,
    propose_all,
)
from store.models import (
    HOLDS_PLACE_SQL,
    Booking,
    BookingStatus,
    Department,
    Provider,
    ProviderSchedule,
    Series,
)
from store.recurrence import (
    Frequency,
    Occurrence,
    Recurrence,
    expand,
)
from store.sessions import inactive_reason
from store.visibility import visible_patient

# The series fields refusals name (`mappings.locations` places them in the Parameters).
FIELD_PATIENT = "series.patient"
FIELD_PRACTITIONER = "series.practitioner"
FIELD_SCHEDULE = "series.schedule"
FIELD_LOCATION = "series.location"
FIELD_KEPT = "series.kept"

ALREADY_BOOKED = "already-booked"
DRAFT = "stored-as-draft"

#: Occurrences that cancelling a series touches; attended or ended ones stay as they are.
CANCELLABLE = frozenset({BookingStatus.BOOKED, BookingStatus.PROPOSED})


@dataclass(frozen=True)
class Limits:
    """Guards against abusive series, and the matching tolerance (see the module doc)."""

    max_occurrences: int = 366
    max_years: int = 2
    tolerance: dt.timedelta = dt.timedelta(0)


@dataclass(frozen=True)
class SeriesQuery:
    """What "Preview Recurrence" asks for.

    `recurrence.timezone` is ignored: occurrences are computed in the zone of the
    schedules' department. Give `schedule_id`, or `provider_id` (all the provider's
    active schedules, optionally only those of `department_id`).
    """

    patient_id: str
    recurrence: Recurrence
    provider_id: str | None = None
    schedule_id: str | None = None
    department_id: str | None = None
    appointment_type: str | None = None


@dataclass
class SeriesPreview:
    patient_id: str
    recurrence: Recurrence  # with the department's zone
    proposals: list[Proposal]


@dataclass(frozen=True)
class KeptOccurrence:
    """An occurrence the user kept: the booking as proposed (with a session or not)."""

    recurrence_id: int
    request: BookingRequest


@dataclass(frozen=True)
class SeriesBooking:
    """What "Book Appointment" sends for a series. The series' zone is the department
    of the first kept occurrence; `coverage_ids` apply to every occurrence."""

    recurrence: Recurrence
    kept: tuple[KeptOccurrence, ...]
    coverage_ids: tuple[str, ...] = ()


@dataclass
class SeriesResult:
    series: Series
    bookings: list[Booking]
    notices: list[Notice] = field(default_factory=list)

    @property
    def booked(self) -> list[Booking]:
        return [b for b in self.bookings if b.session_id is not None]

    @property
    def drafts(self) -> list[Booking]:
        return [b for b in self.bookings if b.session_id is None]


def preview_series(
    db: Session, query: SeriesQuery, access: Access, *, today: dt.date, limits: Limits = Limits()
) -> SeriesPreview:
    """Expand the series and match each occurrence to a session; writes nothing.

    Raises NotFound (patient, practitioner, schedule, location), InvalidRecurrence
    (and SeriesTooLong) from the expansion, RuleViolation when the schedules span
    several time zones or the provider has none.
    """
    if not visible_patient(db, query.patient_id, access):
        raise NotFound("Patient", query.patient_id, field=FIELD_PATIENT)
    schedules = _schedules(db, query)
    recurrence = replace(query.recurrence, timezone=_one_zone(schedules))
    occurrences = expand(
        recurrence,
        today=today,
        max_occurrences=limits.max_occurrences,
        max_years=limits.max_years,
    )
    sessions = candidate_sessions(
        db, [s.id for s in schedules], occurrences, limits.tolerance, access
    )
    departments = {s.department_id for s in schedules}
    providers = {s.provider_ids for s in schedules}
    default = Defaults(
        department_id=departments.pop() if len(departments) == 1 else None,
        provider_ids=providers.pop() if len(providers) == 1 else (),
        appointment_type=query.appointment_type,
    )
    proposals = propose_all(
        occurrences, sessions, default, tolerance=limits.tolerance, zone=recurrence.timezone
    )
    return SeriesPreview(query.patient_id, recurrence, proposals)


def book_series(
    db: Session,
    booking: SeriesBooking,
    access: Access,
    *,
    today: dt.date,
    limits: Limits = Limits(),
    audited: Audited | None = None,
) -> SeriesResult:
    """Store the kept occurrences as one series, in the caller's transaction (`audited`:
    each stored occurrence audited as so changed, with it).

    Matched occurrences are booked (`book_patient`); one whose session filled up or
    was blocked since the preview becomes a draft, with a notice; a closed session
    books with a notice. Unmatched occurrences become drafts at their intended time.
    Any other refusal raises and, the transaction being rolled back, stores nothing.
    """
    if not booking.kept:
        raise RuleViolation("keep at least one occurrence", field=FIELD_KEPT)
    first = booking.kept[0].request
    patient_id = first.patient_id
    if any(k.request.patient_id != patient_id for k in booking.kept):
        raise RuleViolation("all occurrences of a series are for one patient", field=FIELD_KEPT)
    # The default coverage choice (no series coverage) loads what it picks from with it.
    checks = Checks(db, access)
    if not checks.visible(patient_id, choosing=not booking.coverage_ids):
        raise NotFound("Patient", patient_id, field=FIELD_KEPT)
    department = _series_department(db, first)
    recurrence = replace(booking.recurrence, timezone=department.timezone)
    occurrences = {
        o.recurrence_id: o
        for o in expand(
            recurrence,
            today=today,
            max_occurrences=limits.max_occurrences,
            max_years=limits.max_years,
        )
    }
    kept = _check_kept(booking.kept, occurrences)
    held = _places_held(db, patient_id, [k.request.session_id for k in kept])

    series = Series(id=new_id(), patient_id=patient_id, department_id=department.id)
    _record_recurrence(series, recurrence, first.appointment_type)
    result = SeriesResult(series, [])
    to_store = _partition(series, booking, kept, held, occurrences, result.notices)
    if not to_store:
        raise RuleViolation(
            "nothing to store: the patient already holds a place in every kept session",
            field=FIELD_KEPT,
        )
    # Every occurrence to store is stored, booked or as a draft: the series is written
    # once, whole, before the occurrences that reference it.
    stored = {entry.item.recurrence_id for entry in to_store}
    series.excluded = ",".join(str(i) for i in sorted(occurrences) if i not in stored)
    db.add(series)
    db.flush()
    # Book every matched occurrence at once, then store the rest (and those whose
    # session filled up since the preview) as drafts: a bounded number of statements.
    outcomes = _book_matched(db, to_store, checks, audited)
    drafts = _drafts_of(to_store, outcomes, result.notices)
    stored_drafts = iter(store_drafts(db, drafts, access, checks=checks, audited=audited))
    for entry in to_store:
        outcome = outcomes.get(entry.item.recurrence_id)
        done = outcome if isinstance(outcome, BookingResult) else next(stored_drafts)
        result.bookings.append(done.booking)
    return result


@dataclass(frozen=True)
class _ToStore:
    """A kept occurrence to store: its request (with the series' coverage) and placement."""

    item: KeptOccurrence
    request: BookingRequest
    placement: Placement
    occurrence: Occurrence
    zone: str

    @property
    def label(self) -> str:
        """How a notice names it (only a notice needs it: most occurrences get none)."""
        return label(self.occurrence, self.zone)


def _partition(
    series: Series,
    booking: SeriesBooking,
    kept: list[KeptOccurrence],
    held: dict[str, str],
    occurrences: dict[int, Occurrence],
    notices: list[Notice],
) -> list[_ToStore]:
    """The kept occurrences to store, in series order, with the series' coverages, and
    booked if matched; one whose session already holds the patient is left out with a
    notice. The first stored one originates the series."""
    zone = series.timezone
    to_store: list[_ToStore] = []
    for item in kept:
        request = item.request
        changes: dict[str, object] = {}
        if booking.coverage_ids and booking.coverage_ids != request.coverage_ids:
            changes["coverage_ids"] = booking.coverage_ids
        if request.session_id is not None and request.status != BookingStatus.BOOKED:
            changes["status"] = BookingStatus.BOOKED  # matched: booked (`_book_matched`)
        if changes:
            request = replace(request, **changes)  # type: ignore[arg-type]
        occurrence = occurrences[item.recurrence_id]
        if request.session_id is not None and request.session_id in held:
            notices.append(
                Notice(
                    ALREADY_BOOKED,
                    f"{label(occurrence, zone)}: the patient already holds a place in that session "
                    f"(Appointment/{held[request.session_id]}); the occurrence was not stored",
                )
            )
            continue
        booking_id = None if to_store else series.id
        link = SeriesLink(series.id, item.recurrence_id)
        placement = Placement(request, booking_id, link)
        to_store.append(_ToStore(item, request, placement, occurrence, zone))
    return to_store


def _book_matched(
    db: Session, to_store: list[_ToStore], checks: Checks, audited: Audited | None
) -> dict[int, BookingResult | SessionFull | SessionUnavailable]:
    """Book every occurrence that has a session, at once (`book_patients`): recurrence
    id -> the booking, or why its session had no place."""
    matched = [entry for entry in to_store if entry.request.session_id is not None]
    booked = book_patients(
        db, [e.placement for e in matched], checks.access, checks=checks, audited=audited
    )
    return {e.item.recurrence_id: outcome for e, outcome in zip(matched, booked, strict=True)}


def _drafts_of(
    to_store: list[_ToStore],
    outcomes: dict[int, BookingResult | SessionFull | SessionUnavailable],
    notices: list[Notice],
) -> list[Placement]:
    """The occurrences not booked, as drafts at their intended time, each with a notice
    (no session, or its session filled up or was blocked since the preview); the booked
    ones' warnings are passed on."""
    drafts: list[Placement] = []
    for entry in to_store:
        occurrence = entry.occurrence
        outcome = outcomes.get(entry.item.recurrence_id)
        if isinstance(outcome, BookingResult):
            notices.extend(Notice(w.code, f"{entry.label}: {w.text}") for w in outcome.warnings)
            continue
        if outcome is None:
            notices.append(Notice(DRAFT, f"{entry.label}: no session to book; stored as a draft"))
        else:
            code = SESSION_FULL if isinstance(outcome, SessionFull) else SESSION_BLOCKED
            notices.append(
                Notice(
                    code, f"{entry.label}: {outcome.message} since the preview; stored as a draft"
                )
            )
        draft = replace(
            entry.request,
            status=BookingStatus.PROPOSED,
            session_id=None,
            start=occurrence.start,
            end=occurrence.end,
        )
        drafts.append(replace(entry.placement, request=draft))
    return drafts


def resolve_draft(
    db: Session,
    booking_id: str,
    request: BookingRequest,
    access: Access,
    *,
    expected_version: int | None = None,
) -> BookingResult:
    """ "Use this slot": book a draft into the chosen session (any provider or type).

    The draft keeps its id and its place in the series; the capacity rule of
    `update_booking` applies (SessionFull when the session has no place left).
    """
    draft = db.get(Booking, booking_id)
    if draft is None or not visible_patient(db, draft.patient_id, access):
        raise NotFound("Appointment", booking_id, field=FIELD_KEPT)
    if draft.status != BookingStatus.PROPOSED:
        raise RuleViolation(
            f"Appointment/{booking_id} is not a draft (status {draft.status})", field=FIELD_KEPT
        )
    if request.session_id is None:
        raise RuleViolation("choose a slot to resolve a draft", field="booking.slot")
    return update_booking(
        db,
        booking_id,
        replace(request, status=BookingStatus.BOOKED),
        access,
        expected_version=expected_version,
    )


def cancel_series(
    db: Session,
    booking_id: str,
    access: Access,
    *,
    following: bool,
    reason: str | None = None,
    expected_version: int | None = None,
) -> list[Booking]:
    """Cancel "this and all following" occurrences (`following`), or the whole series.

    Booked and draft occurrences are cancelled through `update_booking`, which gives
    their places back; attended, no-show and already ended ones are left alone.
    Returns the cancelled bookings in series order.
    """
    anchor = db.get(Booking, booking_id)
    if anchor is None or not visible_patient(db, anchor.patient_id, access):
        raise NotFound("Appointment", booking_id)
    if expected_version is not None and anchor.version != expected_version:
        raise VersionMismatch("Appointment", booking_id, expected_version, anchor.version)
    if anchor.series_id is None or anchor.recurrence_id is None:
        raise RuleViolation(
            f"Appointment/{booking_id} is not part of a series; cancel it with an update",
            field="booking.series",
        )
    statement = select(Booking).where(
        Booking.series_id == anchor.series_id, Booking.status.in_(list(CANCELLABLE))
    )
    if following:
        statement = statement.where(Booking.recurrence_id >= anchor.recurrence_id)
    targets = db.scalars(statement.order_by(Booking.recurrence_id)).all()
    cancelled = []
    for target in targets:
        request = request_from(
            target,
            status=BookingStatus.CANCELLED,
            cancellation_reason=reason or "series cancelled",
        )
        cancelled.append(update_booking(db, target.id, request, access).booking)
    return cancelled


def request_from(booking: Booking, **changes: object) -> BookingRequest:
    """The booking's current state as a request (coverages left as they are), changed."""
    request = BookingRequest(
        patient_id=booking.patient_id,
        session_id=booking.session_id,
        status=BookingStatus(booking.status),
        provider_ids=tuple(p.provider_id for p in booking.providers),
        department_id=booking.department_id,
        appointment_type=booking.appointment_type,
        start=None if booking.session_id else booking.start,
        end=None if booking.session_id else booking.end,
        comment=booking.comment,
        cancellation_reason=booking.cancellation_reason,
        identifiers=tuple((i.system, i.value) for i in booking.identifiers),
    )
    return replace(request, **changes)  # type: ignore[arg-type]


def recurrence_of(series: Series) -> Recurrence:
    """The recurrence settings a series was created from."""
    nth = series.nth_weekday
    return Recurrence(
        frequency=Frequency(series.frequency),
        first_date=series.first_date,
        local_time=dt.time.fromisoformat(series.local_time),
        duration=dt.timedelta(minutes=series.duration_minutes),
        timezone=series.timezone,
        interval=series.interval,
        weekdays=tuple(int(d) for d in series.weekdays.split(",") if d),
        month_day=series.month_day,
        nth_weekday=(int(nth.split(",")[0]), int(nth.split(",")[1])) if nth else None,
        count=series.count,
        until=series.until,
    )


def excluded_ids(series: Series) -> list[int]:
    """Recurrence ids of occurrences the user removed (or that were not stored)."""
    return [int(i) for i in series.excluded.split(",") if i]


# --- preview helpers ----------------------------------------------------------------------


def _schedules(db: Session, query: SeriesQuery) -> list[ProviderSchedule]:
    if query.department_id is not None and db.get(Department, query.department_id) is None:
        raise NotFound("Location", query.department_id, field=FIELD_LOCATION)
    if query.schedule_id is not None:
        schedule = db.get(ProviderSchedule, query.schedule_id)
        if schedule is None:
            raise NotFound("Schedule", query.schedule_id, field=FIELD_SCHEDULE)
        if query.provider_id is not None and schedule.provider_id != query.provider_id:
            raise RuleViolation(
                f"Schedule/{schedule.id} is not Practitioner/{query.provider_id}'s",
                field=FIELD_SCHEDULE,
            )
        if reason := inactive_reason(schedule):
            raise Inactive(f"{reason}: it takes no new series", field=FIELD_SCHEDULE)
        return [schedule]
    if query.provider_id is None:
        raise RuleViolation("give a practitioner or a schedule", field=FIELD_PRACTITIONER)
    statement = select(ProviderSchedule).where(
        ProviderSchedule.provider_id == query.provider_id, ProviderSchedule.active.is_(True)
    )
    if query.department_id is not None:
        statement = statement.where(ProviderSchedule.department_id == query.department_id)
    schedules = list(db.scalars(statement.order_by(ProviderSchedule.id)).all())
    # After the schedules, which load their provider: on success this costs no query.
    provider = db.get(Provider, query.provider_id)
    if provider is None:
        raise NotFound("Practitioner", query.provider_id, field=FIELD_PRACTITIONER)
    if not provider.active:
        raise Inactive(
            f"Practitioner/{query.provider_id} is inactive: it takes no new series",
            field=FIELD_PRACTITIONER,
        )
    # An inactive department's calendars take no new series either.
    schedules = [s for s in schedules if s.department.active]
    if not schedules:
        raise RuleViolation(
            f"Practitioner/{query.provider_id} has no active schedule"
            + (f" in Location/{query.department_id}" if query.department_id else ""),
            field=FIELD_PRACTITIONER,
        )
    return schedules


def _one_zone(schedules: Sequence[ProviderSchedule]) -> str:
    zones = sorted({s.department.timezone for s in schedules})
    if len(zones) > 1:
        raise RuleViolation(
            f"the provider's schedules are in several time zones ({', '.join(zones)}); "
            "choose a schedule or a location",
            field=FIELD_PRACTITIONER,
        )
    return zones[0]


# --- booking helpers ----------------------------------------------------------------------


def _series_department(db: Session, first: BookingRequest) -> Department:
    if first.department_id is None:
        raise RuleViolation(
            "the first kept occurrence needs its department (a Location participant, as "
            "$find returns it): its time zone places the series",
            field=FIELD_KEPT,
        )
    department = db.get(Department, first.department_id)
    if department is None:
        raise NotFound("Location", first.department_id, field=FIELD_KEPT)
    return department


def _check_kept(
    kept: Sequence[KeptOccurrence], occurrences: dict[int, Occurrence]
) -> list[KeptOccurrence]:
    seen: set[int] = set()
    for item in kept:
        if item.recurrence_id not in occurrences:
            raise RuleViolation(
                f"occurrence {item.recurrence_id} is not in this series (it has "
                f"{len(occurrences)} occurrences); preview it again",
                field=FIELD_KEPT,
            )
        if item.recurrence_id in seen:
            raise RuleViolation(f"occurrence {item.recurrence_id} is kept twice", field=FIELD_KEPT)
        seen.add(item.recurrence_id)
    return sorted(kept, key=lambda k: k.recurrence_id)


def _places_held(db: Session, patient_id: str, session_ids: list[str | None]) -> dict[str, str]:
    """Session id -> the patient's booking already holding a place there (one query)."""
    wanted = {s for s in session_ids if s is not None}
    if not wanted:
        return {}
    rows = _HELD.rows(db, {"patient": patient_id, "sessions": sorted(wanted)})
    return {session_id: booking_id for session_id, booking_id in rows if session_id}


_HELD = Listing(
    lambda listed: select(Booking.session_id, Booking.id).where(
        Booking.patient_id == bindparam("patient", type_=Booking.patient_id.type),
        listed(Booking.session_id, "sessions"),
        text(HOLDS_PLACE_SQL),  # the partial unique index's own predicate
    )
)


def _record_recurrence(
    series: Series, recurrence: Recurrence, appointment_type: str | None
) -> None:
    series.appointment_type = appointment_type
    series.frequency = recurrence.frequency.value
    series.interval = recurrence.interval
    series.weekdays = ",".join(str(d) for d in sorted(set(recurrence.weekdays)))
    series.month_day = recurrence.month_day
    nth = recurrence.nth_weekday
    series.nth_weekday = f"{nth[0]},{nth[1]}" if nth else None
    series.first_date = recurrence.first_date
    series.local_time = recurrence.local_time.isoformat()
    series.duration_minutes = int(recurrence.duration.total_seconds() // 60)
    series.timezone = recurrence.timezone
    series.count = recurrence.count
    series.until = recurrence.until
    series.excluded = ""

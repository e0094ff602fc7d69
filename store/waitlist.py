"""Joining a full group session's waitlist.

An entry is a booking with status `waitlist`: it names its session and carries the
patient's insurance as a booking does, but holds no place (`HOLDS_PLACE`), so the
session's count and the capacity rule are untouched. Only a full session takes
entries; a session with room is booked instead. Order is first come, first served by a
per-session join sequence, taken under the session's row lock (so two joins cannot
draw the same number, and a unique constraint guards it); a `priority` moves an entry
ahead (`WAITLIST_ORDER`). Freed places go down the list in `store.promotion`.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from store.access import Access
from store.booking import (
    BookingRequest,
    BookingResult,
    _apply,
    _check_references,
    _check_times,
    _new_booking,
    _record_coverages,
    _record_identifiers,
    _saving,
    _visible_patient,
)
from store.errors import (
    AlreadyBooked,
    AlreadyWaitlisted,
    NotFound,
    RuleViolation,
    SessionHasRoom,
    SessionUnavailable,
)
from store.insurance import CoverageChooser
from store.models import HOLDS_PLACE, Booking, BookingStatus, GroupSession, utcnow
from store.promotion import reclaim_expired


def join_waitlist(
    db: Session, request: BookingRequest, access: Access, *, booking_id: str | None = None
) -> BookingResult:
    """Put a patient on a full session's waitlist, behind everyone already on it (or
    ahead of those without priority, when it has one).

    Raises NotFound (session, patient, provider, department), SessionHasRoom (book it
    instead), SessionUnavailable, AlreadyBooked, AlreadyWaitlisted, RuleViolation.
    """
    if request.status != BookingStatus.WAITLIST:
        raise RuleViolation("a waitlist entry has status 'waitlist'", field="booking.status")
    session_id = request.session_id
    if session_id is None:
        raise RuleViolation(
            "a waitlist entry needs the Slot of the full group session it waits for",
            field="booking.slot",
        )
    _visible_patient(db, request.patient_id, access)
    _check_references(db, request)
    reclaim_expired(db, [session_id])
    session = db.get(
        GroupSession, session_id, with_for_update={"of": GroupSession}, populate_existing=True
    )
    if session is None:
        raise NotFound("Slot", session_id, field="booking.slot")
    if session.blocked:
        raise SessionUnavailable(session_id, field="booking.slot")
    if session.end <= utcnow():
        raise RuleViolation(
            f"group session {session_id!r} has ended: its waitlist takes no one",
            field="booking.slot",
        )
    if session.booked < session.capacity:
        raise SessionHasRoom(session_id, field="booking.status")
    _check_not_there(db, request.patient_id, session_id)
    _check_times(request, session)
    coverage_ids = CoverageChooser(db, request.patient_id, access).choose(
        request.coverage_ids, session.start
    )
    last = db.scalar(
        select(func.max(Booking.queue_position)).where(Booking.session_id == session_id)
    )
    with _saving(db, session_id):
        entry = _new_booking(request, booking_id, None)
        db.add(entry)
        _apply(db, entry, request, session)
        entry.queue_position = (last or 0) + 1
        _record_coverages(db, entry, coverage_ids)
        _record_identifiers(entry, request)
    return BookingResult(entry)


def _check_not_there(db: Session, patient_id: str, session_id: str) -> None:
    statuses = db.scalars(
        select(Booking.status).where(
            Booking.session_id == session_id,
            Booking.patient_id == patient_id,
            Booking.status.in_([*HOLDS_PLACE, BookingStatus.WAITLIST]),
        )
    ).all()
    if BookingStatus.WAITLIST in statuses:
        raise AlreadyWaitlisted(session_id, field="booking.participant")
    if statuses:
        raise AlreadyBooked(session_id, field="booking.slot")

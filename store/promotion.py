"""Waitlist promotion: a freed place goes down the session's waitlist in the transaction
that freed it.

A place frees when a booking is cancelled or moves away, when a session's capacity
rises or it is unblocked, and when an offer lapses. Each schedule chooses what the
first eligible entry gets (`ProviderSchedule.waitlist_policy`):

* `book`: the entry becomes a booking;
* `offer`: the entry becomes `pending`, holding the place until `offer_expires`;
  the patient accepts by updating it to `booked`, or declines by cancelling it.

The place is taken with the one capacity statement (`store.places.take_places`),
under the session's row lock, and the entry's row is locked and re-read before it
changes, so two transactions freeing places at once promote two different entries
and none twice. Expiry needs no clock-driven daemon for correctness: every write that
touches a session first reclaims its lapsed offers (`reclaim_expired`), so no one
can act on a place an expired offer still holds; `sweep_expired_offers` (the
`fhir-facade sweep-offers` command) only makes the hand-over prompt.

Entries are promoted whoever can see them: the queue is the clinic's, and a
restricted patient's promotion stays as hidden as their appointments. An entry that
cannot take the place (its insurance does not cover the session's date, or the
patient already holds a place there) stays on the list with the reason recorded,
and the place goes to the next one. Every promotion, lapse and pass-over writes its
AuditEvent, and every change goes through the ORM, so it is versioned.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable

from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import Session

from store.access import Access
from store.audit import AuditEntry, record
from store.common import any_of
from store.direct import Direct
from store.errors import NotFound, RuleViolation
from store.insurance import CoverageChooser
from store.models import (
    HOLDS_PLACE,
    PENDING_SQL,
    WAITLIST_ORDER,
    Booking,
    BookingStatus,
    GroupSession,
    utcnow,
)
from store.places import give_back_place, take_places

#: Who promotes: the server, following the schedule's policy (AuditEvent.agent).
WAITLIST_AGENT = "fhir-facade/waitlist"
#: How long an offer holds its place when the schedule does not say.
DEFAULT_OFFER = dt.timedelta(hours=24)
#: The store's own view of a queue: every entry counts, restricted or not.
_WHOLE_QUEUE = Access(restricted_patients=True)
EXPIRED_REASON = "waitlist offer expired"
#: `Session.info` key: this transaction found no lapsed offer (`has_lapsed_offers`).
_NONE_LAPSED = "store.promotion.none_lapsed"


class Policy(enum.StrEnum):
    BOOK = "book"
    OFFER = "offer"


def reclaim_expired(
    db: Session, session_ids: Iterable[str], *, now: dt.datetime | None = None
) -> list[Booking]:
    """Let the lapsed offers of these sessions go: each is cancelled ("waitlist offer
    expired"), gives its place back, and the place passes down the queue. Returns the
    lapsed offers. Called first by every write touching these sessions; for several
    sessions (a series' 156), one indexed probe for any lapsed offer comes first, and
    finding none (the rule) asks nothing of the sessions."""
    ids = sorted({i for i in session_ids if i is not None})
    if not ids:
        return []
    looked = db.info.pop(_NONE_LAPSED, None)
    if now is None and looked is not None:
        return []  # this transaction just found none lapsed anywhere (has_lapsed_offers)
    if now is None and len(ids) > 1 and not _lapsed_anywhere(db, utcnow()):
        return []  # none lapsed anywhere: one indexed probe, not a locking read of them all
    now = now or utcnow()
    lapsed = db.scalars(
        select(Booking)
        .where(
            any_of(db, Booking.session_id, ids),
            Booking.status == BookingStatus.PENDING,
            Booking.offer_expires <= now,
        )
        .order_by(Booking.session_id, Booking.id)
        .with_for_update(of=Booking)
        .execution_options(populate_existing=True)
    ).all()
    freed: list[str] = []
    for offer in lapsed:
        if offer.status != BookingStatus.PENDING or offer.session_id is None:
            continue
        offer.status = BookingStatus.CANCELLED
        offer.cancellation_reason = EXPIRED_REASON
        offer.touch()
        give_back_place(db, offer.session_id)
        freed.append(offer.session_id)
        _audit(db, offer, f"the offer of a place in Slot/{offer.session_id} expired unanswered")
    db.flush()
    fill_freed_places(db, freed, now=now)
    return list(lapsed)


def has_lapsed_offers(db: Session, *, now: dt.datetime | None = None) -> bool:
    """Whether any offer has lapsed and still holds its place (one indexed lookup).

    Finding none, the transaction is done looking for a moment: its next
    `reclaim_expired` (the write that follows) runs as of this lookup, when no offer
    anywhere had lapsed, and so needs no second lookup. An offer lapsing in the instant
    between is treated as the write found it: still live (the next write lets it go)."""
    now = now or utcnow()
    found = _lapsed_anywhere(db, now)
    if not found:
        db.info[_NONE_LAPSED] = now
    return found


def _lapsed_anywhere(db: Session, now: dt.datetime) -> bool:
    """Whether some offer has lapsed by `now` and still holds its place: one lookup in
    the index of live offers, in Core, straight on the driver."""
    return _ANY_LAPSED.first(db, {"now": now}) is not None


_ANY_LAPSED = Direct(
    select(Booking.id)
    .where(
        Booking.offer_expires <= bindparam("now", type_=Booking.offer_expires.type),
        text(PENDING_SQL),  # the partial index's own condition: live offers only
    )
    .limit(1)
)


def sweep_expired_offers(db: Session, *, now: dt.datetime | None = None) -> list[Booking]:
    """Reclaim every lapsed offer (for promptness; correctness does not wait on it)."""
    now = now or utcnow()
    sessions = db.scalars(
        select(Booking.session_id).where(text(PENDING_SQL), Booking.offer_expires <= now).distinct()
    ).all()
    return reclaim_expired(db, [s for s in sessions if s is not None], now=now)


def fill_freed_places(
    db: Session, session_ids: Iterable[str], *, now: dt.datetime | None = None
) -> list[Booking]:
    """Give each session's free places to its waitlist, first eligible entry first, as
    its schedule's policy says; the entries promoted or offered a place."""
    now = now or utcnow()
    promoted: list[Booking] = []
    for session_id in sorted(set(session_ids)):
        promoted.extend(_fill(db, session_id, now))
    return promoted


def _fill(db: Session, session_id: str, now: dt.datetime) -> list[Booking]:
    promoted: list[Booking] = []
    passed_over: set[str] = set()
    while True:
        session = db.get(
            GroupSession,
            session_id,
            with_for_update={"of": GroupSession},
            populate_existing=True,
        )
        if session is None or session.blocked or session.booked >= session.capacity:
            return promoted
        if session.end <= now:  # nobody is booked after the fact from a waitlist
            return promoted
        entry = _first_eligible(db, session, passed_over)
        if entry is None or session_id not in take_places(db, [session_id]):
            return promoted
        schedule = session.schedule
        if schedule.waitlist_policy == Policy.OFFER:
            entry.status = BookingStatus.PENDING
            held = dt.timedelta(seconds=schedule.offer_seconds or 0) or DEFAULT_OFFER
            entry.offer_expires = now + held
            until = entry.offer_expires.isoformat()
            what = f"offered the freed place in Slot/{session_id} until {until}"
        else:
            entry.status = BookingStatus.BOOKED
            what = f"booked into the freed place in Slot/{session_id}"
        entry.queue_position = None
        entry.waitlist_note = None
        entry.touch()
        _audit(db, entry, f"waitlist: {what}")
        db.flush()
        promoted.append(entry)


def _first_eligible(db: Session, session: GroupSession, passed_over: set[str]) -> Booking | None:
    """The first waitlist entry that can take a place now, each locked before it is
    judged (a patient leaving the list at the same moment is seen to have left)."""
    while True:
        entry_id = db.scalar(
            select(Booking.id)
            .where(
                Booking.session_id == session.id,
                Booking.status == BookingStatus.WAITLIST,
                Booking.id.not_in(passed_over),
            )
            .order_by(*WAITLIST_ORDER, Booking.id)
            .limit(1)
        )
        if entry_id is None:
            return None
        entry = db.get(Booking, entry_id, with_for_update=True, populate_existing=True)
        if entry is None or entry.status != BookingStatus.WAITLIST:
            passed_over.add(entry_id)
            continue
        reason = _why_ineligible(db, entry, session)
        if reason is None:
            return entry
        passed_over.add(entry_id)
        if entry.waitlist_note != reason:
            entry.waitlist_note = reason
            entry.touch()
            _audit(db, entry, f"waitlist: passed over for a freed place: {reason}")


def _why_ineligible(db: Session, entry: Booking, session: GroupSession) -> str | None:
    holding = db.scalar(
        select(Booking.id).where(
            Booking.session_id == session.id,
            Booking.patient_id == entry.patient_id,
            Booking.status.in_(list(HOLDS_PLACE)),
        )
    )
    if holding is not None:
        return f"the patient already holds a place in this session (Appointment/{holding})"
    chosen = tuple(c.coverage_id for c in entry.coverages)
    try:
        CoverageChooser(db, entry.patient_id, _WHOLE_QUEUE).choose(chosen, session.start)
    except (RuleViolation, NotFound) as refused:
        return f"insurance: {refused.message}"
    return None


def _audit(db: Session, entry: Booking, description: str) -> None:
    record(
        db,
        AuditEntry(
            "U",
            "update",
            WAITLIST_AGENT,
            "Appointment",
            entry.id,
            entry.patient_id,
            description=description,
        ),
    )


def check_change(booking: Booking, status: str, session_id: str | None) -> None:
    """The rules a waitlist entry or an offer follows when a client updates it: only the
    server puts an appointment on a waitlist or offers it a place; an entry and an offer
    stay with their session; an offer that lapsed cannot be accepted."""
    if status == BookingStatus.WAITLIST and booking.status != BookingStatus.WAITLIST:
        raise RuleViolation(
            "an appointment joins a waitlist only when it is created with status 'waitlist'",
            field="booking.status",
        )
    if status == BookingStatus.PENDING and booking.status != BookingStatus.PENDING:
        raise RuleViolation(
            "only the server offers a waitlisted patient a place (status 'pending')",
            field="booking.status",
        )
    waiting = (BookingStatus.WAITLIST, BookingStatus.PENDING)
    if booking.status in waiting and status in waiting and session_id != booking.session_id:
        raise RuleViolation(
            "a waitlist entry or offer belongs to its session: cancel it and join another "
            "session's waitlist",
            field="booking.slot",
        )
    lapsed = booking.status == BookingStatus.PENDING and (
        booking.offer_expires is not None and booking.offer_expires <= utcnow()
    )
    if lapsed and status == BookingStatus.BOOKED:
        raise RuleViolation(
            "the offer of this place has expired: the place goes to the next patient on the "
            "waitlist",
            field="booking.status",
        )
    if booking.cancellation_reason == EXPIRED_REASON and status != BookingStatus.CANCELLED:
        expires = booking.offer_expires.isoformat() if booking.offer_expires else "?"
        raise RuleViolation(
            f"the offer of this place expired at {expires}: the place went to "
            "the next patient on the waitlist",
            field="booking.status",
        )


def settle(booking: Booking) -> None:
    """Clear what only a waiting entry or a live offer carries once it is neither."""
    if booking.status != BookingStatus.WAITLIST:
        booking.queue_position = None
        booking.waitlist_note = None
    if booking.status not in (BookingStatus.PENDING, BookingStatus.CANCELLED):
        booking.offer_expires = None

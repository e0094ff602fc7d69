"""Places in group sessions: the only statements that change `group_session.booked`.

Taking places is one conditional UPDATE (`booked < capacity`), so two concurrent
bookings can never both take the last place; the check constraint on the table is
a second, independent guard. Booking (store.booking) and waitlist promotion
(store.promotion) both take and give back places here, and nowhere else.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from store.history import bumped
from store.models import Availability, GroupSession, utcnow


def lock_sessions(db: Session, session_ids: list[str]) -> None:
    """Lock several sessions' rows in one fixed order (by id) before changing their counts,
    so two transactions moving places in opposite directions cannot deadlock.
    (SQLite needs nothing: its write transactions already run one at a time.)"""
    ids = sorted(set(session_ids))
    if len(ids) > 1:
        db.execute(
            select(GroupSession.id)
            .where(GroupSession.id.in_(ids))
            .order_by(GroupSession.id)
            .with_for_update()
        )


def take_places(db: Session, session_ids: list[str]) -> set[str]:
    """Take one place in each session that has room, in one conditional UPDATE; the ids
    of the sessions where a place was taken. Sessions without room are left untouched."""
    taken = db.execute(
        update(GroupSession)
        .where(
            GroupSession.id.in_(session_ids),
            GroupSession.availability == Availability.OPEN,  # booked < capacity, not blocked
        )
        .values(
            booked=GroupSession.booked + 1,
            version=GroupSession.version + 1,
            last_updated=utcnow(),
        )
        .returning(GroupSession.id)
        .execution_options(synchronize_session=False)
    )
    ids = set(taken.scalars())
    bumped(db, GroupSession, ids)
    return ids


def give_back_place(db: Session, session_id: str) -> None:
    given = db.execute(
        update(GroupSession)
        .where(GroupSession.id == session_id, GroupSession.booked > 0)
        .values(
            booked=GroupSession.booked - 1,
            version=GroupSession.version + 1,
            last_updated=utcnow(),
        )
        .returning(GroupSession.id)
        .execution_options(synchronize_session=False)
    )
    bumped(db, GroupSession, given.scalars())

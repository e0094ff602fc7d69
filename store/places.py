"""Places in group sessions: the only statements that change `group_session.booked`.

Taking places is one conditional UPDATE (`booked < capacity`), so two concurrent
bookings can never both take the last place; the check constraint on the table is
a second, independent guard. Booking (store.booking) and waitlist promotion
(store.promotion) both take and give back places here, and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from store.history import bumped, reloaded
from store.models import Availability, GroupSession, ProviderSchedule, utcnow


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
    taken = db.execute(_TAKE_IDS, _taking(session_ids))
    ids = set(taken.scalars())
    bumped(db, GroupSession, ids)
    return ids


@dataclass(frozen=True)
class Place:
    """A place taken in a session: the session as the UPDATE left it, and what its
    calendar gives a booking by default (its department, its provider if any)."""

    session: GroupSession
    department_id: str
    provider_ids: tuple[str, ...]


def take_places_read(db: Session, session_ids: list[str]) -> dict[str, Place]:
    """`take_places`, the same one conditional UPDATE, which also reads back the sessions
    where a place was taken (RETURNING, on both backends), so a booking needs no SELECT
    after it. Sessions without room are left untouched and absent."""
    rows = db.execute(_TAKE_READ, _taking(session_ids))
    places = {  # the providers as ProviderSchedule.provider_ids gives them
        session.id: Place(session, department_id, (provider_id,) if provider_id else ())
        for session, department_id, provider_id in rows
    }
    bumped(db, GroupSession, places)
    reloaded(db, [p.session for p in places.values()])  # the snapshot needs no second read
    return places


#: The conditional UPDATE that takes a place in each of the sessions `ids` with room,
#: built once (`_taking` gives its parameters).
_TAKE = (
    update(GroupSession)
    .where(
        GroupSession.id.in_(bindparam("ids", expanding=True)),
        GroupSession.availability == Availability.OPEN,  # booked < capacity, not blocked
    )
    .values(
        booked=GroupSession.booked + 1,
        version=GroupSession.version + 1,
        last_updated=bindparam("now", type_=GroupSession.last_updated.type),
    )
    .execution_options(synchronize_session=False)
)
_TAKE_IDS = _TAKE.returning(GroupSession.id)
_SCHEDULE = select(ProviderSchedule).where(ProviderSchedule.id == GroupSession.schedule_id)
_TAKE_READ = _TAKE.returning(
    GroupSession,
    _SCHEDULE.with_only_columns(ProviderSchedule.department_id).scalar_subquery(),
    _SCHEDULE.with_only_columns(ProviderSchedule.provider_id).scalar_subquery(),
).execution_options(populate_existing=True)


def _taking(session_ids: list[str]) -> dict[str, Any]:
    return {"ids": list(session_ids), "now": utcnow()}


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

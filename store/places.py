"""Places in group sessions: the only statements that change `group_session.booked`.

Taking places is one conditional UPDATE (`booked < capacity`), so two concurrent
bookings can never both take the last place; the check constraint on the table is
a second, independent guard. Booking (store.booking) and waitlist promotion
(store.promotion) both take and give back places here, and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Update, bindparam, inspect, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from store.common import Listing, held, plain
from store.history import bumped, reloaded
from store.models import Availability, GroupSession, ProviderSchedule, utcnow


def lock_sessions(db: Session, session_ids: list[str]) -> None:
    """Lock several sessions' rows in one fixed order (by id) before changing their counts,
    so two transactions moving places in opposite directions cannot deadlock.
    (SQLite needs nothing: its write transactions already run one at a time.)"""
    ids = sorted(set(session_ids))
    if len(ids) > 1:
        _LOCK.rows(db, {"ids": ids})


_LOCK = Listing(
    lambda listed: (
        select(GroupSession.id)
        .where(listed(GroupSession.id, "ids"))
        .order_by(GroupSession.id)
        .with_for_update()
    )
)


def take_places(db: Session, session_ids: list[str]) -> set[str]:
    """Take one place in each session that has room, in one conditional UPDATE; the ids
    of the sessions where a place was taken. Sessions without room are left untouched."""
    ids = {ident for (ident,) in _TAKE_IDS.rows(db, _taking(session_ids))}
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
    # Core, on the connection: the ORM's UPDATE … RETURNING path rebuilds its statement
    # on every call; the rows become sessions here (`_as_loaded`).
    places = {}
    for row in _TAKE_READ.rows(db, _taking(session_ids)):
        session = _as_loaded(db, row)
        *_, department_id, provider_id = row  # as ProviderSchedule.provider_ids gives it
        places[session.id] = Place(session, department_id, (provider_id,) if provider_id else ())
    bumped(db, GroupSession, places)
    reloaded(db, [p.session for p in places.values()])  # the snapshot needs no second read
    return places


def _take(ids: ColumnElement[bool]) -> Update:
    """The conditional UPDATE that takes a place in each of the sessions `ids` with room,
    built once (`_taking` gives its parameters)."""
    return (
        update(GroupSession)
        # Open: booked < capacity, and not blocked.
        .where(ids, GroupSession.availability == Availability.OPEN)
        .values(
            booked=GroupSession.booked + 1,
            version=GroupSession.version + 1,
            last_updated=bindparam("now", type_=GroupSession.last_updated.type),
        )
        .execution_options(synchronize_session=False)
    )


_TAKE_IDS = Listing(lambda listed: _take(listed(GroupSession.id, "ids")).returning(GroupSession.id))
_SCHEDULE = select(ProviderSchedule).where(ProviderSchedule.id == GroupSession.schedule_id)
#: Every column of the session (named as its attributes), and its calendar's defaults.
_COLUMNS = tuple((attr.key, attr.columns[0]) for attr in inspect(GroupSession).column_attrs)
_KEYS = tuple(key for key, _ in _COLUMNS)
_READ = (
    *(column.label(key) for key, column in _COLUMNS),
    _SCHEDULE.with_only_columns(ProviderSchedule.department_id)
    .scalar_subquery()
    .label("department_id"),
    _SCHEDULE.with_only_columns(ProviderSchedule.provider_id)
    .scalar_subquery()
    .label("provider_id"),
)
_TAKE_READ = Listing(lambda listed: _take(listed(GroupSession.id, "ids")).returning(*_READ))


def _as_loaded(db: Session, row: tuple[Any, ...]) -> GroupSession:
    """The session `row` returned, as if loaded with populate_existing: the copy `db`
    holds is refreshed, or else a plain record (`store.common.plain`, every column set,
    its calendar not: what the booking and its Slot's version read) answers it."""
    values = dict(zip(_KEYS, row, strict=False))  # the session's columns come first
    loaded = held(db, GroupSession, values["id"])
    if loaded is not None:
        for key, value in values.items():
            set_committed_value(loaded, key, value)
        return loaded
    return plain(GroupSession, values)


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

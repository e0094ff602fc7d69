"""The outbox of notifications and its delivery state, per subscription.

Events are numbered per subscription in the transaction that made the change (the
subscription row's `events` counter moves by a conditional UPDATE, so two writers
never give the same number and a rolled-back change gives none). Delivery walks the
numbers in order: a subscription's `delivered` is the last number its endpoint
acknowledged, so a worker that dies between sending and recording sends that event
again (at least once; the receiver drops duplicates by number).

One worker at a time holds a subscription (`lease_until`, taken by a conditional
UPDATE): several workers on one database share the subscriptions, never one
subscription's sequence.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from store.access import Access
from store.models import Base, Notification, RecordVersion, Subscription, utcnow
from store.search import AnyOf, Query, where_clause

#: Statuses in which a subscription is given events (requested: its handshake is still
#: to come, and what happens meanwhile is kept for it).
LISTENING = ("requested", "active", "error")


@dataclass(frozen=True)
class Focus:
    """A record version an event is about: `kind` is the record's table name."""

    kind: str
    ident: str
    version: int


def listening(db: Session, topics: Sequence[str]) -> list[Subscription]:
    """Subscriptions to any of `topics` that are given events, in id order (the order in
    which their counters are locked, so two writers cannot deadlock on them)."""
    statement = (
        select(Subscription)
        .where(Subscription.topic.in_(set(topics)), Subscription.status.in_(LISTENING))
        .order_by(Subscription.id)
    )
    return list(db.scalars(statement))


def enqueue(db: Session, subscription_id: str, focuses: Sequence[Focus]) -> None:
    """Give `focuses` the subscription's next event numbers, in order, in `db`'s
    transaction."""
    if not focuses:
        return
    last = db.execute(
        update(Subscription)
        .where(Subscription.id == subscription_id)
        .values(events=Subscription.events + len(focuses))
        .returning(Subscription.events)
        .execution_options(synchronize_session=False)
    ).scalar_one()
    now = utcnow()
    first = last - len(focuses) + 1
    db.add_all(
        Notification(
            subscription_id=subscription_id,
            event_number=first + n,
            focus_kind=f.kind,
            focus_id=f.ident,
            focus_version=f.version,
            occurred=now,
        )
        for n, f in enumerate(focuses)
    )


def events(
    db: Session, subscription_id: str, since: int, until: int, limit: int
) -> list[tuple[Notification, RecordVersion | None]]:
    """Events `since`..`until` (inclusive) in order, at most `limit`, each with the
    record version it is about."""
    statement = (
        select(Notification, RecordVersion)
        .outerjoin(
            RecordVersion,
            (RecordVersion.kind == Notification.focus_kind)
            & (RecordVersion.record_id == Notification.focus_id)
            & (RecordVersion.version == Notification.focus_version),
        )
        .where(
            Notification.subscription_id == subscription_id,
            Notification.event_number >= since,
            Notification.event_number <= until,
        )
        .order_by(Notification.event_number)
        .limit(limit)
    )
    return [(n, v) for n, v in db.execute(statement)]


def previous_version(db: Session, kind: str, ident: str, version: int) -> RecordVersion | None:
    """The newest kept version of a record older than `version` (None for a new record)."""
    statement = (
        select(RecordVersion)
        .where(
            RecordVersion.kind == kind,
            RecordVersion.record_id == ident,
            RecordVersion.version < version,
        )
        .order_by(RecordVersion.version.desc())
        .limit(1)
    )
    return db.scalars(statement).first()


# -- delivery ---------------------------------------------------------------------------


def due(db: Session, now: dt.datetime) -> list[str]:
    """Subscriptions with something to send now: a handshake, events not yet delivered,
    or a heartbeat; not held by another worker, not waiting out a backoff."""
    statement = (
        select(Subscription.id)
        .where(
            Subscription.status.in_(LISTENING),
            or_(
                Subscription.handshake_done.is_(False),
                Subscription.delivered < Subscription.events,
                Subscription.heartbeat_due <= now,
            ),
            or_(Subscription.lease_until.is_(None), Subscription.lease_until < now),
            or_(Subscription.next_attempt.is_(None), Subscription.next_attempt <= now),
        )
        .order_by(Subscription.id)
    )
    return list(db.scalars(statement))


def take(
    db: Session, *, subscription_id: str, now: dt.datetime, lease: dt.timedelta
) -> dt.datetime | None:
    """Hold the subscription until `now + lease` (None: another worker holds it). What
    `take` returns is the holder's proof for `renew` and `release`."""
    until = now + lease
    taken = db.execute(
        update(Subscription)
        .where(
            Subscription.id == subscription_id,
            Subscription.status.in_(LISTENING),
            or_(Subscription.lease_until.is_(None), Subscription.lease_until < now),
        )
        .values(lease_until=until)
        .execution_options(synchronize_session=False)
    )
    return until if taken.rowcount else None  # type: ignore[attr-defined]


def renew(
    db: Session, *, subscription_id: str, held: dt.datetime, until: dt.datetime
) -> dt.datetime | None:
    """Extend a lease still held (None: it expired and another worker took it). A worker
    renews before each notification, so a crashed worker's subscriptions wait at most
    one lease, and a slow one never shares a subscription."""
    renewed = db.execute(
        update(Subscription)
        .where(Subscription.id == subscription_id, Subscription.lease_until == held)
        .values(lease_until=until)
        .execution_options(synchronize_session=False)
    )
    return until if renewed.rowcount else None  # type: ignore[attr-defined]


def release(db: Session, *, subscription_id: str, held: dt.datetime) -> None:
    db.execute(
        update(Subscription)
        .where(Subscription.id == subscription_id, Subscription.lease_until == held)
        .values(lease_until=None)
        .execution_options(synchronize_session=False)
    )


def sent(
    db: Session, *, subscription_id: str, through: int | None, handshake: bool, now: dt.datetime
) -> None:
    """The endpoint acknowledged a notification: events up to `through` (if any) are
    delivered; a subscription in error (or just handshaken) is active again."""
    subscription = db.get(Subscription, subscription_id, with_for_update=True)
    if subscription is None or subscription.status == "off":
        return
    if through is not None:
        subscription.delivered = max(subscription.delivered, through)
    if handshake:
        subscription.handshake_done = True
    if subscription.status != "active":
        subscription.status = "active"
        subscription.error = None
        _touch(subscription, now)
    subscription.failures = 0
    subscription.next_attempt = None
    subscription.last_sent = now
    if subscription.heartbeat_s:
        subscription.heartbeat_due = now + dt.timedelta(seconds=subscription.heartbeat_s)


def failed(
    db: Session,
    *,
    subscription_id: str,
    reason: str,
    now: dt.datetime,
    backoff: dt.timedelta,
    give_up_after: int,
) -> None:
    """A notification was not acknowledged: the subscription is in error (the reason
    shown to its owner) and retried after `backoff` doubled per failure; after
    `give_up_after` failures in a row it is turned off, the reason kept."""
    subscription = db.get(Subscription, subscription_id, with_for_update=True)
    if subscription is None or subscription.status == "off":
        return
    subscription.failures += 1
    subscription.error = reason
    if subscription.failures >= give_up_after:
        subscription.status = "off"
        subscription.error = f"turned off after {subscription.failures} failed deliveries: {reason}"
    else:
        subscription.status = "error"
        subscription.next_attempt = now + backoff * 2 ** (subscription.failures - 1)
    _touch(subscription, now)


def _touch(subscription: Subscription, now: dt.datetime) -> None:
    subscription.version += 1
    subscription.last_updated = now


def matching(
    db: Session, kind: type[Base], ids: Iterable[str], where: Sequence[AnyOf], access: Access
) -> set[str]:
    """Which of these records of `kind` match `where` and are visible to `access` (the
    same visibility rule as every search), in `db`'s transaction."""
    wanted = set(ids)
    if not wanted:
        return set()
    id_col: Any = kind.id  # type: ignore[attr-defined]
    condition = where_clause(Query(kind, where=list(where), access=access))
    return set(db.scalars(select(id_col).where(id_col.in_(wanted), condition)))

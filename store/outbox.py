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

`EventRecorder` is the hook that writes the outbox: the store's version keeping shows it
each transaction's versions before the commit. Which topics a version triggers and what
a subscriber may see now are the application's rules (pure functions, handed in); which
records match is decided here, by the one visibility rule (store.visibility).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, exists, or_, select, update
from sqlalchemy.orm import Session

from store.access import Access
from store.history import Version
from store.models import ApiClient, Base, Notification, RecordVersion, Subscription, utcnow
from store.search import AnyOf, Query, visible_ids, where_clause

#: Statuses in which a subscription is given events (requested: its handshake is still
#: to come, and what happens meanwhile is kept for it).
LISTENING = ("requested", "active", "error")


@dataclass(frozen=True)
class Focus:
    """A record version an event is about: `kind` is the record's table name."""

    kind: str
    ident: str
    version: int


@dataclass(frozen=True)
class Lens:
    """What a subscriber may learn of its topic's records now: records of `kind` that
    `access` sees and that match `where` (its filters)."""

    kind: type[Base]
    access: Access
    where: tuple[AnyOf, ...] = ()


#: The topics (canonical URLs) a version triggers: (table name, previous document or
#: None for a new record, current document), documents as the API showed them (JSON).
Triggers = Callable[[str, str | None, str], list[str]]
#: What a subscription's subscriber may see now, given the API client it is bound to
#: (None when unbound, or the client is gone); None: nothing at all.
LensOf = Callable[[Subscription, ApiClient | None], Lens | None]


@dataclass(frozen=True)
class EventRecorder:
    """The outbox hook (a `store.history` observer): gives each listening subscription
    an event for each version that triggers its topic, matches its filters, and its
    subscriber may see now (as a search by its token would find it)."""

    kinds: frozenset[str]  # the tables some topic watches
    topics: tuple[str, ...]
    triggers: Triggers
    lens: LensOf

    def question(self, kinds: set[str]) -> ColumnElement[bool] | None:
        """Whether some subscription listens, asked by the statement that writes versions
        some topic watches (store.history.Observer): the answer costs no statement."""
        if not kinds & self.kinds:
            return None
        return _some_listening(_topic_key(self.topics))

    def __call__(self, db: Session, versions: list[Version], answer: bool | None) -> None:
        relevant = sorted(
            (v for v in versions if v.kind in self.kinds), key=lambda v: (v.kind, v.record_id)
        )
        if not relevant or answer is False:
            return
        subscriptions = listening(db, self.topics, asked=answer is True)
        if not subscriptions:
            return
        triggered: dict[str, list[Version]] = {}
        for version in relevant:
            before = previous_version(db, version.kind, version.record_id, version.version)
            document = before.document if before is not None else None
            for url in self.triggers(version.kind, document, version.document):
                triggered.setdefault(url, []).append(version)
        now = utcnow()
        for subscription in subscriptions:
            candidates = triggered.get(subscription.topic, [])
            if not candidates or (subscription.ends is not None and subscription.ends <= now):
                continue
            lens = self.lens(subscription, bound_client(db, subscription))
            if lens is None:
                continue
            seen = matching(
                db, lens.kind, {v.record_id for v in candidates}, lens.where, lens.access
            )
            focuses = [
                Focus(v.kind, v.record_id, v.version) for v in candidates if v.record_id in seen
            ]
            enqueue(db, subscription.id, focuses)


def bound_client(db: Session, subscription: Subscription) -> ApiClient | None:
    """The registered API client the subscription is bound to, if it still exists."""
    if subscription.client_id is None:
        return None
    return db.get(ApiClient, subscription.client_id)


def listening(db: Session, topics: Sequence[str], *, asked: bool = False) -> list[Subscription]:
    """Subscriptions to any of `topics` that are given events, in id order (the order in
    which their counters are locked, so two writers cannot deadlock on them).

    Every write asks, and most find none: an existence test of one column comes first
    (`asked`: it has found some already), and the subscriptions are loaded only when
    there are some."""
    # Core, on the connection: the ORM adds nothing to a one-column lookup.
    if not asked and db.connection().scalar(_any_listening(_topic_key(topics))) is None:
        return []
    statement = (
        select(Subscription)
        .where(Subscription.topic.in_(set(topics)), Subscription.status.in_(LISTENING))
        .order_by(Subscription.id)
    )
    return list(db.scalars(statement))


@functools.lru_cache(maxsize=16)
def _some_listening(topics: tuple[str, ...]) -> ColumnElement[bool]:
    """`_any_listening` as an EXISTS, for a statement run with many rows (which takes no
    list-valued parameters: each value is a parameter of its own)."""
    return exists().where(
        or_(*(Subscription.topic == topic for topic in topics)),
        or_(*(Subscription.status == status for status in LISTENING)),
    )


def _topic_key(topics: Sequence[str]) -> tuple[str, ...]:
    return tuple(sorted(set(topics)))


@functools.lru_cache(maxsize=16)
def _any_listening(topics: tuple[str, ...]) -> Select[str]:
    """Whether some subscription to `topics` is given events (built once per topic set)."""
    return (
        select(Subscription.id)
        .where(Subscription.topic.in_(topics), Subscription.status.in_(LISTENING))
        .limit(1)
    )


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


@dataclass(frozen=True)
class Told:
    """One event as a subscriber may be told it now: `focus_id` and the version's
    `document` only when the record is visible to that subscriber (None otherwise);
    `created`: the version is the record's first."""

    number: int
    occurred: dt.datetime
    kind: str  # the record's table
    focus_id: str | None
    document: str | None
    created: bool


def told(
    db: Session, subscription_id: str, since: int, until: int, limit: int, access: Access
) -> list[Told]:
    """Events `since`..`until` of a subscription, at most `limit`, each with its focus
    only when `access` may see that record now."""
    rows = events(db, subscription_id, since, until, limit)
    seen: set[tuple[str, str]] = set()
    by_kind: dict[str, set[str]] = {}
    for notification, _ in rows:
        by_kind.setdefault(notification.focus_kind, set()).add(notification.focus_id)
    for kind, ids in by_kind.items():
        model = _MODELS.get(kind)
        if model is not None:
            seen |= {(kind, i) for i in visible_ids(db, model, ids, access)}
    found = []
    for notification, version in rows:
        visible = (notification.focus_kind, notification.focus_id) in seen
        found.append(
            Told(
                notification.event_number,
                notification.occurred,
                notification.focus_kind,
                notification.focus_id if visible else None,
                version.document if visible and version is not None else None,
                notification.focus_version == 1,
            )
        )
    return found


#: Record models by table name (an event names its record's table).
_MODELS: dict[str, type[Base]] = {
    m.class_.__tablename__: m.class_ for m in Base.registry.mappers if hasattr(m.class_, "id")
}


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
                Subscription.ends <= now,
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


def turn_off(db: Session, *, subscription_id: str, reason: str, now: dt.datetime) -> None:
    """Turn a subscription off for good, the reason kept (its end came, or its creator
    lost the right to read what it is about)."""
    subscription = db.get(Subscription, subscription_id, with_for_update=True)
    if subscription is None or subscription.status == "off":
        return
    subscription.status = "off"
    subscription.error = reason
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

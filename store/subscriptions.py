"""Subscriptions as their owners manage them: create, read, list, change, delete.

A subscription belongs to the token subject that created it; no other subject can see
or change it (NotFound, as for anything the caller may not see).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.errors import NotFound
from store.models import Subscription, utcnow


@dataclass(frozen=True)
class SubscriptionSpec:
    """What a client asks for. `criteria`: filter queries, one a line; `scope`: the
    subscriber's token scope claim, which bounds what notifications may reveal."""

    status: str
    topic: str
    criteria: str
    endpoint: str
    content: str
    heartbeat_s: int | None
    timeout_s: int
    document: str


def create_subscription(
    db: Session, owner: str, scope: str, server_base: str, spec: SubscriptionSpec
) -> Subscription:
    """A new subscription, `requested` until its endpoint answers the handshake (or `off`
    when the client asks for it off)."""
    subscription = Subscription(
        id=str(uuid.uuid4()),
        owner=owner,
        scope=scope,
        server_base=server_base,
        version=1,
        last_updated=utcnow(),
        events=0,
        delivered=0,
        handshake_done=False,
        failures=0,
    )
    _apply(subscription, spec)
    subscription.status = "off" if spec.status == "off" else "requested"
    db.add(subscription)
    db.flush()
    return subscription


def owned(db: Session, owner: str, ident: str, *, lock: bool = False) -> Subscription:
    subscription = db.get(Subscription, ident, with_for_update=lock)
    if subscription is None or subscription.owner != owner:
        raise NotFound("Subscription", ident)
    return subscription


def owned_by(db: Session, owner: str, status: str | None = None) -> list[Subscription]:
    statement = select(Subscription).where(Subscription.owner == owner)
    if status is not None:
        statement = statement.where(Subscription.status == status)
    return list(db.scalars(statement.order_by(Subscription.last_updated, Subscription.id)))


def update_subscription(
    db: Session, owner: str, ident: str, scope: str, spec: SubscriptionSpec
) -> Subscription:
    """Change a subscription. Turning it `off` stops events and delivery; turning it back
    on (`requested` or `active`) starts a new handshake, and events resume from the next
    number (what happened while it was off is not given to it). A new endpoint needs a
    new handshake too. The owner's current token scope replaces the stored one."""
    subscription = owned(db, owner, ident, lock=True)
    restart = spec.endpoint != subscription.endpoint or (
        subscription.status == "off" and spec.status != "off"
    )
    _apply(subscription, spec)
    subscription.scope = scope
    if spec.status == "off":
        subscription.status = "off"
    elif restart:
        subscription.status = "requested"
        subscription.handshake_done = False
        subscription.failures = 0
        subscription.error = None
        subscription.next_attempt = None
        subscription.delivered = subscription.events  # nothing owed from before
    subscription.version += 1
    subscription.last_updated = utcnow()
    return subscription


def delete_subscription(db: Session, owner: str, ident: str) -> None:
    db.delete(owned(db, owner, ident, lock=True))


def _apply(subscription: Subscription, spec: SubscriptionSpec) -> None:
    subscription.topic = spec.topic
    subscription.criteria = spec.criteria
    subscription.endpoint = spec.endpoint
    subscription.content = spec.content
    subscription.heartbeat_s = spec.heartbeat_s
    subscription.timeout_s = spec.timeout_s
    subscription.document = spec.document
    if not spec.heartbeat_s:
        subscription.heartbeat_due = None

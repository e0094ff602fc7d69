"""Subscriptions as their owners manage them: create, read, list, change, delete.

A subscription belongs to the token subject that created it; no other subject can see
or change it (NotFound, as for anything the caller may not see). It is bound to who
created it (`Binding`): the registered API client, whose scopes *now* bound what it may
reveal, or, for a token no registered client holds, the token's expiry, which its end
never passes.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.errors import NotFound, VersionMismatch
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
    end: dt.datetime | None = None  # Subscription.end as the client asked


@dataclass(frozen=True)
class Binding:
    """Who creates or changes a subscription: the token subject and scope claim, the
    registered API client the token belongs to (None: a user's token), and that token's
    expiry (for a user's token, the latest the subscription may end)."""

    owner: str
    scope: str
    client_id: str | None = None
    expires: dt.datetime | None = None

    def end(self, asked: dt.datetime | None) -> dt.datetime | None:
        """The subscription's end: as asked, and no later than an unbound token's expiry."""
        if self.client_id is not None or self.expires is None:
            return asked
        return self.expires if asked is None else min(asked, self.expires)


def create_subscription(
    db: Session,
    binding: Binding,
    server_base: str,
    spec: SubscriptionSpec,
    *,
    subscription_id: str | None = None,
) -> Subscription:
    """A new subscription, `requested` until its endpoint answers the handshake (or `off`
    when the client asks for it off). `subscription_id`: the id a Bundle gave it."""
    subscription = Subscription(
        id=subscription_id or str(uuid.uuid4()),
        owner=binding.owner,
        scope=binding.scope,
        client_id=binding.client_id,
        ends=binding.end(spec.end),
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
    db: Session,
    binding: Binding,
    ident: str,
    spec: SubscriptionSpec,
    *,
    expected_version: int | None = None,
) -> Subscription:
    """Change a subscription. Turning it `off` stops events and delivery; turning it back
    on (`requested` or `active`) starts a new handshake, and events resume from the next
    number (what happened while it was off is not given to it). A new endpoint needs a
    new handshake too. The owner's current token (its scope, client, expiry) replaces
    the stored binding."""
    subscription = owned(db, binding.owner, ident, lock=True)
    if expected_version is not None and subscription.version != expected_version:
        raise VersionMismatch("Subscription", ident, expected_version, subscription.version)
    restart = spec.endpoint != subscription.endpoint or (
        subscription.status == "off" and spec.status != "off"
    )
    _apply(subscription, spec)
    subscription.scope = binding.scope
    subscription.client_id = binding.client_id
    subscription.ends = binding.end(spec.end)
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

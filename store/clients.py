"""System clients of the token service (SMART Backend Services) and their used assertions.

Both live in the database, so every instance sharing it knows the same clients and
refuses an assertion another instance has already accepted.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from store.errors import AssertionReplayed
from store.models import ApiClient, Subscription, UsedAssertion, utcnow
from store.outbox import turn_off


@dataclass(frozen=True)
class ClientSpec:
    client_id: str
    scope: str
    jwks: str | None = None  # a JWK Set as JSON
    jwks_url: str | None = None


def register_client(db: Session, spec: ClientSpec) -> ApiClient:
    """Register a client, or replace the keys and scopes of one registered before."""
    client = db.get(ApiClient, spec.client_id, with_for_update=True) or ApiClient(id=spec.client_id)
    client.scope = spec.scope
    client.jwks = spec.jwks
    client.jwks_url = spec.jwks_url
    db.add(client)
    db.flush()
    return client


def remove_client(db: Session, client_id: str) -> int | None:
    """Remove a client (None: no such client). The subscriptions it created are turned
    off, the reason kept, in the same transaction: a subscription never outlives its
    creator's rights. How many were turned off."""
    client = db.get(ApiClient, client_id, with_for_update=True)
    if client is None:
        return None
    listening = select(Subscription.id).where(
        Subscription.client_id == client_id, Subscription.status != "off"
    )
    ids = list(db.scalars(listening.order_by(Subscription.id)))
    reason = f"the API client {client_id!r} that created it was removed"
    for ident in ids:
        turn_off(db, subscription_id=ident, reason=reason, now=utcnow())
    db.delete(client)  # its used assertions stay until they expire: none can be replayed
    return len(ids)


def find_client(db: Session, client_id: str) -> ApiClient | None:
    return db.get(ApiClient, client_id)


def use_assertion(db: Session, client_id: str, jti: str, expires: dt.datetime) -> None:
    """Record an assertion id; AssertionReplayed if it is already recorded. Assertions
    that have expired are forgotten here too (they are refused for their `exp` anyway)."""
    db.execute(delete(UsedAssertion).where(UsedAssertion.expires < utcnow()))
    db.add(UsedAssertion(client_id=client_id, jti=jti, expires=expires))
    try:
        db.flush()
    except IntegrityError:
        raise AssertionReplayed(f"assertion {jti!r} was already used") from None

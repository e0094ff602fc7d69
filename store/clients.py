"""System clients of the token service (SMART Backend Services) and their used assertions.

Both live in the database, so every instance sharing it knows the same clients and
refuses an assertion another instance has already accepted.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from store.errors import AssertionReplayed
from store.models import ApiClient, UsedAssertion, utcnow


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

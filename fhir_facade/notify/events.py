"""Events: which subscriptions a change is news to, decided in the change's transaction.

`record_events` watches the record versions `store.history` keeps (every version of
every record, whoever wrote it: a booking, a cancellation, a draft's resolution, a
waitlist promotion in the same transaction as the cancellation that freed the place).
A version is compared with the one kept before it to find the topics it triggers; each
subscription to such a topic gets an event when the record matches its filters and is
visible to its subscriber's token, exactly as a search by that token would find it.
"""

from __future__ import annotations

from functools import lru_cache

import orjson
from sqlalchemy.orm import Session

from fhir_facade.auth import Grants, grants_from_scopes
from fhir_facade.registry import RESOURCE_TYPES
from mappings.errors import MappingError
from mappings.search import scope_conditions
from mappings.subscription import TOPICS, Topic, filter_pairs, topics_for
from store import outbox
from store.models import RecordVersion, Subscription
from store.search import AnyOf

_KINDS = frozenset(t.kind for t in TOPICS.values())


@lru_cache(maxsize=1024)
def subscriber(owner: str, scope: str) -> Grants:
    """What the subscriber's token grants (kept with the subscription)."""
    return grants_from_scopes(owner, scope)


def record_events(db: Session, versions: list[RecordVersion]) -> None:
    """Write the outbox rows for `versions` (about to be committed in `db`)."""
    relevant = sorted(
        (v for v in versions if v.kind in _KINDS), key=lambda v: (v.kind, v.record_id)
    )
    if not relevant:
        return
    subscriptions = outbox.listening(db, list(TOPICS))
    if not subscriptions:
        return
    triggered: dict[str, list[RecordVersion]] = {}
    for version in relevant:
        before = outbox.previous_version(db, version.kind, version.record_id, version.version)
        previous = orjson.loads(before.document) if before is not None else None
        for url in topics_for(version.kind, previous, orjson.loads(version.document)):
            triggered.setdefault(url, []).append(version)
    for subscription in subscriptions:
        candidates = triggered.get(subscription.topic, [])
        if not candidates:
            continue
        ids = {v.record_id for v in candidates}
        seen = news_to(db, subscription, ids, filtered=True)
        focuses = [
            outbox.Focus(v.kind, v.record_id, v.version) for v in candidates if v.record_id in seen
        ]
        outbox.enqueue(db, subscription.id, focuses)


def news_to(db: Session, subscription: Subscription, ids: set[str], *, filtered: bool) -> set[str]:
    """Which of these records of the subscription's topic its subscriber may read (and,
    when `filtered`, that match its filters)."""
    topic = TOPICS.get(subscription.topic)
    if topic is None:
        return set()
    grants = subscriber(subscription.owner, subscription.scope)
    if not grants.allows(topic.resource_type, "r"):
        return set()
    try:
        where = filter_conditions(topic, subscription.criteria) if filtered else ()
    except MappingError:
        return set()  # filters that no longer parse match nothing, never everything
    kind = RESOURCE_TYPES[topic.resource_type].kind
    return outbox.matching(db, kind, ids, where, grants.access)


def filter_conditions(topic: Topic, criteria: str) -> tuple[AnyOf, ...]:
    """The subscription's filters (one query a line, ANDed) as store conditions."""
    pairs = [
        pair
        for n, line in enumerate(criteria.splitlines())
        for pair in filter_pairs(topic, line, f"Subscription.criteria.extension[{n}]")
    ]
    return scope_conditions(topic.resource_type, pairs) if pairs else ()

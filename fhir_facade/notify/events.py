"""Events: which subscriptions a change is news to, and what a subscriber may see now.

`record_events` is the store's outbox hook (`store.outbox.EventRecorder`), shown the
record versions `store.history` keeps (every version of every record, whoever wrote it:
a booking, a cancellation, a draft's resolution, a waitlist promotion in the same
transaction as the cancellation that freed the place) inside the writer's transaction.
The rules it applies are ours and pure: a version is compared with the one kept before
it to find the topics it triggers (`mappings.subscription.topics_for`); each
subscription to such a topic gets an event when the record matches its filters and is
visible to its subscriber (`lens`), exactly as a search by that token would find it.

A subscription never reveals more than its creator may read now: one bound to a
registered API client reads with the scopes it asked for *that the client's
registration still covers* (`fhir_facade.oauth.granted_scopes`); a removed client's
subscription sees nothing (and the worker turns it off).
"""

from __future__ import annotations

from functools import lru_cache

import orjson

from fhir_facade.auth import Grants, grants_from_scopes
from fhir_facade.oauth import granted_scopes
from fhir_facade.registry import RESOURCE_TYPES
from mappings.errors import MappingError
from mappings.search import scope_conditions
from mappings.subscription import TOPICS, Topic, filter_pairs, topics_for
from store.models import ApiClient, Subscription
from store.outbox import EventRecorder, Lens
from store.scope import Store
from store.search import AnyOf


@lru_cache(maxsize=1024)
def _grants(owner: str, scope: str) -> Grants:
    return grants_from_scopes(owner, scope)


def subscriber(subscription: Subscription, client: ApiClient | None) -> Grants | None:
    """What the subscriber may read now: the scope kept with the subscription, narrowed
    to what its API client's registration covers now (None: the client is gone)."""
    if subscription.client_id is None:
        return _grants(subscription.owner, subscription.scope)
    if client is None:
        return None
    return _grants(subscription.owner, granted_scopes(subscription.scope, client.scope))


def lens(subscription: Subscription, client: ApiClient | None) -> Lens | None:
    """The records of the subscription's topic its subscriber may learn of now (None:
    none: an unknown topic, a topic it may no longer read, filters that no longer parse,
    a removed client)."""
    topic = TOPICS.get(subscription.topic)
    grants = subscriber(subscription, client)
    if topic is None or grants is None or not grants.allows(topic.resource_type, "r"):
        return None
    try:
        where = filter_conditions(topic, subscription.criteria)
    except MappingError:
        return None  # filters that no longer parse match nothing, never everything
    return Lens(RESOURCE_TYPES[topic.resource_type].kind, grants.access, where)


def lens_in(store: Store, subscription: Subscription) -> Lens | None:
    """`lens`, the subscription's API client looked up in `store`."""
    return lens(subscription, store.bound_client(subscription))


def why_not_listening(store: Store, subscription: Subscription) -> str | None:
    """Why a subscription may no longer be served at all (None: it may): its creator's
    client is no longer registered. (Scopes that shrank narrow it instead.)"""
    if subscription.client_id is not None and store.bound_client(subscription) is None:
        return f"the API client {subscription.client_id!r} that created it is no longer registered"
    return None


def filter_conditions(topic: Topic, criteria: str) -> tuple[AnyOf, ...]:
    """The subscription's filters (one query a line, ANDed) as store conditions."""
    pairs = [
        pair
        for n, line in enumerate(criteria.splitlines())
        for pair in filter_pairs(topic, line, f"Subscription.criteria.extension[{n}]")
    ]
    return scope_conditions(topic.resource_type, pairs) if pairs else ()


def _triggers(kind: str, previous: str | None, current: str) -> list[str]:
    before = orjson.loads(previous) if previous is not None else None
    return topics_for(kind, before, orjson.loads(current))


#: The outbox hook handed to `Database.keep_versions`.
record_events = EventRecorder(
    kinds=frozenset(t.kind for t in TOPICS.values()),
    topics=tuple(TOPICS),
    triggers=_triggers,
    lens=lens,
)

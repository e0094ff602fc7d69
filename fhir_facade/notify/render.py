"""An event as its subscriber may see it at the moment it is sent or asked for."""

from __future__ import annotations

import orjson

from fhir_facade.notify.events import lens_in
from fhir_facade.references import drop_hidden_references
from mappings.subscription import TOPICS, Event
from store.access import Access
from store.models import Subscription
from store.scope import Store


def rendered(
    store: Store, subscription: Subscription, since: int, until: int, limit: int, content: str
) -> list[Event]:
    """Events `since`..`until` (at most `limit`) with their focus (not for `empty`
    content) and, for `full-resource`, the version's resource. They are read through a
    Store opened with the subscriber's access now (`lens_in`), so the record must still be
    visible to the subscriber (a patient restricted since the event hides it: the event is
    then told without its focus), and references to records the subscriber may not see
    are left out of the resource."""
    topic = TOPICS.get(subscription.topic)
    seen = lens_in(store, subscription) if content != "empty" else None
    # No lens (empty content, or nothing the subscriber may read now): every event is
    # told without its focus, whatever this Store could see.
    subscriber = store.as_(seen.access if seen is not None else Access())
    events = []
    for told in subscriber.notifications(subscription.id, since, until, limit):
        if topic is None or seen is None or told.focus_id is None:
            events.append(Event(told.number, told.occurred))
            continue
        resource = None
        if content == "full-resource" and told.document is not None:
            resource = orjson.loads(told.document)
            drop_hidden_references(subscriber, resource)
        events.append(
            Event(
                told.number,
                told.occurred,
                (topic.resource_type, told.focus_id),
                resource,
                created=told.created,
            )
        )
    return events

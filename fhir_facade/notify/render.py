"""An event as its subscriber may see it at the moment it is sent or asked for."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from sqlalchemy.orm import Session

from fhir_facade.notify.events import news_to, subscriber
from fhir_facade.references import drop_hidden_references
from mappings.subscription import TOPICS, Event
from store.models import Notification, RecordVersion, Subscription
from store.scope import Store


def rendered(
    db: Session,
    subscription: Subscription,
    rows: Sequence[tuple[Notification, RecordVersion | None]],
    content: str,
) -> list[Event]:
    """Events with their focus (not for `empty` content) and, for `full-resource`, the
    version's resource. The record must still be visible to the subscriber now (a patient
    restricted since the event hides it: the event is then told without its focus), and
    references to records the subscriber may not see are left out of the resource."""
    topic = TOPICS.get(subscription.topic)
    ids = {n.focus_id for n, _ in rows}
    visible = news_to(db, subscription, ids, filtered=False) if content != "empty" else set()
    access = subscriber(subscription.owner, subscription.scope).access
    events = []
    for notification, version in rows:
        if topic is None or notification.focus_id not in visible:
            events.append(Event(notification.event_number, notification.occurred))
            continue
        resource = None
        if content == "full-resource" and version is not None:
            resource = orjson.loads(version.document)
            drop_hidden_references(Store(db, access), resource)
        events.append(
            Event(
                notification.event_number,
                notification.occurred,
                (topic.resource_type, notification.focus_id),
                resource,
                created=notification.focus_version == 1,
            )
        )
    return events

"""Topic-based Subscriptions in R4, as the Subscriptions R5 Backport IG (1.1.0) defines
them: the topics we publish, the Subscription a client sends, and the notification
Bundles we send or answer `$status` / `$events` with.

An R4 Subscription names its topic in `criteria` (the topic's canonical URL), filters in
`criteria.extension[backport-filter-criteria]` ("Appointment?patient=Patient/x", ANDed),
the payload content (empty | id-only | full-resource) in
`channel.payload.extension[backport-payload-content]` and the heartbeat in
`channel.extension[backport-heartbeat-period]`. A notification is a `history` Bundle whose
first entry is the SubscriptionStatus Parameters (profile backport-subscription-status-r4).
Event numbers are strings there, as R4 has no 64-bit integer.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from mappings.codes import CANONICAL, EXT_GROUP_CAPACITY
from mappings.common import JSON, aware, client_elements, instant, meta, parse_resource
from mappings.errors import InvalidResource, Unprocessable
from store.models import Booking, GroupSession, Subscription
from store.subscriptions import SubscriptionSpec

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
EXT_FILTER = f"{BACKPORT}/backport-filter-criteria"
EXT_CONTENT = f"{BACKPORT}/backport-payload-content"
EXT_HEARTBEAT = f"{BACKPORT}/backport-heartbeat-period"
EXT_TIMEOUT = f"{BACKPORT}/backport-timeout"
EXT_MAX_COUNT = f"{BACKPORT}/backport-max-count"
STATUS_PROFILE = f"{BACKPORT}/backport-subscription-status-r4"
#: The R5 SubscriptionTopic, carried by an R4 Basic (cross-version extensions).
XVER = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic"

CONTENTS = ("empty", "id-only", "full-resource")
MAX_TIMEOUT_S = 60


def _status(resource: JSON | None) -> str | None:
    return None if resource is None else resource.get("status")


def _capacity(resource: JSON | None) -> Any:
    if resource is None:
        return None
    extensions = resource.get("extension", [])
    return (resource.get("status"), [e for e in extensions if e.get("url") == EXT_GROUP_CAPACITY])


Trigger = Callable[[JSON | None, JSON], bool]


@dataclass(frozen=True)
class Topic:
    """A SubscriptionTopic: which versions of which resource type it reports.
    `triggered(previous, current)`: previous is None for a new record."""

    code: str
    title: str
    description: str
    resource_type: str
    kind: str  # the store's table for the resource type
    triggered: Trigger
    previous: str  # the trigger as R5 queryCriteria, for the published topic
    current: str

    @property
    def url(self) -> str:
        return f"{CANONICAL}/SubscriptionTopic/{self.code}"


def _draft(previous: JSON | None, current: JSON) -> bool:
    was, now = _status(previous), _status(current)
    return (now == "proposed") != (was == "proposed")


TOPICS: dict[str, Topic] = {
    t.url: t
    for t in (
        Topic(
            "appointment",
            "Appointment booked, cancelled or changed",
            "Every new version of an Appointment: booked (directly, by resolving a draft, "
            "or promoted from the waitlist), cancelled, rescheduled or otherwise changed, "
            "and drafts stored.",
            "Appointment",
            Booking.__tablename__,
            lambda previous, current: True,
            "",
            "",
        ),
        Topic(
            "draft",
            "Draft created or resolved",
            "An Appointment enters status proposed (a draft occurrence of a series is "
            "stored) or leaves it (the draft is resolved into a booking, or cancelled).",
            "Appointment",
            Booking.__tablename__,
            _draft,
            "status:not=proposed",
            "status=proposed",
        ),
        Topic(
            "waitlist",
            "Waitlist entry promoted or offered",
            "An Appointment moves from status waitlist to booked (promoted into a freed "
            "place) or to pending (a place offered and held).",
            "Appointment",
            Booking.__tablename__,
            lambda previous, current: (
                _status(previous) == "waitlist" and _status(current) in ("booked", "pending")
            ),
            "status=waitlist",
            "status=booked,pending",
        ),
        Topic(
            "session-capacity",
            "Session capacity changed",
            "A Slot (group session) is created, or its capacity, booked count or status "
            "changes: places taken or freed, capacity raised or lowered, blocked.",
            "Slot",
            GroupSession.__tablename__,
            lambda previous, current: _capacity(previous) != _capacity(current),
            "",
            "",
        ),
    )
}


def topics_for(kind: str, previous: JSON | None, current: JSON) -> list[str]:
    """The topics (canonical URLs) a record version of `kind` (a table name) triggers."""
    return [url for url, t in TOPICS.items() if t.kind == kind and t.triggered(previous, current)]


# -- the Subscription resource ---------------------------------------------------------


def subscription_from_fhir(body: Any) -> SubscriptionSpec:
    """An R4 Subscription (Backport IG profile) as the store keeps it. Filters are checked
    by the caller against the topic's resource type (`filter_pairs`)."""
    parse_resource(body, "Subscription")
    criteria = body.get("criteria", "")
    topic = TOPICS.get(criteria)
    if topic is None:
        raise Unprocessable(
            f"criteria must be the canonical URL of one of our topics: {', '.join(TOPICS)}",
            expression="Subscription.criteria",
        )
    filters = [
        str(e.get("valueString", ""))
        for e in body.get("_criteria", {}).get("extension", [])
        if e.get("url") == EXT_FILTER
    ]
    for n, line in enumerate(filters):
        filter_pairs(topic, line, f"Subscription.criteria.extension[{n}]")
    channel = body["channel"]
    if channel.get("type") != "rest-hook":
        raise Unprocessable(
            "only the rest-hook channel is offered", expression="Subscription.channel.type"
        )
    endpoint = channel.get("endpoint")
    if not endpoint:
        raise Unprocessable(
            "a rest-hook channel needs its endpoint", expression="Subscription.channel.endpoint"
        )
    content = _extension(channel.get("_payload", {}), EXT_CONTENT, "valueCode") or "id-only"
    if content not in CONTENTS:
        raise InvalidResource(
            f"payload content must be one of {', '.join(CONTENTS)}",
            expression="Subscription.channel.payload.extension",
        )
    if content != "empty" and channel.get("payload") not in ("application/fhir+json", None):
        raise Unprocessable(
            "notifications are sent as application/fhir+json",
            expression="Subscription.channel.payload",
        )
    timeout = _extension(channel, EXT_TIMEOUT, "valueUnsignedInt")
    end = aware(body["end"], "Subscription.end") if body.get("end") else None
    return SubscriptionSpec(
        status=body["status"],
        topic=criteria,
        criteria="\n".join(filters),
        endpoint=endpoint,
        content=content,
        heartbeat_s=_extension(channel, EXT_HEARTBEAT, "valueUnsignedInt") or None,
        timeout_s=min(timeout or 10, MAX_TIMEOUT_S) or 10,
        document=orjson.dumps(client_elements(body, without=("status", "error", "end"))).decode(),
        end=end,
    )


def filter_pairs(topic: Topic, line: str, expression: str) -> list[tuple[str, str]]:
    """`Appointment?patient=Patient/x` as search pairs (the type must be the topic's)."""
    resource_type, _, query = line.partition("?")
    if resource_type != topic.resource_type or not query:
        raise Unprocessable(
            f"a filter of this topic reads {topic.resource_type}?<search parameters>, got {line!r}",
            expression=expression,
        )
    try:
        return parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise Unprocessable(f"{line!r} is not a search query", expression=expression) from None


def _extension(element: JSON, url: str, value: str) -> Any:
    for extension in element.get("extension", []):
        if extension.get("url") == url:
            return extension.get(value)
    return None


def subscription_to_fhir(subscription: Subscription) -> JSON:
    """The Subscription as stored, with its status, its end (as asked, or the creating
    token's expiry) and, in error or off, the reason."""
    resource: JSON = {
        "resourceType": "Subscription",
        "id": subscription.id,
        "meta": meta(subscription.version, subscription.last_updated),
        **orjson.loads(subscription.document),
        "status": subscription.status,
    }
    if subscription.ends is not None:
        resource["end"] = instant(subscription.ends)
    if subscription.error and subscription.status in ("error", "off"):
        resource["error"] = subscription.error
    return resource


def endpoint_origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of an endpoint, the port made explicit."""
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    try:
        port = parts.port or default
    except ValueError:
        port = None
    return parts.scheme, (parts.hostname or "").lower(), port


# -- notifications -----------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One event as notified: its number, when, and its focus (None when the content
    is empty, or the subscriber may no longer see the record); `resource` only for
    full-resource content; `created`: the focus version is the record's first."""

    number: int
    occurred: dt.datetime
    focus: tuple[str, str] | None = None
    resource: JSON | None = None
    created: bool = False


def status_parameters(
    subscription: Subscription, base: str, kind: str, events: Sequence[Event] = ()
) -> JSON:
    """SubscriptionStatus as R4 Parameters (backport-subscription-status-r4); `kind` is the
    notification type: handshake, heartbeat, event-notification, query-status, query-event."""
    parameters: list[JSON] = [
        {"name": "subscription", "valueReference": {"reference": _url(base, subscription)}},
        {"name": "topic", "valueCanonical": subscription.topic},
        {"name": "status", "valueCode": subscription.status},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(subscription.events)},
    ]
    for event in events:
        part: list[JSON] = [
            {"name": "event-number", "valueString": str(event.number)},
            {"name": "timestamp", "valueInstant": instant(event.occurred)},
        ]
        if event.focus is not None:
            resource_type, ident = event.focus
            part.append(
                {"name": "focus", "valueReference": {"reference": f"{resource_type}/{ident}"}}
            )
        parameters.append({"name": "notification-event", "part": part})
    if subscription.error and subscription.status in ("error", "off"):
        parameters.append(
            {
                "name": "error",
                "valueCodeableConcept": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/subscription-error",
                            "code": "no-response",
                        }
                    ],
                    "text": subscription.error,
                },
            }
        )
    return {"resourceType": "Parameters", "parameter": parameters}


def notification_bundle(
    subscription: Subscription,
    base: str,
    kind: str,
    events: Sequence[Event] = (),
    *,
    now: dt.datetime,
) -> JSON:
    """A notification (R4 Backport §Notifications): a `history` Bundle, the status first,
    then one entry per event with a focus (its resource only for full-resource)."""
    entries: list[JSON] = [
        {
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": status_parameters(subscription, base, kind, events),
            "request": {"method": "GET", "url": f"Subscription/{subscription.id}/$status"},
            "response": {"status": "200"},
        }
    ]
    for event in events:
        if event.focus is None:
            continue
        resource_type, ident = event.focus
        entry: JSON = {"fullUrl": f"{base}/{resource_type}/{ident}"}
        if event.resource is not None:
            entry["resource"] = event.resource
        entry["request"] = {
            "method": "POST" if event.created else "PUT",
            "url": resource_type if event.created else f"{resource_type}/{ident}",
        }
        entry["response"] = {"status": "201" if event.created else "200"}
        entries.append(entry)
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": instant(now)},
        "type": "history",
        "timestamp": instant(now),
        "entry": entries,
    }


def status_bundle(subscriptions: Sequence[Subscription], base: str) -> JSON:
    """`$status`'s answer: a searchset Bundle of SubscriptionStatus Parameters."""
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(subscriptions),
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": status_parameters(s, base, "query-status"),
                "search": {"mode": "match"},
            }
            for s in subscriptions
        ],
    }


def _url(base: str, subscription: Subscription) -> str:
    return f"{base}/Subscription/{subscription.id}"


# -- the published topics ------------------------------------------------------------


def topic_basic(topic: Topic, version: str, date: str) -> JSON:
    """A topic as an R4 Basic carrying the R5 SubscriptionTopic in cross-version
    extensions (the Backport IG's way to publish topics in R4)."""
    trigger: list[JSON] = [
        {"url": "description", "valueMarkdown": topic.description},
        {
            "url": "resource",
            "valueUri": f"http://hl7.org/fhir/StructureDefinition/{topic.resource_type}",
        },
        {"url": "supportedInteraction", "valueCode": "create"},
        {"url": "supportedInteraction", "valueCode": "update"},
    ]
    if topic.previous or topic.current:
        criteria: list[JSON] = []
        if topic.previous:
            criteria.append({"url": "previous", "valueString": topic.previous})
        if topic.current:
            criteria.append({"url": "current", "valueString": topic.current})
        criteria.append({"url": "requireBoth", "valueBoolean": bool(topic.previous)})
        trigger.append({"url": "queryCriteria", "extension": criteria})
    return {
        "resourceType": "Basic",
        "id": topic.code,
        "extension": [
            {"url": f"{XVER}.url", "valueUri": topic.url},
            {"url": f"{XVER}.version", "valueString": version},
            {"url": f"{XVER}.title", "valueString": topic.title},
            {"url": f"{XVER}.date", "valueDateTime": date},
            {"url": f"{XVER}.status", "valueCode": "active"},
            {"url": f"{XVER}.description", "valueMarkdown": topic.description},
            {"url": f"{XVER}.resourceTrigger", "extension": trigger},
            {
                "url": f"{XVER}.canFilterBy",
                "extension": [
                    {
                        "url": "description",
                        "valueMarkdown": (
                            f"Any {topic.resource_type} search parameter this server declares "
                            f"(e.g. {_example_filter(topic)}); several filters are ANDed."
                        ),
                    },
                    {"url": "resource", "valueUri": topic.resource_type},
                ],
            },
        ],
        "code": {
            "coding": [{"system": "http://hl7.org/fhir/fhir-types", "code": "SubscriptionTopic"}]
        },
    }


def _example_filter(topic: Topic) -> str:
    if topic.resource_type == "Appointment":
        return "Appointment?actor=Practitioner/x, Appointment?patient=Patient/y"
    return "Slot?schedule=Schedule/x"

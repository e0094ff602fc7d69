"""The package's Subscription artifacts: our $status and $events (the Subscriptions
Backport IG's operations, named as their `base`), and the topics, as R4 Basic."""

from __future__ import annotations

import html

from conformance.package.artifacts.common import JSON, canonical, tail
from conformance.package.artifacts.operations import _parameter
from fhir_facade.capability import RELEASE_DATE, SOFTWARE_VERSION
from fhir_facade.notify.conformance import BACKPORT_OPERATIONS, OPERATION_DOCS, OPERATIONS
from mappings.subscription import TOPICS, topic_basic


def subscription_operation(code: str) -> JSON:
    url = OPERATIONS[code]
    name = f"Subscription{code.capitalize()}"
    od = canonical("OperationDefinition", tail(url), url, name, f"Subscription ${code}")
    od.update(
        {
            "kind": "operation",
            "description": OPERATION_DOCS[code],
            "affectsState": False,
            "code": code,
            "base": f"{BACKPORT_OPERATIONS}/backport-subscription-{code}",
            "resource": ["Subscription"],
            "system": False,
            "type": False,
            "instance": True,
        }
    )
    if code == "events":
        od["parameter"] = [
            _parameter(
                "eventsSinceNumber", "in", 0, "1", "string", "The first event number (default 1)."
            ),
            _parameter(
                "eventsUntilNumber",
                "in",
                0,
                "1",
                "string",
                "The last event number (default the latest).",
            ),
            _parameter(
                "content",
                "in",
                0,
                "1",
                "code",
                "empty | id-only | full-resource (default the subscription's own).",
            ),
            _parameter(
                "return",
                "out",
                1,
                "1",
                "Bundle",
                "A notification Bundle (history), the SubscriptionStatus first (type query-event).",
            ),
        ]
    else:
        od["parameter"] = [
            _parameter(
                "return",
                "out",
                1,
                "1",
                "Bundle",
                "A searchset Bundle of SubscriptionStatus Parameters (type query-status).",
            )
        ]
    return od


def operations() -> list[JSON]:
    return [subscription_operation("status"), subscription_operation("events")]


def topics() -> list[JSON]:
    """The topics a Subscription's criteria may name, as R4 Basic resources, each with a
    narrative of its own (a Basic has no title or description element)."""
    found = []
    for topic in TOPICS.values():
        basic = topic_basic(topic, SOFTWARE_VERSION, RELEASE_DATE)
        title = html.escape(topic.title, quote=False)
        text = html.escape(f"{topic.url}: {topic.description}", quote=False)
        div = f'<div xmlns="http://www.w3.org/1999/xhtml"><p><b>{title}</b></p><p>{text}</p></div>'
        head = {k: basic[k] for k in ("resourceType", "id")}
        found.append({**head, "text": {"status": "generated", "div": div}, **basic})
    return found

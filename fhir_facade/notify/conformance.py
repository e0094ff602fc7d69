"""What the CapabilityStatement and the conformance package say about Subscriptions."""

from __future__ import annotations

from typing import Any

from mappings.codes import CANONICAL

#: Served beside the registry's types (routes of their own: fhir_facade.notify.api).
RESOURCE_TYPE = "Subscription"
BACKPORT_OPERATIONS = "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition"
#: Our definitions of the Backport IG's operations (each names the IG's as its base).
OPERATIONS = {
    "status": f"{CANONICAL}/OperationDefinition/Subscription-status",
    "events": f"{CANONICAL}/OperationDefinition/Subscription-events",
}
OPERATION_DOCS = {
    "status": (
        "The subscription's SubscriptionStatus (R4 Parameters, Backport IG "
        "backport-subscription-status-r4) in a searchset Bundle: status, the events since "
        "it started, and the error while deliveries fail. GET or POST."
    ),
    "events": (
        "Past events by number (eventsSinceNumber, eventsUntilNumber; content empty, "
        "id-only or full-resource), as a notification Bundle of type history with "
        "notification type query-event: at most 100 events per answer, each told as "
        "the subscriber's token may see it now. GET or POST."
    ),
}
DOCUMENTATION = (
    "Topic-based subscriptions (Subscriptions R5 Backport IG 1.1.0, R4): criteria is one of "
    "our topics' canonical URLs (the SubscriptionTopic Basic resources of the conformance "
    "package: appointment, draft, waitlist, session-capacity); filters in the "
    "backport-filter-criteria extension (Appointment?actor=Practitioner/x, "
    "Appointment?patient=Patient/y, Slot?schedule=Schedule/z; ANDed); a rest-hook channel "
    "to an https endpoint; payload content empty, id-only or full-resource; heartbeat "
    "period. New subscriptions are requested until the endpoint acknowledges the "
    "handshake, then active; failing deliveries put them in error (the reason in "
    "Subscription.error) and, after repeated failures, off. Events are numbered per "
    "subscription and delivered at least once, in order. A notification reveals only "
    "what its creator may read now: a registered API client's subscription is bounded by "
    "the client's registered scopes as they are now and turned off when the client is "
    "removed; one made with another token (a user's) ends (Subscription.end) no later than "
    "that token expires. A subscription is its creator's alone. Endpoints on loopback, "
    "private or link-local addresses, or on this server's host, are refused (422) unless "
    "allowed by configuration, and checked again before each send. Create is also accepted "
    "as a POST entry of a batch or transaction Bundle; read, search, update, delete and the "
    "operations are served here only. Needs user/Subscription.* scopes, and search on the "
    "topic's resource type."
)


def subscription_resource() -> dict[str, Any]:
    """The CapabilityStatement's rest.resource entry for Subscription."""
    return {
        "type": "Subscription",
        "documentation": DOCUMENTATION,
        "interaction": [
            {"code": code} for code in ("read", "search-type", "create", "update", "delete")
        ],
        "versioning": "versioned-update",
        "readHistory": False,
        "updateCreate": False,
        "conditionalCreate": False,
        "conditionalUpdate": False,
        "conditionalDelete": "not-supported",
        "searchParam": [
            {
                "name": "status",
                "type": "token",
                "documentation": "requested | active | error | off (the caller's own only)",
            }
        ],
        "operation": [
            {"name": code, "definition": url, "documentation": OPERATION_DOCS[code]}
            for code, url in OPERATIONS.items()
        ],
    }

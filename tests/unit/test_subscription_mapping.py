"""The Subscription mapping (R4 Backport IG): topics' triggers, parsing, notifications."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from mappings.codes import EXT_GROUP_CAPACITY
from mappings.errors import InvalidResource, Unprocessable
from mappings.subscription import (
    EXT_CONTENT,
    EXT_FILTER,
    EXT_HEARTBEAT,
    TOPICS,
    Event,
    notification_bundle,
    status_parameters,
    subscription_from_fhir,
    subscription_to_fhir,
    topic_basic,
    topics_for,
)
from store.models import Subscription
from tests.validation import assert_valid

BASE = "http://fhir-facade.org/fhir/SubscriptionTopic"
NOW = dt.datetime(2027, 1, 4, 15, 0, tzinfo=dt.UTC)


def appointment(status: str) -> dict[str, Any]:
    return {"resourceType": "Appointment", "status": status}


def slot(capacity: int, booked: int, status: str = "free") -> dict[str, Any]:
    parts = [
        {"url": "capacity", "valueUnsignedInt": capacity},
        {"url": "booked", "valueUnsignedInt": booked},
    ]
    return {
        "resourceType": "Slot",
        "status": status,
        "extension": [{"url": EXT_GROUP_CAPACITY, "extension": parts}],
    }


@pytest.mark.parametrize(
    ("previous", "current", "topics"),
    [
        (None, "booked", {"appointment"}),
        ("booked", "cancelled", {"appointment"}),
        (None, "proposed", {"appointment", "draft"}),
        ("proposed", "booked", {"appointment", "draft"}),
        ("proposed", "proposed", {"appointment"}),
        ("waitlist", "booked", {"appointment", "waitlist"}),
        ("waitlist", "pending", {"appointment", "waitlist"}),
        ("pending", "booked", {"appointment"}),
        (None, "waitlist", {"appointment"}),
    ],
)
def test_an_appointment_version_triggers_the_topics_its_status_change_names(
    previous, current, topics
):
    before = appointment(previous) if previous else None
    found = topics_for("booking", before, appointment(current))
    assert found == [
        f"{BASE}/{t}"
        for t in ("appointment", "draft", "waitlist", "session-capacity")
        if t in topics
    ]


def test_a_session_triggers_its_topic_when_places_capacity_or_status_change():
    capacity = f"{BASE}/session-capacity"
    assert topics_for("group_session", None, slot(10, 0)) == [capacity]
    assert topics_for("group_session", slot(10, 3), slot(10, 4)) == [capacity]
    assert topics_for("group_session", slot(10, 3), slot(12, 3)) == [capacity]
    assert topics_for("group_session", slot(10, 3), slot(10, 3, "busy-unavailable")) == [capacity]
    renamed = {**slot(10, 3), "comment": "moved to room 4"}
    assert topics_for("group_session", slot(10, 3), renamed) == []


def subscription(**channel: Any) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "calendar sync",
        "criteria": f"{BASE}/appointment",
        "_criteria": {
            "extension": [{"url": EXT_FILTER, "valueString": "Appointment?actor=Practitioner/p1"}]
        },
        "channel": {
            "type": "rest-hook",
            "endpoint": "https://ehr.example.org/hook",
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": EXT_CONTENT, "valueCode": "id-only"}]},
            "extension": [{"url": EXT_HEARTBEAT, "valueUnsignedInt": 120}],
            **channel,
        },
    }


def test_a_backport_subscription_is_read_with_its_filters_content_and_heartbeat():
    spec = subscription_from_fhir(subscription())
    assert (spec.topic, spec.criteria, spec.content, spec.heartbeat_s) == (
        f"{BASE}/appointment",
        "Appointment?actor=Practitioner/p1",
        "id-only",
        120,
    )


@pytest.mark.parametrize(
    ("body", "error", "expression"),
    [
        (
            {**subscription(), "criteria": "Appointment?status=booked"},
            Unprocessable,
            "Subscription.criteria",
        ),
        (subscription(type="websocket"), Unprocessable, "Subscription.channel.type"),
        (
            subscription(_payload={"extension": [{"url": EXT_CONTENT, "valueCode": "everything"}]}),
            InvalidResource,
            "Subscription.channel.payload.extension",
        ),
        (
            {
                **subscription(),
                "_criteria": {"extension": [{"url": EXT_FILTER, "valueString": "Slot?schedule=x"}]},
            },
            Unprocessable,
            "Subscription.criteria.extension[0]",
        ),
    ],
)
def test_a_subscription_we_cannot_serve_is_refused_naming_the_element(body, error, expression):
    with pytest.raises(error) as raised:
        subscription_from_fhir(body)
    assert raised.value.expression == expression


def stored(status: str = "active", error: str | None = None) -> Subscription:
    spec = subscription_from_fhir(subscription())
    return Subscription(
        id="sub-1",
        status=status,
        topic=spec.topic,
        events=7,
        document=spec.document,
        version=2,
        last_updated=NOW,
        error=error,
    )


def test_the_stored_subscription_shows_its_status_and_the_reason_it_failed():
    resource = subscription_to_fhir(stored("error", "the endpoint answered 503"))
    assert_valid(resource)
    assert (resource["status"], resource["error"]) == ("error", "the endpoint answered 503")
    assert resource["meta"]["versionId"] == "2"


def test_a_notification_is_a_history_bundle_with_the_status_first_and_each_focus():
    events = [
        Event(
            6,
            NOW,
            ("Appointment", "a1"),
            {
                "resourceType": "Appointment",
                "id": "a1",
                "status": "cancelled",
                "participant": [{"status": "accepted"}],
            },
        ),
        Event(7, NOW, ("Appointment", "a2"), None, created=True),
        Event(8, NOW),  # no focus: its record is no longer visible to the subscriber
    ]
    bundle = notification_bundle(stored(), "https://h/fhir", "event-notification", events, now=NOW)
    assert_valid(bundle)
    assert bundle["type"] == "history"
    status, first, second = bundle["entry"]
    assert status["resource"]["resourceType"] == "Parameters"
    assert first["request"] == {"method": "PUT", "url": "Appointment/a1"}
    assert second["request"] == {"method": "POST", "url": "Appointment"}
    assert "resource" not in second
    numbers = [
        next(p["valueString"] for p in e["part"] if p["name"] == "event-number")
        for e in status["resource"]["parameter"]
        if e["name"] == "notification-event"
    ]
    assert numbers == ["6", "7", "8"]


def test_the_status_names_subscription_topic_type_and_the_event_count():
    parameters = status_parameters(stored(), "https://h/fhir", "heartbeat")
    assert_valid(parameters)
    values = {
        p["name"]: next(v for k, v in p.items() if k.startswith("value"))
        for p in parameters["parameter"]
    }
    assert values == {
        "subscription": {"reference": "https://h/fhir/Subscription/sub-1"},
        "topic": f"{BASE}/appointment",
        "status": "active",
        "type": "heartbeat",
        "events-since-subscription-start": "7",
    }


def test_every_topic_is_published_as_a_valid_r4_basic():
    for topic in TOPICS.values():
        basic = topic_basic(topic, "0.1.0", "2026-11-26")
        assert_valid(basic)
        assert {
            "url": "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic.url",
            "valueUri": topic.url,
        } in basic["extension"]

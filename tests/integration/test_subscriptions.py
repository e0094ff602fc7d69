"""Subscriptions (R4 Backport IG) end to end inside one process: a real HTTP receiver,
the delivery worker run round by round, on SQLite and PostgreSQL.

What a subscriber relies on: every change it may see arrives, in order, numbered
without gaps; what it may not see never arrives; a failing endpoint is visible as the
subscription's error and, at last, off; `$events` gives back whatever was missed.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from fhir_facade.notify.delivery import Deliverer, DeliverySettings
from mappings.subscription import EXT_CONTENT, EXT_FILTER, EXT_HEARTBEAT, TOPICS
from store.access import STAFF
from store.booking import BookingRequest, Placement, store_drafts
from store.clients import ClientSpec, register_client
from store.db import Database
from store.models import BookingStatus, OrganizationKind, Patient, ProviderGroup, Subscription
from tests.factories import MONDAY, make_clinic, make_coverage, make_patient, make_session
from tests.integration.helpers import appointment, fhir, outcome, post, put
from tests.receiver import Receiver, events_in, receiving, status_of
from tests.validation import assert_valid

APPOINTMENTS = f"{TOPICS and 'http://fhir-facade.org/fhir/SubscriptionTopic/appointment'}"
SESSIONS = "http://fhir-facade.org/fhir/SubscriptionTopic/session-capacity"
STAFF_SCOPE = "user/Appointment.crus user/Slot.rs user/Patient.rs user/Subscription.cruds"
PAYER_SCOPE = (
    "system/Coverage.rs?payor=Organization/payer-a system/Patient.rs system/Appointment.rs "
    "system/Subscription.cruds"
)


@dataclass
class World:
    provider: str
    other_provider: str
    schedule: str
    sessions: list[str]
    ann: str  # payer A's member
    bob: str  # payer B's member
    rex: str  # restricted, payer A's member
    cov: dict[str, str]


@pytest.fixture
def db(app: Flask) -> Database:
    """The app's own database: its writes keep versions, and so write the outbox."""
    app.config["FHIR_FACADE_SETTINGS"].subscription_http_loopback = True
    database: Database = app.extensions["fhir_facade.db"]
    return database


@pytest.fixture
def world(db: Database) -> World:
    def build(s: Session) -> World:
        clinic = make_clinic(s)
        for payer in ("payer-a", "payer-b"):
            s.add(ProviderGroup(id=payer, name=payer, kind=OrganizationKind.PAYER))
        s.flush()
        sessions = [
            make_session(s, clinic, capacity=3, start=MONDAY + dt.timedelta(days=n)).id
            for n in range(3)
        ]
        ann = make_patient(s, family="Adams", self_pay=False).id
        bob = make_patient(s, family="Baker", self_pay=False).id
        rex = make_patient(s, family="Rhodes", self_pay=False, restricted=True).id
        cov = {
            "ann": make_coverage(s, ann, payor_id="payer-a", order=1).id,
            "bob": make_coverage(s, bob, payor_id="payer-b", order=1).id,
            "rex": make_coverage(s, rex, payor_id="payer-a", order=1).id,
        }
        return World(
            clinic.provider_id,
            clinic.other_provider_id,
            clinic.schedule_id,
            sessions,
            ann,
            bob,
            rex,
            cov,
        )

    return db.write(build)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as r:
        yield r


Deliver = Callable[..., int]


@pytest.fixture
def deliver(db: Database) -> Deliver:
    """Run delivery rounds until one sends nothing; the notifications sent."""

    def rounds(max_failures: int = 6, retry: dt.timedelta = dt.timedelta(0)) -> int:
        settings = DeliverySettings(retry=retry, max_failures=max_failures, http_loopback=True)
        deliverer = Deliverer(db, settings)
        total = 0
        for _ in range(50):
            sent = deliverer.run_once()
            total += sent
            if not sent:
                return total
        raise AssertionError("delivery did not settle")

    return rounds


def subscription(
    endpoint: str,
    *filters: str,
    topic: str = APPOINTMENTS,
    content: str = "full-resource",
    heartbeat: int | None = None,
) -> dict[str, Any]:
    channel: dict[str, Any] = {
        "type": "rest-hook",
        "endpoint": endpoint,
        "payload": "application/fhir+json",
        "_payload": {"extension": [{"url": EXT_CONTENT, "valueCode": content}]},
        "header": ["Authorization: Bearer receiver-secret"],
    }
    if heartbeat is not None:
        channel["extension"] = [{"url": EXT_HEARTBEAT, "valueUnsignedInt": heartbeat}]
    body: dict[str, Any] = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "keep the EHR's calendar current",
        "criteria": topic,
        "channel": channel,
    }
    if filters:
        body["_criteria"] = {"extension": [{"url": EXT_FILTER, "valueString": f} for f in filters]}
    return body


def subscribe(client: FlaskClient, headers: dict[str, str], body: dict[str, Any]) -> str:
    created = fhir(post(client, "/fhir/Subscription", body, headers), 201)
    assert created["status"] == "requested"
    return str(created["id"])


def book(
    client: FlaskClient, headers: dict[str, str], session: str, patient: str, cov: str
) -> dict[str, Any]:
    body = appointment(session, patient, supportingInformation=[{"reference": f"Coverage/{cov}"}])
    return fhir(post(client, "/fhir/Appointment", body, headers), 201)


def cancel(client: FlaskClient, headers: dict[str, str], booked: dict[str, Any]) -> dict[str, Any]:
    url = f"/fhir/Appointment/{booked['id']}"
    return fhir(put(client, url, {**booked, "status": "cancelled"}, headers), 200)


def received(receiver: Receiver) -> list[tuple[int, str | None, str | None]]:
    """(event number, focus, status of the resource sent) for each event, deduplicated."""
    return [
        (n, e["focus"], (e["resource"] or {}).get("status"))
        for n, e in sorted(receiver.events().items())
    ]


def test_a_subscriber_receives_every_booking_cancellation_and_draft_resolution_in_order(
    client: FlaskClient, db: Database, world: World, receiver: Receiver, deliver: Deliver, mint
):
    staff = mint(f"{STAFF_SCOPE} __patient.blocked")
    ident = subscribe(
        client,
        staff,
        subscription(receiver.url, f"Appointment?actor=Practitioner/{world.provider}"),
    )
    deliver()
    (handshake,) = receiver.notifications
    assert status_of(handshake)["type"] == "handshake"
    assert receiver.headers[0]["Authorization"] == "Bearer receiver-secret"
    assert fhir(client.get(f"/fhir/Subscription/{ident}", headers=staff), 200)["status"] == "active"

    first = book(client, staff, world.sessions[0], world.ann, world.cov["ann"])
    second = book(client, staff, world.sessions[1], world.bob, world.cov["bob"])
    cancel(client, staff, first)
    request = BookingRequest(
        world.ann,
        None,
        BookingStatus.PROPOSED,
        provider_ids=(world.provider,),
        start=MONDAY + dt.timedelta(days=7),
        end=MONDAY + dt.timedelta(days=7, minutes=90),
        coverage_ids=(world.cov["ann"],),
    )
    (result,) = db.write(lambda s: store_drafts(s, [Placement(request)], STAFF))
    draft = result.booking.id
    stored = fhir(client.get(f"/fhir/Appointment/{draft}", headers=staff), 200)
    chosen = {**stored, "status": "booked", "slot": [{"reference": f"Slot/{world.sessions[2]}"}]}
    fhir(put(client, f"/fhir/Appointment/{draft}", chosen, staff), 200)
    deliver()

    for bundle in receiver.notifications:
        assert_valid(bundle)
        assert bundle["type"] == "history"
    expected = [
        (1, f"Appointment/{first['id']}", "booked"),
        (2, f"Appointment/{second['id']}", "booked"),
        (3, f"Appointment/{first['id']}", "cancelled"),
        (4, f"Appointment/{draft}", "proposed"),
        (5, f"Appointment/{draft}", "booked"),
    ]
    assert received(receiver) == expected
    numbers = [n for b in receiver.of_type("event-notification") for n in events_in(b)]
    assert numbers == [1, 2, 3, 4, 5]  # in order, each once

    caught_up = fhir(client.get(f"/fhir/Subscription/{ident}/$events", headers=staff), 200)
    assert status_of(caught_up)["type"] == "query-event"
    assert sorted((n, e["focus"]) for n, e in events_in(caught_up).items()) == [
        (n, focus) for n, focus, _ in expected
    ]
    status = fhir(client.get(f"/fhir/Subscription/{ident}/$status", headers=staff), 200)
    (entry,) = status["entry"]
    assert {p["name"]: p.get("valueString") for p in entry["resource"]["parameter"]}[
        "events-since-subscription-start"
    ] == "5"


def _thirty_drafts(world: World) -> list[Placement]:
    """Thirty drafts for Ann with the world's provider: 30 versions in one transaction."""
    return [
        Placement(
            BookingRequest(
                world.ann,
                None,
                BookingStatus.PROPOSED,
                provider_ids=(world.provider,),
                start=MONDAY + dt.timedelta(days=day),
                end=MONDAY + dt.timedelta(days=day, minutes=90),
            )
        )
        for day in range(30)
    ]


def test_a_transaction_writing_many_versions_gives_each_an_event(
    client: FlaskClient, db: Database, world: World, receiver: Receiver, deliver: Deliver, mint
):
    """Many versions in one transaction (a series) are written by a plain INSERT and the
    question whether some subscription listens is asked apart (store.history): every
    version still gets its event, in the same transaction."""
    staff = mint(STAFF_SCOPE)
    subscribe(
        client,
        staff,
        subscription(receiver.url, f"Appointment?actor=Practitioner/{world.provider}"),
    )
    deliver()
    drafts = _thirty_drafts(world)
    made = db.write(lambda s: [r.booking.id for r in store_drafts(s, drafts, STAFF)])
    deliver()

    assert received(receiver) == [
        (n, f"Appointment/{ident}", "proposed") for n, ident in enumerate(sorted(made), 1)
    ]


def test_many_versions_without_subscribers_write_no_outbox_rows(
    client: FlaskClient, db: Database, world: World
):
    from sqlalchemy import func, select

    from store.models import Notification

    drafts = _thirty_drafts(world)
    assert len(db.write(lambda s: store_drafts(s, drafts, STAFF))) == 30
    with db.reading() as s:
        assert s.scalar(select(func.count()).select_from(Notification)) == 0


def test_a_filter_on_the_patient_notifies_that_patients_appointments_only(
    client: FlaskClient, world: World, receiver: Receiver, deliver: Deliver, mint
):
    staff = mint(STAFF_SCOPE)
    subscribe(client, staff, subscription(receiver.url, f"Appointment?patient=Patient/{world.bob}"))
    book(client, staff, world.sessions[0], world.ann, world.cov["ann"])
    bobs = book(client, staff, world.sessions[0], world.bob, world.cov["bob"])
    deliver()

    assert received(receiver) == [(1, f"Appointment/{bobs['id']}", "booked")]


def test_restricted_patients_and_other_payers_members_are_never_notified(
    client: FlaskClient, world: World, deliver: Deliver, mint
):
    with receiving() as staff_view, receiving() as payer_view, receiving() as privacy_view:
        subscribe(client, mint(STAFF_SCOPE), subscription(staff_view.url))
        subscribe(client, mint(PAYER_SCOPE), subscription(payer_view.url))
        privacy = mint(f"{STAFF_SCOPE} __patient.blocked")
        subscribe(client, privacy, subscription(privacy_view.url))
        ann = book(client, privacy, world.sessions[0], world.ann, world.cov["ann"])
        bob = book(client, privacy, world.sessions[0], world.bob, world.cov["bob"])
        rex = book(client, privacy, world.sessions[0], world.rex, world.cov["rex"])
        deliver()

        def foci(receiver: Receiver) -> list[str | None]:
            return [focus for _, focus, _ in received(receiver)]

        assert foci(staff_view) == [f"Appointment/{ann['id']}", f"Appointment/{bob['id']}"]
        assert foci(payer_view) == [f"Appointment/{ann['id']}"]
        assert foci(privacy_view) == [f"Appointment/{a['id']}" for a in (ann, bob, rex)]
        for view in (staff_view, payer_view):
            sent = str(view.notifications)
            assert world.rex not in sent and rex["id"] not in sent


def test_a_patient_restricted_after_the_event_is_told_without_its_focus(
    client: FlaskClient, db: Database, world: World, receiver: Receiver, deliver: Deliver, mint
):
    staff = mint(STAFF_SCOPE)
    ident = subscribe(client, staff, subscription(receiver.url))
    deliver()
    booked = book(client, staff, world.sessions[0], world.ann, world.cov["ann"])

    def restrict(s: Session) -> None:
        patient = s.get(Patient, world.ann)
        assert patient is not None
        patient.restricted = True
        patient.touch()

    db.write(restrict)
    deliver()

    assert received(receiver) == [(1, None, None)]
    assert booked["id"] not in str(receiver.notifications)
    missed = fhir(client.get(f"/fhir/Subscription/{ident}/$events", headers=staff), 200)
    assert booked["id"] not in str(missed)


def test_a_failing_endpoint_shows_the_error_then_turns_the_subscription_off(
    client: FlaskClient, world: World, receiver: Receiver, deliver: Deliver, mint
):
    staff = mint(STAFF_SCOPE)
    ident = subscribe(client, staff, subscription(receiver.url))
    receiver.failing = 1
    deliver(max_failures=3)  # no backoff: each round retries at once
    failing = fhir(client.get(f"/fhir/Subscription/{ident}", headers=staff), 200)
    assert failing["status"] == "error"
    assert "503" in failing["error"]
    status = fhir(client.get(f"/fhir/Subscription/{ident}/$status", headers=staff), 200)
    assert "503" in str(status["entry"][0]["resource"])

    receiver.failing = 1000
    deliver(max_failures=3)
    deliver(max_failures=3)
    off = fhir(client.get(f"/fhir/Subscription/{ident}", headers=staff), 200)
    assert off["status"] == "off"
    assert "turned off after 3 failed deliveries" in off["error"]


def test_events_missed_while_the_endpoint_failed_arrive_in_order_once_it_answers(
    client: FlaskClient, world: World, receiver: Receiver, deliver: Deliver, mint
):
    staff = mint(STAFF_SCOPE)
    subscribe(client, staff, subscription(receiver.url, content="id-only"))
    deliver()
    booked = [
        book(client, staff, world.sessions[n], world.ann, world.cov["ann"])["id"] for n in range(3)
    ]
    receiver.failing = 2
    for _ in range(3):  # two rounds end on a failure; the third sends everything
        deliver()

    assert received(receiver) == [(n + 1, f"Appointment/{b}", None) for n, b in enumerate(booked)]


def test_a_heartbeat_arrives_when_nothing_happened_for_its_period(
    client: FlaskClient, world: World, receiver: Receiver, deliver: Deliver, mint
):
    subscribe(client, mint(STAFF_SCOPE), subscription(receiver.url, heartbeat=1))
    deliver()
    time.sleep(1.1)
    deliver()

    kinds = [status_of(n)["type"] for n in receiver.notifications]
    assert kinds[:2] == ["handshake", "heartbeat"]


def test_a_session_capacity_subscriber_hears_of_places_taken(
    client: FlaskClient, world: World, receiver: Receiver, deliver: Deliver, mint
):
    staff = mint(STAFF_SCOPE)
    subscribe(
        client,
        staff,
        subscription(receiver.url, f"Slot?schedule=Schedule/{world.schedule}", topic=SESSIONS),
    )
    book(client, staff, world.sessions[1], world.ann, world.cov["ann"])
    deliver()

    ((number, focus, status),) = received(receiver)
    assert (number, focus, status) == (1, f"Slot/{world.sessions[1]}", "free")
    (resource,) = [e["resource"] for e in receiver.events().values()]
    capacity = resource["extension"][0]["extension"]
    assert {"url": "booked", "valueUnsignedInt": 1} in capacity


@pytest.mark.parametrize(
    ("change", "status", "expression"),
    [
        (lambda b: {**b, "criteria": "http://example.org/topic"}, 422, "Subscription.criteria"),
        (
            lambda b: {**b, "channel": {**b["channel"], "endpoint": "http://example.org/hook"}},
            422,
            "Subscription.channel.endpoint",
        ),
        (
            lambda b: {**b, "channel": {**b["channel"], "endpoint": "http://localhost/fhir"}},
            422,
            "Subscription.channel.endpoint",
        ),
        (
            lambda b: {
                **b,
                "_criteria": {
                    "extension": [{"url": EXT_FILTER, "valueString": "Appointment?nope=1"}]
                },
            },
            400,
            "nope",
        ),
        (
            lambda b: {**b, "channel": {**b["channel"], "type": "email"}},
            422,
            "Subscription.channel.type",
        ),
    ],
)
def test_a_subscription_we_cannot_honour_is_refused_and_nothing_is_stored(
    client: FlaskClient, app: Flask, world: World, mint, change, status, expression
):
    app.config["FHIR_FACADE_SETTINGS"].base_url = "http://localhost/fhir"
    staff = mint(STAFF_SCOPE)
    body = change(subscription("https://ehr.example.org/hook"))
    outcome(post(client, "/fhir/Subscription", body, staff), status, expression=expression)
    assert fhir(client.get("/fhir/Subscription", headers=staff), 200)["total"] == 0


def test_plain_http_is_refused_unless_allowed_for_loopback(client: FlaskClient, app: Flask, mint):
    app.config["FHIR_FACADE_SETTINGS"].subscription_http_loopback = False
    staff = mint(STAFF_SCOPE)
    body = subscription("http://127.0.0.1:9/hook")
    outcome(
        post(client, "/fhir/Subscription", body, staff),
        422,
        expression="Subscription.channel.endpoint",
    )
    fhir(
        post(client, "/fhir/Subscription", subscription("https://ehr.example.org/hook"), staff), 201
    )


def test_subscribing_needs_the_right_to_search_the_topics_resources(client: FlaskClient, db, mint):
    body = subscription("https://ehr.example.org/hook")
    outcome(post(client, "/fhir/Subscription", body, mint("user/Subscription.cruds")), 403)
    outcome(post(client, "/fhir/Subscription", body, mint("user/Appointment.rs")), 403)


def test_a_subscription_is_its_creators_alone(client: FlaskClient, app: Flask, db, mint):
    ident = subscribe(client, mint(STAFF_SCOPE), subscription("https://ehr.example.org/hook"))
    token = app.extensions["fhir_facade.tokens"].mint(
        "someone-else", STAFF_SCOPE, dt.timedelta(hours=1)
    )
    other = {"Authorization": f"Bearer {token}"}
    for url in (
        f"/fhir/Subscription/{ident}",
        f"/fhir/Subscription/{ident}/$status",
        f"/fhir/Subscription/{ident}/$events",
    ):
        outcome(client.get(url, headers=other), 404)
    assert fhir(client.get("/fhir/Subscription", headers=other), 200)["total"] == 0
    assert client.delete(f"/fhir/Subscription/{ident}", headers=other).status_code == 404


def test_turning_a_subscription_off_stops_its_events_and_on_again_starts_a_handshake(
    client: FlaskClient, world: World, receiver: Receiver, deliver: Deliver, mint
):
    staff = mint(STAFF_SCOPE)
    ident = subscribe(client, staff, subscription(receiver.url))
    deliver()
    stored = fhir(client.get(f"/fhir/Subscription/{ident}", headers=staff), 200)
    fhir(put(client, f"/fhir/Subscription/{ident}", {**stored, "status": "off"}, staff), 200)
    book(client, staff, world.sessions[0], world.ann, world.cov["ann"])
    deliver()
    assert receiver.events() == {}

    stored = fhir(client.get(f"/fhir/Subscription/{ident}", headers=staff), 200)
    outcome(
        put(
            client,
            f"/fhir/Subscription/{ident}",
            {**stored, "status": "requested"},
            {**staff, "If-Match": 'W/"1"'},
        ),
        412,
    )
    fhir(put(client, f"/fhir/Subscription/{ident}", {**stored, "status": "requested"}, staff), 200)
    book(client, staff, world.sessions[1], world.ann, world.cov["ann"])
    deliver()
    assert [status_of(n)["type"] for n in receiver.notifications] == [
        "handshake",
        "handshake",
        "event-notification",
    ]
    assert [n for n, _, _ in received(receiver)] == [1]
    assert client.delete(f"/fhir/Subscription/{ident}", headers=staff).status_code == 204
    outcome(client.get(f"/fhir/Subscription/{ident}", headers=staff), 404)


def test_a_booking_without_subscribers_writes_no_outbox_rows(
    client: FlaskClient, db: Database, world: World, mint
):
    from sqlalchemy import func, select

    from store.models import Notification

    book(client, mint(STAFF_SCOPE), world.sessions[0], world.ann, world.cov["ann"])
    with db.reading() as s:
        assert s.scalar(select(func.count()).select_from(Notification)) == 0


def test_a_waitlist_subscriber_hears_of_the_promotion_a_cancellation_makes(
    client: FlaskClient, db: Database, world: World, receiver: Receiver, deliver: Deliver, mint
):
    staff = mint(f"{STAFF_SCOPE} __patient.blocked")
    waitlist = "http://fhir-facade.org/fhir/SubscriptionTopic/waitlist"
    subscribe(client, staff, subscription(receiver.url, topic=waitlist))
    full = world.sessions[0]  # three places
    booked = {p: book(client, staff, full, getattr(world, p), world.cov[p]) for p in world.cov}
    dora = db.write(lambda s: make_patient(s, family="Dalton").id)
    joined = fhir(
        post(client, "/fhir/Appointment", appointment(full, dora, status="waitlist"), staff), 201
    )
    assert joined["status"] == "waitlist"
    deliver()
    assert received(receiver) == []  # joining promotes no one

    cancel(client, staff, booked["bob"])
    deliver()

    assert received(receiver) == [(1, f"Appointment/{joined['id']}", "booked")]
    promoted = fhir(client.get(f"/fhir/Appointment/{joined['id']}", headers=staff), 200)
    assert promoted["status"] == "booked"


# -- a subscription never outlives its creator's rights -----------------------------------

EHR_SCOPE = "system/Appointment.rs system/Slot.rs system/Subscription.cruds"


def client_token(app: Flask, client_id: str, scope: str) -> dict[str, str]:
    """A token as the token service issues it to a registered client (subject = client id)."""
    token = app.extensions["fhir_facade.tokens"].mint(client_id, scope, dt.timedelta(minutes=5))
    return {"Authorization": f"Bearer {token}"}


def register(db: Database, client_id: str, scope: str) -> None:
    db.write(lambda s: register_client(s, ClientSpec(client_id, scope, jwks='{"keys": []}')))


def test_a_clients_subscription_reveals_only_what_the_client_may_read_now(
    client: FlaskClient,
    app: Flask,
    db: Database,
    world: World,
    receiver: Receiver,
    deliver: Deliver,
    mint,
):
    staff = mint(STAFF_SCOPE)
    register(db, "ehr", EHR_SCOPE)
    ehr = client_token(app, "ehr", EHR_SCOPE)
    ident = subscribe(client, ehr, subscription(receiver.url))
    assert "end" not in fhir(client.get(f"/fhir/Subscription/{ident}", headers=ehr), 200)
    first = book(client, staff, world.sessions[0], world.ann, world.cov["ann"])
    deliver()
    assert received(receiver) == [(1, f"Appointment/{first['id']}", "booked")]

    register(db, "ehr", "system/Slot.rs system/Subscription.cruds")  # no longer Appointments
    second = book(client, staff, world.sessions[0], world.bob, world.cov["bob"])
    deliver()

    assert [n for n, _, _ in received(receiver)] == [1]  # nothing new is told
    missed = fhir(client.get(f"/fhir/Subscription/{ident}/$events", headers=ehr), 200)
    assert [e["focus"] for e in events_in(missed).values()] == [None]  # nor the old one again
    assert first["id"] not in str(missed) and second["id"] not in str(missed)


def test_removing_a_client_turns_its_subscriptions_off_with_the_reason(
    client: FlaskClient, app: Flask, db: Database, world: World, deliver: Deliver, mint
):
    register(db, "ehr", EHR_SCOPE)
    ehr = client_token(app, "ehr", EHR_SCOPE)
    ident = subscribe(client, ehr, subscription("https://ehr.example.org/hook"))
    mine = subscribe(client, mint(STAFF_SCOPE), subscription("https://ehr.example.org/other"))

    result = app.test_cli_runner().invoke(args=["client", "remove", "ehr"])

    assert result.exit_code == 0, result.output
    assert "subscriptions turned off: 1" in result.output
    off = fhir(client.get(f"/fhir/Subscription/{ident}", headers=ehr), 200)
    assert off["status"] == "off"
    assert "'ehr'" in off["error"] and "removed" in off["error"]
    assert_valid(off)
    other = fhir(client.get(f"/fhir/Subscription/{mine}", headers=mint(STAFF_SCOPE)), 200)
    assert other["status"] == "requested"
    assert app.test_cli_runner().invoke(args=["client", "remove", "ehr"]).exit_code != 0


def test_a_user_tokens_subscription_ends_no_later_than_the_token(
    client: FlaskClient, app: Flask, db: Database, deliver: Deliver
):
    token = app.extensions["fhir_facade.tokens"].mint("nurse", STAFF_SCOPE, dt.timedelta(hours=1))
    nurse = {"Authorization": f"Bearer {token}"}
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    sooner = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)).replace(microsecond=0)

    def ends(body: dict[str, Any]) -> dt.datetime:
        created = fhir(post(client, "/fhir/Subscription", body, nurse), 201)
        assert_valid(created)
        return dt.datetime.fromisoformat(created["end"])

    unasked = ends(subscription("https://ehr.example.org/hook"))
    later = ends({**subscription("https://ehr.example.org/hook"), "end": "2099-01-01T00:00:00Z"})
    asked = ends({**subscription("https://ehr.example.org/hook"), "end": sooner.isoformat()})

    assert abs(unasked - expires) < dt.timedelta(minutes=1)
    assert later == unasked
    assert asked == sooner


def test_a_subscription_whose_end_came_is_turned_off_with_the_reason(
    client: FlaskClient, db: Database, world: World, receiver: Receiver, deliver: Deliver, mint
):
    staff = mint(STAFF_SCOPE)
    ident = subscribe(client, staff, subscription(receiver.url))
    deliver()

    def end_now(s: Session) -> None:
        row = s.get(Subscription, ident)
        assert row is not None
        row.ends = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)

    db.write(end_now)
    book(client, staff, world.sessions[0], world.ann, world.cov["ann"])
    deliver()

    assert received(receiver) == []
    off = fhir(client.get(f"/fhir/Subscription/{ident}", headers=staff), 200)
    assert off["status"] == "off" and "Subscription.end" in off["error"]


# -- endpoints on internal hosts ----------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://10.1.2.3/hook",
        "https://192.168.0.10:8443/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://127.0.0.1/hook",
        "https://[::1]/hook",
        "https://[fd00::1]/hook",
        "https://[::ffff:10.0.0.1]/hook",  # an IPv4 address in IPv6 clothing
        "https://fhir.example.org:8443/hook",  # this server's host, another port
    ],
)
def test_an_endpoint_on_an_internal_host_or_this_server_is_refused(
    client: FlaskClient, app: Flask, mint, endpoint: str
):
    app.config["FHIR_FACADE_SETTINGS"].subscription_http_loopback = False
    app.config["FHIR_BASE_URL"] = "https://fhir.example.org/fhir"
    staff = mint(STAFF_SCOPE)
    outcome(
        post(client, "/fhir/Subscription", subscription(endpoint), staff),
        422,
        expression="Subscription.channel.endpoint",
    )
    assert fhir(client.get("/fhir/Subscription", headers=staff), 200)["total"] == 0


def test_an_internal_host_named_in_the_allow_list_is_accepted(
    client: FlaskClient, app: Flask, mint
):
    settings = app.config["FHIR_FACADE_SETTINGS"]
    settings.subscription_allowed_hosts = "ehr.internal, 10.1.2.3"
    staff = mint(STAFF_SCOPE)
    fhir(post(client, "/fhir/Subscription", subscription("https://10.1.2.3/hook"), staff), 201)
    outcome(
        post(client, "/fhir/Subscription", subscription("https://10.1.2.4/hook"), staff),
        422,
        expression="Subscription.channel.endpoint",
    )


def test_delivery_checks_the_resolved_address_and_sends_to_that_address(
    client: FlaskClient, db: Database, mint
):
    """A name that resolved to nothing (or elsewhere) when the subscription was made is
    checked again at each send; the notification goes to the address that passed."""
    staff = mint(STAFF_SCOPE)
    ident = subscribe(client, staff, subscription("https://ehr.example.org/hook"))
    addresses = {"ehr.example.org": ["10.0.0.7"]}
    sent: list[tuple[str, tuple[str, ...]]] = []

    def send(url: str, body: bytes, headers: dict[str, str], timeout: float, at: Any) -> None:
        sent.append((url, at))

    settings = DeliverySettings(retry=dt.timedelta(0), max_failures=6)
    deliverer = Deliverer(db, settings, send, lambda host, port: addresses.get(host, []))
    deliverer.run_once()
    refused = fhir(client.get(f"/fhir/Subscription/{ident}", headers=staff), 200)
    assert refused["status"] == "error" and "internal address" in refused["error"]
    assert sent == []

    addresses["ehr.example.org"] = ["93.184.215.14", "10.0.0.7"]  # one internal: refused
    deliverer.run_once()
    assert sent == []
    addresses["ehr.example.org"] = ["93.184.215.14", "2606:2800:21f:cb07::1"]
    deliverer.run_once()
    assert sent == [("https://ehr.example.org/hook", ("93.184.215.14", "2606:2800:21f:cb07::1"))]
    assert fhir(client.get(f"/fhir/Subscription/{ident}", headers=staff), 200)["status"] == "active"


# -- Subscription entries in Bundles ------------------------------------------------------


def test_a_transaction_creates_a_subscription_with_the_rest_or_not_at_all(
    client: FlaskClient, world: World, mint
):
    staff = mint(STAFF_SCOPE)
    entry = {
        "fullUrl": "urn:uuid:0b6f5f0e-6c38-4a5e-9f0e-3f6f1e2d9a10",
        "resource": subscription("https://ehr.example.org/hook"),
        "request": {"method": "POST", "url": "Subscription"},
    }
    full = appointment(world.sessions[0], "no-such-patient")
    failing = {"resource": full, "request": {"method": "POST", "url": "Appointment"}}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry, failing]}
    fhir(post(client, "/fhir", bundle, staff), 404)  # the patient is unknown
    assert fhir(client.get("/fhir/Subscription", headers=staff), 200)["total"] == 0

    result = fhir(post(client, "/fhir", {**bundle, "entry": [entry]}, staff), 200)

    (answered,) = result["entry"]
    assert answered["response"]["status"] == "201 Created"
    created = answered["resource"]
    assert answered["response"]["location"] == f"Subscription/{created['id']}/_history/1"
    stored = fhir(client.get(f"/fhir/Subscription/{created['id']}", headers=staff), 200)
    assert stored["status"] == "requested" and stored["channel"] == created["channel"]


def test_a_bundle_entry_may_create_a_subscription_but_not_read_or_change_one(
    client: FlaskClient, mint
):
    staff = mint(STAFF_SCOPE)
    ident = subscribe(client, staff, subscription("https://ehr.example.org/hook"))
    entries = [
        {"request": {"method": "GET", "url": f"Subscription/{ident}"}},
        {
            "resource": {**subscription("https://ehr.example.org/hook"), "id": ident},
            "request": {"method": "PUT", "url": f"Subscription/{ident}"},
        },
    ]
    for entry in entries:
        for kind in ("batch", "transaction"):
            bundle = {"resourceType": "Bundle", "type": kind, "entry": [entry]}
            issue = outcome(post(client, "/fhir", bundle, staff), 405)
            assert "/fhir/Subscription" in issue["details"]["text"]

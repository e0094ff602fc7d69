"""Capacity stays exact under load: many simultaneous requests over real HTTP.

Requests are released together by a barrier. On SQLite one server (two gunicorn
workers) takes them; on PostgreSQL two servers share the database and the requests
alternate between them, so the only thing keeping the count exact is the database.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from sqlalchemy.orm import Session

from store.db import Database
from tests.e2e.conftest import Server
from tests.e2e.fhir import (
    FHIR_JSON,
    JSON,
    TIMEOUT_S,
    booking,
    capacity,
    detail_codes,
    moved,
    places_left,
    resources,
    stored_booked,
    stored_places_held,
)
from tests.factories import MONDAY, make_clinic, make_patient, make_session
from tests.validation import assert_valid


# The tests build what they use under fresh ids, so they share one database per backend
# and the servers on it (starting one takes seconds).
@pytest.fixture(scope="module")
def database_url(shared_database_url: str) -> str:
    return shared_database_url


@pytest.fixture
def servers(shared_servers: list[Server]) -> list[Server]:
    return shared_servers


@dataclass(frozen=True)
class Reply:
    status: int
    body: JSON
    server: Server


@dataclass(frozen=True)
class Call:
    method: str
    server: Server
    path: str
    body: JSON
    headers: dict[str, str]


def _fire_together(calls: Sequence[Call], auth: dict[str, str]) -> list[Reply]:
    """Send every call at once (one thread each, released by a barrier); replies in order."""
    barrier = threading.Barrier(len(calls), timeout=TIMEOUT_S)

    def send(call: Call) -> Reply:
        headers = {**auth, "Content-Type": FHIR_JSON, **call.headers}
        barrier.wait()
        response = requests.request(
            call.method,
            f"{call.server.base}{call.path}",
            json=call.body,
            headers=headers,
            timeout=TIMEOUT_S,
        )
        body: JSON = response.json() if response.content else {}
        return Reply(response.status_code, body, call.server)

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(send, calls))


def _explain(replies: Sequence[Reply], servers: Sequence[Server]) -> str:
    """What went wrong, with each server's stderr, for assertion messages."""
    odd = [r for r in replies if r.status not in (200, 201, 409)][:3]
    logs = "\n".join(f"--- server :{s.port} stderr ---\n{s.stderr_tail()}" for s in servers)
    statuses = dict(Counter(r.status for r in replies))
    return f"statuses {statuses}; unexpected replies {[(r.status, r.body) for r in odd]}\n{logs}"


def _slot(server: Server, auth: dict[str, str], slot_id: str) -> JSON:
    response = requests.get(f"{server.base}/Slot/{slot_id}", headers=auth, timeout=TIMEOUT_S)
    assert response.status_code == 200, response.text
    slot: JSON = response.json()
    assert_valid(slot)
    return slot


def _booked_appointments(server: Server, auth: dict[str, str], slot_id: str) -> JSON:
    response = requests.get(
        f"{server.base}/Appointment",
        params={"slot": f"Slot/{slot_id}", "status": "booked", "_count": "100"},
        headers=auth,
        timeout=TIMEOUT_S,
    )
    assert response.status_code == 200, response.text
    bundle: JSON = response.json()
    assert_valid(bundle)
    return bundle


def _seed(database: Database, build: Callable[[Session], Any]) -> Any:
    return database.write(build)


def test_forty_simultaneous_bookings_fill_a_session_of_ten_exactly(
    servers: list[Server], auth: dict[str, str], database: Database
) -> None:
    def build(db: Session) -> tuple[str, list[str]]:
        clinic = make_clinic(db)
        session = make_session(db, clinic, capacity=10)
        return session.id, [make_patient(db, given=f"Patient{i}").id for i in range(40)]

    slot_id, patients = _seed(database, build)
    calls = [
        Call("POST", servers[i % len(servers)], "/Appointment", booking(p, slot_id), {})
        for i, p in enumerate(patients)
    ]

    replies = _fire_together(calls, auth)

    statuses = Counter(r.status for r in replies)
    assert statuses == {201: 10, 409: 30}, _explain(replies, servers)
    for reply in replies:
        assert_valid(reply.body)
        if reply.status == 409:
            assert detail_codes(reply.body) == ["session-full"], reply.body
        else:
            assert reply.body["slot"] == [{"reference": f"Slot/{slot_id}"}]
            assert reply.body["status"] == "booked"
    winners = [r.body for r in replies if r.status == 201]
    assert len({a["id"] for a in winners}) == 10
    assert len({a["participant"][0]["actor"]["reference"] for a in winners}) == 10

    assert stored_booked(database, slot_id) == 10
    assert stored_places_held(database, slot_id) == 10
    for server in servers:  # every server sees the same, exact state
        slot = _slot(server, auth, slot_id)
        assert (capacity(slot), places_left(slot), slot["status"]) == ((10, 10), 0, "busy")
        bundle = _booked_appointments(server, auth, slot_id)
        assert bundle["total"] == 10
        assert {a["id"] for a in resources(bundle)} == {a["id"] for a in winners}


def test_the_same_patient_sent_ten_times_at_once_is_booked_once(
    servers: list[Server], auth: dict[str, str], database: Database
) -> None:
    def build(db: Session) -> tuple[str, str]:
        clinic = make_clinic(db)
        return make_session(db, clinic, capacity=20).id, make_patient(db).id

    slot_id, patient = _seed(database, build)
    calls = [
        Call("POST", servers[i % len(servers)], "/Appointment", booking(patient, slot_id), {})
        for i in range(10)
    ]

    replies = _fire_together(calls, auth)

    statuses = Counter(r.status for r in replies)
    assert statuses == {201: 1, 409: 9}, _explain(replies, servers)
    for reply in replies:
        assert_valid(reply.body)
        if reply.status == 409:
            assert detail_codes(reply.body) == ["already-booked"], reply.body
    assert stored_booked(database, slot_id) == 1
    assert stored_places_held(database, slot_id) == 1
    for server in servers:
        assert capacity(_slot(server, auth, slot_id)) == (20, 1)
        assert _booked_appointments(server, auth, slot_id)["total"] == 1


PAIRS = 8


@pytest.mark.parametrize(
    "room",
    [
        pytest.param(2 * PAIRS, id="roomy"),  # every move fits: all must succeed
        pytest.param(PAIRS + 1, id="tight"),  # one free place each: some moves find it taken
    ],
)
def test_crossing_reschedules_never_lose_or_invent_a_place(
    room: int, servers: list[Server], auth: dict[str, str], database: Database
) -> None:
    def build(db: Session) -> tuple[str, str, list[str]]:
        clinic = make_clinic(db)
        first = make_session(db, clinic, capacity=room)
        second = make_session(db, clinic, capacity=room, start=MONDAY.replace(hour=18))
        return first.id, second.id, [make_patient(db).id for _ in range(2 * PAIRS)]

    a_id, b_id, patients = _seed(database, build)
    booked: list[tuple[JSON, str]] = []  # (appointment, its ETag)
    with requests.Session() as http:
        http.headers.update(auth)
        for index, patient in enumerate(patients):
            slot_id = a_id if index < PAIRS else b_id
            response = http.post(
                f"{servers[0].base}/Appointment", json=booking(patient, slot_id), timeout=TIMEOUT_S
            )
            assert response.status_code == 201, response.text
            booked.append((response.json(), response.headers["ETag"]))
    slot_a, slot_b = _slot(servers[0], auth, a_id), _slot(servers[0], auth, b_id)
    assert (capacity(slot_a), capacity(slot_b)) == ((room, PAIRS), (room, PAIRS))

    # A→B and B→A at the same moment, pair by pair, alternating servers.
    calls = []
    for index, (appointment, etag) in enumerate(booked):
        target = slot_b if index < PAIRS else slot_a
        calls.append(
            Call(
                "PUT",
                servers[index % len(servers)],
                f"/Appointment/{appointment['id']}",
                moved(appointment, target),
                {"If-Match": etag},
            )
        )

    replies = _fire_together(calls, auth)

    statuses = Counter(r.status for r in replies)
    assert set(statuses) <= {200, 409}, _explain(replies, servers)
    if room == 2 * PAIRS:
        assert statuses == {200: 2 * PAIRS}, _explain(replies, servers)
    expected_slot = {}
    for (appointment, _), call, reply in zip(booked, calls, replies, strict=True):
        assert_valid(reply.body)
        if reply.status == 409:
            assert detail_codes(reply.body) == ["session-full"], reply.body
            expected_slot[appointment["id"]] = appointment["slot"]
        else:
            assert reply.body["slot"] == call.body["slot"], reply.body
            expected_slot[appointment["id"]] = call.body["slot"]

    held = {s: stored_places_held(database, s) for s in (a_id, b_id)}
    assert {s: stored_booked(database, s) for s in (a_id, b_id)} == held
    assert sum(held.values()) == 2 * PAIRS, held
    for server in servers:
        for slot_id in (a_id, b_id):
            slot = _slot(server, auth, slot_id)
            assert capacity(slot) == (room, held[slot_id])
            bundle = _booked_appointments(server, auth, slot_id)
            assert bundle["total"] == held[slot_id]
            for appointment in resources(bundle):
                assert expected_slot[appointment["id"]] == [{"reference": f"Slot/{slot_id}"}]

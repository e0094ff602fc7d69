"""Waitlist promotion stays exact under load and across crashes, over real HTTP.

Ten patients fill a session; twenty wait for it. Their ten cancellations arrive at
once (alternating between two servers sharing PostgreSQL; two gunicorn workers on
SQLite). A watcher reads the session's count and the bookings actually holding a
place, in one statement, over and over while the requests run: they must agree at
every step. Afterwards the first ten entries in queue order, and only they, hold the
places, each with the AuditEvent of its promotion. Under the offer policy the offers
then lapse, and the writes that find them lapsed pass the places on to the next ten.
Killed with SIGKILL in the middle of the cancellations, the servers leave exactly as
many promotions as committed cancellations: none is half done.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import requests
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from store.access import STAFF
from store.booking import BookingRequest, book_patient
from store.db import Database
from store.models import (
    HOLDS_PLACE,
    AuditRecord,
    Booking,
    BookingStatus,
    GroupSession,
    ProviderSchedule,
    utcnow,
)
from store.promotion import WAITLIST_AGENT
from store.waitlist import join_waitlist
from tests.e2e.conftest import Server
from tests.e2e.fhir import FHIR_JSON, JSON, TIMEOUT_S, cancelled, stored_booked, stored_places_held
from tests.factories import make_clinic, make_patient, make_session
from tests.validation import assert_valid

CAPACITY = 10
WAITING = 20


# The tests build what they use under fresh ids, so they share one database per backend
# and the servers on it (starting one takes seconds), except the one that kills its own.
@pytest.fixture(scope="module")
def database_url(shared_database_url: str) -> str:
    return shared_database_url


@pytest.fixture
def servers(shared_servers: list[Server]) -> list[Server]:
    return shared_servers


@dataclass(frozen=True)
class Queue:
    session: str
    seated: list[str]  # booking ids
    entries: list[str]  # waitlist entry ids, in queue order


def _seed(database: Database, policy: str) -> Queue:
    def build(db: Session) -> Queue:
        clinic = make_clinic(db)
        schedule = db.get(ProviderSchedule, clinic.schedule_id)
        assert schedule is not None
        schedule.waitlist_policy = policy
        schedule.offer_seconds = 3600
        session = make_session(db, clinic, capacity=CAPACITY).id
        seated = [
            book_patient(db, BookingRequest(make_patient(db).id, session), STAFF).booking.id
            for _ in range(CAPACITY)
        ]
        entries = [
            join_waitlist(
                db,
                BookingRequest(make_patient(db).id, session, status=BookingStatus.WAITLIST),
                STAFF,
            ).booking.id
            for _ in range(WAITING)
        ]
        return Queue(session, seated, entries)

    queue: Queue = database.write(build)
    return queue


class Watcher:
    """Reads (booked, bookings holding a place) in one statement until stopped."""

    def __init__(self, database: Database, session_id: str) -> None:
        self.database = database
        self.session_id = session_id
        self.seen: list[tuple[int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        held = (
            select(func.count())
            .select_from(Booking)
            .where(Booking.session_id == self.session_id, Booking.status.in_(list(HOLDS_PLACE)))
            .scalar_subquery()
        )
        statement = select(GroupSession.booked, held).where(GroupSession.id == self.session_id)
        while not self._stop.is_set():
            with self.database.reading() as db:
                booked, holding = db.execute(statement).one()
            self.seen.append((int(booked), int(holding)))
            time.sleep(0.005)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=TIMEOUT_S)


def _get(server: Server, auth: dict[str, str], path: str) -> JSON:
    response = requests.get(f"{server.base}{path}", headers=auth, timeout=TIMEOUT_S)
    assert response.status_code == 200, response.text
    body: JSON = response.json()
    assert_valid(body)
    return body


def _put_together(
    servers: list[Server], auth: dict[str, str], bodies: list[JSON]
) -> list[requests.Response | BaseException]:
    """PUT every body at once (a barrier releases them), alternating servers."""
    barrier = threading.Barrier(len(bodies), timeout=TIMEOUT_S)

    def send(index: int) -> requests.Response | BaseException:
        body = bodies[index]
        server = servers[index % len(servers)]
        barrier.wait()
        try:
            return requests.put(
                f"{server.base}/Appointment/{body['id']}",
                json=body,
                headers={**auth, "Content-Type": FHIR_JSON},
                timeout=TIMEOUT_S,
            )
        except requests.RequestException as exc:
            return exc

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(send, range(len(bodies))))


def _statuses(database: Database, ids: list[str]) -> list[str]:
    with database.reading() as db:
        found = dict(
            db.execute(select(Booking.id, Booking.status).where(Booking.id.in_(ids))).all()
        )
    return [found[i] for i in ids]


def _audits(database: Database, ids: list[str]) -> Counter[str]:
    """How many waitlist AuditEvents each entry has."""
    with database.reading() as db:
        rows = db.scalars(
            select(AuditRecord.entity_id).where(
                AuditRecord.agent == WAITLIST_AGENT, AuditRecord.entity_id.in_(ids)
            )
        ).all()
    return Counter(r for r in rows if r is not None)


@pytest.mark.parametrize("policy", ["book", "offer"])
def test_ten_simultaneous_cancellations_promote_exactly_the_first_ten_waiting(
    policy: str, servers: list[Server], auth: dict[str, str], database: Database
) -> None:
    queue = _seed(database, policy)
    bodies = [cancelled(_get(servers[0], auth, f"/Appointment/{b}")) for b in queue.seated]

    with Watcher(database, queue.session) as watcher:
        replies = _put_together(servers, auth, bodies)

    codes = Counter(getattr(r, "status_code", repr(r)) for r in replies)
    assert codes == {200: CAPACITY}, (codes, [s.stderr_tail() for s in servers])
    promoted = "booked" if policy == "book" else "pending"
    statuses = _statuses(database, queue.entries)
    assert statuses == [promoted] * CAPACITY + ["waitlist"] * (WAITING - CAPACITY)
    assert stored_booked(database, queue.session) == CAPACITY
    assert stored_places_held(database, queue.session) == CAPACITY
    assert watcher.seen and all(booked == held for booked, held in watcher.seen), watcher.seen
    assert _audits(database, queue.entries) == Counter(queue.entries[:CAPACITY])
    for server in servers:
        listed = _get(
            server, auth, f"/Appointment?slot=Slot/{queue.session}&status=waitlist&_count=50"
        )
        assert [e["resource"]["id"] for e in listed["entry"]] == queue.entries[CAPACITY:]


def test_lapsed_offers_found_at_once_pass_each_place_down_the_queue_once(
    servers: list[Server], auth: dict[str, str], database: Database
) -> None:
    queue = _seed(database, "offer")
    for booking_id in queue.seated:  # ten offers made, one by one
        body = cancelled(_get(servers[0], auth, f"/Appointment/{booking_id}"))
        _put_together(servers[:1], auth, [body])
    offers = queue.entries[:CAPACITY]
    accepts = [{**_get(servers[0], auth, f"/Appointment/{o}"), "status": "booked"} for o in offers]
    database.write(  # the offers' hour passes unanswered
        lambda db: db.execute(
            update(Booking)
            .where(Booking.id.in_(offers))
            .values(offer_expires=utcnow() - dt.timedelta(seconds=1))
        )
    )

    with Watcher(database, queue.session) as watcher:
        replies = _put_together(servers, auth, accepts)  # too late, all at once

    codes = Counter(getattr(r, "status_code", repr(r)) for r in replies)
    assert codes == {422: CAPACITY}, (codes, [s.stderr_tail() for s in servers])
    assert _statuses(database, offers) == ["cancelled"] * CAPACITY
    assert _statuses(database, queue.entries[CAPACITY:]) == ["pending"] * CAPACITY
    assert stored_booked(database, queue.session) == CAPACITY
    assert stored_places_held(database, queue.session) == CAPACITY
    assert all(booked == held for booked, held in watcher.seen), watcher.seen
    # Each lapsed offer: offered, then expired. Each next entry: offered once.
    assert _audits(database, queue.entries) == Counter(offers * 2 + queue.entries[CAPACITY:])


def test_a_server_killed_during_cancellations_leaves_no_half_promotion(
    start_servers: Callable[[str, int], list[Server]],
    database_url: str,
    auth: dict[str, str],
    database: Database,
) -> None:
    servers = start_servers(database_url, 1 if database_url.startswith("sqlite") else 2)
    queue = _seed(database, "book")
    bodies = [cancelled(_get(servers[0], auth, f"/Appointment/{b}")) for b in queue.seated]

    def cancelled_so_far() -> int:
        with database.reading() as db:
            count = db.scalar(
                select(func.count())
                .select_from(Booking)
                .where(Booking.id.in_(queue.seated), Booking.status == "cancelled")
            )
        return int(count or 0)

    def kill_after_the_first_commit() -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while cancelled_so_far() == 0 and time.monotonic() < deadline:
            time.sleep(0.002)
        for server in servers:  # kill -9: the master and its workers, mid-transaction
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.process.pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_after_the_first_commit)
    killer.start()
    _put_together(servers, auth, bodies)
    killer.join()

    done = cancelled_so_far()
    with database.reading() as db:
        session = db.get(GroupSession, queue.session)
        assert session is not None
        booked_now = session.booked
    statuses = _statuses(database, queue.entries)
    promoted = statuses.count("booked")
    # Every committed cancellation promoted exactly one entry, the next in line.
    assert done >= 1 and promoted == done, (done, statuses)
    assert statuses == ["booked"] * promoted + ["waitlist"] * (WAITING - promoted)
    assert booked_now == stored_places_held(database, queue.session) == CAPACITY
    assert _audits(database, queue.entries) == Counter(queue.entries[:promoted])

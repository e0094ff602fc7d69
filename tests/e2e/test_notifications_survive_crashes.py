"""Notifications are delivered at least once, in order, through crashes.

A real receiver subscribes to a provider's appointments on a real server, with the
delivery worker in its own process (`fhir-facade worker`). Bookings and cancellations
run while the worker and the server are killed (SIGKILL, whole process group) at
seeded random moments, the server also in the middle of requests. Afterwards every
version of every appointment of that provider reached the receiver exactly once after
dropping duplicates by event number, each appointment's versions in order, numbered
1..N without a gap; `$events` gives back the same events.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests
from sqlalchemy.orm import Session

from mappings.subscription import EXT_CONTENT, EXT_FILTER, EXT_TIMEOUT
from store.db import Database, DatabaseSettings
from tests.e2e.conftest import Server, _launch, _server_env, _wait_ready
from tests.e2e.fhir import FHIR_JSON, TIMEOUT_S, booking
from tests.factories import MONDAY, make_clinic, make_patient, make_session
from tests.receiver import Receiver, events_in, receiving, status_of
from tests.validation import assert_valid

LOOPBACK = {"FHIR_FACADE_SUBSCRIPTION_HTTP_LOOPBACK": "1", "FHIR_FACADE_NOTIFY_RETRY_S": "1"}
TOPIC = "http://fhir-facade.org/fhir/SubscriptionTopic/appointment"
OPERATIONS = 24
SETTLE_S = 60.0


class Processes:
    """The server and the worker, each killable and restartable."""

    def __init__(self, database_url: str, folder: Path) -> None:
        self.database_url = database_url
        self.folder = folder
        self.starts = 0
        self.server = self._start_server()
        self.worker = self._start_worker()

    def _start_server(self) -> Server:
        self.starts += 1
        server = _launch(self.database_url, self.folder / f"server-{self.starts}", LOOPBACK)
        for _ in range(3):  # a machine under load may boot gunicorn slowly
            problem = _wait_ready(server)
            if problem is None or server.process.poll() is not None:
                break
        assert problem is None, (problem, server.stderr_tail())
        return server

    def _start_worker(self) -> subprocess.Popen[bytes]:
        self.starts += 1
        folder = self.folder / f"worker-{self.starts}"
        folder.mkdir(parents=True)
        with (folder / "stderr.log").open("wb") as err:
            return subprocess.Popen(
                [sys.executable, "-m", "fhir_facade.cli", "worker", "--poll", "0.05"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=_server_env(self.database_url, folder, LOOPBACK),
                cwd=folder,
                start_new_session=True,
            )

    @property
    def base(self) -> str:
        return self.server.base

    def kill_server(self) -> None:
        _kill(self.server.process)
        self.server = self._start_server()

    def kill_worker(self) -> None:
        _kill(self.worker)
        self.worker = self._start_worker()

    def stop(self) -> None:
        _kill(self.worker)
        self.server.stop()


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def _clinic(db: Session) -> dict[str, Any]:
    clinic = make_clinic(db)
    sessions = [
        make_session(db, clinic, capacity=4, start=MONDAY + dt.timedelta(days=n)).id
        for n in range(6)
    ]
    patients = [make_patient(db, family=f"Crash{n}").id for n in range(6)]
    return {"provider": clinic.provider_id, "sessions": sessions, "patients": patients}


def _subscription(endpoint: str, provider: str) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "mirror the provider's appointments",
        "criteria": TOPIC,
        "_criteria": {
            "extension": [
                {"url": EXT_FILTER, "valueString": f"Appointment?actor=Practitioner/{provider}"}
            ]
        },
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": EXT_CONTENT, "valueCode": "full-resource"}]},
            "extension": [{"url": EXT_TIMEOUT, "valueUnsignedInt": 2}],
        },
    }


def _request(
    http: requests.Session, method: str, url: str, body: dict[str, Any] | None = None
) -> requests.Response | None:
    """A request whose server may die under it: None when no answer came."""
    try:
        return http.request(
            method,
            url,
            json=body,
            headers={"Content-Type": FHIR_JSON} if body is not None else {},
            timeout=TIMEOUT_S,
        )
    except requests.RequestException:
        return None


def _change(http: requests.Session, base: str, rng: random.Random, world: dict[str, Any]) -> None:
    """Book a random patient into a random session, or cancel one of their bookings."""
    patient = rng.choice(world["patients"])
    found = _request(http, "GET", f"{base}/Appointment?patient=Patient/{patient}&status=booked")
    booked = found.json().get("entry", []) if found is not None and found.ok else []
    if booked and rng.random() < 0.4:
        appointment = rng.choice(booked)["resource"]
        url = f"{base}/Appointment/{appointment['id']}"
        _request(http, "PUT", url, {**appointment, "status": "cancelled"})
        return
    session = rng.choice(world["sessions"])
    body = booking(patient, session)
    _request(http, "POST", f"{base}/Appointment", body)


def _versions(http: requests.Session, base: str, provider: str) -> set[tuple[str, str]]:
    """(appointment id, versionId) of every version of the provider's appointments."""
    bundle = http.get(f"{base}/Appointment?actor=Practitioner/{provider}&_count=1000").json()
    versions = set()
    for entry in bundle.get("entry", []):
        ident = entry["resource"]["id"]
        history = http.get(f"{base}/Appointment/{ident}/_history?_count=1000").json()
        versions.update((ident, e["resource"]["meta"]["versionId"]) for e in history["entry"])
    return versions


def _received(receiver: Receiver) -> dict[int, tuple[str, str]]:
    """event number -> (appointment id, versionId), duplicates checked to agree."""
    seen: dict[int, tuple[str, str]] = {}
    for bundle in receiver.of_type("event-notification"):
        assert_valid(bundle)
        for number, event in events_in(bundle).items():
            resource = event["resource"]
            told = (resource["id"], resource["meta"]["versionId"])
            assert seen.setdefault(number, told) == told, "a resent event must be the same event"
    return seen


def test_every_change_reaches_the_receiver_through_worker_and_server_crashes(
    database_url: str, tmp_path: Path, auth: dict[str, str]
):
    setup = Database(DatabaseSettings(database_url))
    world = setup.write(_clinic)
    setup.dispose()
    rng = random.Random(20261129)
    processes = Processes(database_url, tmp_path)
    try:
        with receiving() as receiver, requests.Session() as http:
            http.headers.update(auth)
            created = http.post(
                f"{processes.base}/Subscription",
                json=_subscription(receiver.url, world["provider"]),
                headers={"Content-Type": FHIR_JSON},
                timeout=TIMEOUT_S,
            )
            assert created.status_code == 201, created.text
            ident = created.json()["id"]
            for _ in range(OPERATIONS):
                roll = rng.random()
                if roll < 0.15:
                    processes.kill_worker()
                elif roll < 0.25:
                    # Kill the server while a change is in flight (or just after it).
                    change = threading.Thread(
                        target=_change, args=(http, processes.base, rng, world)
                    )
                    change.start()
                    time.sleep(rng.uniform(0.0, 0.08))
                    processes.kill_server()
                    change.join()
                    continue
                _change(http, processes.base, rng, world)

            base = processes.base
            expected = _versions(http, base, world["provider"])
            deadline = time.monotonic() + SETTLE_S
            while len(receiver.events()) < len(expected) and time.monotonic() < deadline:
                time.sleep(0.2)
            received = _received(receiver)
            assert sorted(received) == list(range(1, len(expected) + 1)), "numbered 1..N"
            assert set(received.values()) == expected, "every version, exactly once"
            by_appointment: dict[str, list[int]] = {}
            for number in sorted(received):
                appointment, version = received[number]
                by_appointment.setdefault(appointment, []).append(int(version))
            assert all(v == sorted(v) for v in by_appointment.values()), "in order"

            caught_up = http.get(f"{base}/Subscription/{ident}/$events", timeout=TIMEOUT_S).json()
            assert_valid(caught_up)
            assert status_of(caught_up)["events-since-subscription-start"] == str(len(expected))
            replayed = {
                n: (e["resource"]["id"], e["resource"]["meta"]["versionId"])
                for n, e in events_in(caught_up).items()
            }
            assert replayed == received
    finally:
        processes.stop()

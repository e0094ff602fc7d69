"""Unmodified FHIR client libraries against a real server (issue 13, "Done when").

fhirpy and fhirclient (PyPI) and fhir-kit-client (npm, driven by
tests/e2e/clients/fhir_kit_scenario.mjs) each play a system client registered with the
token service: find the token endpoint, get a token with a signed JWT assertion,
book a patient with `Prefer: return=minimal` and follow the `Location` it gets back
(one test per library); then page through a search with `_elements` and read a Slot
with `_total=accurate` (one test for all three).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from fhirclient import client as fhirclient_client
from fhirclient.models.appointment import Appointment as FhirclientAppointment
from fhirclient.models.slot import Slot as FhirclientSlot
from fhirpy import SyncFHIRClient
from sqlalchemy.orm import Session

from store.clients import ClientSpec, register_client
from store.db import Database
from tests.e2e.conftest import REPO_ROOT, Server
from tests.e2e.fhir import TIMEOUT_S, booking
from tests.factories import MONDAY, make_clinic, make_patient, make_session
from tests.smart_clients import BackendClient
from tests.validation import assert_valid

CLIENTS_DIR = REPO_ROOT / "tests" / "e2e" / "clients"
SCOPE = "system/Appointment.cruds system/Slot.rs system/Patient.rs system/Schedule.rs"
SESSIONS = 5
PAGE = 2
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
SUBSETTED = ("http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "SUBSETTED")


# The tests build what they use under fresh ids, so they share one database per backend
# and the server on it (starting one takes seconds).
@pytest.fixture(scope="module")
def database_url(shared_database_url: str) -> str:
    return shared_database_url


@pytest.fixture
def server(shared_server: Server) -> Server:
    return shared_server


@dataclass
class Clinic:
    schedule: str
    slots: list[str]
    patients: list[str]


def _clinic(db: Session) -> Clinic:
    clinic = make_clinic(db)
    slots = [
        make_session(db, clinic, start=MONDAY + dt.timedelta(days=d)).id for d in range(SESSIONS)
    ]
    patients = [make_patient(db, family=f"Lib{n}").id for n in range(3)]
    return Clinic(clinic.schedule_id, slots, patients)


@pytest.fixture
def clinic(database: Database) -> Clinic:
    return database.write(_clinic)


def registered(database: Database, name: str, alg: str) -> BackendClient:
    backend = BackendClient(name, alg=alg)
    spec = ClientSpec(name, SCOPE, json.dumps(backend.jwks))
    database.write(lambda db: register_client(db, spec))
    return backend


def token_from(token_url: str, backend: BackendClient) -> str:
    """The plain OAuth exchange, for the library that has no SMART support (fhirpy)."""
    form = backend.token_form(token_url, SCOPE)
    response = requests.post(token_url, data=form, timeout=TIMEOUT_S)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["scope"] == SCOPE
    token: str = body["access_token"]
    return token


def subsetted(slot: dict[str, Any]) -> bool:
    """A Slot as `_elements=start,status` gives it: those, marked SUBSETTED, and none of
    the optional elements not asked for (mandatory ones may stay, as the spec says)."""
    tags = {(t.get("system"), t.get("code")) for t in slot.get("meta", {}).get("tag", [])}
    return (
        {"start", "status"} <= set(slot)
        and not {"appointmentType", "serviceType", "extension"} & set(slot)
        and (SUBSETTED in tags)
    )


def relative(location: str, base: str) -> str:
    assert location.startswith(f"{base}/"), (location, base)
    return location.removeprefix(f"{base}/")


def node_scenario(
    server: Server, database: Database, clinic: Clinic, tmp_path: Path, steps: str
) -> dict[str, Any]:
    """Run fhir_kit_scenario.mjs (`steps`: "book" or "search") and return what it saw."""
    node = shutil.which("node")
    installed = (CLIENTS_DIR / "node_modules" / "fhir-kit-client").is_dir()
    if node is None or not installed:
        if os.environ.get("FHIR_FACADE_REQUIRE_CONFORMANCE") == "1":
            pytest.fail("node or tests/e2e/clients/node_modules missing (run make install)")
        pytest.skip("node or fhir-kit-client not installed (make install)")
    backend = registered(database, f"fhir-kit-{steps}", "RS384")
    key = tmp_path / f"{backend.client_id}.pem"
    key.write_bytes(
        backend.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    scenario = {
        "steps": steps,
        "base": server.base,
        "clientId": backend.client_id,
        "kid": backend.kid,
        "keyFile": str(key),
        "scope": SCOPE,
        "patient": clinic.patients[2],
        "slot": clinic.slots[2],
        "schedule": clinic.schedule,
        "page": PAGE,
    }
    result = subprocess.run(
        [node, str(CLIENTS_DIR / "fhir_kit_scenario.mjs"), json.dumps(scenario)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=CLIENTS_DIR,
        check=False,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    report: dict[str, Any] = json.loads(result.stdout)
    assert report["tokenScope"] == SCOPE
    return report


def fhirpy_client(server: Server, database: Database) -> tuple[SyncFHIRClient, str]:
    """fhirpy has no SMART support: discovery and the token exchange are plain HTTP."""
    backend = registered(database, f"fhirpy-{uuid.uuid4().hex[:6]}", "ES384")
    discovery = requests.get(f"{server.base}/.well-known/smart-configuration", timeout=TIMEOUT_S)
    token = token_from(discovery.json()["token_endpoint"], backend)
    return SyncFHIRClient(server.base, authorization=f"Bearer {token}"), token


def fhirclient_smart(server: Server, database: Database) -> fhirclient_client.FHIRClient:
    """fhirclient finds the token endpoint in the CapabilityStatement's oauth-uris and runs
    SMART Backend Services itself; the assertion's audience is that endpoint."""
    backend = registered(database, f"fhirclient-{uuid.uuid4().hex[:6]}", "RS384")
    metadata = requests.get(f"{server.base}/metadata", timeout=TIMEOUT_S).json()
    security = metadata["rest"][0]["security"]
    (oauth,) = [e for e in security["extension"] if e["url"] == OAUTH_URIS]
    token_url = next(e["valueUri"] for e in oauth["extension"] if e["url"] == "token")
    smart = fhirclient_client.FHIRClient(
        settings={
            "app_id": backend.client_id,
            "api_base": f"{server.base}/",
            "scope": SCOPE,
            "jwt_token": backend.assertion(token_url),
        }
    )
    smart.prepare()
    smart.authorize()
    assert smart.ready
    return smart


# -- get a token, book with return=minimal, follow Location ---------------------------


def test_fhirpy_gets_a_token_books_and_follows_the_location(
    server: Server, database: Database, clinic: Clinic
) -> None:
    fhir, token = fhirpy_client(server, database)
    # fhirpy's save() hands back the body only, and return=minimal has none: the
    # Location header is what a client has left, so the create goes out as plain HTTP.
    created = requests.post(
        f"{server.base}/Appointment",
        json=booking(clinic.patients[0], clinic.slots[0]),
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/fhir+json",
            "Prefer": "return=minimal",
        },
        timeout=TIMEOUT_S,
    )
    assert created.status_code == 201 and created.content == b"", created.text
    stored = fhir.execute(relative(created.headers["Location"], server.base), method="get")
    assert stored["resourceType"] == "Appointment" and stored["status"] == "booked"
    assert_valid(dict(stored))


def test_fhirclient_gets_its_own_token_books_and_follows_the_location(
    server: Server, database: Database, clinic: Clinic
) -> None:
    smart = fhirclient_smart(server, database)
    smart.server.session.headers["Prefer"] = "return=minimal"
    body = FhirclientAppointment(booking(clinic.patients[1], clinic.slots[1])).as_json()
    created = smart.server.post_json("Appointment", body)
    del smart.server.session.headers["Prefer"]
    assert created.status_code == 201 and created.text == ""
    path = relative(created.headers["Location"], server.base)
    stored = FhirclientAppointment.read_from(path, smart.server)
    assert stored.status == "booked"
    assert stored.slot[0].reference == f"Slot/{clinic.slots[1]}"


def test_fhir_kit_client_gets_its_own_token_books_and_follows_the_location(
    server: Server, database: Database, clinic: Clinic, tmp_path: Path
) -> None:
    report = node_scenario(server, database, clinic, tmp_path, "book")
    assert report["created"] == {"status": 201, "body": {}}
    assert report["followed"]["resourceType"] == "Appointment"
    assert report["followed"]["slot"] == [{"reference": f"Slot/{clinic.slots[2]}"}]


# -- page with _elements, read a Slot with _total=accurate ----------------------------


def test_every_library_pages_a_search_with_elements_and_reads_a_slot_with_total(
    server: Server, database: Database, clinic: Clinic, tmp_path: Path
) -> None:
    fhir, _ = fhirpy_client(server, database)
    search = fhir.resources("Slot").search(schedule=f"Schedule/{clinic.schedule}")
    slots = search.limit(PAGE).elements("start", "status").fetch_all()
    assert sorted(s.id for s in slots) == sorted(clinic.slots)
    assert all(subsetted(dict(s)) for s in slots)
    counted = fhir.resources("Slot").search(_id=clinic.slots[0], _total="accurate").fetch_raw()
    assert counted["total"] == 1
    assert counted["entry"][0]["resource"]["id"] == clinic.slots[0]

    smart = fhirclient_smart(server, database)
    wanted = {"schedule": clinic.schedule, "_count": str(PAGE), "_elements": "start,status"}
    pages = list(FhirclientSlot.where(struct=wanted).perform_iter(smart.server))
    assert len(pages) == -(-SESSIONS // PAGE)
    found = [e.resource for page in pages for e in page.entry or []]
    assert sorted(s.id for s in found) == sorted(clinic.slots)
    assert all(subsetted(s.as_json()) for s in found)
    counted_search = FhirclientSlot.where(struct={"_id": clinic.slots[1], "_total": "accurate"})
    (bundle,) = list(counted_search.perform_iter(smart.server))
    assert bundle.total == 1 and bundle.entry[0].resource.id == clinic.slots[1]

    report = node_scenario(server, database, clinic, tmp_path, "search")
    assert sorted(report["paged"]["ids"]) == sorted(clinic.slots)
    assert report["paged"]["pages"] == -(-SESSIONS // PAGE)
    assert all(report["paged"]["subsetted"])
    assert report["counted"] == {"total": 1, "id": clinic.slots[2]}

"""Payer-scoped access (issue 13 item 2), on both stores.

A payer's token carries `system/Coverage.rs?payor=Organization/payer-x`. It sees:
Coverages whose payor is payer-x; of Patients, only the beneficiaries of those
Coverages; of Appointments, only those that used one of those Coverages (utilization
review). Restricted patients stay hidden unless the token has `__patient.blocked`.
No search, include, revinclude, chain, Bundle entry or id read widens that.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fhir_facade.auth import PATIENT_BLOCKED
from store.access import PRIVACY_OFFICER
from store.booking import BookingRequest, book_patient
from store.db import Database
from store.models import Coverage, OrganizationKind, ProviderGroup
from tests.factories import MONDAY, make_clinic, make_coverage, make_patient, make_session
from tests.integration.helpers import fhir, ids, outcome, post, put

READS = "system/Patient.rs system/Appointment.rs system/Slot.rs system/Organization.rs"
PAYER_X = f"system/Coverage.rs?payor=Organization/payer-x {READS}"
Headers = Callable[..., dict[str, str]]


@dataclass
class World:
    ann: str  # payer-x member; her visit used payer-x
    bob: str  # payer-y member only
    cat: str  # both: one visit paid by payer-y alone, one by payer-x then payer-y
    dan: str  # self-pay
    rex: str  # restricted payer-x member
    cov: dict[str, str]  # "ann-x", "bob-y", "cat-x", "cat-y", "rex-x", "dan-self"
    visit: dict[str, str]  # "ann", "bob", "cat-y", "cat-xy", "rex", "dan"
    s1: str
    s2: str
    schedule: str


@pytest.fixture
def world(database: Database) -> World:
    return database.write(_build)


def _build(db: Session) -> World:
    clinic = make_clinic(db)
    for payer in ("payer-x", "payer-y"):
        db.add(ProviderGroup(id=payer, name=f"Plan {payer}", kind=OrganizationKind.PAYER))
    db.flush()
    s1 = make_session(db, clinic).id
    s2 = make_session(db, clinic, start=MONDAY + dt.timedelta(days=1)).id
    people = {
        name: make_patient(db, family=family, self_pay=name == "dan", restricted=name == "rex").id
        for name, family in [
            ("ann", "Adams"),
            ("bob", "Baker"),
            ("cat", "Carter"),
            ("dan", "Dunn"),
            ("rex", "Rhodes"),
        ]
    }
    cov = {
        "ann-x": make_coverage(db, people["ann"], payor_id="payer-x", order=1).id,
        "bob-y": make_coverage(db, people["bob"], payor_id="payer-y", order=1).id,
        "cat-x": make_coverage(db, people["cat"], payor_id="payer-x", order=1).id,
        "cat-y": make_coverage(db, people["cat"], payor_id="payer-y", order=2).id,
        "rex-x": make_coverage(db, people["rex"], payor_id="payer-x", order=1).id,
    }
    cov["dan-self"] = db.scalars(
        select(Coverage.id).where(Coverage.beneficiary_id == people["dan"])
    ).one()

    def visit(patient: str, session: str, *coverages: str) -> str:
        request = BookingRequest(
            patient_id=people[patient], session_id=session, coverage_ids=coverages
        )
        return book_patient(db, request, PRIVACY_OFFICER).booking.id

    visits = {
        "ann": visit("ann", s1, cov["ann-x"]),
        "bob": visit("bob", s1, cov["bob-y"]),
        "cat-y": visit("cat", s1, cov["cat-y"]),
        "cat-xy": visit("cat", s2, cov["cat-x"], cov["cat-y"]),
        "rex": visit("rex", s1, cov["rex-x"]),
        "dan": visit("dan", s2, cov["dan-self"]),
    }
    return World(**people, cov=cov, visit=visits, s1=s1, s2=s2, schedule=clinic.schedule_id)


def found(client: FlaskClient, headers: dict[str, str], url: str, mode: str = "match") -> set[str]:
    return set(ids(fhir(client.get(url, headers=headers), 200), mode))


def test_a_payer_sees_its_coverages_its_members_and_the_visits_its_coverage_paid_for(
    client: FlaskClient, mint: Headers, world: World
):
    payer = mint(PAYER_X)
    assert found(client, payer, "/fhir/Coverage") == {world.cov["ann-x"], world.cov["cat-x"]}
    assert found(client, payer, "/fhir/Patient") == {world.ann, world.cat}
    assert found(client, payer, "/fhir/Appointment") == {
        world.visit["ann"],
        world.visit["cat-xy"],
    }
    total = fhir(client.get("/fhir/Coverage?_summary=count", headers=payer), 200)["total"]
    assert total == 2


def test_a_payer_reads_anything_of_another_payer_as_not_found(
    client: FlaskClient, mint: Headers, world: World
):
    payer = mint(PAYER_X)
    fhir(client.get(f"/fhir/Coverage/{world.cov['ann-x']}", headers=payer), 200)
    for url in (
        f"/fhir/Coverage/{world.cov['bob-y']}",
        f"/fhir/Coverage/{world.cov['bob-y']}/_history/1",
        f"/fhir/Coverage/{world.cov['bob-y']}/_history",
        f"/fhir/Coverage/{world.cov['cat-y']}",
        f"/fhir/Coverage/{world.cov['dan-self']}",
        f"/fhir/Patient/{world.bob}",
        f"/fhir/Patient/{world.dan}",
        f"/fhir/Appointment/{world.visit['bob']}",
        f"/fhir/Appointment/{world.visit['cat-y']}",
    ):
        outcome(client.get(url, headers=payer), 404, code="not-found")


def test_searches_and_chains_naming_another_payers_members_find_nothing(
    client: FlaskClient, mint: Headers, world: World
):
    payer = mint(PAYER_X)
    for url in (
        "/fhir/Coverage?payor=Organization/payer-y",
        f"/fhir/Coverage?patient=Patient/{world.bob}",
        "/fhir/Coverage?beneficiary.family=Baker",
        f"/fhir/Appointment?patient=Patient/{world.bob}",
        "/fhir/Appointment?patient.family=Dunn",
        f"/fhir/Patient?_id={world.bob},{world.dan}",
    ):
        assert found(client, payer, url) == set(), url
    assert found(client, payer, "/fhir/Appointment?patient.family=Carter") == {
        world.visit["cat-xy"]
    }
    assert found(client, payer, f"/fhir/Appointment?slot=Slot/{world.s1}") == {world.visit["ann"]}


def test_includes_and_revincludes_bring_nothing_beyond_the_payers_view(
    client: FlaskClient, mint: Headers, world: World
):
    payer = mint(PAYER_X)
    url = "/fhir/Coverage?_include=Coverage:beneficiary&_include=Coverage:payor"
    assert found(client, payer, url, "include") == {world.ann, world.cat, "payer-x"}
    url = f"/fhir/Slot?_id={world.s1},{world.s2}&_revinclude=Appointment:slot"
    assert found(client, payer, url, "include") == {world.visit["ann"], world.visit["cat-xy"]}
    url = "/fhir/Appointment?_include=Appointment:patient"
    assert found(client, payer, url, "include") == {world.ann, world.cat}


def test_a_batch_bundle_widens_nothing(client: FlaskClient, mint: Headers, world: World):
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": f"Coverage/{world.cov['bob-y']}"}},
            {"request": {"method": "GET", "url": "Coverage?payor=Organization/payer-y"}},
            {"request": {"method": "GET", "url": f"Patient/{world.bob}"}},
            {"request": {"method": "GET", "url": f"Appointment?patient=Patient/{world.cat}"}},
        ],
    }
    bundle = fhir(post(client, "/fhir", batch, mint(PAYER_X)), 200)
    coverage, by_payor, patient, visits = bundle["entry"]
    assert coverage["response"]["status"].startswith("404")
    assert by_payor["resource"]["total"] == 0
    assert patient["response"]["status"].startswith("404")
    assert [e["resource"]["id"] for e in visits["resource"]["entry"]] == [world.visit["cat-xy"]]


def test_restricted_members_stay_hidden_unless_the_token_carries_the_permission(
    client: FlaskClient, mint: Headers, world: World
):
    outcome(client.get(f"/fhir/Patient/{world.rex}", headers=mint(PAYER_X)), 404)
    privileged = mint(f"{PAYER_X} {PATIENT_BLOCKED}")
    assert world.cov["rex-x"] in found(client, privileged, "/fhir/Coverage")
    assert world.rex in found(client, privileged, "/fhir/Patient")
    assert world.visit["rex"] in found(client, privileged, "/fhir/Appointment")
    assert world.bob not in found(client, privileged, "/fhir/Patient")


def test_without_a_patient_scope_a_payer_includes_no_patients_and_chains_into_none(
    client: FlaskClient, mint: Headers, world: World
):
    coverage_only = mint("system/Coverage.rs?payor=Organization/payer-x")
    url = "/fhir/Coverage?_include=Coverage:beneficiary"
    assert found(client, coverage_only, url, "include") == set()
    assert found(client, coverage_only, url) == {world.cov["ann-x"], world.cov["cat-x"]}
    chain = client.get("/fhir/Coverage?beneficiary.family=Adams", headers=coverage_only)
    outcome(chain, 403, code="forbidden")


def _coverage(patient: str, payer: str) -> dict[str, Any]:
    return {
        "resourceType": "Coverage",
        "status": "active",
        "beneficiary": {"reference": f"Patient/{patient}"},
        "payor": [{"reference": f"Organization/{payer}"}],
    }


def coverages(database: Database) -> int:
    with database.reading() as db:
        return int(db.scalar(select(func.count()).select_from(Coverage)) or 0)


def test_a_payer_writes_only_coverages_its_scope_reaches(
    client: FlaskClient, mint: Headers, world: World, database: Database
):
    writer = mint(f"system/Coverage.cruds?payor=Organization/payer-x {READS}")
    before = coverages(database)
    refused = post(client, "/fhir/Coverage", _coverage(world.ann, "payer-y"), writer)
    outcome(refused, 403, code="forbidden")
    assert coverages(database) == before
    body = _coverage(world.bob, "payer-x") | {"id": world.cov["bob-y"]}
    outcome(put(client, f"/fhir/Coverage/{world.cov['bob-y']}", body, writer), 404)
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": _coverage(world.ann, c), "request": {"method": "POST", "url": "Coverage"}}
            for c in ("payer-x", "payer-y")
        ],
    }
    outcome(post(client, "/fhir", transaction, writer), 403, code="forbidden")
    assert coverages(database) == before
    fhir(post(client, "/fhir/Coverage", _coverage(world.ann, "payer-x"), writer), 201)
    assert coverages(database) == before + 1


def _find(patient: str, schedule: str) -> dict[str, Any]:
    repeat = {
        "boundsPeriod": {"start": "2027-01-04"},
        "count": 2,
        "period": 1,
        "periodUnit": "wk",
        "timeOfDay": ["10:00:00"],
    }
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueReference": {"reference": f"Patient/{patient}"}},
            {"name": "schedule", "valueReference": {"reference": f"Schedule/{schedule}"}},
            {"name": "timing", "valueTiming": {"repeat": repeat}},
        ],
    }


def test_a_payer_previews_series_only_for_its_members(
    client: FlaskClient, mint: Headers, world: World
):
    payer = mint(PAYER_X)
    fhir(post(client, "/fhir/Appointment/$find", _find(world.ann, world.schedule), payer), 200)
    refused = post(client, "/fhir/Appointment/$find", _find(world.bob, world.schedule), payer)
    outcome(refused, 404, code="not-found")

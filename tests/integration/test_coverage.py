"""Insurance through the API (issue 3, point 2): Coverage create, read, update and search
by patient, beneficiary, payor, subscriber, status, type and identifier; `_include` of
the payor; a payer listing its members; primary/secondary by `order`; self-pay as in the
official R4 example Coverage SP1234 (type coverage-selfpay#pay, payor = the Patient).
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from store.models import Coverage
from tests.factories import make_patient
from tests.integration.helpers import entries, fhir, ids, outcome
from tests.integration.privacy_helpers import (
    ACT_CODE,
    MEMBER,
    SELF_PAY,
    STAFF,
    coverage_body,
    create,
    make_payer,
    send,
    token,
)

SUBSCRIBER_RELATIONSHIP = "http://terminology.hl7.org/CodeSystem/subscriber-relationship"


@pytest.fixture
def insured(app, client, database) -> dict[str, str]:
    """Two payers, three patients and their coverages, made through the API; ids by key.

    ana: bluecross primary (order 1, subscriber ben), medicaid secondary (order 2),
         self-pay (no order), an old cancelled plan (order 3);
    ben: bluecross (order 1); cleo: self-pay only.
    """

    def build(db):
        return {
            "bluecross": make_payer(db, "payer-bluecross"),
            "medicaid": make_payer(db, "payer-medicaid", "State Medicaid Program"),
            "ana": make_patient(db, family="Avery", given="Ana", self_pay=False).id,
            "ben": make_patient(db, family="Avery", given="Ben", self_pay=False).id,
            "cleo": make_patient(db, family="Cruz", given="Cleo", self_pay=False).id,
        }

    ids = database.write(build)
    headers = token(app, STAFF)
    made = {
        # Created out of order: the search must sort them by `order`, not by age.
        "ana_secondary": coverage_body(
            ids["ana"], payor="Organization/payer-medicaid", order=2, member="MCD-1"
        ),
        "ana_self": coverage_body(ids["ana"], payor=f"Patient/{ids['ana']}", self_pay=True),
        "ana_primary": coverage_body(
            ids["ana"],
            payor="Organization/payer-bluecross",
            order=1,
            member="BH-1",
            subscriber=ids["ben"],
            subscriberId="BH-1-SUB",
        ),
        "ana_old": coverage_body(
            ids["ana"],
            payor="Organization/payer-bluecross",
            order=3,
            member="BH-0",
            status="cancelled",
        ),
        "ben_primary": coverage_body(
            ids["ben"], payor="Organization/payer-bluecross", order=1, member="BH-2"
        ),
        "cleo_self": coverage_body(ids["cleo"], payor=f"Patient/{ids['cleo']}", self_pay=True),
    }
    for key, resource in made.items():
        ids[key] = create(client, resource, headers)["id"]
    return ids


def search(client, headers, query: str) -> dict[str, Any]:
    return fhir(client.get(f"/fhir/Coverage?{query}", headers=headers), 200)


def test_a_coverage_is_created_read_and_updated_with_if_match(app, client, database):
    headers = token(app, STAFF)
    patient = database.write(
        lambda db: (make_payer(db, "payer-x"), make_patient(db, self_pay=False).id)[1]
    )
    sent = coverage_body(
        patient,
        payor="Organization/payer-x",
        order=1,
        member="X-77",
        subscriberId="X-77-01",
        period=("2026-01-01", "2027-12-31"),
        relationship={"coding": [{"system": SUBSCRIBER_RELATIONSHIP, "code": "self"}]},
        network="Harbor PPO",
    )

    response = send(client, "POST", "/fhir/Coverage", sent, headers)

    stored = fhir(response, 201)
    url = f"/fhir/Coverage/{stored['id']}"
    assert response.headers["Location"] == f"http://testserver{url}/_history/1"
    assert response.headers["ETag"] == 'W/"1"'
    read = fhir(client.get(url, headers=headers), 200)
    assert read == stored == {**sent, "id": stored["id"], "meta": read["meta"]}
    cancelled = {**read, "status": "cancelled"}
    updated = send(client, "PUT", url, cancelled, headers | {"If-Match": 'W/"1"'})
    assert fhir(updated, 200)["status"] == "cancelled"
    assert updated.headers["ETag"] == 'W/"2"'
    outcome(send(client, "PUT", url, cancelled, headers | {"If-Match": 'W/"1"'}), 412)
    assert ids(search(client, headers, f"patient={patient}&status=cancelled")) == [stored["id"]]


def test_self_pay_is_a_coverage_paid_by_the_patient_as_in_the_official_example(
    app, client, database
):
    headers = token(app, STAFF)
    patient = database.write(lambda db: make_patient(db, self_pay=False).id)
    # The shape of http://hl7.org/fhir/R4/coverage-example-selfpay.json (SP1234).
    sp1234 = {
        "resourceType": "Coverage",
        "identifier": [{"system": "http://hospitalx.com/selfpayagreement", "value": "SP12345678"}],
        "status": "active",
        "type": {"coding": [{"system": SELF_PAY, "code": "pay"}]},
        "subscriber": {"reference": f"Patient/{patient}"},
        "beneficiary": {"reference": f"Patient/{patient}"},
        "relationship": {"coding": [{"code": "self"}]},
        "period": {"end": "2027-03-17"},
        "payor": [{"reference": f"Patient/{patient}"}],
    }

    stored = create(client, sp1234, headers)

    assert stored == {**sp1234, "id": stored["id"], "meta": stored["meta"]}
    for query in (
        f"type={SELF_PAY}|pay",
        f"payor=Patient/{patient}",
        f"subscriber={patient}",
        "identifier=http://hospitalx.com/selfpayagreement|SP12345678",
    ):
        assert ids(search(client, headers, query)) == [stored["id"]], query
    paid_by_a_payer = {**sp1234, "payor": [{"reference": "Organization/payer-none"}]}
    database.write(lambda db: make_payer(db, "payer-none"))
    outcome(
        send(client, "POST", "/fhir/Coverage", paid_by_a_payer, headers),
        422,
        code="business-rule",
        expression="Coverage.payor",
    )


def test_coverages_are_found_by_each_search_parameter(app, client, insured):
    headers = token(app, STAFF)
    i = insured
    cases = [
        (f"patient=Patient/{i['ana']}", ["ana_primary", "ana_secondary", "ana_old", "ana_self"]),
        (f"patient={i['cleo']}", ["cleo_self"]),
        (f"beneficiary=Patient/{i['ben']}", ["ben_primary"]),
        ("payor=Organization/payer-medicaid", ["ana_secondary"]),
        ("payor=payer-medicaid", ["ana_secondary"]),
        ("payor=Organization/payer-bluecross", ["ana_primary", "ana_old", "ben_primary"]),
        (f"payor=Patient/{i['cleo']}", ["cleo_self"]),
        (f"subscriber=Patient/{i['ben']}", ["ana_primary"]),
        (f"subscriber={i['ana']}", []),
        ("status=cancelled", ["ana_old"]),
        (f"status=active&patient={i['ana']}", ["ana_primary", "ana_secondary", "ana_self"]),
        (f"status:not=active&patient={i['ana']}", ["ana_old"]),
        (f"type={SELF_PAY}|pay", ["ana_self", "cleo_self"]),
        ("type=pay", ["ana_self", "cleo_self"]),
        (f"type={ACT_CODE}|EHCPOL&patient={i['ben']}", ["ben_primary"]),
        (f"type={ACT_CODE}|pay", []),
        (f"identifier={MEMBER}|BH-1", ["ana_primary"]),
        ("identifier=MCD-1", ["ana_secondary"]),
        ("identifier=urn:other|MCD-1", []),
        (f"_id={i['ben_primary']},{i['cleo_self']}", ["ben_primary", "cleo_self"]),
        ("payor=Organization/payer-medicaid&payor=Organization/payer-bluecross", []),
    ]
    for query, expected in cases:
        bundle = search(client, headers, query)
        assert sorted(ids(bundle)) == sorted(i[k] for k in expected), query
        assert bundle["total"] == len(expected), query


def test_a_patients_coverages_come_primary_first_by_order(app, client, insured):
    bundle = search(client, token(app, STAFF), f"patient=Patient/{insured['ana']}&status=active")

    assert ids(bundle) == [insured[k] for k in ("ana_primary", "ana_secondary", "ana_self")]
    assert [c.get("order") for c in entries(bundle)] == [1, 2, None]


def test_a_payer_looks_up_its_members_coverages_with_the_payor_included(app, client, insured):
    bundle = search(
        client, token(app, STAFF), "payor=Organization/payer-bluecross&_include=Coverage:payor"
    )

    assert sorted(ids(bundle)) == sorted(
        insured[k] for k in ("ana_primary", "ana_old", "ben_primary")
    )
    (payer,) = entries(bundle, "include")
    assert (payer["resourceType"], payer["id"]) == ("Organization", "payer-bluecross")
    assert payer["name"] == "Blue Harbor Health Plan"


def test_an_ehr_lists_a_patients_coverages_with_every_payor_included(app, client, insured):
    bundle = search(client, token(app, STAFF), f"patient={insured['ana']}&_include=Coverage:payor")

    assert len(entries(bundle)) == 4
    assert sorted((r["resourceType"], r["id"]) for r in entries(bundle, "include")) == [
        ("Organization", "payer-bluecross"),
        ("Organization", "payer-medicaid"),
        ("Patient", insured["ana"]),
    ]


def test_a_coverage_naming_an_unknown_patient_or_payer_is_refused(app, client, insured, database):
    headers = token(app, STAFF)
    ana = insured["ana"]
    cases = [
        (coverage_body("nobody", payor="Organization/payer-medicaid"), 404, "Coverage.beneficiary"),
        (coverage_body(ana, payor="Organization/payer-nowhere"), 404, "Coverage.payor"),
        (coverage_body(ana, payor="Patient/nobody", self_pay=True), 404, "Coverage.payor"),
        (
            coverage_body(ana, payor="Organization/payer-medicaid", subscriber="nobody"),
            404,
            "Coverage.subscriber",
        ),
        (
            coverage_body(
                ana, payor="Organization/payer-medicaid", period=("2027-02-01", "2027-01-01")
            ),
            422,
            "Coverage.period.end",
        ),
        (coverage_body(ana, payor="Practitioner/x"), 422, "Coverage.payor[0]"),
    ]
    with database.reading() as db:
        before = db.scalar(select(func.count()).select_from(Coverage))
    for resource, status, expression in cases:
        response = send(client, "POST", "/fhir/Coverage", resource, headers)
        outcome(response, status, expression=expression)
    with database.reading() as db:
        assert db.scalar(select(func.count()).select_from(Coverage)) == before


def test_sql_meaningful_strings_in_coverage_searches_are_only_data(app, client, insured, database):
    headers = token(app, STAFF)
    with database.reading() as db:
        before = db.scalar(select(func.count()).select_from(Coverage))
    for value in (
        "'",
        "' OR '1'='1",
        "'; DROP TABLE coverage; --",
        "%",
        "_",
        "BH-%",
        "BH-_",
        "--",
        "\\",
    ):
        for query in (
            {"identifier": value},
            {"identifier": f"{MEMBER}|{value}"},
            {"type": value},
            {"type": f"{SELF_PAY}|{value}"},
            {"_id": value},
        ):
            response = client.get("/fhir/Coverage", query_string=query, headers=headers)
            assert ids(fhir(response, 200)) == [], query
        for param in ("patient", "payor", "subscriber", "beneficiary"):
            response = client.get("/fhir/Coverage", query_string={param: value}, headers=headers)
            if response.status_code == 400:
                outcome(response, 400, code="invalid", expression=param)
            else:
                assert ids(fhir(response, 200)) == [], (param, value)
        outcome(
            client.get("/fhir/Coverage", query_string={"status": value}, headers=headers),
            400,
            code="invalid",
            expression="status",
        )
    with database.reading() as db:
        assert db.scalar(select(func.count()).select_from(Coverage)) == before

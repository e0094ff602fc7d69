"""SMART v2 granular scopes (`user/Slot.rs?schedule=Schedule/x`) on every resource type,
on both stores, against the demo clinic.

The oracle: a token restricted by a scope's query sees, by an unfiltered search, exactly
what an unrestricted token finds by searching with that query; that is a strict part of
everything; and every record outside it reads as 404. Queries we cannot honour make the
scope grant nothing, never everything.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

from fhir_facade.auth import AUDIT_READ
from tests.integration.helpers import fhir, ids, outcome, post

EVERYTHING = f"user/*.cruds {AUDIT_READ}"
ALL = {"_count": "1000"}

#: One scope query per resource type, each picking a strict part of the demo clinic.
QUERIES = {
    "Organization": "name=Blue",
    "Location": "_id=dept-brooklyn",
    "Practitioner": "family=Chen",
    "Schedule": "actor=Practitioner/prac-rivera",
    "Slot": "schedule=Schedule/sched-chen-bk",
    "Patient": "gender=female",
    "Appointment": "practitioner=Practitioner/prac-chen,Practitioner/prac-okafor",
    "Coverage": "payor=Organization/payer-medicaid&status=active",
    "AuditEvent": "subtype=update",
}


@pytest.fixture
def demo(
    demo_clinic: Callable[[], bool], client: FlaskClient, mint: Callable[..., dict[str, str]]
) -> None:
    assert demo_clinic()
    # Two audited writes, so that the audit trail has a part to pick.
    headers = mint(EVERYTHING)
    created = fhir(
        post(
            client,
            "/fhir/Patient",
            {"resourceType": "Patient", "name": [{"family": "Ng"}]},
            headers,
        ),
        201,
    )
    created["gender"] = "male"
    response = client.put(
        f"/fhir/Patient/{created['id']}",
        json=created,
        headers=headers | {"Content-Type": "application/fhir+json"},
    )
    assert response.status_code == 200, response.get_data(as_text=True)


def search(
    client: FlaskClient, headers: dict[str, str], resource_type: str, query: str = ""
) -> set[str]:
    url = f"/fhir/{resource_type}?_count=1000" + (f"&{query}" if query else "")
    return set(ids(fhir(client.get(url, headers=headers), 200)))


def test_a_granular_scope_shows_exactly_what_its_query_finds_on_every_type(
    client: FlaskClient, mint: Callable[..., dict[str, str]], demo: None
):
    everything = mint(EVERYTHING)
    for resource_type, query in QUERIES.items():
        scoped = mint(f"user/{resource_type}.rs?{query} {AUDIT_READ}")
        expected = search(client, everything, resource_type, query)
        all_of_them = search(client, everything, resource_type)
        assert expected and expected < all_of_them, f"{resource_type}: pick a strict part"
        assert search(client, scoped, resource_type) == expected, resource_type
        for ident in sorted(expected)[:2]:
            fhir(client.get(f"/fhir/{resource_type}/{ident}", headers=scoped), 200)
        for ident in sorted(all_of_them - expected)[:3]:
            response = client.get(f"/fhir/{resource_type}/{ident}", headers=scoped)
            outcome(response, 404, code="not-found")


def test_scopes_add_up_an_unrestricted_one_lifts_the_query(
    client: FlaskClient, mint: Callable[..., dict[str, str]], demo: None
):
    everything = mint(EVERYTHING)
    both = mint(f"user/Slot.rs?{QUERIES['Slot']} user/Slot.rs")
    chen, rivera = "schedule=Schedule/sched-chen-bk", "schedule=Schedule/sched-rivera-bk"
    two = mint(f"user/Slot.rs?{chen} user/Slot.rs?{rivera}")
    assert search(client, both, "Slot") == search(client, everything, "Slot")
    assert search(client, two, "Slot") == search(
        client, everything, "Slot", "schedule=Schedule/sched-chen-bk,Schedule/sched-rivera-bk"
    )


def test_a_search_under_a_granular_scope_never_leaves_its_query(
    client: FlaskClient, mint: Callable[..., dict[str, str]], demo: None
):
    scoped = mint(f"user/Slot.rs?{QUERIES['Slot']}")
    assert search(client, scoped, "Slot", "schedule=Schedule/sched-rivera-bk") == set()
    assert search(client, scoped, "Slot", "_id=rivera-bk-x,sched-chen-bk") == set()


@pytest.mark.parametrize(
    "scope",
    [
        "user/Slot.rs?nonsense=1",  # not a Slot search parameter
        "user/Slot.rs?schedule=Patient/x",  # not a reference a Slot's schedule can be
        "user/Slot.rs?start=tomorrow",  # not a date
        "user/Slot.rs?_include=Slot:schedule",  # a result parameter, not a search one
        "user/Slot.rs?schedule.name=x",  # chains are not scope queries
        "user/*.rs?_id=x",  # a query on every type means nothing
    ],
)
def test_a_scope_whose_query_cannot_be_honoured_grants_nothing(
    client: FlaskClient, mint: Callable[..., dict[str, str]], scope: str
):
    outcome(client.get("/fhir/Slot", headers=mint(scope)), 403, code="forbidden")

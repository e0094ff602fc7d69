"""The HL7 R4 example resources (npm package hl7.fhir.r4.examples@4.0.1, installed by
`make install` beside the validator gate): every Patient, Coverage, Schedule and Slot
example is accepted by create, its references pointed at resources we hold, and reads
back as it was sent apart from `id` and `meta`. Every Appointment example is booked or
refused with a precise OperationOutcome, never a 500.

A Slot reads back with one addition: the capacity extensions every Slot carries. A
Slot sent without them is a one-place session (FHIR's plain meaning of a Slot).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from mappings.codes import EXT_CLOSED_SESSION, EXT_GROUP_CAPACITY, EXT_SLOT_CAPACITY_SMART
from tests.integration.helpers import fhir, post

EXAMPLES = Path(__file__).parents[2] / "conformance/gate/node_modules/hl7.fhir.r4.examples"
REQUIRE = os.environ.get("FHIR_FACADE_REQUIRE_CONFORMANCE") == "1"
SCOPE = "user/*.cruds __schedule.manage"
US_SSN = "http://hl7.org/fhir/sid/us-ssn"

#: Created in this order, so each can point at the ones before it; the issue's four.
NAMED = {
    "Patient": "Patient-example.json",
    "Coverage": "Coverage-SP1234.json",
    "Schedule": "Schedule-example.json",
    "Slot": "Slot-1.json",
}
KEPT_AS_SENT = tuple(NAMED)
#: What the clinic's rules (README) refuse in the other examples, each with its reason.
REFUSED = {
    "Patient-animal.json": "a patient needs a family name",
    "Patient-ch-example.json": "a patient needs a family name",
    "Patient-f001.json": "identifiers need a system and a value",
    "Patient-ihe-pcd.json": "identifiers need a system and a value",
    "Patient-infant-fetal.json": "a patient needs a name",
    "Patient-newborn.json": "a patient needs a name",
    "Patient-proband.json": "a patient needs a name",
    "Coverage-7547E.json": "a reference to Organization or Patient is needed",
    "Slot-example.json": "unknown code; known codes:",
}

Resource = dict[str, Any]


def examples(resource_type: str) -> list[str]:
    return sorted(p.name for p in EXAMPLES.glob(f"{resource_type}-*.json"))


@pytest.fixture
def hl7() -> Callable[[str], Resource]:
    if not EXAMPLES.is_dir():
        message = "hl7.fhir.r4.examples missing (run `make install`)"
        if REQUIRE:
            pytest.fail(f"FHIR_FACADE_REQUIRE_CONFORMANCE=1 but {message}")
        pytest.skip(message)
    return lambda name: json.loads((EXAMPLES / name).read_text())


class Clinic:
    """The demo clinic, and the examples created into it so far (by resource type)."""

    def __init__(self, client: FlaskClient, headers: dict[str, str]) -> None:
        self.client = client
        self.headers = headers
        self.ids = {
            kind: self._first(kind)
            for kind in ("Patient", "Organization", "Location", "Practitioner", "Schedule")
        }

    def _first(self, kind: str) -> str:
        bundle = fhir(self.client.get(f"/fhir/{kind}", headers=self.headers), 200)
        return str(bundle["entry"][0]["resource"]["id"])

    def pointed_here(self, value: Any) -> Any:
        """The example with each `Type/id` reference pointed at one of ours."""
        if isinstance(value, list):
            return [self.pointed_here(v) for v in value]
        if not isinstance(value, dict):
            return value
        result = {k: self.pointed_here(v) for k, v in value.items()}
        kind, _, _ = str(value.get("reference", "")).partition("/")
        if kind in self.ids:
            result["reference"] = f"{kind}/{self.ids[kind]}"
        return result

    def create(self, body: Resource) -> Any:
        return post(self.client, f"/fhir/{body['resourceType']}", body, self.headers)

    def read(self, created: Resource) -> Resource:
        url = f"/fhir/{created['resourceType']}/{created['id']}"
        return fhir(self.client.get(url, headers=self.headers), 200)


@pytest.fixture
def clinic(
    demo_clinic: Callable[[], bool], client: FlaskClient, mint: Callable[[str], dict[str, str]]
) -> Clinic:
    demo_clinic()
    return Clinic(client, mint(SCOPE))


def masked_ssns(resource: Resource) -> Resource:
    """An SSN is never given back in clear (issue 3): only its last four digits."""
    for ident in resource.get("identifier", []):
        if ident.get("system") == US_SSN:
            ident["value"] = f"***-**-{ident['value'][-4:]}"
    return resource


def apart_from_id_and_meta(resource: Resource) -> Resource:
    return {k: v for k, v in resource.items() if k not in ("id", "meta")}


@pytest.mark.parametrize(
    "name", [n for kind in KEPT_AS_SENT for n in examples(kind)] or ["(package missing)"]
)
def test_an_official_example_is_created_and_read_back_as_sent(hl7, clinic, name):
    kind = name.partition("-")[0]
    for earlier in KEPT_AS_SENT[: KEPT_AS_SENT.index(kind)]:  # what it may point at
        body = clinic.pointed_here(hl7(NAMED[earlier]))
        clinic.ids[earlier] = fhir(clinic.create(body), 201)["id"]
    sent = clinic.pointed_here(hl7(name))
    response = clinic.create(sent)
    if name in REFUSED:
        (issue,) = fhir(response, 422)["issue"]
        assert issue["details"]["text"].startswith(REFUSED[name])
        assert issue["expression"][0].startswith(f"{kind}.")
        return
    created = fhir(response, 201)
    back = clinic.read(created)
    assert back == created
    expected = apart_from_id_and_meta(masked_ssns(sent))
    if kind == "Slot":
        added = back.pop("extension")
        assert [e["url"] for e in added] == [
            EXT_GROUP_CAPACITY,
            EXT_SLOT_CAPACITY_SMART,
            EXT_CLOSED_SESSION,
        ]
        assert added[0]["extension"][0] == {"url": "capacity", "valueUnsignedInt": 1}
    assert apart_from_id_and_meta(back) == expected


def test_a_slot_example_sent_busy_is_held_not_bookable(hl7, clinic):
    clinic.ids["Schedule"] = fhir(
        clinic.create(clinic.pointed_here(hl7("Schedule-example.json"))), 201
    )["id"]
    slot = fhir(clinic.create(clinic.pointed_here(hl7("Slot-1.json"))), 201)
    assert (slot["status"], slot["overbooked"]) == ("busy", True)
    booking = {
        "resourceType": "Appointment",
        "status": "booked",
        "slot": [{"reference": f"Slot/{slot['id']}"}],
        "participant": [
            {"actor": {"reference": f"Patient/{clinic.ids['Patient']}"}, "status": "accepted"}
        ],
    }
    refused = fhir(clinic.create(booking), 409)
    assert refused["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("name", examples("Appointment") or ["(package missing)"])
def test_an_official_appointment_example_is_booked_or_precisely_refused(hl7, clinic, name):
    response = clinic.create(clinic.pointed_here(hl7(name)))
    assert response.status_code in (201, 400, 404, 409, 422), response.get_data(as_text=True)
    body = fhir(response, response.status_code)
    if response.status_code != 201:
        (issue,) = body["issue"]
        assert issue["severity"] == "error"
        assert issue["details"]["text"]
        assert issue["expression"][0].startswith("Appointment")

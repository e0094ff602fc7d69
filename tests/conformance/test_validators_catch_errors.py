"""The gate's validators are not no-ops: planted defects are caught, by the right one.

No server: bodies are written as the walker would have saved them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conformance.gate.invariants import Checker
from conformance.gate.validators import Report, validate

GOOD_SLOT = {
    "resourceType": "Slot",
    "id": "s1",
    "schedule": {"reference": "Schedule/x"},
    "status": "free",
    "start": "2027-01-04T15:00:00Z",
    "end": "2027-01-04T16:30:00Z",
}


def _saved(tmp_path: Path, bodies: dict[str, Any], status: int = 200) -> Path:
    exchanges = []
    for index, (name, body) in enumerate(bodies.items(), 1):
        file = f"{index:03d}-{name}.json"
        (tmp_path / file).write_text(json.dumps(body))
        exchanges.append(
            {
                "index": index,
                "label": name,
                "method": "GET",
                "url": name,
                "status": status,
                "expected": [status],
                "file": file,
                "content_type": "application/fhir+json",
            }
        )
    (tmp_path / "manifest.json").write_text(json.dumps({"exchanges": exchanges, "notes": []}))
    return tmp_path


def _errors(report: Report, validator: str) -> list[str]:
    return [f"{i.path}: {i.message}" for i in report.errors if i.validator == validator]


def test_instants_are_compared_as_instants_not_strings() -> None:
    # 10:00+02:00 is 08:00Z: before 09:00Z, although "10" > "09" as text.
    same_order = {**GOOD_SLOT, "start": "2027-01-04T10:00:00+02:00", "end": "2027-01-04T09:00:00Z"}
    reversed_ = {**GOOD_SLOT, "start": "2027-01-04T10:00:00Z", "end": "2027-01-04T11:00:00+02:00"}

    assert Checker().check(same_order) == [] or all(
        f.severity == "warning" for f in Checker().check(same_order)
    )
    assert [f.message[:13] for f in Checker().check(reversed_) if f.severity == "error"] == [
        "facade-slot-1"
    ]


def test_a_period_ending_before_it_starts_breaks_per_1_inside_a_bundle_entry() -> None:
    coverage = {
        "resourceType": "Coverage",
        "status": "active",
        "beneficiary": {"reference": "Patient/p"},
        "payor": [{"reference": "Patient/p"}],
        "period": {"start": "2027-01-02", "end": "2027-01-01"},
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {"fullUrl": "http://x/Coverage/c", "resource": coverage, "search": {"mode": "match"}}
        ],
    }

    errors = [f for f in Checker().check(bundle) if f.severity == "error"]

    assert [(f.path, f.message[:5]) for f in errors] == [
        ("Bundle.entry[0].resource.period", "per-1")
    ]


def test_ref_1_applies_only_to_local_references_that_resolve_nowhere() -> None:
    by_identifier = {**GOOD_SLOT, "schedule": {"identifier": {"value": "x"}}}
    dangling = {**GOOD_SLOT, "schedule": {"reference": "#nowhere"}}

    assert not [f for f in Checker().check(by_identifier) if f.severity == "error"]
    assert [f.message[:5] for f in Checker().check(dangling) if f.severity == "error"] == ["ref-1"]


@pytest.mark.usefixtures("node_validators")
def test_each_validator_catches_what_it_is_there_for(tmp_path: Path) -> None:
    bad_patient = {
        "resourceType": "Patient",
        "gender": "sometimes",
        "birthDate": "2020-13-45",
        "favouriteColour": "blue",
    }
    both_value_and_children = {
        **GOOD_SLOT,
        "extension": [
            {"url": "http://x/e", "valueInteger": 1, "extension": [{"url": "a", "valueInteger": 2}]}
        ],
    }
    appointment_backwards = {
        "resourceType": "Appointment",
        "status": "booked",
        "start": "2027-01-04T16:00:00Z",
        "end": "2027-01-04T15:00:00Z",
        "participant": [{"actor": {"reference": "Patient/p"}, "status": "accepted"}],
    }
    out = _saved(
        tmp_path,
        {
            "good": {
                "resourceType": "Bundle",
                "type": "searchset",
                "total": 1,
                "entry": [
                    {
                        "fullUrl": "http://x/Slot/s1",
                        "resource": GOOD_SLOT,
                        "search": {"mode": "match"},
                    }
                ],
            },
            "patient": {
                "resourceType": "Bundle",
                "type": "searchset",
                "total": 1,
                "entry": [
                    {
                        "fullUrl": "http://x/Patient/p",
                        "resource": bad_patient,
                        "search": {"mode": "match"},
                    }
                ],
            },
            "ext": both_value_and_children,
            "appointment": appointment_backwards,
        },
    )

    report = validate(out)

    assert not [i for i in report.errors if i.file.endswith("good.json")], report.render()
    medplum = _errors(report, "medplum")
    assert any("favouriteColour" in e for e in medplum), medplum
    assert any("birthDate" in e for e in medplum), medplum
    assert any("Patient.gender" in e and "sometimes" in e for e in _errors(report, "fhirjs"))
    assert any("favouriteColour" in e for e in _errors(report, "fhirkit"))
    invariants = _errors(report, "invariants")
    assert any("ext-1" in e for e in invariants), invariants
    assert any("facade-appt-1" in e for e in invariants), invariants


def test_a_status_other_than_the_expected_one_is_an_error(tmp_path: Path) -> None:
    out = _saved(tmp_path, {"read": GOOD_SLOT})
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["exchanges"][0]["expected"] = [404]
    (out / "manifest.json").write_text(json.dumps(manifest))

    report = validate(out, use_node=False)

    assert [i.message for i in report.errors] == ["status 200, expected 404"]


# -- SMART discovery (conformance/gate/smart.py) --------------------------------------

TOKEN = "https://clinic.example/auth/token"
CAPABILITY = {
    "resourceType": "CapabilityStatement",
    "rest": [
        {
            "security": {
                "extension": [
                    {
                        "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                        "extension": [{"url": "token", "valueUri": TOKEN}],
                    }
                ]
            }
        }
    ],
}
GOOD_DISCOVERY = {
    "token_endpoint": TOKEN,
    "grant_types_supported": ["client_credentials"],
    "token_endpoint_auth_methods_supported": ["private_key_jwt"],
    "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
    "capabilities": ["client-confidential-asymmetric", "permission-v2"],
}


def _discovery_saved(tmp_path: Path, discovery: dict[str, Any]) -> Path:
    (tmp_path / "001-metadata.json").write_text(json.dumps(CAPABILITY))
    (tmp_path / "002-smart.json").write_text(json.dumps(discovery))
    common = {"method": "GET", "status": 200, "expected": [200]}
    exchanges = [
        common
        | {"index": 1, "label": "metadata", "url": "metadata", "file": "001-metadata.json"}
        | {"content_type": "application/fhir+json"},
        common
        | {"index": 2, "label": "smart-configuration", "url": "smart", "file": "002-smart.json"}
        | {"content_type": "application/json", "document": "smart-configuration"},
    ]
    (tmp_path / "manifest.json").write_text(json.dumps({"exchanges": exchanges, "notes": []}))
    return tmp_path


def test_a_complete_discovery_document_that_agrees_with_oauth_uris_passes(tmp_path: Path):
    report = validate(_discovery_saved(tmp_path, GOOD_DISCOVERY), use_node=False)
    assert _errors(report, "smart") == []
    assert report.validated["smart"] == 1


@pytest.mark.parametrize(
    ("change", "caught"),
    [
        ({"token_endpoint": None}, "token_endpoint"),
        ({"token_endpoint": "https://elsewhere/token"}, "oauth-uris#token"),
        (
            {"capabilities": ["launch-standalone", "client-confidential-asymmetric"]},
            "authorization_endpoint",
        ),
        ({"token_endpoint_auth_signing_alg_values_supported": ["HS256"]}, "RS384 or ES384"),
        ({"authorization_endpoint": "https://idp/auth"}, "S256"),
    ],
)
def test_an_incomplete_or_disagreeing_discovery_document_is_caught(
    tmp_path: Path, change: dict[str, Any], caught: str
):
    discovery = {k: v for k, v in (GOOD_DISCOVERY | change).items() if v is not None}
    report = validate(_discovery_saved(tmp_path, discovery), use_node=False)
    assert any(caught in e for e in _errors(report, "smart")), _errors(report, "smart")

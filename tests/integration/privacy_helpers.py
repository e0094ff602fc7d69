"""Helpers for the patient, insurance, privacy and audit tests: tokens with chosen
subjects, request bodies, R4 validation of everything a response carries."""

from __future__ import annotations

import datetime as dt
import importlib
import json
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from store.models import OrganizationKind, ProviderGroup
from tests.factories import MRN
from tests.validation import assert_valid

FHIR_JSON = "application/fhir+json"
SSN = "http://hl7.org/fhir/sid/us-ssn"
SELF_PAY = "http://terminology.hl7.org/CodeSystem/coverage-selfpay"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
RESTRICTED = {"system": CONFIDENTIALITY, "code": "R", "display": "restricted"}
MEMBER = "urn:example:payer:member"

STAFF = "user/*.cruds"
PRIVACY_OFFICER = "user/*.cruds __patient.blocked"
AUDITOR = "user/AuditEvent.rs __audit.read __patient.blocked"
#: An auditor without the privacy permission: restricted patients' events stay hidden.
PLAIN_AUDITOR = "user/AuditEvent.rs __audit.read"

# Models `tests.validation.assert_valid` does not know yet; validated with the R4B
# models directly (the same check, without the extra invariants).
_PLAIN = {"Coverage": "coverage", "AuditEvent": "auditevent", "Parameters": "parameters"}


def valid(resource: dict[str, Any]) -> None:
    """Raise unless `resource` (and every entry of a Bundle) is valid R4 (R4B models)."""
    kind = resource["resourceType"]
    if kind == "Bundle":
        importlib.import_module("fhir.resources.R4B.bundle").Bundle.model_validate(resource)
        for entry in resource.get("entry", []):
            # A batch-response entry holds a resource, an outcome, or both.
            for part in (entry.get("resource"), entry.get("response", {}).get("outcome")):
                if part is not None:
                    valid(part)
    elif kind in _PLAIN:
        module = importlib.import_module(f"fhir.resources.R4B.{_PLAIN[kind]}")
        getattr(module, kind).model_validate(resource)
    else:
        assert_valid(resource)


def body(response: TestResponse, status: int) -> dict[str, Any]:
    """The FHIR body after checking status, media type and R4 validity."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert response.mimetype == FHIR_JSON, response.content_type
    parsed: dict[str, Any] = response.get_json(force=True)
    valid(parsed)
    return parsed


def refusal(
    response: TestResponse, status: int, *, code: str | None = None, expression: str | None = None
) -> dict[str, Any]:
    """The first issue of an OperationOutcome answer, checked."""
    outcome = body(response, status)
    assert outcome["resourceType"] == "OperationOutcome", outcome
    issue: dict[str, Any] = outcome["issue"][0]
    assert issue["severity"] == "error", issue
    if code is not None:
        assert issue["code"] == code, issue
    if expression is not None:
        assert issue.get("expression") == [expression], issue
    return issue


def token(app: Flask, scope: str, subject: str = "tester") -> dict[str, str]:
    """Authorization headers for a token of `subject` with `scope`."""
    minted = app.extensions["fhir_facade.tokens"].mint(subject, scope, dt.timedelta(hours=1))
    return {"Authorization": f"Bearer {minted}"}


def send(
    client: FlaskClient,
    method: str,
    url: str,
    payload: Any,
    headers: dict[str, str],
) -> TestResponse:
    return client.open(
        url, method=method, data=json.dumps(payload), content_type=FHIR_JSON, headers=headers
    )


def matches(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def included(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "include"]


def match_ids(bundle: dict[str, Any]) -> list[str]:
    return [r["id"] for r in matches(bundle)]


def patient_body(
    family: str,
    given: str = "Maria",
    *,
    mrn: str | None = None,
    ssn: str | None = None,
    phone: str | None = None,
    birth_date: str = "1980-05-17",
    gender: str = "female",
    restricted: bool = False,
    **elements: Any,
) -> dict[str, Any]:
    """A registration as an EHR sends it."""
    resource: dict[str, Any] = {"resourceType": "Patient"}
    if restricted:
        resource["meta"] = {"security": [RESTRICTED]}
    identifiers = []
    if mrn:
        identifiers.append({"system": MRN, "value": mrn})
    if ssn:
        identifiers.append({"system": SSN, "value": ssn})
    if identifiers:
        resource["identifier"] = identifiers
    resource["name"] = [{"use": "official", "family": family, "given": given.split()}]
    if phone:
        resource["telecom"] = [{"system": "phone", "value": phone, "use": "mobile"}]
    resource["gender"] = gender
    resource["birthDate"] = birth_date
    resource.update(elements)
    return resource


def coverage_body(
    beneficiary: str,
    *,
    payor: str,
    status: str = "active",
    order: int | None = None,
    member: str | None = None,
    subscriber: str | None = None,
    self_pay: bool = False,
    period: tuple[str | None, str | None] | None = None,
    **elements: Any,
) -> dict[str, Any]:
    """A Coverage as an EHR sends it; `payor` is a reference ("Organization/x")."""
    resource: dict[str, Any] = {"resourceType": "Coverage"}
    if member:
        resource["identifier"] = [{"system": MEMBER, "value": member}]
    resource["status"] = status
    if self_pay:
        coding = {"system": SELF_PAY, "code": "pay", "display": "PAY"}
    else:
        coding = {"system": ACT_CODE, "code": "EHCPOL", "display": "extended healthcare"}
    resource["type"] = {"coding": [coding]}
    if subscriber:
        resource["subscriber"] = {"reference": f"Patient/{subscriber}"}
    resource["beneficiary"] = {"reference": f"Patient/{beneficiary}"}
    if period is not None:
        resource["period"] = {
            k: v for k, v in (("start", period[0]), ("end", period[1])) if v is not None
        }
    resource["payor"] = [{"reference": payor}]
    if order is not None:
        resource["order"] = order
    resource.update(elements)
    return resource


def make_payer(db: Session, ident: str, name: str = "Blue Harbor Health Plan") -> str:
    """A payer Organization, made through the store as the demo makes them."""
    db.add(ProviderGroup(id=ident, name=name, kind=OrganizationKind.PAYER))
    db.flush()
    return ident


def create(
    client: FlaskClient, resource: dict[str, Any], headers: dict[str, str]
) -> dict[str, Any]:
    """POST a resource; 201 expected; the stored resource."""
    response = send(client, "POST", f"/fhir/{resource['resourceType']}", resource, headers)
    return body(response, 201)

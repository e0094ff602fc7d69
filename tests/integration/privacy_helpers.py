"""Helpers for the patient, insurance, privacy and audit tests: tokens with chosen
subjects, scopes, and Patient and Coverage request bodies (response checks are in
`helpers`)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from store.models import OrganizationKind, ProviderGroup
from tests.factories import MRN
from tests.integration.helpers import FHIR_JSON, fhir

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
    return fhir(response, 201)

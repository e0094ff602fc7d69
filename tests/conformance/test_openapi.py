"""The OpenAPI document (`/openapi.json`) is valid, documents every FHIR route, and the
server keeps its word: schemathesis generates requests for every documented operation
(bounded budget, fixed seed) against the WSGI app with the demo clinic loaded and an
all-powerful token, and every answer must be no 5xx and match its documented schema.

FHIR_FACADE_FUZZ_EXAMPLES raises the budget per operation (default below). The fuzz
runs on both backends, PostgreSQL with a quarter of the budget (same seed, so the same
first cases): the database-specific refusals (NUL, lengths, statement size) are what
differ between them, and tests/integration/test_hostile_input.py aims at those.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import response_schema_conformance
from schemathesis.specs.openapi.definitions import OPENAPI_30_VALIDATOR

#: Examples per operation; operations with a resource body generate slowly (deep schemas).
EXAMPLES = int(os.environ.get("FHIR_FACADE_FUZZ_EXAMPLES", "12"))
# Generating a FHIR body from its schema costs ~0.3 s (most of this test's time).
BODY_EXAMPLES = max(1, EXAMPLES // 12)
SCOPES = "user/*.cruds __schedule.manage __patient.blocked __audit.read"
_CONVERTER = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")


@pytest.fixture
def document(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    body = response.get_json()
    assert isinstance(body, dict)
    return body


def test_the_document_is_valid_openapi_3_0(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.0.3"
    errors = [
        f"{e.instance_path}: {e.message[:200]}" for e in OPENAPI_30_VALIDATOR.iter_errors(document)
    ]
    assert errors == []
    schemathesis.openapi.from_dict(document)  # schemathesis' own loader accepts it too


def test_interactive_docs_are_served_without_a_token_and_load_the_document(
    client: FlaskClient,
) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert "swagger-ui" in page.get_data(as_text=True)
    assert "/openapi.json" in page.get_data(as_text=True)


def test_every_fhir_route_and_method_is_documented(app: Flask, document: dict[str, Any]) -> None:
    served = {
        (_CONVERTER.sub(r"{\1}", rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/fhir")
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    documented = {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert served == documented


def test_resources_are_documented_with_schemas_derived_from_the_r4b_models(
    document: dict[str, Any],
) -> None:
    schemas = document["components"]["schemas"]
    slot = schemas["Slot"]
    assert slot["properties"]["resourceType"] == {"type": "string", "enum": ["Slot"]}
    assert {"resourceType", "schedule", "start", "end", "status"} <= set(slot["required"])
    assert slot["properties"]["schedule"] == {"$ref": "#/components/schemas/Reference"}
    assert slot["properties"]["status"]["enum"][:2] == ["busy", "free"]
    assert "Reference" in schemas and "BundleEntry" in schemas
    create = document["paths"]["/fhir/Slot"]["post"]
    assert create["requestBody"]["content"]["application/fhir+json"]["schema"] == {
        "$ref": "#/components/schemas/Slot"
    }
    search = document["paths"]["/fhir/Slot"]["get"]
    names = {p["name"] for p in search["parameters"]}
    assert {"schedule", "start", "status", "_include", "_revinclude", "_count"} <= names
    assert document["security"] == [{"bearer": []}]
    assert document["paths"]["/fhir/metadata"]["get"]["security"] == []


@pytest.mark.slow
def test_fuzzing_every_operation_finds_no_server_error_and_no_schema_violation(
    app: Flask, client: FlaskClient, database_url: str, demo_clinic: Callable[[], bool]
) -> None:
    share = 1 if database_url.startswith("sqlite") else 4
    demo_clinic()
    token = app.extensions["fhir_facade.tokens"].mint("fuzzer", SCOPES, dt.timedelta(hours=1))
    # Over WSGI, schemathesis asks for gzip but does not inflate what it gets: compression
    # is the HTTP layer's business (tests/integration/test_cors_and_compression.py).
    auth = {"Authorization": f"Bearer {token}", "Accept-Encoding": "identity"}
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    failures: list[str] = []
    cases = 0

    def fuzz(operation: Any, examples: int, **fixed: Any) -> None:
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(**fixed))
        def run(case: Any) -> None:
            nonlocal cases
            cases += 1
            response = case.call(headers=auth)
            try:
                case.validate_response(
                    response,
                    checks=[not_a_server_error, response_schema_conformance],
                    headers=auth,
                )
            except FailureGroup as exc:
                failures.append(f"{operation.label}\n{str(exc)[:2000]}")

        run()

    for result in schema.get_all_operations():
        operation = result.ok()
        content = operation.definition.raw.get("requestBody", {}).get("content", {})
        examples = BODY_EXAMPLES if "application/fhir+json" in content else EXAMPLES
        fuzz(operation, max(1, examples // share))
        if "{ident}" in operation.path:
            # Random ids only meet 404s: also aim at a resource the demo clinic has.
            known = _first_id(client, auth, operation.path.split("/")[2])
            fuzz(operation, max(1, BODY_EXAMPLES // share), path_parameters={"ident": known})

    assert cases >= 400 // share
    assert not failures, f"{len(failures)} failing cases of {cases}:\n\n" + "\n".join(failures[:20])


def _first_id(client: FlaskClient, auth: dict[str, str], resource_type: str) -> str:
    if resource_type == "Subscription":  # the demo clinic has none (and fuzzing deletes)
        created = client.post("/fhir/Subscription", json=_SUBSCRIPTION, headers=auth)
        return str(created.get_json()["id"])
    bundle = client.get(f"/fhir/{resource_type}?_count=1", headers=auth).get_json()
    return str(bundle["entry"][0]["resource"]["id"])


_SUBSCRIPTION = {
    "resourceType": "Subscription",
    "status": "requested",
    "reason": "fuzzing",
    "criteria": "http://fhir-facade.org/fhir/SubscriptionTopic/appointment",
    "channel": {"type": "rest-hook", "endpoint": "https://receiver.example.org/hook"},
}

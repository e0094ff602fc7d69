"""The CapabilityStatement says exactly what the routes do."""

from __future__ import annotations

import pytest

from fhir_facade.auth import AUDIT_READ, PATIENT_BLOCKED, SCHEDULE_MANAGE
from fhir_facade.capability import capability_statement, smart_configuration
from fhir_facade.notify.conformance import RESOURCE_TYPE as SUBSCRIPTION
from fhir_facade.registry import RESOURCE_TYPES
from mappings.search_params import SEARCHES
from tests.validation import assert_valid

BASE = "http://x/fhir"


@pytest.fixture(scope="module")
def statement():
    return capability_statement(BASE)


def declared(statement) -> dict[str, dict]:
    (rest,) = statement["rest"]
    return {entry["type"]: entry for entry in rest["resource"]}


def test_the_capability_statement_is_valid_r4(statement):
    assert_valid(statement)


def test_it_declares_fhir_4_0_1_json_for_this_server(statement):
    assert statement["fhirVersion"] == "4.0.1"
    assert statement["format"] == ["json"]
    assert statement["kind"] == "instance"
    assert statement["implementation"]["url"] == BASE
    assert statement["rest"][0]["mode"] == "server"


def test_it_lists_exactly_the_resource_types_served(statement):
    # Subscription is served beside the registry (fhir_facade.notify), declared last.
    assert list(declared(statement)) == [*RESOURCE_TYPES, SUBSCRIPTION]


@pytest.mark.parametrize("name", list(RESOURCE_TYPES))
def test_each_type_declares_its_interactions(statement, name):
    interactions = [i["code"] for i in declared(statement)[name]["interaction"]]
    assert interactions == list(RESOURCE_TYPES[name].interactions)


@pytest.mark.parametrize("name", list(RESOURCE_TYPES))
def test_each_type_declares_every_search_parameter(statement, name):
    params = {p["name"]: p["type"] for p in declared(statement)[name]["searchParam"]}
    assert params == {p.name: p.type for p in SEARCHES[name].params.values()}


@pytest.mark.parametrize("name", list(RESOURCE_TYPES))
def test_each_type_declares_its_includes_and_revincludes(statement, name):
    entry = declared(statement)[name]
    assert entry.get("searchInclude", []) == list(SEARCHES[name].includes)
    assert entry.get("searchRevInclude", []) == list(SEARCHES[name].revincludes)


def test_bookings_are_created_and_updated_conditionally(statement):
    appointment = declared(statement)["Appointment"]
    assert {"create", "update"} <= {i["code"] for i in appointment["interaction"]}
    assert appointment["conditionalCreate"] is True
    assert appointment["versioning"] == "versioned-update"


def test_the_slot_search_supports_the_design_parameters(statement):
    params = {p["name"] for p in declared(statement)["Slot"]["searchParam"]}
    assert {"schedule", "start", "status", "appointment-type", "service-type"} <= params
    assert declared(statement)["Slot"]["searchInclude"] == ["Slot:schedule"]
    assert declared(statement)["Slot"]["searchRevInclude"] == ["Appointment:slot"]


def test_the_security_section_names_smart_and_the_permission_scopes(statement):
    security = statement["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    assert SCHEDULE_MANAGE in security["description"]
    assert PATIENT_BLOCKED in security["description"]


def test_smart_configuration_advertises_the_permission_scopes():
    config = smart_configuration(BASE)
    assert {SCHEDULE_MANAGE, PATIENT_BLOCKED, AUDIT_READ} <= set(config["scopes_supported"])
    assert set(config["permission_scopes"]) == {SCHEDULE_MANAGE, PATIENT_BLOCKED, AUDIT_READ}
    assert "user/Appointment.cruds" in config["scopes_supported"]
    assert "system/Coverage.cruds" in config["scopes_supported"]


def test_smart_configuration_names_the_embedded_token_service_beside_the_fhir_base():
    config = smart_configuration("https://clinic.example/fhir")
    assert config["token_endpoint"] == "https://clinic.example/auth/token"
    assert config["grant_types_supported"] == ["client_credentials"]


def test_the_capability_statement_carries_the_oauth_uris_of_the_token_service():
    (rest,) = capability_statement("https://clinic.example/fhir")["rest"]
    (extension,) = rest["security"]["extension"]
    assert extension["extension"] == [
        {"url": "token", "valueUri": "https://clinic.example/auth/token"}
    ]

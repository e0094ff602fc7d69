"""The conformance package (conformance/package, FHIR NPM layout) is installable, valid
R4, generated from the code, and defines everything we emit, accept and declare."""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

import fhir_facade
import mappings
import store
from conformance.package import build
from fhir_facade import operations
from fhir_facade.capability import capability_statement
from fhir_facade.notify.conformance import OPERATIONS as SUBSCRIPTION_OPERATIONS
from fhir_facade.outcomes import _TABLE
from fhir_facade.registry import RESOURCE_TYPES
from mappings import series
from mappings.codes import (
    APPOINTMENT_TYPES,
    CANONICAL,
    CS_APPOINTMENT_TYPE_LOCAL,
    CS_SERVICE_TYPE_LOCAL,
    SERVICE_TYPES,
    SYSTEM_MRN,
)
from mappings.outcome import CS_OUTCOME

PACKAGE = build.HERE
Resource = dict[str, Any]

#: Extensions we emit or accept that others define, and where.
EXTERNAL_EXTENSIONS = {
    # R4 core (hl7.fhir.r4.core).
    "http://hl7.org/fhir/StructureDefinition/timezone",
    # SMART Scheduling Links, for slot aggregators.
    "http://fhir-registry.smarthealthit.org/StructureDefinition/slot-capacity",
    # R5 elements as R4 cross-version extensions, which validators resolve themselves.
    "http://hl7.org/fhir/5.0/StructureDefinition/extension-Appointment.recurrenceTemplate",
    "http://hl7.org/fhir/5.0/StructureDefinition/extension-Appointment.originatingAppointment",
    "http://hl7.org/fhir/5.0/StructureDefinition/extension-Appointment.recurrenceId",
    # Subscriptions R5 Backport IG (hl7.fhir.uv.subscriptions-backport 1.1.0).
    *(
        f"http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-{name}"
        for name in (
            "filter-criteria",
            "payload-content",
            "heartbeat-period",
            "timeout",
            "max-count",
        )
    ),
}


def _read(path: Path) -> Resource:
    content: Resource = json.loads(path.read_text(encoding="utf-8"))
    return content


def _resources(folder: Path = PACKAGE) -> dict[str, Resource]:
    return {
        p.name: _read(p)
        for p in sorted(folder.glob("*.json"))
        if p.name not in ("package.json", ".index.json")
    }


def _definitions() -> dict[str, Resource]:
    """Conformance resources by canonical url."""
    return {r["url"]: r for r in _resources().values() if "url" in r}


def test_the_committed_package_is_what_the_code_generates():
    assert build.stale() == [], "run: python -m conformance.package.build"


def test_the_packaged_capability_statement_is_the_server_s():
    (statement,) = [r for r in _resources().values() if r["resourceType"] == "CapabilityStatement"]
    assert statement == capability_statement(CANONICAL)


@pytest.mark.parametrize("folder", [PACKAGE, PACKAGE / "example"], ids=["package", "example"])
def test_every_resource_is_valid_r4(folder):
    found = _resources(folder)
    assert found
    for name, resource in found.items():
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        assert name == f"{resource['resourceType']}-{resource['id']}.json"


def test_package_json_has_what_fhir_packages_need():
    manifest = _read(PACKAGE / "package.json")
    assert manifest["name"] == "fhir-facade.conformance"
    assert manifest["version"] == "0.1.0"
    assert manifest["fhirVersions"] == ["4.0.1"]
    assert manifest["canonical"] == CANONICAL
    assert manifest["type"] == "fhir.ig"
    assert manifest["dependencies"] == {"hl7.fhir.r4.core": "4.0.1"}
    assert manifest["description"] and manifest["author"]


@pytest.mark.parametrize("folder", [PACKAGE, PACKAGE / "example"], ids=["package", "example"])
def test_the_index_lists_exactly_the_files(folder):
    index = _read(folder / ".index.json")
    assert index["index-version"] == 1
    listed = {entry["filename"]: entry for entry in index["files"]}
    found = _resources(folder)
    assert set(listed) == set(found)
    for name, resource in found.items():
        entry = listed[name]
        assert entry["resourceType"] == resource["resourceType"]
        assert entry["id"] == resource["id"]
        for key in ("url", "version", "kind", "type"):
            assert entry.get(key) == (
                resource.get(key) if isinstance(resource.get(key), str) else None
            )


def _extension_urls() -> set[str]:
    """Every StructureDefinition URL the mappings hold as a constant: what we emit or accept."""
    urls = set()
    for module in pkgutil.iter_modules(mappings.__path__):
        loaded = importlib.import_module(f"mappings.{module.name}")
        urls.update(
            value
            for name, value in vars(loaded).items()
            if name.startswith("EXT_") and isinstance(value, str)
        )
    return urls


def test_every_extension_we_emit_or_accept_is_defined():
    urls = _extension_urls()
    defined = {
        url
        for url, r in _definitions().items()
        if r["resourceType"] == "StructureDefinition" and r["type"] == "Extension"
    }
    ours = {u for u in urls if u.startswith(CANONICAL)}
    assert ours == defined, "our extensions vs their StructureDefinitions"
    assert urls - ours == EXTERNAL_EXTENSIONS


def test_every_extension_in_the_examples_is_defined():
    known = set(_definitions()) | EXTERNAL_EXTENSIONS

    def urls(node: Any) -> set[str]:
        if isinstance(node, list):
            return set().union(*map(urls, node)) if node else set()
        if not isinstance(node, dict):
            return set()
        found = {node["url"]} if "url" in node and str(node["url"]).startswith("http") else set()
        return found | set().union(*(urls(v) for k, v in node.items() if k != "url"))

    for name, example in _resources(PACKAGE / "example").items():
        assert urls(example.get("extension", [])) <= known, name


def test_the_slot_example_conforms_to_the_group_session_profile():
    profile = _definitions()[f"{CANONICAL}/StructureDefinition/group-session"]
    slices = [e for e in profile["differential"]["element"] if e.get("sliceName")]
    slot = _read(PACKAGE / "example" / "Slot-example-group-session.json")
    carried = [e["url"] for e in slot["extension"]]
    for element in slices:
        count = carried.count(element["type"][0]["profile"][0])
        assert element["min"] <= count <= int(element["max"]), element["sliceName"]


def _concepts(url: str) -> set[str]:
    code_system = _definitions()[url]
    assert code_system["resourceType"] == "CodeSystem" and code_system["content"] == "complete"
    assert code_system["count"] == len(code_system["concept"])
    return {c["code"] for c in code_system["concept"]}


def test_our_code_systems_hold_every_code_the_tables_use():
    for table, system in (
        (APPOINTMENT_TYPES, CS_APPOINTMENT_TYPE_LOCAL),
        (SERVICE_TYPES, CS_SERVICE_TYPE_LOCAL),
    ):
        assert _concepts(system) == {c.code for c in table.values() if c.system == system}


def _outcome_detail_codes() -> set[str]:
    """Every code our OperationOutcomes put in details.coding: the error table's details,
    and the first argument of every Notice(...) and every detail= keyword in the code."""
    codes = {mapped.detail for _, mapped in _TABLE if mapped.detail}
    for package in (store, mappings, fhir_facade):
        for module in pkgutil.iter_modules(package.__path__):
            name = f"{package.__name__}.{module.name}"
            path = Path(package.__path__[0]) / f"{module.name}.py"
            if not path.is_file():
                continue
            loaded = importlib.import_module(name)
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Call):
                    continue
                values = [k.value for k in node.keywords if k.arg == "detail"]
                if getattr(node.func, "id", None) == "Notice" and node.args:
                    values.append(node.args[0])
                for value in values:
                    if isinstance(value, ast.Constant) and isinstance(value.value, str):
                        codes.add(value.value)
                    elif isinstance(value, ast.Name) and isinstance(
                        getattr(loaded, value.id, None), str
                    ):
                        codes.add(getattr(loaded, value.id))
    return codes


def test_the_outcome_code_system_holds_exactly_the_codes_we_send():
    assert _concepts(CS_OUTCOME) == _outcome_detail_codes()


OPERATION_DEFINITIONS = {
    op.code: op.definition("Appointment") for op in RESOURCE_TYPES["Appointment"].operations
}


def test_the_operation_definitions_are_the_ones_the_server_declares():
    found = {
        r["code"]: r for r in _definitions().values() if r["resourceType"] == "OperationDefinition"
    }
    assert {code: r["url"] for code, r in found.items()} == {
        **OPERATION_DEFINITIONS,
        **SUBSCRIPTION_OPERATIONS,
    }


def _in_parameters(code: str) -> set[str]:
    definition = _definitions()[OPERATION_DEFINITIONS[code]]
    return {p["name"] for p in definition["parameter"] if p["use"] == "in"}


def test_the_operation_parameters_are_the_ones_the_mappings_accept():
    # The mappings' own tables of accepted parameter names (private: they are the truth).
    assert _in_parameters("find") == set(series._FIND_PARAMETERS)
    assert _in_parameters("book") == set(series._BOOK_PARAMETERS)
    assert _in_parameters("cancel-series") == {"scope", "reason"}
    definition = _definitions()[OPERATION_DEFINITIONS["cancel-series"]]
    (scope,) = [p for p in definition["parameter"] if p["name"] == "scope"]
    assert all(value in scope["documentation"] for value in operations._SCOPES)


def test_every_canonical_the_capability_statement_names_is_in_the_package():
    statement = capability_statement(CANONICAL)
    named = set()
    for entry in statement["rest"][0]["resource"]:
        named.update(entry.get("supportedProfile", []))
        named.update(op["definition"] for op in entry.get("operation", []))
        named.update(p["definition"] for p in entry["searchParam"] if "definition" in p)
    missing = named - set(_definitions())
    assert not missing
    for entry in statement["rest"][0]["resource"]:
        for param in entry["searchParam"]:
            if "definition" in param:
                definition = _definitions()[param["definition"]]
                assert definition["code"] == param["name"]
                assert definition["type"] == param["type"]
                assert entry["type"] in definition["base"]


def test_every_search_parameter_in_the_package_is_declared():
    statement = capability_statement(CANONICAL)
    declared = {
        p["definition"]
        for entry in statement["rest"][0]["resource"]
        for p in entry["searchParam"]
        if "definition" in p
    }
    packaged = {u for u, r in _definitions().items() if r["resourceType"] == "SearchParameter"}
    assert packaged == declared


def test_the_mrn_system_is_a_naming_system():
    naming = [r for r in _resources().values() if r["resourceType"] == "NamingSystem"]
    assert SYSTEM_MRN in {u["value"] for n in naming for u in n["uniqueId"]}


def test_the_package_loads_as_a_folder_into_the_hl7_validator():
    """`-ig <folder>` reads the folder's files (not dot files, not sub-folders): only
    resources and package.json may sit beside them, so examples stay out of the context."""
    loose = {
        p.name
        for p in PACKAGE.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix != ".json"
    }
    assert loose <= {"build.py"}

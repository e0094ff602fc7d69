"""The CapabilityStatement cannot lie (issue 5, item 2).

Everything `GET /fhir/metadata` declares is exercised against the demo clinic on
both stores: each resource type's interactions (read, search-type, create, update),
each search parameter with a value taken from real data, each `_include` and
`_revinclude`, each operation, each system interaction. And everything the server
implements is declared: its routes, the search parameters, includes and chains its
search tables accept, and the shapes (type / instance) of its operations.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from fhir_facade.auth import AUDIT_READ, PATIENT_BLOCKED, SCHEDULE_MANAGE
from mappings.codes import EXT_GROUP_CAPACITY, EXT_TIMEZONE
from mappings.coverage import CS_SELF_PAY
from mappings.search import RESULT_PARAMS
from mappings.search_params import SEARCHES
from store.db import Database
from store.models import (
    Booking,
    BookingIdentifier,
    Coverage,
    CoverageIdentifier,
    Department,
    GroupSession,
    ProviderSchedule,
)
from tests.validation import assert_valid

PACKAGE = Path(__file__).resolve().parents[2] / "conformance" / "package"
FHIR_JSON = "application/fhir+json"
EVERYTHING = f"user/*.cruds {SCHEDULE_MANAGE} {PATIENT_BLOCKED} {AUDIT_READ}"
Resource = dict[str, Any]
#: Declared types with interactions of their own, exercised by their own tests (their
#: routes are still held against the declaration below).
OWN_TESTS = {"Subscription": "tests/integration/test_subscriptions.py"}


# -- helpers -------------------------------------------------------------------------


def valid(resource: Resource) -> Resource:
    assert_valid(resource)
    return resource


def answer(response: TestResponse, status: int, what: str) -> Resource:
    assert response.status_code == status, (what, response.status_code, response.get_data(True))
    assert response.mimetype == FHIR_JSON, (what, response.content_type)
    return valid(response.get_json(force=True))


def resources(bundle: Resource, mode: str = "match") -> list[Resource]:
    return [
        e["resource"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == mode
    ]


def first(value: Any, *path: str | int) -> Any:
    """Walk dicts by key and lists by index (a bare list step takes its first item)."""
    for step in path:
        if isinstance(value, list) and not isinstance(step, int):
            value = value[0] if value else None
        if value is None:
            return None
        value = value[step] if isinstance(step, int) else value.get(step)
    if isinstance(value, list):
        return value[0] if value else None
    return value


def token(identifier: Any) -> str | None:
    if not identifier or "value" not in identifier:
        return None
    return f"{identifier['system']}|{identifier['value']}" if "system" in identifier else None


def coded(concept: Any) -> str | None:
    coding = first(concept, "coding")
    return f"{coding['system']}|{coding['code']}" if coding else None


def reference(value: Any) -> str | None:
    return value.get("reference") if isinstance(value, dict) else None


def day(value: Any) -> str | None:
    return value[:10] if isinstance(value, str) else None


@dataclass
class Server:
    """The app on a store loaded with the demo clinic, with a token that may do anything."""

    app: Flask
    client: FlaskClient
    headers: dict[str, str]
    metadata: Resource
    data: dict[str, list[Resource]] = field(default_factory=dict)

    def declared(self, *, own_tests: bool = False) -> dict[str, Resource]:
        """The declared types this module exercises (`own_tests`: also those that
        OWN_TESTS names, whose routes are checked here and behaviour there)."""
        (rest,) = self.metadata["rest"]
        return {
            entry["type"]: entry
            for entry in rest["resource"]
            if own_tests or entry["type"] not in OWN_TESTS
        }

    def get(self, url: str, status: int = 200) -> Resource:
        return answer(self.client.get(url, headers=self.headers), status, f"GET {url}")

    def send(self, method: str, url: str, body: Resource, status: int = 200) -> Resource:
        response = self.client.open(
            url, method=method, data=json.dumps(body), content_type=FHIR_JSON, headers=self.headers
        )
        return answer(response, status, f"{method} {url}")

    def search(self, resource_type: str, params: list[tuple[str, str]]) -> Resource:
        query = f"?{urlencode(params)}" if params else ""
        bundle = self.get(f"/fhir/{resource_type}{query}")
        assert bundle["type"] == "searchset", bundle
        return bundle

    def everything(self, resource_type: str) -> list[Resource]:
        """Every resource of a type the caller sees (cached)."""
        if resource_type not in self.data:
            bundle = self.search(resource_type, [("_count", "1000")])
            self.data[resource_type] = resources(bundle)
        return self.data[resource_type]

    def package_definition(self, url: str) -> Resource:
        for path in PACKAGE.glob("*.json"):
            resource = json.loads(path.read_text(encoding="utf-8"))
            if resource.get("url") == url:
                return resource
        raise AssertionError(f"{url} is declared but conformance/package does not define it")


def _identifiers(db: Session) -> None:
    """Business identifiers where the demo clinic has none."""
    department = db.get(Department, "dept-brooklyn")
    schedule = db.get(ProviderSchedule, "sched-rivera-bk")
    assert department is not None and schedule is not None
    department.identifier_system, department.identifier_value = "urn:example:dept", "BK"
    schedule.identifier_system, schedule.identifier_value = "urn:example:calendar", "RIV-1"
    session = db.scalars(select(GroupSession).order_by(GroupSession.start).limit(1)).one()
    session.identifier_system, session.identifier_value = "urn:example:session", "S1"
    session.document = '{"identifier": [{"system": "urn:example:session", "value": "S1"}]}'
    coverage = db.scalars(select(Coverage).order_by(Coverage.id).limit(1)).one()
    db.add(CoverageIdentifier(coverage_id=coverage.id, system="urn:example:member", value="M1"))
    booking = db.scalars(select(Booking).order_by(Booking.id).limit(1)).one()
    db.add(
        BookingIdentifier(
            booking_id=booking.id,
            patient_id=booking.patient_id,
            system="urn:example:ehr",
            value="B1",
        )
    )


@pytest.fixture
def empty_server(app: Flask, client: FlaskClient, mint) -> Server:
    """The app on an empty store: for what the metadata and the route tables say."""
    metadata = answer(client.get("/fhir/metadata"), 200, "GET /fhir/metadata (no token)")
    return Server(app, client, mint(EVERYTHING), metadata)


@pytest.fixture
def server(database: Database, demo_clinic: Callable[[], bool], empty_server: Server) -> Server:
    """The app on the demo clinic."""
    demo_clinic()
    database.write(_identifiers)
    return empty_server


# -- nothing implemented is undeclared -----------------------------------------------

_METHODS_IGNORED = {"HEAD", "OPTIONS"}  # answered by Flask for every route
_NOT_INTERACTIONS = {"/fhir/metadata", "/fhir/.well-known/smart-configuration"}


def _routes(app: Flask) -> set[tuple[str, str]]:
    """(method, rule) for every FHIR route, ids as <id>."""
    found = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/fhir") or rule.rule in _NOT_INTERACTIONS:
            continue
        path = re.sub(r"<[^>]+>", "<id>", rule.rule)
        methods = set(rule.methods or ()) - _METHODS_IGNORED
        found.update((method, path) for method in methods)
    return found


def _declared_routes(server: Server) -> set[tuple[str, str]]:
    """(method, rule) every declared interaction and operation needs."""
    (rest,) = server.metadata["rest"]
    needed = set()
    if {i["code"] for i in rest.get("interaction", [])} & {"transaction", "batch"}:
        needed.add(("POST", "/fhir"))
    by_interaction = {
        "read": [("GET", "/fhir/{t}/<id>")],
        "search-type": [("GET", "/fhir/{t}"), ("POST", "/fhir/{t}/_search")],
        "create": [("POST", "/fhir/{t}")],
        "update": [("PUT", "/fhir/{t}/<id>")],
        "vread": [("GET", "/fhir/{t}/<id>/_history/<id>")],
        "history-instance": [("GET", "/fhir/{t}/<id>/_history")],
        "delete": [("DELETE", "/fhir/{t}/<id>")],
    }
    for name, entry in server.declared(own_tests=True).items():
        for interaction in entry["interaction"]:
            code = interaction["code"]
            assert code in by_interaction, f"{name}: no route shape known for {code!r}"
            needed.update((m, rule.format(t=name)) for m, rule in by_interaction[code])
        for operation in entry.get("operation", []):
            definition = server.package_definition(operation["definition"])
            assert definition["code"] == operation["name"], (operation, definition["code"])
            assert name in definition["resource"], (name, definition["resource"])
            if definition["type"]:
                needed.add(("POST", f"/fhir/{name}/${definition['code']}"))
            if definition["instance"]:
                needed.add(("POST", f"/fhir/{name}/<id>/${definition['code']}"))
            assert not definition["system"], "system-level operations are not routed"
    return needed


def _get_operations(server: Server) -> set[tuple[str, str]]:
    """GET routes that declared operations may also have: those that change nothing."""
    allowed = set()
    for name, entry in server.declared(own_tests=True).items():
        for operation in entry.get("operation", []):
            definition = server.package_definition(operation["definition"])
            if not definition["affectsState"] and definition["instance"]:
                allowed.add(("GET", f"/fhir/{name}/<id>/${definition['code']}"))
    return allowed


def test_every_route_is_declared_and_every_declared_interaction_is_routed(empty_server):
    server = empty_server
    routed, declared = _routes(server.app), _declared_routes(server)
    undeclared = routed - declared - _get_operations(server)
    assert sorted(undeclared) == [], "implemented but not declared in /fhir/metadata"
    assert sorted(declared - routed) == [], "declared in /fhir/metadata but not routed"


def test_every_search_parameter_include_and_chain_the_server_accepts_is_declared(empty_server):
    server = empty_server
    declared = server.declared()
    assert set(SEARCHES) == set(declared), "types searched vs types declared"
    for name, search in SEARCHES.items():
        entry = declared[name]
        params = {p["name"]: p["type"] for p in entry["searchParam"]}
        assert params == {p.name: p.type for p in search.params.values()}, name
        assert set(entry.get("searchInclude", [])) == set(search.includes), name
        assert set(entry.get("searchRevInclude", [])) == set(search.revincludes), name
        for head in search.chains:
            assert params.get(head) == "reference", f"{name}?{head}.<param> chains undeclared"
    documentation = server.metadata["rest"][0]["documentation"]
    for name, search in SEARCHES.items():
        for head in search.chains:
            assert f"{name}?" in documentation and head in documentation, (name, head)


# -- everything declared works -------------------------------------------------------


def test_the_metadata_is_public_and_valid(empty_server):
    server = empty_server
    assert server.metadata["fhirVersion"] == "4.0.1"
    assert server.metadata["rest"][0]["mode"] == "server"


def _write_something(server: Server) -> None:
    """An audited write, so that the audit trail has something to search."""
    patient = server.everything("Patient")[0]
    server.send("PUT", f"/fhir/Patient/{patient['id']}", patient)
    server.data.clear()  # the patient has a new version, the audit trail a new event


def test_every_declared_type_is_searched_and_read(server):
    _write_something(server)
    for name, entry in server.declared().items():
        interactions = {i["code"] for i in entry["interaction"]}
        assert "search-type" in interactions, name  # every type we serve is searchable
        matches = server.everything(name)
        assert matches, f"the demo data has no {name}: nothing to exercise"
        posted = server.client.post(
            f"/fhir/{name}/_search", data={"_id": matches[0]["id"]}, headers=server.headers
        )
        assert [r["id"] for r in resources(answer(posted, 200, f"{name}/_search"))] == [
            matches[0]["id"]
        ]
        if "read" in interactions:
            for resource in matches[:3]:
                read = server.get(f"/fhir/{name}/{resource['id']}")
                assert read == resource, (name, resource["id"])
        if "vread" in interactions:
            resource = matches[0]
            version = resource["meta"]["versionId"]
            assert server.get(f"/fhir/{name}/{resource['id']}/_history/{version}") == resource
        if "history-instance" in interactions:
            resource = matches[0]
            history = server.get(f"/fhir/{name}/{resource['id']}/_history")
            assert history["type"] == "history", name
            assert history["entry"][0]["resource"] == resource, name


def _patient_token(r: Resource) -> str | None:
    return token(first(r, "identifier"))


#: A plausible value for each declared search parameter, read from a resource that
#: must then match it. A parameter declared without an entry here fails the test.
VALUES: dict[tuple[str, str], Callable[[Resource], str | None]] = {
    ("Organization", "name"): lambda r: first(r, "name")[:5],
    ("Organization", "identifier"): lambda r: token(first(r, "identifier")),
    ("Location", "name"): lambda r: first(r, "name")[:5],
    ("Location", "identifier"): lambda r: token(first(r, "identifier")),
    ("Location", "organization"): lambda r: reference(r.get("managingOrganization")),
    ("Practitioner", "name"): lambda r: first(r, "name", "family"),
    ("Practitioner", "family"): lambda r: first(r, "name", "family"),
    ("Practitioner", "given"): lambda r: first(r, "name", "given"),
    ("Practitioner", "identifier"): lambda r: token(first(r, "identifier")),
    ("Schedule", "actor"): lambda r: reference(first(r, "actor")),
    ("Schedule", "active"): lambda r: str(r["active"]).lower() if "active" in r else None,
    ("Schedule", "date"): lambda r: day(first(r, "planningHorizon", "start")),
    ("Schedule", "identifier"): lambda r: token(first(r, "identifier")),
    ("Slot", "schedule"): lambda r: reference(r.get("schedule")),
    ("Slot", "start"): lambda r: "ge" + r["start"],
    ("Slot", "status"): lambda r: r["status"],
    ("Slot", "appointment-type"): lambda r: coded(r.get("appointmentType")),
    ("Slot", "service-type"): lambda r: coded(first(r, "serviceType")),
    ("Slot", "identifier"): lambda r: token(first(r, "identifier")),
    ("Patient", "identifier"): _patient_token,
    ("Patient", "family"): lambda r: first(r, "name", "family"),
    ("Patient", "given"): lambda r: first(r, "name", "given"),
    ("Patient", "name"): lambda r: first(r, "name", "given"),
    ("Patient", "birthdate"): lambda r: r.get("birthDate"),
    ("Patient", "gender"): lambda r: r.get("gender"),
    ("Patient", "telecom"): lambda r: first(r, "telecom", "value"),
    ("Patient", "phone"): lambda r: first(r, "telecom", "value"),
    ("Coverage", "patient"): lambda r: reference(r.get("beneficiary")),
    ("Coverage", "beneficiary"): lambda r: reference(r.get("beneficiary")),
    ("Coverage", "subscriber"): lambda r: reference(r.get("subscriber")),
    ("Coverage", "payor"): lambda r: reference(first(r, "payor")),
    ("Coverage", "status"): lambda r: r.get("status"),
    ("Coverage", "type"): lambda r: coded(r.get("type")),
    ("Coverage", "identifier"): lambda r: token(first(r, "identifier")),
    ("Appointment", "patient"): lambda r: reference(first(r, "participant", "actor")),
    ("Appointment", "actor"): lambda r: reference(first(r, "participant", "actor")),
    ("Appointment", "practitioner"): lambda r: next(
        (p["actor"]["reference"] for p in r["participant"] if "Practitioner/" in str(p)), None
    ),
    ("Appointment", "location"): lambda r: next(
        (p["actor"]["reference"] for p in r["participant"] if "Location/" in str(p)), None
    ),
    ("Appointment", "date"): lambda r: day(r.get("start")),
    ("Appointment", "status"): lambda r: r.get("status"),
    ("Appointment", "slot"): lambda r: reference(first(r, "slot")),
    ("Appointment", "appointment-type"): lambda r: coded(r.get("appointmentType")),
    ("Appointment", "identifier"): lambda r: token(first(r, "identifier")),
    ("AuditEvent", "date"): lambda r: day(r.get("recorded")),
    ("AuditEvent", "patient"): lambda r: next(
        (e["what"]["reference"] for e in r.get("entity", []) if "Patient/" in str(e)), None
    ),
    ("AuditEvent", "entity"): lambda r: reference(first(r, "entity", "what")),
    ("AuditEvent", "agent"): lambda r: first(r, "agent", "who", "identifier", "value"),
    ("AuditEvent", "action"): lambda r: r.get("action"),
    ("AuditEvent", "subtype"): lambda r: first(r, "subtype", "code"),
}


def test_every_declared_search_parameter_finds_what_it_names(server):
    _write_something(server)
    for name, entry in server.declared().items():
        for param in entry["searchParam"]:
            code = param["name"]
            if code == "_id":
                value, owner = server.everything(name)[0]["id"], server.everything(name)[0]
            elif code == "_lastUpdated":
                owner = server.everything(name)[0]
                value = owner["meta"]["lastUpdated"]
            else:
                assert (name, code) in VALUES, f"{name}?{code} is declared: add a value to VALUES"
                found = [(VALUES[name, code](r), r) for r in server.everything(name)]
                value, owner = next(((v, r) for v, r in found if v), (None, None))
            assert value and owner, f"no {name} in the demo data has a value for {code}"
            assert resources(server.search(name, [(code, value)])), f"{name}?{code}={value}"
            narrowed = server.search(name, [(code, value), ("_id", owner["id"])])
            assert [r["id"] for r in resources(narrowed)] == [owner["id"]], (name, code, value)
            if param["type"] == "date":
                for prefix in _PREFIXES.findall(param.get("documentation", "")):
                    server.search(name, [(code, prefix + value.removeprefix("ge"))])
            for modifier in sorted(SEARCHES[name].params[code].modifiers):
                server.search(name, [(f"{code}:{modifier}", value)])


_PREFIXES = re.compile(r"\b(eq|ne|gt|lt|ge|le|sa|eb|ap)\b")


def test_every_declared_chain_into_the_patient_answers(server):
    for name, search in SEARCHES.items():
        for head in search.chains:
            owners = [r for r in server.everything(name) if VALUES[name, head](r)]
            assert owners, (name, head)
            patient_id = VALUES[name, head](owners[0]).removeprefix("Patient/")
            patient = server.get(f"/fhir/Patient/{patient_id}")
            family = first(patient, "name", "family")
            bundle = server.search(name, [(f"{head}.family", family), ("_id", owners[0]["id"])])
            assert [r["id"] for r in resources(bundle)] == [owners[0]["id"]], (name, head)


#: How to exercise each search result parameter on any type (_sort: every key, below).
RESULT_VALUES: dict[str, Callable[[str], str]] = {
    "_count": lambda name: "2",
    "_offset": lambda name: "1",
    "_summary": lambda name: "count",
    "_elements": lambda name: "outcome" if name == "AuditEvent" else "identifier",
    "_total": lambda name: "none",
    "_format": lambda name: "json",
}


@pytest.mark.slow
def test_every_result_parameter_the_server_accepts_is_declared_and_answers(server):
    documentation = server.metadata["rest"][0]["documentation"]
    accepted = RESULT_PARAMS - {"_include", "_revinclude"}  # declared per type, tested below
    undeclared = sorted(p for p in accepted if p not in documentation)
    assert undeclared == [], "accepted by the search tables, not named in rest.documentation"
    unknown = accepted - {"_sort"} - set(RESULT_VALUES)
    assert not unknown, f"no way to exercise {sorted(unknown)}"
    for name in server.declared():
        for parameter in sorted(accepted - {"_sort"}):
            server.search(name, [(parameter, RESULT_VALUES[parameter](name))])
        for key in SEARCHES[name].sorts:
            for direction in ("", "-"):
                server.search(name, [("_sort", direction + key)])


def test_every_sort_key_and_modifier_the_server_accepts_is_declared(empty_server):
    """R4 has no structured place for modifiers: the parameter's documentation names them.
    `_sort` keys are search parameter names (R4 search.html#sort): each must be declared."""
    server = empty_server
    lies = []
    for name, entry in server.declared().items():
        declared = {p["name"]: p.get("documentation", "") for p in entry["searchParam"]}
        for key in SEARCHES[name].sorts:
            if key not in declared:
                lies.append(f"{name}?_sort={key}: not a declared search parameter")
        for param in SEARCHES[name].params.values():
            for modifier in sorted(param.modifiers):
                if f":{modifier}" not in declared[param.name]:
                    lies.append(f"{name}?{param.name}:{modifier}: accepted, not documented")
    assert lies == [], "\n".join(lies)


def test_every_declared_include_and_revinclude_brings_what_it_names(server):
    for name, entry in server.declared().items():
        for kind in ("_include", "_revinclude"):
            key = "searchInclude" if kind == "_include" else "searchRevInclude"
            for include in entry.get(key, []):
                bundle = server.search(name, [(kind, include), ("_count", "100")])
                assert resources(bundle), (name, include)
                included = resources(bundle, "include")
                assert included, f"{name}?{kind}={include} included nothing"
                if kind == "_revinclude":
                    source = include.split(":")[0]
                    assert {r["resourceType"] for r in included} == {source}, (name, include)


def _new_bodies(server: Server) -> dict[str, Callable[[dict[str, str]], Resource]]:
    """Minimal valid create bodies, in dependency order; the ids created so far are passed."""
    start = dt.datetime.now(dt.UTC).replace(microsecond=0, second=0, minute=0)
    start += dt.timedelta(days=400)

    def organization(ids: dict[str, str]) -> Resource:
        return {"resourceType": "Organization", "name": "Truthful Group"}

    def location(ids: dict[str, str]) -> Resource:
        return {
            "resourceType": "Location",
            "extension": [{"url": EXT_TIMEZONE, "valueCode": "Europe/Berlin"}],
            "name": "Truthful Berlin",
            "managingOrganization": {"reference": f"Organization/{ids['Organization']}"},
        }

    def practitioner(ids: dict[str, str]) -> Resource:
        return {"resourceType": "Practitioner", "name": [{"family": "Truthful"}]}

    def patient(ids: dict[str, str]) -> Resource:
        return {
            "resourceType": "Patient",
            "name": [{"family": "Truthful", "given": ["Cappy"]}],
            "gender": "unknown",
            "birthDate": "1990-02-03",
        }

    def coverage(ids: dict[str, str]) -> Resource:
        return {
            "resourceType": "Coverage",
            "status": "active",
            "type": {"coding": [{"system": CS_SELF_PAY, "code": "pay"}]},
            "beneficiary": {"reference": f"Patient/{ids['Patient']}"},
            "payor": [{"reference": f"Patient/{ids['Patient']}"}],
        }

    def schedule(ids: dict[str, str]) -> Resource:
        return {
            "resourceType": "Schedule",
            "actor": [
                {"reference": f"Practitioner/{ids['Practitioner']}"},
                {"reference": f"Location/{ids['Location']}"},
            ],
        }

    def slot(ids: dict[str, str]) -> Resource:
        capacity = {"url": "capacity", "valueUnsignedInt": 4}
        return {
            "resourceType": "Slot",
            "extension": [{"url": EXT_GROUP_CAPACITY, "extension": [capacity]}],
            "schedule": {"reference": f"Schedule/{ids['Schedule']}"},
            "status": "free",
            "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end": (start + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }

    def appointment(ids: dict[str, str]) -> Resource:
        return {
            "resourceType": "Appointment",
            "status": "booked",
            "slot": [{"reference": f"Slot/{ids['Slot']}"}],
            "supportingInformation": [{"reference": f"Coverage/{ids['Coverage']}"}],
            "participant": [
                {"actor": {"reference": f"Patient/{ids['Patient']}"}, "status": "accepted"}
            ],
        }

    return {
        "Organization": organization,
        "Location": location,
        "Practitioner": practitioner,
        "Patient": patient,
        "Coverage": coverage,
        "Schedule": schedule,
        "Slot": slot,
        "Appointment": appointment,
    }


def test_every_declared_create_and_update_succeeds(server):
    declared = server.declared()
    creatable = {n for n, e in declared.items() if {"code": "create"} in e["interaction"]}
    bodies = _new_bodies(server)
    assert creatable <= set(bodies), f"no create body for {sorted(creatable - set(bodies))}"
    ids: dict[str, str] = {}
    for name, body in bodies.items():
        if name in creatable:
            created = server.send("POST", f"/fhir/{name}", body(ids), 201)
            ids[name] = created["id"]
            assert server.get(f"/fhir/{name}/{created['id']}") == created
    for name, entry in declared.items():
        if {"code": "update"} in entry["interaction"]:
            existing = server.everything(name)[0]
            updated = server.send("PUT", f"/fhir/{name}/{existing['id']}", existing)
            assert updated["id"] == existing["id"]
            assert int(updated["meta"]["versionId"]) >= int(existing["meta"]["versionId"])
            if name in ids and {"code": "vread"} in entry["interaction"]:
                # A version a client was given stays readable after the next write.
                before = server.get(f"/fhir/{name}/{ids[name]}")
                server.send("PUT", f"/fhir/{name}/{ids[name]}", before)
                version = f"/fhir/{name}/{ids[name]}/_history/{before['meta']['versionId']}"
                assert server.get(version) == before, name


def _timing(start: dt.date) -> Resource:
    return {
        "repeat": {
            "boundsPeriod": {"start": start.isoformat()},
            "count": 3,
            "frequency": 1,
            "period": 1,
            "periodUnit": "wk",
            "dayOfWeek": ["mon", "wed", "fri"],
            "timeOfDay": ["10:00:00"],
            "duration": 90,
            "durationUnit": "min",
        }
    }


def _reference(name: str, target: str) -> Resource:
    return {"name": name, "valueReference": {"reference": target}}


def _operations(server: Server) -> list[tuple[str, str, Callable[[dict[str, Any]], Resource]]]:
    """(operation, url, Parameters) in the order a user runs them. Every declared
    in-parameter is sent, so each is proven accepted."""
    patient = server.everything("Patient")[-1]["id"]
    coverage = next(
        c["id"]
        for c in server.everything("Coverage")
        if c["beneficiary"]["reference"] == f"Patient/{patient}"
    )
    today = dt.date.today()
    monday = today + dt.timedelta(days=14 - today.weekday())  # within the demo's 12 weeks

    def find(state: dict[str, Any]) -> Resource:
        return {
            "resourceType": "Parameters",
            "parameter": [
                _reference("patient", f"Patient/{patient}"),
                _reference("practitioner", "Practitioner/prac-rivera"),
                _reference("schedule", "Schedule/sched-rivera-bk"),
                _reference("location", "Location/dept-brooklyn"),
                {"name": "appointment-type", "valueCode": "group-therapy"},
                {"name": "timing", "valueTiming": _timing(monday)},
            ],
        }

    def book(state: dict[str, Any]) -> Resource:
        kept = [{"name": "appointment-resource", "resource": p} for p in state["find"]]
        return {
            "resourceType": "Parameters",
            "parameter": [*kept, _reference("coverage", f"Coverage/{coverage}")],
        }

    def cancel_series(state: dict[str, Any]) -> Resource:
        return {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "scope", "valueCode": "all"},
                {"name": "reason", "valueString": "capability walk"},
            ],
        }

    return [
        ("find", "/fhir/Appointment/$find", find),
        ("book", "/fhir/Appointment/$book", book),
        ("cancel-series", "/fhir/Appointment/{book}/$cancel-series", cancel_series),
    ]


def test_every_declared_operation_succeeds_with_all_its_parameters(server):
    declared = {
        (name, op["name"]): server.package_definition(op["definition"])
        for name, entry in server.declared().items()
        for op in entry.get("operation", [])
    }
    recipes = _operations(server)
    assert {("Appointment", op) for op, _, _ in recipes} == set(declared)
    state: dict[str, Any] = {}
    for op, url, parameters in recipes:
        body = parameters(state)
        sent = {p["name"] for p in body["parameter"]}
        accepted = {p["name"] for p in declared["Appointment", op]["parameter"] if p["use"] == "in"}
        assert sent == accepted, f"${op}: exercise every declared in-parameter"
        result = server.send("POST", url.format(**state), body)
        assert result["resourceType"] == "Bundle", result
        appointments = [
            e["resource"] for e in result["entry"] if e["resource"]["resourceType"] == "Appointment"
        ]
        assert appointments, f"${op} returned no Appointment"
        state[op] = appointments if op == "find" else appointments[0]["id"]


def test_every_declared_system_interaction_succeeds(server):
    (rest,) = server.metadata["rest"]
    codes = {i["code"] for i in rest.get("interaction", [])}
    patient = server.everything("Patient")[0]["id"]
    entries = {
        "batch": {"request": {"method": "GET", "url": f"Patient/{patient}"}},
        "transaction": {
            "fullUrl": "urn:uuid:6f1c1d2e-3a4b-4c5d-8e9f-0a1b2c3d4e5f",
            "resource": {"resourceType": "Patient", "name": [{"family": "Bundled"}]},
            "request": {"method": "POST", "url": "Patient"},
        },
    }
    assert codes <= set(entries), f"no recipe for {sorted(codes - set(entries))}"
    for code in sorted(codes):
        bundle = {"resourceType": "Bundle", "type": code, "entry": [entries[code]]}
        result = server.send("POST", "/fhir", bundle)
        assert result["type"] == f"{code}-response", result
        status = result["entry"][0]["response"]["status"]
        assert status.startswith(("200", "201")), (code, status)


def test_what_the_server_returns_carries_what_its_supported_profiles_require(server):
    for name, entry in server.declared().items():
        for url in entry.get("supportedProfile", []):
            profile = server.package_definition(url)
            assert profile["type"] == name, (url, profile["type"])
            required = [
                element["type"][0]["profile"][0]
                for element in profile["differential"]["element"]
                if element.get("sliceName")
                and element["path"] == f"{name}.extension"
                and element.get("min", 0) >= 1
            ]
            assert required, url
            for resource in server.everything(name):
                carried = [e["url"] for e in resource.get("extension", [])]
                for extension in required:
                    assert carried.count(extension) == 1, (resource["id"], extension)

"""The walker: exercise everything a FHIR server declares and save every response body.

Driven by `GET /metadata`: every resource type's search (with EVERY declared search
parameter, valued from the resources found, through the official R4 search-parameter
expressions), read, `_include` / `_revinclude`, paging; the declared operations
(`$find`, `$book`, `$cancel-series`); create and update of every writable type; the
error cases (404, 400, 401, 403, 409, 412, 415, 422); and the waitlist (join, list,
promotion as an offer, accept).

Each response body goes to `OUT/NNN-<what>.json`; `OUT/manifest.json` lists every
request with its status, the status expected, and the file. A status other than the
one expected is a finding of its own (kind "http").
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import fhirpathpy
import requests
from fhirpathpy.models import models

from conformance.gate.invariants import DEFINITIONS

CANONICAL = "http://fhir-facade.org/fhir"
BACKPORT_CONTENT = (
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content"
)
TIMEOUT_S = 60.0
SAMPLE_COUNT = 20
FHIR_JSON = "application/fhir+json"
_RESOLVE_IS = re.compile(r"\.where\(resolve\(\) is (\w+)\)")


@dataclass
class Exchange:
    index: int
    label: str
    method: str
    url: str
    status: int
    expected: list[int]
    file: str | None
    content_type: str = ""
    #: "fhir" bodies are FHIR resources; "smart-configuration" and "oauth-error" are not
    #: (conformance/gate/smart.py checks them).
    document: str = "fhir"

    @property
    def unexpected(self) -> bool:
        return bool(self.expected) and self.status not in self.expected


@dataclass
class Walk:
    base: str
    out: Path
    token: str
    limited_token: str | None = None
    exchanges: list[Exchange] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was skipped, and why
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    capability: dict[str, Any] = field(default_factory=dict)

    free_slot: str | None = None

    def __post_init__(self) -> None:
        self.base = self.base.rstrip("/")
        self.out.mkdir(parents=True, exist_ok=True)
        self.http = requests.Session()
        # Connection: close — a stopping gunicorn lingers on kept-alive connections.
        self.http.headers.update({"Accept": FHIR_JSON, "Connection": "close"})
        self.run_id = uuid.uuid4().hex[:8]

    # -- HTTP -----------------------------------------------------------------------

    def call(
        self,
        label: str,
        method: str,
        path: str,
        *,
        expected: Iterable[int] = (200,),
        body: Any = None,
        raw: bytes | None = None,
        token: str | None = "default",
        headers: dict[str, str] | None = None,
        params: list[tuple[str, str]] | None = None,
        form: dict[str, str] | None = None,
        document: str = "fhir",
    ) -> requests.Response:
        url = path if path.startswith("http") else f"{self.base}/{path.lstrip('/')}"
        sent = dict(headers or {})
        if token == "default":
            token = self.token
        if token:
            sent["Authorization"] = f"Bearer {token}"
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", FHIR_JSON)
        response = self.http.request(
            method, url, data=form or data, headers=sent, params=params, timeout=TIMEOUT_S
        )
        index = len(self.exchanges) + 1
        file = None
        if response.content:
            slug = re.sub(r"[^A-Za-z0-9._=-]+", "_", label).strip("_")[:120]
            file = f"{index:03d}-{slug}.json"
            (self.out / file).write_bytes(response.content)
        self.exchanges.append(
            Exchange(
                index,
                label,
                method,
                response.url,
                response.status_code,
                sorted(expected),
                file,
                response.headers.get("Content-Type", ""),
                document,
            )
        )
        return response

    def json_of(self, response: requests.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            return None

    def note(self, text: str) -> None:
        self.notes.append(text)

    def save_manifest(self) -> None:
        manifest = {
            "base": self.base,
            "exchanges": [asdict(e) for e in self.exchanges],
            "notes": self.notes,
        }
        (self.out / "manifest.json").write_text(json.dumps(manifest, indent=1))

    # -- the walk -------------------------------------------------------------------

    def run(self) -> None:
        try:
            self.metadata()
            resources = self.declared_resources()
            subscription = self.subscribe(resources.pop("Subscription", None))
            for name, decl in resources.items():
                self.sample(name, decl)
            created = self.writes(resources)
            for name, resource in created.items():  # searchable by their values too
                kind = name.split("-")[0]
                if kind in self.samples and isinstance(resource, dict):
                    self.samples[kind].append(resource)
            for name, decl in resources.items():
                self.reads(name, decl)
                self.versions(name, decl, created)
                self.subsets(name, decl)
                self.searches(name, decl)
                self.includes(name, decl)
                self.paging(name, decl)
            self.operations(resources, created)
            self.subscription_status(subscription)
            self.errors(resources, created)
            self.waitlist(created)
        finally:
            self.save_manifest()

    def metadata(self) -> None:
        response = self.call("metadata", "GET", "metadata", token=None)
        self.capability = self.json_of(response) or {}
        self.call("metadata-with-token", "GET", "metadata")
        self.discovery()

    def discovery(self) -> None:
        """SMART discovery; and, when the token endpoint is this server's own, one token
        request without an assertion (it must answer with an OAuth error)."""
        response = self.call(
            "smart-configuration",
            "GET",
            ".well-known/smart-configuration",
            token=None,
            headers={"Accept": "application/json"},
            document="smart-configuration",
        )
        config = self.json_of(response) or {}
        token_url = config.get("token_endpoint") if isinstance(config, dict) else None
        origin = "/".join(self.base.split("/")[:3])
        if not isinstance(token_url, str) or not token_url.startswith(f"{origin}/"):
            self.note("token endpoint not probed: it is not this server's")
            return
        self.call(
            "token-without-assertion",
            "POST",
            token_url,
            expected=(400,),
            token=None,
            headers={"Accept": "application/json"},
            form={"grant_type": "client_credentials", "scope": "system/Slot.rs"},
            document="oauth-error",
        )

    def declared_resources(self) -> dict[str, dict[str, Any]]:
        rest = (self.capability.get("rest") or [{}])[0]
        return {r["type"]: r for r in rest.get("resource", []) if "type" in r}

    def sample(self, name: str, decl: dict[str, Any]) -> None:
        if not _has(decl, "search-type"):
            self.samples[name] = []
            return
        response = self.call(
            f"{name}-search-sample", "GET", name, params=[("_count", str(SAMPLE_COUNT))]
        )
        self.samples[name] = _resources(self.json_of(response), name)

    def reads(self, name: str, decl: dict[str, Any]) -> None:
        if not _has(decl, "read"):
            return
        found = self.samples.get(name) or []
        if not found:
            self.note(f"{name}: read not exercised (search found no {name})")
            return
        for resource in {r["id"]: r for r in (found[0], found[-1])}.values():
            self.call(f"{name}-read-{resource['id']}", "GET", f"{name}/{resource['id']}")

    def versions(self, name: str, decl: dict[str, Any], created: dict[str, Any]) -> None:
        """vread and history-instance: of what the walk wrote (its version before the
        update, too) and of a sampled resource."""
        wanted = [
            created[k] for k in (name, f"{name}-previous") if isinstance(created.get(k), dict)
        ]
        wanted += (self.samples.get(name) or [])[:1]
        if not wanted:
            self.note(f"{name}: vread and history not exercised (no {name} found)")
            return
        for resource in wanted:
            path = f"{name}/{resource['id']}/_history"
            if _has(decl, "vread"):
                version = resource["meta"]["versionId"]
                self.call(f"{name}-vread-{resource['id']}-{version}", "GET", f"{path}/{version}")
            if _has(decl, "history-instance"):
                self.call(f"{name}-history-{resource['id']}", "GET", path)

    def subsets(self, name: str, decl: dict[str, Any]) -> None:
        """`_elements` and `_summary` output (SUBSETTED resources) on search and read."""
        found = self.samples.get(name) or []
        if not found or not _has(decl, "search-type"):
            return
        resource = found[0]
        wanted = next((k for k in resource if k not in ("resourceType", "id", "meta")), "id")
        for label, params in (
            ("elements", [("_elements", wanted), ("_count", "3")]),
            ("summary-true", [("_summary", "true"), ("_count", "3")]),
            ("summary-data", [("_summary", "data"), ("_count", "3")]),
        ):
            self.call(f"{name}-search-{label}", "GET", name, params=params)
        if _has(decl, "read"):
            self.call(
                f"{name}-read-elements",
                "GET",
                f"{name}/{resource['id']}",
                params=[("_elements", wanted)],
            )

    def searches(self, name: str, decl: dict[str, Any]) -> None:
        for param in decl.get("searchParam", []):
            code, kind = param["name"], param.get("type", "string")
            values = self.search_values(name, code, kind)
            if not values:
                self.note(f"{name}?{code}: no plausible value found in the resources sampled")
                continue
            for value in values:
                self.call(
                    f"{name}-search-{code}={value}",
                    "GET",
                    name,
                    params=[(code, value), ("_count", "10")],
                )
        # The same search by POST [type]/_search (form body), once per type.
        if decl.get("searchParam"):
            response = self.http.post(
                f"{self.base}/{name}/_search",
                data={"_count": "3"},
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=TIMEOUT_S,
            )
            self._record(f"{name}-post-_search", "POST", response, (200,))

    def _record(
        self, label: str, method: str, response: requests.Response, expected: Iterable[int]
    ) -> None:
        index = len(self.exchanges) + 1
        file = None
        if response.content:
            file = f"{index:03d}-{re.sub(r'[^A-Za-z0-9._=-]+', '_', label)[:120]}.json"
            (self.out / file).write_bytes(response.content)
        self.exchanges.append(
            Exchange(
                index,
                label,
                method,
                response.url,
                response.status_code,
                sorted(expected),
                file,
                response.headers.get("Content-Type", ""),
            )
        )

    def search_values(self, name: str, code: str, kind: str) -> list[str]:
        """Plausible values for `code`, taken from the sampled resources."""
        found = self.samples.get(name) or []
        if code == "_id":
            return [found[0]["id"]] if found else []
        expressions = _search_expressions().get(name, {}).get(code)
        if code == "_lastUpdated":  # a parameter of every resource (Resource.meta)
            expressions = [f"{name}.meta.lastUpdated"]
        if expressions is None:
            # Not an official R4 parameter: try an element of the same name.
            expressions = [f"{name}.{_camel(code)}"]
        for resource in found:
            for expression in expressions:
                target = None
                match = _RESOLVE_IS.search(expression)
                if match:
                    target = match.group(1)
                    expression = _RESOLVE_IS.sub("", expression)
                try:
                    results = fhirpathpy.evaluate(
                        json.loads(json.dumps(resource)), expression, {}, models["r4"]
                    )
                except Exception:  # an expression fhirpathpy cannot run: try the next
                    continue
                for item in results:
                    value = _search_value(item, kind, target)
                    if value:
                        if kind == "date":
                            day = value[:10]
                            return [day, f"ge{day}", f"lt{_next_day(day)}"]
                        return [value]
        return []

    def includes(self, name: str, decl: dict[str, Any]) -> None:
        if not (self.samples.get(name)):
            if decl.get("searchInclude") or decl.get("searchRevInclude"):
                self.note(f"{name}: includes not exercised (no {name} found)")
            return
        for include in decl.get("searchInclude", []):
            self.call(
                f"{name}-_include={include}",
                "GET",
                name,
                params=[("_include", include), ("_count", "5")],
            )
        for revinclude in decl.get("searchRevInclude", []):
            self.call(
                f"{name}-_revinclude={revinclude}",
                "GET",
                name,
                params=[("_revinclude", revinclude), ("_count", "5")],
            )

    def paging(self, name: str, decl: dict[str, Any]) -> None:
        if len(self.samples.get(name) or []) < 3:
            return
        response = self.call(f"{name}-page-1", "GET", name, params=[("_count", "2")])
        for page in range(2, 4):
            nxt = _link(self.json_of(response), "next")
            if nxt is None:
                break
            response = self.call(f"{name}-page-{page}", "GET", nxt)

    # -- writes -----------------------------------------------------------------------

    def writes(self, resources: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Create (then update) one resource of every writable type we know how to build."""
        created: dict[str, dict[str, Any]] = {}
        order = [
            "Organization",
            "Location",
            "Practitioner",
            "Patient",
            "Coverage",
            "Schedule",
            "Slot",
            "Appointment",
        ]
        writable = [n for n, d in resources.items() if _has(d, "create")]
        for name in writable:
            if name not in order:
                self.note(f"{name}: create declared, but the walker has no builder for it")
        for name in [n for n in order if n in writable]:
            body = self.build(name, created)
            if body is None:
                self.note(f"{name}: create not exercised (no references to build it from)")
                continue
            response = self.call(
                f"{name}-create",
                "POST",
                name,
                body=body,
                expected=(201,),
                headers={"Prefer": "return=representation"},
            )
            resource = self.json_of(response)
            if response.status_code == 201 and isinstance(resource, dict):
                created[name] = resource
                if name == "Patient":  # a second one, for the full-session case
                    second = self.build("Patient", created)
                    again = self.call(
                        "Patient-create-second", "POST", "Patient", body=second, expected=(201,)
                    )
                    if again.status_code == 201:
                        created["Patient-2"] = self.json_of(again)
        for name in [n for n in order if n in created]:
            if not _has(resources[name], "update"):
                continue
            # Read it again: booking into a Slot moves its version on.
            current = self.call(
                f"{name}-read-before-update", "GET", f"{name}/{created[name]['id']}"
            )
            resource = self.json_of(current) or created[name]
            changed = self.changed(name, resource)
            response = self.call(
                f"{name}-update",
                "PUT",
                f"{name}/{resource['id']}",
                body=changed,
                headers={"If-Match": f'W/"{resource["meta"]["versionId"]}"'},
            )
            if response.status_code == 200:
                created[f"{name}-previous"] = resource
                created[name] = self.json_of(response)
        return created

    def build(self, name: str, created: dict[str, Any]) -> dict[str, Any] | None:
        n = len([k for k in created if k.startswith("Patient")]) + 1
        if name == "Patient":
            return {
                "resourceType": "Patient",
                "identifier": [{"system": "urn:fhir-facade:gate", "value": f"{self.run_id}-{n}"}],
                "active": True,
                "name": [{"family": "Gatewalker", "given": [f"Val{n}"]}],
                "telecom": [{"system": "phone", "value": "555-010-9999", "use": "home"}],
                "gender": "unknown",
                "birthDate": "1990-01-02",
            }
        if name == "Organization":
            return {
                "resourceType": "Organization",
                "identifier": [{"system": "urn:fhir-facade:gate", "value": f"{self.run_id}-o"}],
                "active": True,
                "name": "Gatewalker Provider Group",
            }
        if name == "Location":
            organization = created.get("Organization")
            if organization is None:
                return None
            return {
                "resourceType": "Location",
                "identifier": [{"system": "urn:fhir-facade:gate", "value": f"{self.run_id}-l"}],
                "extension": [
                    {
                        "url": "http://hl7.org/fhir/StructureDefinition/timezone",
                        "valueCode": "Europe/Berlin",
                    }
                ],
                "status": "active",
                "name": "Gatewalker Berlin",
                "mode": "instance",
                "managingOrganization": {"reference": f"Organization/{organization['id']}"},
            }
        if name == "Practitioner":
            return {
                "resourceType": "Practitioner",
                "identifier": [{"system": "urn:fhir-facade:gate", "value": f"{self.run_id}-p"}],
                "active": True,
                "name": [{"family": "Gatewalker", "given": ["Prax"], "prefix": ["Dr."]}],
            }
        if name == "Coverage":
            patient = created.get("Patient")
            if patient is None:
                return None
            return _self_pay(patient["id"])
        if name == "Schedule":
            locations = self.samples.get("Location") or []
            if not locations:
                return None
            return {
                "resourceType": "Schedule",
                "identifier": [{"system": "urn:fhir-facade:gate", "value": f"{self.run_id}-s"}],
                "active": True,
                "actor": [{"reference": f"Location/{locations[0]['id']}"}],
                "comment": "validator gate: a department's own calendar",
            }
        if name == "Slot":
            schedule = self._schedule_with_slots()
            if schedule is None:
                return None
            start = _far_slot_start()
            return {
                "resourceType": "Slot",
                "identifier": [{"system": "urn:fhir-facade:gate", "value": f"{self.run_id}-t"}],
                "extension": [
                    {
                        "url": "http://fhir-facade.org/fhir/StructureDefinition/group-capacity",
                        "extension": [{"url": "capacity", "valueUnsignedInt": 1}],
                    }
                ],
                "schedule": {"reference": f"Schedule/{schedule}"},
                "status": "free",
                "start": _instant(start),
                "end": _instant(start + dt.timedelta(hours=1)),
            }
        if name == "Appointment":
            slot, patient = created.get("Slot"), created.get("Patient")
            if slot is None or patient is None:
                return None
            return _booking(slot["id"], patient["id"], created.get("Coverage"), self.run_id)
        return None

    def changed(self, name: str, resource: dict[str, Any]) -> dict[str, Any]:
        body = json.loads(json.dumps(resource))
        if name == "Patient":
            body["telecom"] = [{"system": "phone", "value": "555-010-8888", "use": "mobile"}]
        elif name == "Coverage":
            body["subscriberId"] = f"SELF-{self.run_id}"
        elif name in ("Slot", "Appointment", "Schedule"):
            body["comment"] = "updated by the validator gate"
        elif name in ("Organization", "Location"):
            body["name"] = f"{body['name']} (updated by the validator gate)"
        elif name == "Practitioner":
            body["name"][0]["given"] = ["Prax", "Val"]
        return dict(body)

    def _schedule_with_slots(self) -> str | None:
        for slot in self.samples.get("Slot") or []:
            reference = (slot.get("schedule") or {}).get("reference", "")
            if reference.startswith("Schedule/"):
                return str(reference.split("/", 1)[1])
        return None

    # -- operations -----------------------------------------------------------------------

    def operations(self, resources: dict[str, dict[str, Any]], created: dict[str, Any]) -> None:
        declared = {op["name"] for op in resources.get("Appointment", {}).get("operation", [])}
        if not declared:
            return
        patient = created.get("Patient")
        plan = self._series_plan()
        if patient is None or plan is None:
            self.note("operations not exercised: no created Patient or no future free Slot")
            return
        practitioner, start_local, zone = plan
        parameters = _find_parameters(patient["id"], practitioner, start_local)
        proposals: list[dict[str, Any]] = []
        if "find" in declared:
            response = self.call("Appointment-$find", "POST", "Appointment/$find", body=parameters)
            proposals = _resources(self.json_of(response), "Appointment")
            bad = json.loads(json.dumps(parameters))
            bad["parameter"][-1]["valueTiming"]["repeat"]["count"] = 0
            self.call(
                "Appointment-$find-count-0", "POST", "Appointment/$find", body=bad, expected=(400,)
            )
        booked: list[dict[str, Any]] = []
        if "book" in declared and proposals:
            body = {
                "resourceType": "Parameters",
                "parameter": [{"name": "appointment-resource", "resource": p} for p in proposals],
            }
            response = self.call("Appointment-$book", "POST", "Appointment/$book", body=body)
            booked = _resources(self.json_of(response), "Appointment")
        if "cancel-series" in declared and booked:
            first = booked[0]["id"]
            self.call(
                "Appointment-$cancel-series",
                "POST",
                f"Appointment/{first}/$cancel-series",
                body={
                    "resourceType": "Parameters",
                    "parameter": [
                        {"name": "scope", "valueCode": "all"},
                        {"name": "reason", "valueString": "validator gate"},
                    ],
                },
            )
            self.call("Appointment-read-cancelled", "GET", f"Appointment/{first}")
        del zone

    # -- the waitlist ---------------------------------------------------------------------

    def waitlist(self, created: dict[str, Any]) -> None:
        """Join a full session's waitlist, list it, free the place under a schedule whose
        policy offers it, read the offer, accept it, and read the audit trail."""
        patient, waiting = created.get("Patient"), created.get("Patient-2")
        locations = self.samples.get("Location") or []
        if patient is None or waiting is None or not locations:
            self.note("waitlist not exercised: no two created Patients or no Location")
            return
        schedule = self.json_of(
            self.call(
                "Schedule-create-waitlist-offer-policy",
                "POST",
                "Schedule",
                body={
                    "resourceType": "Schedule",
                    "extension": [_OFFER_POLICY],
                    "active": True,
                    "actor": [{"reference": f"Location/{locations[0]['id']}"}],
                    "comment": "validator gate: waitlist offers",
                },
                expected=(201,),
            )
        )
        start = _far_slot_start() + dt.timedelta(days=1)
        slot = self.json_of(
            self.call(
                "Slot-create-for-waitlist",
                "POST",
                "Slot",
                body={
                    "resourceType": "Slot",
                    "extension": [
                        {
                            "url": "http://fhir-facade.org/fhir/StructureDefinition/group-capacity",
                            "extension": [{"url": "capacity", "valueUnsignedInt": 1}],
                        }
                    ],
                    "schedule": {"reference": f"Schedule/{(schedule or {}).get('id')}"},
                    "status": "free",
                    "start": _instant(start),
                    "end": _instant(start + dt.timedelta(hours=1)),
                },
                expected=(201,),
            )
        )
        coverage = self.json_of(
            self.call(
                "Coverage-create-second-patient",
                "POST",
                "Coverage",
                body=_self_pay(waiting["id"]),
                expected=(201,),
            )
        )
        if not isinstance(slot, dict) or not isinstance(coverage, dict):
            self.note("waitlist not exercised: its Slot or Coverage was not created")
            return
        entry_body = _booking(slot["id"], waiting["id"], coverage, f"{self.run_id}-w")
        entry_body["status"] = "waitlist"
        self.call(
            "Appointment-waitlist-session-has-room",
            "POST",
            "Appointment",
            body=entry_body,
            expected=(409,),
        )
        booking = self.json_of(
            self.call(
                "Appointment-create-fills-waitlist-slot",
                "POST",
                "Appointment",
                body=_booking(
                    slot["id"], patient["id"], created.get("Coverage"), f"{self.run_id}-f"
                ),
                expected=(201,),
            )
        )
        entry = self.json_of(
            self.call(
                "Appointment-join-waitlist", "POST", "Appointment", body=entry_body, expected=(201,)
            )
        )
        self.call(
            "Appointment-search-waitlist",
            "GET",
            "Appointment",
            params=[("slot", f"Slot/{slot['id']}"), ("status", "waitlist")],
        )
        if not isinstance(booking, dict) or not isinstance(entry, dict):
            self.note("waitlist promotion not exercised: the booking or the entry failed")
            return
        cancel = {**booking, "status": "cancelled", "cancelationReason": {"text": "gate"}}
        cancel.pop("meta", None)
        self.call("Appointment-cancel-promotes", "PUT", f"Appointment/{booking['id']}", body=cancel)
        offer = self.json_of(
            self.call("Appointment-read-waitlist-offer", "GET", f"Appointment/{entry['id']}")
        )
        self.call(
            "Appointment-search-pending",
            "GET",
            "Appointment",
            params=[("slot", f"Slot/{slot['id']}"), ("status", "pending")],
        )
        if isinstance(offer, dict):
            accept = {**offer, "status": "booked"}
            accept.pop("meta", None)
            self.call(
                "Appointment-accept-waitlist-offer",
                "PUT",
                f"Appointment/{entry['id']}",
                body=accept,
            )
        self.call(
            "AuditEvent-search-waitlist-promotion",
            "GET",
            "AuditEvent",
            params=[("entity", f"Appointment/{entry['id']}")],
        )

    def subscribe(self, decl: dict[str, Any] | None) -> dict[str, Any] | None:
        """A Subscription to every Appointment change (before the walk writes any), read
        back and searched; None when Subscription is not declared."""
        if decl is None:
            return None
        body = {
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "validator gate",
            "criteria": f"{CANONICAL}/SubscriptionTopic/appointment",
            "channel": {
                "type": "rest-hook",
                "endpoint": "https://receiver.example.org/notify",
                "payload": FHIR_JSON,
                "_payload": {
                    "extension": [{"url": BACKPORT_CONTENT, "valueCode": "full-resource"}]
                },
            },
        }
        response = self.call(
            "Subscription-create", "POST", "Subscription", body=body, expected=(201,)
        )
        created = self.json_of(response)
        if response.status_code != 201 or not isinstance(created, dict):
            return None
        self.call("Subscription-read", "GET", f"Subscription/{created['id']}")
        self.call("Subscription-search", "GET", "Subscription", params=[("status", "requested")])
        bad = {**body, "criteria": "http://example.org/no-such-topic"}
        self.call(
            "Subscription-create-unknown-topic", "POST", "Subscription", body=bad, expected=(422,)
        )
        return created

    def subscription_status(self, created: dict[str, Any] | None) -> None:
        """$status, and $events: the notification Bundle of what the walk changed."""
        if created is None:
            return
        ident = created["id"]
        self.call("Subscription-$status", "GET", f"Subscription/{ident}/$status")
        self.call("Subscription-$events", "GET", f"Subscription/{ident}/$events")
        self.call(
            "Subscription-$events-id-only",
            "POST",
            f"Subscription/{ident}/$events",
            body={
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "eventsSinceNumber", "valueString": "1"},
                    {"name": "content", "valueCode": "id-only"},
                ],
            },
        )
        current = self.json_of(
            self.call("Subscription-read-before-update", "GET", f"Subscription/{ident}")
        )
        if isinstance(current, dict):
            self.call(
                "Subscription-update-off",
                "PUT",
                f"Subscription/{ident}",
                body={**current, "status": "off"},
            )

    def _series_plan(self) -> tuple[str, str, str] | None:
        """(practitioner id, local start 'YYYY-MM-DDTHH:MM:SS', zone) of a future free Slot."""
        now = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
        response = self.call(
            "Slot-search-future-free",
            "GET",
            "Slot",
            params=[
                ("status", "free"),
                ("start", f"ge{_instant(now)}"),
                ("_include", "Slot:schedule"),
                ("_count", "20"),
            ],
        )
        bundle = self.json_of(response) or {}
        schedules = {r["id"]: r for r in _resources(bundle, "Schedule")}
        for slot in _resources(bundle, "Slot"):
            schedule = schedules.get(slot["schedule"]["reference"].split("/")[-1])
            if schedule is None:
                continue
            actors = [a.get("reference", "") for a in schedule.get("actor", [])]
            practitioner = next((a for a in actors if a.startswith("Practitioner/")), None)
            location = next((a for a in actors if a.startswith("Location/")), None)
            if practitioner is None or location is None:
                continue
            zone = self._zone_of(location)
            if zone is None:
                continue
            self.free_slot = slot["id"]
            start = dt.datetime.fromisoformat(slot["start"].replace("Z", "+00:00"))
            local = start.astimezone(ZoneInfo(zone))
            return practitioner.split("/")[1], local.strftime("%Y-%m-%dT%H:%M:%S"), zone
        return None

    def _zone_of(self, location: str) -> str | None:
        response = self.call(f"{location.replace('/', '-read-')}-timezone", "GET", location)
        for extension in (self.json_of(response) or {}).get("extension", []):
            if extension.get("url") == "http://hl7.org/fhir/StructureDefinition/timezone":
                return str(extension.get("valueCode"))
        return None

    # -- error cases -------------------------------------------------------------------------

    def errors(self, resources: dict[str, dict[str, Any]], created: dict[str, Any]) -> None:
        some = next((n for n in resources if self.samples.get(n)), "Patient")
        self.call(
            "error-404-unknown-id", "GET", f"{some}/gate-no-such-id-{self.run_id}", expected=(404,)
        )
        self.call(
            "error-400-unknown-parameter",
            "GET",
            some,
            params=[("gate-no-such-parameter", "1")],
            expected=(400,),
        )
        self.call(
            "error-400-bad-date", "GET", "Slot", params=[("start", "ge2026-99-99")], expected=(400,)
        )
        self.call("error-401-no-token", "GET", some, token=None, expected=(401,))
        self.call("error-401-bad-token", "GET", some, token="not.a.jwt", expected=(401,))
        patient_body = self.build("Patient", created)
        self.call(
            "error-400-malformed-json",
            "POST",
            "Patient",
            raw=b'{"resourceType": "Pat',
            headers={"Content-Type": FHIR_JSON},
            expected=(400,),
        )
        self.call(
            "error-400-wrong-resourceType",
            "POST",
            "Patient",
            body={**(patient_body or {}), "resourceType": "Practitioner"},
            expected=(400,),
        )
        self.call(
            "error-415-text-plain",
            "POST",
            "Patient",
            raw=json.dumps(patient_body).encode(),
            headers={"Content-Type": "text/plain"},
            expected=(415,),
        )
        self.call(
            "error-400-unknown-element",
            "POST",
            "Patient",
            body={**(patient_body or {}), "favouriteColour": "blue"},
            expected=(400,),
        )
        if self.limited_token:
            self.call(
                "error-403-scope-write",
                "POST",
                "Slot",
                body=self.build("Slot", created) or {"resourceType": "Slot"},
                token=self.limited_token,
                expected=(403,),
            )
            self.call(
                "error-403-scope-read", "GET", "Coverage", token=self.limited_token, expected=(403,)
            )
        else:
            self.note("403 not exercised: no --limited-token given")
        self.call(
            "error-403-audit-without-permission",
            "GET",
            "AuditEvent",
            token=self.limited_token or self.token,
            expected=(403,) if self.limited_token else (200, 403),
        )
        patient = created.get("Patient")
        if patient is not None:
            stale = created.get("Patient-previous", patient)
            self.call(
                "error-412-stale-if-match",
                "PUT",
                f"Patient/{patient['id']}",
                body={**patient, "gender": "other"},
                headers={"If-Match": f'W/"{stale["meta"]["versionId"]}"'},
                expected=(412,) if "Patient-previous" in created else (200, 412),
            )
        slot, second = created.get("Slot"), created.get("Patient-2")
        if slot is not None and second is not None:
            # The Slot was created with capacity 1 and the first patient booked into it.
            self.call(
                "Coverage-create-second",
                "POST",
                "Coverage",
                body=_self_pay(second["id"]),
                expected=(201,),
            )
            self.call(
                "error-409-session-full",
                "POST",
                "Appointment",
                body=_booking(slot["id"], second["id"], None, self.run_id + "-full"),
                expected=(409,),
            )
            self.call(
                "error-422-capacity-below-booked",
                "PUT",
                f"Slot/{slot['id']}",
                body=_with_capacity(slot, 0),
                expected=(422,),
            )
        else:
            self.note("409/422 not exercised: no Slot or second Patient created")
        free = self.free_slot
        if patient is not None and second is not None and free is not None:
            body = _booking(free, second["id"], None, self.run_id + "-other-coverage")
            body["supportingInformation"] = [{"reference": f"Coverage/{created['Coverage']['id']}"}]
            self.call(
                "error-422-coverage-of-another-patient",
                "POST",
                "Appointment",
                body=body,
                expected=(422,),
            )
        location = self.build("Location", created)
        if location is not None:
            self.call(
                "error-422-location-without-time-zone",
                "POST",
                "Location",
                body={k: v for k, v in location.items() if k != "extension"},
                expected=(422,),
            )
            self.call(
                "error-422-location-unknown-time-zone",
                "POST",
                "Location",
                body={
                    **location,
                    "extension": [{**location["extension"][0], "valueCode": "Mars/Olympus_Mons"}],
                },
                expected=(422,),
            )
        self.invalid_codes(created)
        self.call(
            "error-404-cancel-series-unknown",
            "POST",
            f"Appointment/gate-no-such-{self.run_id}/$cancel-series",
            body={"resourceType": "Parameters", "parameter": []},
            expected=(404,),
        )

    def invalid_codes(self, created: dict[str, Any]) -> None:
        """Codes outside a required value set must be refused (400/422), never stored: a
        stored one comes back in the 201 body, where FHIR.js flags it."""
        patient = self.build("Patient", created)
        probes: list[tuple[str, str, dict[str, Any] | None]] = [
            ("Patient-gender", "Patient", {**(patient or {}), "gender": "sometimes"}),
            (
                "Patient-telecom-system",
                "Patient",
                {**(patient or {}), "telecom": [{"system": "pigeon", "value": "coo"}]},
            ),
            (
                "Patient-name-use",
                "Patient",
                {**(patient or {}), "name": [{"use": "nickname-ish", "family": "Gatewalker"}]},
            ),
        ]
        if created.get("Patient") is not None:
            coverage = _self_pay(created["Patient"]["id"])
            coverage["identifier"] = [
                {"system": "urn:fhir-facade:gate:member", "value": f"bad-{self.run_id}"}
            ]
            probes.append(("Coverage-status", "Coverage", {**coverage, "status": "bogus"}))
        for label, kind, body in probes:
            self.call(
                f"error-4xx-invalid-code-{label}", "POST", kind, body=body, expected=(400, 422)
            )


# -- helpers ----------------------------------------------------------------------------


def _has(decl: dict[str, Any], code: str) -> bool:
    return any(i.get("code") == code for i in decl.get("interaction", []))


def _resources(bundle: Any, kind: str) -> list[dict[str, Any]]:
    if not isinstance(bundle, dict):
        return []
    return [
        e["resource"]
        for e in bundle.get("entry", [])
        if isinstance(e.get("resource"), dict) and e["resource"].get("resourceType") == kind
    ]


def _link(bundle: Any, relation: str) -> str | None:
    if not isinstance(bundle, dict):
        return None
    for link in bundle.get("link", []):
        if link.get("relation") == relation:
            return str(link["url"])
    return None


@cache
def _search_expressions() -> dict[str, dict[str, list[str]]]:
    data: dict[str, dict[str, list[str]]] = json.loads(DEFINITIONS.read_text())["searchParameters"]
    return data


def _camel(code: str) -> str:
    head, *rest = code.split("-")
    return head + "".join(p.capitalize() for p in rest)


def _search_value(item: Any, kind: str, target: str | None) -> str | None:
    """Format one FHIRPath result as a search value of the parameter's type."""
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, str | int | float):
        text = str(item)
        return text[:4] if kind == "string" and len(text) > 4 else text
    if not isinstance(item, dict):
        return None
    if kind == "reference":
        reference = item.get("reference")
        if isinstance(reference, str) and (target is None or reference.startswith(f"{target}/")):
            return reference
        return None
    if kind == "date":
        value = item.get("start") or item.get("end")
        return str(value) if value else None
    if kind == "string":
        for key in ("family", "city", "text"):
            if isinstance(item.get(key), str):
                return str(item[key])[:4]
        given = item.get("given")
        return str(given[0]) if given else None
    if "coding" in item:
        codings = item.get("coding") or []
        return _system_code(codings[0]) if codings else None
    if "code" in item:
        return _system_code(item)
    if "identifier" in item:  # a Reference by identifier, searched as a token
        return _search_value(item["identifier"], kind, target)
    if "value" in item:
        system = item.get("system")
        if system in ("phone", "email", "fax", "url", "sms", "pager", "other"):
            return str(item["value"])
        return f"{system}|{item['value']}" if system else str(item["value"])
    return None


def _system_code(coding: dict[str, Any]) -> str | None:
    code = coding.get("code")
    if code is None:
        return None
    return f"{coding['system']}|{code}" if coding.get("system") else str(code)


def _next_day(day: str) -> str:
    return (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat()


def _instant(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _far_slot_start() -> dt.datetime:
    """A slot time no demo session uses: 03:00 UTC some 30 days ahead, minutes varied."""
    today = dt.datetime.now(dt.UTC).replace(hour=3, minute=0, second=0, microsecond=0)
    return today + dt.timedelta(days=30, minutes=uuid.uuid4().int % 50)


_OFFER_POLICY = {
    "url": "http://fhir-facade.org/fhir/StructureDefinition/waitlist-policy",
    "extension": [
        {"url": "mode", "valueCode": "offer"},
        {
            "url": "offerDuration",
            "valueDuration": {
                "value": 1,
                "unit": "h",
                "system": "http://unitsofmeasure.org",
                "code": "h",
            },
        },
    ],
}


def _self_pay(patient_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Coverage",
        "status": "active",
        "type": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/coverage-selfpay",
                    "code": "pay",
                }
            ]
        },
        "identifier": [{"system": "urn:fhir-facade:gate:member", "value": f"self-{patient_id}"}],
        "beneficiary": {"reference": f"Patient/{patient_id}"},
        "payor": [{"reference": f"Patient/{patient_id}"}],
        "order": 1,
    }


def _booking(
    slot_id: str, patient_id: str, coverage: dict[str, Any] | None, visit: str
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Appointment",
        "status": "booked",
        "identifier": [{"system": "urn:fhir-facade:gate", "value": f"visit-{visit}"}],
        "slot": [{"reference": f"Slot/{slot_id}"}],
        "participant": [{"actor": {"reference": f"Patient/{patient_id}"}, "status": "accepted"}],
    }
    if coverage is not None:
        body["supportingInformation"] = [{"reference": f"Coverage/{coverage['id']}"}]
    return body


def _with_capacity(slot: dict[str, Any], capacity: int) -> dict[str, Any]:
    body = json.loads(json.dumps(slot))
    body.pop("meta", None)
    for extension in body.get("extension", []):
        if extension.get("url", "").endswith("/group-capacity"):
            extension["extension"] = [
                x for x in extension.get("extension", []) if x.get("url") != "capacity"
            ] + [{"url": "capacity", "valueUnsignedInt": capacity}]
    return dict(body)


def _find_parameters(patient: str, practitioner: str, start_local: str) -> dict[str, Any]:
    day, time = start_local.split("T")
    weekdays = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    weekday = weekdays[dt.date.fromisoformat(day).weekday()]
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueReference": {"reference": f"Patient/{patient}"}},
            {
                "name": "practitioner",
                "valueReference": {"reference": f"Practitioner/{practitioner}"},
            },
            {
                "name": "timing",
                "valueTiming": {
                    "repeat": {
                        "boundsPeriod": {"start": day},
                        "count": 3,
                        "frequency": 1,
                        "period": 1,
                        "periodUnit": "wk",
                        "dayOfWeek": [weekday],
                        "timeOfDay": [time],
                    }
                },
            },
        ],
    }

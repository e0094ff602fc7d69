"""Proof that what we emit is valid FHIR R4: every resource parsed by the R4B models,
plus the invariants the models do not check (Slot start < end, Appointment start <= end)."""

from __future__ import annotations

import hashlib
import importlib
from typing import Any

import orjson

_MODULES = {
    "Appointment": "appointment",
    "AuditEvent": "auditevent",
    "Bundle": "bundle",
    "Coverage": "coverage",
    "Parameters": "parameters",
    "Subscription": "subscription",
    "Basic": "basic",
    "CapabilityStatement": "capabilitystatement",
    "Location": "location",
    "OperationOutcome": "operationoutcome",
    "Organization": "organization",
    "Patient": "patient",
    "Practitioner": "practitioner",
    "Schedule": "schedule",
    "Slot": "slot",
}


def assert_valid(resource: dict[str, Any]) -> None:
    """Raise if `resource` (and, for a Bundle, each entry) is not valid R4. A resource
    exactly as already found valid in this test process is not parsed again (searches
    bring the same resources back page after page, sort order after sort order)."""
    kind = resource["resourceType"]
    seen = _digest(resource) if kind != "Bundle" else None  # a Bundle seldom comes twice
    if seen in _VALID:
        return
    module = importlib.import_module(f"fhir.resources.R4B.{_MODULES[kind]}")
    # A Bundle's models parse every entry's resource as its own type: the Bundle is
    # parsed without them, and each is parsed (once) below.
    getattr(module, kind).model_validate(
        _without_resources(resource) if kind == "Bundle" else resource
    )
    if kind == "Slot":
        assert resource["start"] < resource["end"], resource
    if kind == "Appointment" and "start" in resource:
        assert resource["start"] <= resource["end"], resource
    if kind == "Appointment" and resource["status"] not in ("proposed", "cancelled", "waitlist"):
        assert "start" in resource and "end" in resource, "app-3: booked needs start and end"
    if kind == "Bundle":
        for entry in resource.get("entry", []):
            if "resource" in entry:
                assert_valid(entry["resource"])
            if "outcome" in entry.get("response", {}):
                assert_valid(entry["response"]["outcome"])
    if seen is not None:
        _VALID.add(seen)


#: Digests of the resources (as JSON text with sorted keys) found valid so far.
_VALID: set[bytes] = set()


def _digest(resource: dict[str, Any]) -> bytes:
    text = orjson.dumps(resource, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(text, digest_size=16).digest()


def _without_resources(bundle: dict[str, Any]) -> dict[str, Any]:
    entries = [
        {key: value for key, value in entry.items() if key != "resource"}
        for entry in bundle.get("entry", [])
    ]
    return {**bundle, "entry": entries} if entries else bundle

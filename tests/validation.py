"""Proof that what we emit is valid FHIR R4: every resource parsed by the R4B models,
plus the invariants the models do not check (Slot start < end, Appointment start <= end)."""

from __future__ import annotations

import importlib
from typing import Any

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
    """Raise if `resource` (and, for a Bundle, each entry) is not valid R4."""
    kind = resource["resourceType"]
    module = importlib.import_module(f"fhir.resources.R4B.{_MODULES[kind]}")
    getattr(module, kind).model_validate(resource)
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

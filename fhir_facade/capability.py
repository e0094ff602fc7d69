"""CapabilityStatement (R4 §2.12) and SMART configuration, generated from the route tables."""

from __future__ import annotations

from typing import Any

from fhir_facade.auth import PERMISSION_SCOPES
from fhir_facade.operations import OPERATION_DEFINITIONS, OPERATION_DOCS
from fhir_facade.registry import RESOURCE_TYPES
from mappings.codes import CANONICAL
from mappings.search import SEARCHES, SearchParam

SOFTWARE_VERSION = "0.1.0"
RELEASE_DATE = "2026-11-26"
OPERATIONS = {"Appointment": OPERATION_DEFINITIONS}
#: Our definitions in conformance/package (written by conformance/package/build.py).
SUPPORTED_PROFILES = {"Slot": [f"{CANONICAL}/StructureDefinition/group-session"]}
#: Search parameters whose type differs from the base spec's, defined by us.
SEARCH_PARAMETER_DEFINITIONS = {
    ("AuditEvent", "agent"): f"{CANONICAL}/SearchParameter/AuditEvent-agent",
}


def capability_statement(base: str, *, cors: bool = False) -> dict[str, Any]:
    """What the server does; `cors`: FHIR_FACADE_CORS_ORIGINS is set."""
    resources = []
    for name, spec in RESOURCE_TYPES.items():
        search = SEARCHES[name]
        entry: dict[str, Any] = {
            "type": name,
            "documentation": spec.documentation,
            "interaction": [{"code": code} for code in spec.interactions],
            "versioning": "versioned-update" if "update" in spec.interactions else "versioned",
            "readHistory": "vread" in spec.interactions,
            "updateCreate": False,
            "conditionalCreate": spec.conditional_create,
            "conditionalUpdate": False,
            "conditionalDelete": "not-supported",
        }
        if name in SUPPORTED_PROFILES:
            entry["supportedProfile"] = list(SUPPORTED_PROFILES[name])
        if search.includes:
            entry["searchInclude"] = list(search.includes)
        if search.revincludes:
            entry["searchRevInclude"] = list(search.revincludes)
        entry["searchParam"] = [_search_param(name, p) for p in search.params.values()]
        if name in OPERATIONS:
            entry["operation"] = [
                {"name": op, "definition": url, "documentation": OPERATION_DOCS[op]}
                for op, url in OPERATIONS[name].items()
            ]
        resources.append(entry)
    return {
        "resourceType": "CapabilityStatement",
        "id": "fhir-facade",
        "url": f"{CANONICAL}/CapabilityStatement/fhir-facade",
        "version": SOFTWARE_VERSION,
        "name": "FhirFacade",
        "title": "fhir-facade group-session scheduling server",
        "status": "active",
        "experimental": False,
        "date": RELEASE_DATE,
        "publisher": "fhir-facade",
        "description": "Books behavioral-health patients into group sessions over FHIR R4.",
        "kind": "instance",
        "software": {"name": "fhir-facade", "version": SOFTWARE_VERSION},
        "implementation": {"description": "fhir-facade", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "Search result parameters: _count, _offset (paging); _sort on the "
                    "search parameters where order means something, _id and _lastUpdated "
                    "(comma-separated keys, '-' for descending); _include, _revinclude; "
                    "_summary=true|text|data|count|false (true: the R4 isSummary elements) "
                    "and _elements=a,b (also on read; mandatory and modifier elements are "
                    "always kept, and the resource is tagged SUBSETTED); "
                    "_total=none|estimate|accurate (totals are exact; none leaves total "
                    "out, next links stay); _format=json. Unknown parameters are refused "
                    "(400, handling=strict, the default: safer for a clinic than a search "
                    "quietly wider than asked) unless the request carries "
                    "Prefer: handling=lenient, which ignores them. "
                    "Content types: application/fhir+json (also application/json), with "
                    "charset=utf-8 and fhirVersion=4.0 parameters; others get 406. "
                    "Versions: vread and history on every type. "
                    "Chained search into the Patient: Appointment?patient.<param>, "
                    "Coverage?patient|beneficiary|"
                    "subscriber.<param>, with any Patient search parameter."
                ),
                "security": {
                    "cors": cors,
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "description": (
                        "Bearer JWT with SMART v2 scopes (user/<Type>.cruds); permissions as "
                        "scopes: " + "; ".join(f"{k} ({v})" for k, v in PERMISSION_SCOPES.items())
                    ),
                },
                "resource": resources,
                "interaction": [
                    {
                        "code": "transaction",
                        "documentation": (
                            "POST /fhir: all entries or none; urn:uuid references resolved; "
                            "ifNoneExist honoured; a full session fails the whole Bundle"
                        ),
                    },
                    {"code": "batch", "documentation": "POST /fhir: each entry on its own"},
                ],
            }
        ],
    }


def _search_param(resource_type: str, param: SearchParam) -> dict[str, Any]:
    declared: dict[str, Any] = {"name": param.name}
    if definition := SEARCH_PARAMETER_DEFINITIONS.get((resource_type, param.name)):
        declared["definition"] = definition
    declared["type"] = param.type
    modifiers = ", ".join(f":{m}" for m in sorted(param.modifiers))
    suffix = f" Modifiers: {modifiers}." if modifiers else ""
    declared["documentation"] = param.documentation + suffix
    return declared


def smart_configuration(base: str) -> dict[str, Any]:
    return {
        "capabilities": ["permission-v2"],
        "scopes_supported": [
            *(f"user/{name}.cruds" for name in RESOURCE_TYPES),
            *(f"system/{name}.cruds" for name in RESOURCE_TYPES),
            *PERMISSION_SCOPES,
        ],
        "permission_scopes": PERMISSION_SCOPES,
    }

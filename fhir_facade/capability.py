"""CapabilityStatement (R4 §2.12) and SMART configuration, generated from the route tables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir_facade.auth import PERMISSION_SCOPES
from fhir_facade.config import Settings
from fhir_facade.notify.conformance import RESOURCE_TYPE as SUBSCRIPTION
from fhir_facade.notify.conformance import subscription_resource
from fhir_facade.oauth import SIGNING_ALGORITHMS, token_endpoint_url
from fhir_facade.registry import RESOURCE_TYPES
from mappings.codes import CANONICAL
from mappings.search_params import SearchParam

SOFTWARE_VERSION = "0.1.0"
RELEASE_DATE = "2026-11-26"
#: Our definitions in conformance/package (written by conformance/package/build.py).
SUPPORTED_PROFILES = {"Slot": [f"{CANONICAL}/StructureDefinition/group-session"]}
#: Search parameters whose type differs from the base spec's, defined by us.
SEARCH_PARAMETER_DEFINITIONS = {
    ("AuditEvent", "agent"): f"{CANONICAL}/SearchParameter/AuditEvent-agent",
}


OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


@dataclass(frozen=True)
class OAuthEndpoints:
    """Where tokens come from: the embedded token service, or the identity provider's."""

    token: str
    authorize: str | None = None
    issuer: str | None = None  # production only: the identity provider
    jwks_uri: str | None = None

    @classmethod
    def of(cls, settings: Settings, base: str) -> OAuthEndpoints:
        if not settings.jwks_url:
            return cls(token=token_endpoint_url(base))
        assert settings.token_endpoint, "Settings require the token endpoint with a JWKS URL"
        return cls(
            token=settings.token_endpoint,
            authorize=settings.authorization_endpoint,
            issuer=settings.jwt_issuer,
            jwks_uri=settings.jwks_url,
        )


def capability_statement(
    base: str, endpoints: OAuthEndpoints | None = None, *, cors: bool = False
) -> dict[str, Any]:
    """What the server does. `endpoints` default to the embedded token service beside
    `base`; `cors`: FHIR_FACADE_CORS_ORIGINS is set."""
    endpoints = endpoints or OAuthEndpoints(token=token_endpoint_url(base))
    resources = []
    for name, spec in RESOURCE_TYPES.items():
        search = spec.search
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
        if spec.operations:
            entry["operation"] = [
                {
                    "name": op.code,
                    "definition": op.definition(name),
                    "documentation": op.documentation,
                }
                for op in spec.operations
            ]
        resources.append(entry)
    resources.append(subscription_resource())
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
                    "_total=none|estimate|accurate (estimate, the default: exact up to "
                    "1,000 matches, beyond that PostgreSQL's planner estimate, for a caller "
                    "from whom nothing of the type is hidden (others get no total past it); "
                    "accurate: "
                    "always exact; none leaves total out, next links stay); _format=json. "
                    "Unknown parameters are refused "
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
                    "extension": [_oauth_uris(endpoints)],
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
                        "Bearer JWT with SMART v2 scopes (user/<Type>.cruds, system/<Type>.rs), "
                        "granular scopes (system/Coverage.rs?payor=Organization/x) narrowing "
                        "what a token sees; tokens from the token endpoint (SMART Backend "
                        "Services: client_credentials with a private_key_jwt assertion) or "
                        "the configured identity provider; permissions as scopes: "
                        + "; ".join(f"{k} ({v})" for k, v in PERMISSION_SCOPES.items())
                    ),
                },
                "resource": resources,
                "interaction": [
                    {
                        "code": "transaction",
                        "documentation": (
                            "POST /fhir: all entries or none; urn:uuid references resolved; "
                            "ifNoneExist honoured; a full session fails the whole Bundle. "
                            "Subscription entries may only create (POST Subscription)"
                        ),
                    },
                    {
                        "code": "batch",
                        "documentation": (
                            "POST /fhir: each entry on its own. Subscription entries may only "
                            "create (POST Subscription)"
                        ),
                    },
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


def _oauth_uris(endpoints: OAuthEndpoints) -> dict[str, Any]:
    parts = [{"url": "token", "valueUri": endpoints.token}]
    if endpoints.authorize:
        parts.append({"url": "authorize", "valueUri": endpoints.authorize})
    return {"url": OAUTH_URIS, "extension": parts}


def smart_configuration(base: str, endpoints: OAuthEndpoints | None = None) -> dict[str, Any]:
    """SMART App Launch 2.0 discovery (§ Conformance): what a client needs to get a token.

    Embedded: Backend Services only (client_credentials, private_key_jwt, RS384/ES384).
    Production: the identity provider's endpoints; with an authorization endpoint also
    the authorization-code flow with PKCE S256, which SMART requires of it.
    """
    endpoints = endpoints or OAuthEndpoints(token=token_endpoint_url(base))
    config: dict[str, Any] = {}
    if endpoints.issuer:
        config["issuer"] = endpoints.issuer
    if endpoints.jwks_uri:
        config["jwks_uri"] = endpoints.jwks_uri
    grants = ["client_credentials"]
    capabilities = ["client-confidential-asymmetric", "permission-v2"]
    if endpoints.authorize:
        config["authorization_endpoint"] = endpoints.authorize
        grants.insert(0, "authorization_code")
        capabilities[:0] = ["launch-standalone", "client-public"]
    config.update(
        {
            "token_endpoint": endpoints.token,
            "grant_types_supported": grants,
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": list(SIGNING_ALGORITHMS),
            "scopes_supported": [
                *(f"system/{name}.cruds" for name in [*RESOURCE_TYPES, SUBSCRIPTION]),
                *(f"user/{name}.cruds" for name in [*RESOURCE_TYPES, SUBSCRIPTION]),
                *PERMISSION_SCOPES,
            ],
            "capabilities": capabilities,
            "permission_scopes": PERMISSION_SCOPES,
        }
    )
    if endpoints.authorize:
        config["response_types_supported"] = ["code"]
        config["code_challenge_methods_supported"] = ["S256"]
    return config

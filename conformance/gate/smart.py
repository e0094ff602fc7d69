"""SMART App Launch 2.0 discovery (`.well-known/smart-configuration`, §Conformance) and
the token endpoint's OAuth errors: the gate's checks for documents that are not FHIR.

The discovery document must hold every field the specification requires for what it
claims, and agree with the CapabilityStatement's `oauth-uris` extension. An error from
the token endpoint must be RFC 6749 §5.2 JSON.
"""

from __future__ import annotations

from typing import Any

OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
ALWAYS = ("token_endpoint", "grant_types_supported", "capabilities")
OAUTH_ERRORS = {
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
}

Problem = tuple[str, str]  # (path, message)


def check_configuration(config: Any, capability: Any, content_type: str) -> list[Problem]:
    if "json" not in content_type:
        return [("", f"Content-Type {content_type!r}, expected application/json")]
    if not isinstance(config, dict):
        return [("", "the discovery document is not a JSON object")]
    problems = [(key, "required, missing") for key in ALWAYS if key not in config]
    capabilities = config.get("capabilities", [])
    launches = {"launch-ehr", "launch-standalone"} & set(capabilities)
    if launches and "authorization_endpoint" not in config:
        problems.append(("authorization_endpoint", f"required by {', '.join(sorted(launches))}"))
    if "sso-openid-connect" in capabilities:
        problems += [(k, "required by sso-openid-connect") for k in ("issuer", "jwks_uri")]
    if "authorization_endpoint" in config:
        methods = config.get("code_challenge_methods_supported", [])
        if "S256" not in methods or "plain" in methods:
            problems.append(("code_challenge_methods_supported", "must hold S256, not plain"))
    if "client-confidential-asymmetric" in capabilities:
        if "private_key_jwt" not in config.get("token_endpoint_auth_methods_supported", []):
            problems.append(("token_endpoint_auth_methods_supported", "needs private_key_jwt"))
        algorithms = set(config.get("token_endpoint_auth_signing_alg_values_supported", []))
        if not algorithms & {"RS384", "ES384"}:
            problems.append(
                ("token_endpoint_auth_signing_alg_values_supported", "needs RS384 or ES384")
            )
    if "client_credentials" in config.get("grant_types_supported", []) and not (
        "client-confidential-asymmetric" in capabilities
        or "client-confidential-symmetric" in capabilities
    ):
        problems.append(("capabilities", "client_credentials without a confidential client"))
    uris = _oauth_uris(capability)
    if uris is None:
        problems.append(("CapabilityStatement.rest.security", "no oauth-uris extension"))
    else:
        for part, key in (("token", "token_endpoint"), ("authorize", "authorization_endpoint")):
            if uris.get(part) != config.get(key):
                problems.append(
                    (key, f"{config.get(key)!r} but oauth-uris#{part} is {uris.get(part)!r}")
                )
    return problems


def check_oauth_error(body: Any, status: int, content_type: str) -> list[Problem]:
    problems = []
    if "application/json" not in content_type:
        problems.append(("", f"Content-Type {content_type!r}, expected application/json"))
    if status not in (400, 401):
        problems.append(("", f"status {status}; RFC 6749 §5.2 answers 400 (or 401)"))
    if not isinstance(body, dict) or body.get("error") not in OAUTH_ERRORS:
        problems.append(("error", "not an RFC 6749 §5.2 error code"))
    return problems


def _oauth_uris(capability: Any) -> dict[str, str] | None:
    try:
        extensions = capability["rest"][0]["security"]["extension"]
    except (KeyError, IndexError, TypeError):
        return None
    for extension in extensions:
        if extension.get("url") == OAUTH_URIS:
            return {p["url"]: p.get("valueUri") for p in extension.get("extension", [])}
    return None

"""The embedded token service: SMART Backend Services (App Launch 2.0, backend-services).

`POST /auth/token` takes `grant_type=client_credentials` with a `private_key_jwt` client
assertion (RS384 or ES384) signed by a key in the client's registered JWK Set
(`fhir-facade client add`), checks it as the specification says (iss = sub = client id,
aud = this endpoint's URL, exp at most five minutes ahead, jti never seen before it
expires, on any instance sharing the database) and answers with an access token whose
scopes are those asked for that the client's registration covers.

This endpoint speaks OAuth 2.0, not FHIR: its errors are RFC 6749 §5.2 JSON
(`{"error": "invalid_client", "error_description": …}`). It is served only when no
identity provider is configured (no FHIR_FACADE_JWKS_URL).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import jwt
import orjson
from flask import Blueprint, Response, current_app, request

from fhir_facade.auth import PERMISSION_SCOPES, Scope, parse_scope
from fhir_facade.context import database, tokens
from fhir_facade.http import base_url
from store.access import Access
from store.errors import AssertionReplayed
from store.models import ApiClient
from store.scope import Store

TOKEN_PATH = "/auth/token"
GRANT_TYPE = "client_credentials"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SIGNING_ALGORITHMS = ("RS384", "ES384")
ACCESS_TOKEN_LIFETIME = dt.timedelta(minutes=5)
MAX_ASSERTION_LIFETIME = dt.timedelta(minutes=5)
#: Clocks differ a little between client and server; this much is forgiven on exp/iat.
CLOCK_SKEW = dt.timedelta(seconds=30)


class OAuthError(Exception):
    """An RFC 6749 §5.2 error: `error` code, description, HTTP status."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


def token_endpoint_url(fhir_base: str) -> str:
    """The token endpoint beside the FHIR base: `https://host/fhir` -> `https://host/auth/token`."""
    return fhir_base.rstrip("/").removesuffix("/fhir") + TOKEN_PATH


def blueprint() -> Blueprint:
    blp = Blueprint("oauth", __name__)
    blp.add_url_rule(TOKEN_PATH, "token", issue_token, methods=["POST"])
    return blp


def issue_token() -> Response:
    try:
        body = _token_response()
    except OAuthError as exc:
        headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        if exc.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="fhir-facade"'
        payload = {"error": exc.error, "error_description": exc.description}
        return _json(payload, exc.status, headers)
    return _json(body, 200, {"Cache-Control": "no-store", "Pragma": "no-cache"})


def _json(body: dict[str, Any], status: int, headers: dict[str, str]) -> Response:
    return Response(orjson.dumps(body), status=status, headers=headers, mimetype="application/json")


def _token_response() -> dict[str, Any]:
    if request.mimetype != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "send application/x-www-form-urlencoded form data")
    form = request.form
    if form.get("grant_type") != GRANT_TYPE:
        raise OAuthError("unsupported_grant_type", f"only grant_type={GRANT_TYPE} is supported")
    if form.get("client_assertion_type") != ASSERTION_TYPE:
        raise OAuthError("invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}")
    assertion = form.get("client_assertion")
    if not assertion:
        raise OAuthError("invalid_request", "client_assertion is required")
    asked = form.get("scope", "")
    if not asked.strip():
        raise OAuthError("invalid_request", "scope is required")
    audience = token_endpoint_url(base_url())

    def work(store: Store) -> tuple[str, str]:
        client, claims = _verify_assertion(store, assertion, audience)
        granted = granted_scopes(asked, client.scope)
        if not granted:
            raise OAuthError("invalid_scope", "none of the scopes asked for is registered")
        expires = dt.datetime.fromtimestamp(claims["exp"], dt.UTC)
        try:
            store.use_assertion(client.id, claims["jti"], expires)
        except AssertionReplayed:
            raise OAuthError(
                "invalid_client", "this assertion (jti) was already used", 401
            ) from None
        return client.id, granted

    # No caller yet (this is how one gets a token): the least access, and clients hold
    # no patient data anyway.
    client_id, granted = database().write_as(Access(), work)
    token = tokens().mint(client_id, granted, ACCESS_TOKEN_LIFETIME)
    return {
        "access_token": token,
        "token_type": "bearer",
        "expires_in": int(ACCESS_TOKEN_LIFETIME.total_seconds()),
        "scope": granted,
    }


def _verify_assertion(
    store: Store, assertion: str, audience: str
) -> tuple[ApiClient, dict[str, Any]]:
    """The registered client and the verified claims of a client assertion."""
    try:
        header = jwt.get_unverified_header(assertion)
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise OAuthError("invalid_client", f"client_assertion is not a JWT: {exc}", 401) from None
    if header.get("alg") not in SIGNING_ALGORITHMS:
        raise OAuthError(
            "invalid_client", f"the assertion must be signed {' or '.join(SIGNING_ALGORITHMS)}", 401
        )
    client_id = unverified.get("iss")
    client = store.find_client(client_id) if isinstance(client_id, str) else None
    if client is None:
        raise OAuthError("invalid_client", "the assertion's iss is not a registered client", 401)
    key = _signing_key(client.jwks, client.jwks_url, header)
    try:
        claims: dict[str, Any] = jwt.decode(
            assertion,
            key,
            algorithms=[header["alg"]],
            audience=audience,
            issuer=client.id,
            leeway=CLOCK_SKEW,
            options={"require": ["iss", "sub", "aud", "exp", "jti"]},
        )
    except jwt.PyJWTError as exc:
        raise OAuthError("invalid_client", f"the assertion is not valid: {exc}", 401) from None
    if claims["sub"] != client.id:
        raise OAuthError("invalid_client", "the assertion's sub must equal its iss", 401)
    latest = dt.datetime.now(dt.UTC) + MAX_ASSERTION_LIFETIME + CLOCK_SKEW
    if not isinstance(claims["exp"], int) or claims["exp"] > latest.timestamp():
        raise OAuthError(
            "invalid_client", "the assertion's exp must be at most five minutes ahead", 401
        )
    if not isinstance(claims["jti"], str) or not 0 < len(claims["jti"]) <= 200:
        raise OAuthError("invalid_client", "the assertion's jti must be a string", 401)
    return client, claims


def _signing_key(jwks: str | None, jwks_url: str | None, header: dict[str, Any]) -> Any:
    """The registered public key the assertion names (by `kid`; the only key without one)."""
    kid = header.get("kid")
    jku = header.get("jku")
    if jku is not None and jku != jwks_url:
        raise OAuthError(
            "invalid_client", "the assertion's jku is not the registered JWKS URL", 401
        )
    try:
        if jwks is not None:
            keys = [k for k in jwt.PyJWKSet.from_json(jwks).keys if kid is None or k.key_id == kid]
        else:
            assert jwks_url is not None
            keys = [_jwks_client(jwks_url).get_signing_key(kid)] if kid else []
    except jwt.PyJWTError as exc:
        raise OAuthError(
            "invalid_client", f"the client's keys cannot be used: {exc}", 401
        ) from None
    if len(keys) != 1:
        raise OAuthError(
            "invalid_client", "no single registered key matches the assertion's kid", 401
        )
    return keys[0].key


def _jwks_client(url: str) -> jwt.PyJWKClient:
    """One cached JWKS fetcher per URL and application."""
    clients: dict[str, jwt.PyJWKClient] = current_app.extensions.setdefault(
        "fhir_facade.client_jwks", {}
    )
    if url not in clients:
        clients[url] = jwt.PyJWKClient(url, cache_keys=True, lifespan=300)
    return clients[url]


def granted_scopes(asked: str, registered: str) -> str:
    """The scopes asked for that the registration covers: a permission exactly; a resource
    scope when a registered one of the same context (system/, user/) covers its type, holds
    all its letters, and is unrestricted or carries the very same query."""
    mine = [(item.partition("/")[0], parse_scope(item)) for item in registered.split()]
    granted = []
    for item in dict.fromkeys(asked.split()):
        if item in PERMISSION_SCOPES:
            if item in registered.split():
                granted.append(item)
            continue
        scope = parse_scope(item)
        if scope is not None and any(
            context == item.partition("/")[0] and theirs is not None and _covers(theirs, scope)
            for context, theirs in mine
        ):
            granted.append(item)
    return " ".join(granted)


def _covers(registered: Scope, asked: Scope) -> bool:
    return (
        registered.covers(asked.resource_type)
        and asked.letters <= registered.letters
        and (not registered.query or registered.query == asked.query)
    )


def validate_jwks(text: str) -> str:
    """A JWK Set of public RS384/ES384 keys as compact JSON; ValueError otherwise."""
    try:
        document = json.loads(text)
        keys = list(document["keys"])
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"not a JWK Set: {exc}") from None
    if any(isinstance(key, dict) and "d" in key for key in keys):
        raise ValueError("the JWK Set holds a private key: register the public keys only")
    try:
        key_set = jwt.PyJWKSet.from_dict(document)
    except jwt.PyJWTError as exc:
        raise ValueError(f"not a JWK Set: {exc}") from None
    if not key_set.keys:
        raise ValueError("the JWK Set has no usable key")
    return json.dumps(document, separators=(",", ":"))

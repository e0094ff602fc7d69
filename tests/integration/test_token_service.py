"""The embedded token service (SMART Backend Services) and SMART discovery, on both stores.

A client registered with `fhir-facade client add` signs an assertion with its private
key and trades it at POST /auth/token for an access token carrying the scopes it asked
for that its registration covers. Every failure is an RFC 6749 error, and a refused
request leaves nothing behind (its jti is not spent).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from fhir_facade import create_app
from store.models import ApiClient, UsedAssertion
from tests.conftest import TEST_SECRET
from tests.smart_clients import BackendClient

TOKEN_URL = "http://testserver/auth/token"
REGISTERED = "system/Slot.rs system/Schedule.rs system/Coverage.rs?payor=Organization/payer-x"


def register(app: Flask, tmp_path: Path, client: BackendClient, scope: str = REGISTERED) -> None:
    jwks = tmp_path / f"{client.client_id}.jwks.json"
    jwks.write_text(json.dumps(client.jwks))
    result = app.test_cli_runner().invoke(
        args=["client", "add", client.client_id, "--jwks", str(jwks), "--scope", scope]
    )
    assert result.exit_code == 0, result.output


@pytest.fixture
def ehr(app: Flask, tmp_path: Path) -> BackendClient:
    backend = BackendClient("ehr-backend")
    register(app, tmp_path, backend)
    return backend


def oauth_error(response, status: int, error: str) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["error"] == error, body
    description: str = body["error_description"]
    return description


def used_assertions(app: Flask) -> int:
    with app.extensions["fhir_facade.db"].reading() as db:
        return int(db.scalar(select(func.count()).select_from(UsedAssertion)) or 0)


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_a_registered_client_trades_a_signed_assertion_for_a_token_that_works(
    app: Flask, client: FlaskClient, tmp_path: Path, alg: str
):
    backend = BackendClient(f"client-{alg}", alg=alg)
    register(app, tmp_path, backend)
    response = client.post(TOKEN_URL, data=backend.token_form(TOKEN_URL, "system/Slot.rs"))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["token_type"] == "bearer"
    assert body["scope"] == "system/Slot.rs"
    assert 0 < body["expires_in"] <= 300
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    assert client.get("/fhir/Slot", headers=bearer).status_code == 200
    assert client.get("/fhir/Patient", headers=bearer).status_code == 403


def test_the_granted_scopes_are_those_asked_for_that_the_registration_covers(
    client: FlaskClient, ehr: BackendClient
):
    asked = (
        "system/Slot.r system/Schedule.cruds system/Patient.rs __patient.blocked "
        "system/Coverage.rs?payor=Organization/payer-x system/Coverage.rs?payor=Organization/y"
    )
    response = client.post(TOKEN_URL, data=ehr.token_form(TOKEN_URL, asked))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["scope"] == (
        "system/Slot.r system/Coverage.rs?payor=Organization/payer-x"
    )


def test_asking_only_for_unregistered_scopes_is_invalid_scope(
    app: Flask, client: FlaskClient, ehr: BackendClient
):
    form = ehr.token_form(TOKEN_URL, "system/Patient.rs system/Coverage.rs")
    oauth_error(client.post(TOKEN_URL, data=form), 400, "invalid_scope")
    assert used_assertions(app) == 0


def test_an_assertion_is_accepted_once_even_by_another_instance_sharing_the_database(
    app: Flask, client: FlaskClient, ehr: BackendClient, database_url: str, tmp_path: Path
):
    form = ehr.token_form(TOKEN_URL, "system/Slot.rs")
    assert client.post(TOKEN_URL, data=form).status_code == 200
    other = create_app(
        {
            "database_url": database_url,
            "instance_path": tmp_path / "other-instance",
            "jwt_secret": TEST_SECRET,
            "base_url": "http://testserver/fhir",
        }
    )
    try:
        replay = other.test_client().post(TOKEN_URL, data=form)
        assert "already used" in oauth_error(replay, 401, "invalid_client")
        again = client.post(TOKEN_URL, data=form)
        assert "already used" in oauth_error(again, 401, "invalid_client")
    finally:
        other.extensions["fhir_facade.db"].dispose()


def _stranger_key() -> object:
    return BackendClient("stranger").private_key


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"aud": "http://elsewhere/auth/token"}, "Audience"),
        ({"sub": "someone-else"}, "sub must equal"),
        ({"iss": "not-registered", "sub": "not-registered"}, "not a registered client"),
        ({"exp": int(dt.datetime.now(dt.UTC).timestamp()) + 3600}, "five minutes"),
        ({"exp": int(dt.datetime.now(dt.UTC).timestamp()) - 120}, "expired"),
        ({"jti": None}, "jti"),
        ({"exp": None}, "exp"),
        ({"headers": {"kid": "unknown-kid"}}, "kid"),
        ({"headers": {"jku": "https://attacker.example/jwks"}}, "jku"),
        ({"key": _stranger_key()}, "Signature verification failed"),
        ({"alg": "HS256", "key": "a-shared-secret-is-not-allowed-here-000"}, "RS384 or ES384"),
    ],
)
def test_a_bad_assertion_is_refused_as_invalid_client_and_spends_nothing(
    app: Flask, client: FlaskClient, ehr: BackendClient, overrides: dict[str, object], why: str
):
    form = ehr.token_form(TOKEN_URL, "system/Slot.rs", **overrides)
    assert why in oauth_error(client.post(TOKEN_URL, data=form), 401, "invalid_client")
    assert used_assertions(app) == 0


@pytest.mark.parametrize(
    ("change", "status", "error"),
    [
        ({"grant_type": "authorization_code"}, 400, "unsupported_grant_type"),
        ({"client_assertion_type": "urn:other"}, 400, "invalid_request"),
        ({"client_assertion": ""}, 400, "invalid_request"),
        ({"scope": ""}, 400, "invalid_request"),
        ({"client_assertion": "not.a.jwt"}, 401, "invalid_client"),
    ],
)
def test_a_malformed_token_request_gets_an_oauth_error(
    client: FlaskClient, ehr: BackendClient, change: dict[str, str], status: int, error: str
):
    form = ehr.token_form(TOKEN_URL, "system/Slot.rs") | change
    oauth_error(client.post(TOKEN_URL, data=form), status, error)


def test_a_token_request_that_is_not_a_form_is_invalid_request(
    client: FlaskClient, ehr: BackendClient
):
    form = ehr.token_form(TOKEN_URL, "system/Slot.rs")
    oauth_error(client.post(TOKEN_URL, json=form), 400, "invalid_request")


def test_registering_again_replaces_the_keys_and_scopes(
    app: Flask, client: FlaskClient, ehr: BackendClient, tmp_path: Path
):
    rotated = BackendClient(ehr.client_id, alg="ES384")
    register(app, tmp_path, rotated, scope="system/Schedule.rs")
    old = ehr.token_form(TOKEN_URL, "system/Schedule.rs")
    oauth_error(client.post(TOKEN_URL, data=old), 401, "invalid_client")
    new = client.post(TOKEN_URL, data=rotated.token_form(TOKEN_URL, "system/Schedule.rs"))
    assert new.get_json()["scope"] == "system/Schedule.rs"
    with app.extensions["fhir_facade.db"].reading() as db:
        assert db.scalar(select(func.count()).select_from(ApiClient)) == 1


@pytest.mark.parametrize(
    ("jwks", "scope", "complaint"),
    [
        ("private", "system/Slot.rs", "private key"),
        ("garbage", "system/Slot.rs", "not a JWK Set"),
        ("public", "system/Slot.rs?nonsense=1", "not scopes we grant"),
        ("public", "patient/Slot.rs", "not scopes we grant"),
    ],
)
def test_client_registration_refuses_private_keys_bad_key_sets_and_unknown_scopes(
    app: Flask, tmp_path: Path, jwks: str, scope: str, complaint: str
):
    backend = BackendClient("careless")
    public = backend.jwks
    private = {"keys": [public["keys"][0] | {"d": "secret", "p": "x", "q": "y"}]}
    texts = {"public": json.dumps(public), "private": json.dumps(private), "garbage": "{"}
    path = tmp_path / "keys.json"
    path.write_text(texts[jwks])
    result = app.test_cli_runner().invoke(
        args=["client", "add", "careless", "--jwks", str(path), "--scope", scope]
    )
    assert result.exit_code != 0
    assert complaint in result.output
    with app.extensions["fhir_facade.db"].reading() as db:
        assert db.get(ApiClient, "careless") is None


# -- discovery ------------------------------------------------------------------------

SMART_REQUIRED = {
    "token_endpoint",
    "grant_types_supported",
    "token_endpoint_auth_methods_supported",
    "token_endpoint_auth_signing_alg_values_supported",
    "scopes_supported",
    "capabilities",
}


def oauth_uris(metadata: dict[str, object]) -> dict[str, str]:
    (rest,) = metadata["rest"]  # type: ignore[index]
    security = rest["security"]
    (extension,) = [
        e
        for e in security["extension"]
        if e["url"] == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    ]
    codes = [c["code"] for s in security["service"] for c in s["coding"]]
    assert "SMART-on-FHIR" in codes
    return {part["url"]: part["valueUri"] for part in extension["extension"]}


def test_embedded_discovery_names_the_token_service_and_the_metadata_agrees(
    client: FlaskClient,
):
    response = client.get("/fhir/.well-known/smart-configuration")
    assert response.status_code == 200
    config = response.get_json()
    assert set(config) >= SMART_REQUIRED
    assert config["token_endpoint"] == TOKEN_URL
    assert config["grant_types_supported"] == ["client_credentials"]
    assert config["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert config["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]
    assert {"client-confidential-asymmetric", "permission-v2"} <= set(config["capabilities"])
    assert "authorization_endpoint" not in config  # no authorization-code flow offered
    assert "system/Coverage.cruds" in config["scopes_supported"]
    assert oauth_uris(client.get("/fhir/metadata").get_json()) == {"token": TOKEN_URL}


def test_production_discovery_advertises_the_identity_provider_and_no_token_service(
    database_url: str, tmp_path: Path
):
    idp = "https://idp.example/realms/clinic"
    app = create_app(
        {
            "database_url": database_url,
            "instance_path": tmp_path / "instance",
            "base_url": "http://testserver/fhir",
            "jwks_url": f"{idp}/certs",
            "jwt_issuer": idp,
            "token_endpoint": f"{idp}/token",
            "authorization_endpoint": f"{idp}/auth",
        }
    )
    try:
        client = app.test_client()
        config = client.get("/fhir/.well-known/smart-configuration").get_json()
        assert set(config) >= SMART_REQUIRED
        assert config["issuer"] == idp
        assert config["jwks_uri"] == f"{idp}/certs"
        assert config["token_endpoint"] == f"{idp}/token"
        assert config["authorization_endpoint"] == f"{idp}/auth"
        assert config["grant_types_supported"] == ["authorization_code", "client_credentials"]
        assert config["code_challenge_methods_supported"] == ["S256"]
        assert "launch-standalone" in config["capabilities"]
        metadata = client.get("/fhir/metadata").get_json()
        assert oauth_uris(metadata) == {"token": f"{idp}/token", "authorize": f"{idp}/auth"}
        assert client.post(TOKEN_URL, data={"grant_type": "client_credentials"}).status_code == 404
    finally:
        app.extensions["fhir_facade.db"].dispose()


def test_an_identity_provider_without_a_token_endpoint_is_a_configuration_error(tmp_path: Path):
    with pytest.raises(ValueError, match="FHIR_FACADE_TOKEN_ENDPOINT"):
        create_app({"instance_path": tmp_path, "jwks_url": "https://idp.example/certs"})


@pytest.fixture
def published_keys() -> Iterator[tuple[BackendClient, str]]:
    """A client publishing its JWK Set at a URL of its own (a local HTTP server)."""
    backend = BackendClient("published-keys")
    body = json.dumps(backend.jwks).encode()

    class Keys(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Keys)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield backend, f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


def test_a_client_registered_with_a_jwks_url_is_checked_against_the_keys_found_there(
    app: Flask, client: FlaskClient, published_keys: tuple[BackendClient, str]
):
    backend, url = published_keys
    result = app.test_cli_runner().invoke(
        args=["client", "add", backend.client_id, "--jwks-url", url, "--scope", "system/Slot.rs"]
    )
    assert result.exit_code == 0, result.output
    form = backend.token_form(TOKEN_URL, "system/Slot.rs", headers={"jku": url})
    assert client.post(TOKEN_URL, data=form).status_code == 200
    forged = backend.token_form(TOKEN_URL, "system/Slot.rs", key=_stranger_key())
    oauth_error(client.post(TOKEN_URL, data=forged), 401, "invalid_client")
    elsewhere = backend.token_form(TOKEN_URL, "system/Slot.rs", headers={"jku": url + "?x"})
    assert "jku" in oauth_error(client.post(TOKEN_URL, data=elsewhere), 401, "invalid_client")

"""With FHIR_FACADE_JWKS_URL set, the staff app signs in through the identity provider:
OAuth 2.0 authorization code with PKCE (S256), then calls /fhir with the IdP's token.

The identity provider is a small one run by the test (authorize, token, JWKS). The
server's SMART discovery names no authorization endpoint yet (the discovery document is
being completed to point at the configured IdP), so the test answers that one request
with the IdP's endpoints added; everything else is the real server.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from store.db import Database, DatabaseSettings
from store.demo import load_demo
from store.migrate import upgrade
from tests.browser.conftest import ARTIFACTS, Screens, _quick_stop
from tests.e2e.conftest import Server, _launch, _wait_ready

CLIENT_ID = "fhir-facade-staff-app"
USER_SCOPE = "openid user/*.rs user/Appointment.crus __schedule.manage"


@dataclass
class IdentityProvider:
    """Authorization code + PKCE, RS256 tokens, a JWKS; remembers what it was asked."""

    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    port: int = 0
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def jwks(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**public, "kid": "idp-1", "use": "sig", "alg": "RS256"}]}

    def token(self, subject: str) -> str:
        now = dt.datetime.now(dt.UTC)
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "name": "Jordan Lee",
            "scope": USER_SCOPE,
            "iat": now,
            "exp": now + dt.timedelta(hours=1),
        }
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": "idp-1"})


def _handler(idp: IdentityProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Access-Control-Allow-Origin", "*")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            url = urlparse(self.path)
            if url.path == "/jwks.json":
                return self._send(200, idp.jwks())
            if url.path == "/authorize":
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                idp.authorize_requests.append(query)
                code = secrets.token_urlsafe(16)
                idp.codes[code] = query
                back = (
                    f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"
                )
                return self._send(302, None, {"Location": back})
            return self._send(404, {"error": "not_found"})

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length", 0))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            idp.token_requests.append(form)
            asked = idp.codes.pop(form.get("code", ""), None)
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if (
                asked is None
                or asked["code_challenge"] != challenge
                or asked["redirect_uri"] != form.get("redirect_uri")
                or form.get("client_id") != CLIENT_ID
            ):
                return self._send(400, {"error": "invalid_grant"})
            answer = {
                "access_token": idp.token("jordan.lee"),
                "token_type": "Bearer",
                "expires_in": 3600,
                "scope": USER_SCOPE,
            }
            return self._send(200, answer)

    return Handler


@pytest.fixture(scope="module")
def idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider()
    http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(provider))
    provider.port = http.server_address[1]
    thread = threading.Thread(target=http.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield provider
    http.shutdown()
    http.server_close()


@pytest.fixture(scope="module")
def idp_server(idp: IdentityProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server on the demo clinic (SQLite) that trusts only the identity provider's keys."""
    folder = tmp_path_factory.mktemp("browser-idp")
    url = f"sqlite:///{folder / 'clinic.sqlite3'}"
    database = Database(DatabaseSettings(url))
    upgrade(database.engine)
    database.write(lambda db: load_demo(db))
    database.dispose()
    env = {
        "FHIR_FACADE_JWKS_URL": f"{idp.issuer}jwks.json",
        "FHIR_FACADE_JWT_ISSUER": idp.issuer,
        "FHIR_FACADE_TOKEN_ENDPOINT": f"{idp.issuer}token",
        "FHIR_FACADE_AUTHORIZATION_ENDPOINT": f"{idp.issuer}authorize",
    }
    server = _launch(url, folder / "server", env)
    try:
        problem = _wait_ready(server)
        if problem is not None:
            pytest.fail(f"fhir-facade did not start ({problem}):\n{server.stderr_tail()}")
        yield server
    finally:
        _quick_stop(server)


def test_with_an_identity_provider_the_app_signs_in_by_authorization_code_with_pkce(
    browser: Any, idp: IdentityProvider, idp_server: Server, tmp_path: Path
) -> None:
    app_url = f"http://127.0.0.1:{idp_server.port}/app/"
    assert requests.post(
        f"{app_url}sign-in", json={"user": "sam.ortiz"}, timeout=10
    ).status_code in (
        404,
        405,
    )
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    page = context.new_page()
    # The app learns the identity provider's endpoints from the server's SMART discovery.
    discovery = requests.get(f"{idp_server.base}/.well-known/smart-configuration", timeout=10)
    assert discovery.json()["authorization_endpoint"] == f"{idp.issuer}authorize"
    assert discovery.json()["token_endpoint"] == f"{idp.issuer}token"
    try:
        page.goto(app_url)
        screen = Screens(ARTIFACTS / "identity-provider")
        page.get_by_role("button", name="Sign in with your identity provider").wait_for()
        screen(page, "sign-in-identity-provider")
        page.get_by_role("button", name="Sign in with your identity provider").click()
        page.get_by_text("Signed in as Jordan Lee").wait_for()
        page.locator(".tile").first.wait_for()
        screen(page, "calendar-after-idp-sign-in")
    finally:
        context.close()

    (asked,) = idp.authorize_requests
    assert asked["response_type"] == "code" and asked["client_id"] == CLIENT_ID
    assert asked["code_challenge_method"] == "S256" and len(asked["code_challenge"]) == 43
    assert asked["redirect_uri"] == app_url and "__schedule.manage" in asked["scope"]
    (exchanged,) = idp.token_requests
    assert exchanged["grant_type"] == "authorization_code" and len(exchanged["code_verifier"]) >= 43

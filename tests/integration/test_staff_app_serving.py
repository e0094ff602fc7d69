"""The staff app's files and its demo sign-in, served by the facade (no browser here;
tests/browser drives the app itself)."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from fhir_facade import create_app
from tests.conftest import TEST_SECRET


def _app(tmp_path: Path, **overrides: str) -> Flask:
    settings = {
        "database_url": f"sqlite:///{tmp_path / 'unused.sqlite3'}",
        "instance_path": tmp_path / "instance",
        "jwt_secret": TEST_SECRET,
        **overrides,
    }
    return create_app(settings)


def _get(client: FlaskClient, path: str) -> TestResponse:
    """GET and read the body; files are streamed, so close the response (no ResourceWarning)."""
    response = client.get(path)
    response.get_data()
    response.close()
    return response


def test_the_app_and_its_modules_are_served_same_origin_without_a_cdn(tmp_path: Path) -> None:
    client = _app(tmp_path).test_client()
    page = _get(client, "/app/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert 'src="app.mjs"' in html and "http" not in html.replace("http-equiv", "")
    module = _get(client, "/app/app.mjs")
    assert module.status_code == 200 and module.mimetype == "text/javascript"
    vendored = _get(client, "/app/vendor/htm-preact-standalone-3.1.1.mjs")
    assert vendored.status_code == 200 and "useState" in vendored.get_data(as_text=True)
    for name in ("app.mjs", "ui.mjs", "booking.mjs", "appointments.mjs", "fhir.mjs", "signin.mjs"):
        text = _get(client, f"/app/{name}").get_data(as_text=True)
        assert "https://" not in text.replace('https://" +', ""), name
    assert _get(client, "/app/../pyproject.toml").status_code == 404
    missing = _get(client, "/app/no-such-file.js")
    assert missing.status_code == 404 and missing.json["resourceType"] == "OperationOutcome"


def test_with_the_dev_key_the_demo_offers_three_staff_users_and_signs_their_tokens(
    tmp_path: Path,
) -> None:
    app = _app(tmp_path)
    client = app.test_client()
    assert _get(client, "/app/config.json").json["signIn"] == "demo"
    users = _get(client, "/app/sign-in").json["users"]
    assert [u["id"] for u in users] == ["sam.ortiz", "alex.morgan", "priya.shah"]
    answer = client.post("/app/sign-in", json={"user": "alex.morgan"})
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    grants = app.extensions["fhir_facade.tokens"].verify(f"Bearer {answer.json['access_token']}")
    assert grants.subject == "alex.morgan"
    assert "__schedule.manage" in grants.permissions and grants.allows("Slot", "c")
    form = client.post("/app/sign-in", data={"user": "priya.shah"})
    assert form.status_code == 200 and "__patient.blocked" in form.json["scope"]
    refused = client.post("/app/sign-in", json={"user": "nobody"})
    assert refused.status_code == 400
    assert refused.json["issue"][0]["expression"] == ["user"]


def test_with_an_identity_provider_there_is_no_demo_sign_in(tmp_path: Path) -> None:
    client = _app(tmp_path, jwks_url="https://idp.example.org/.well-known/jwks.json").test_client()
    config = _get(client, "/app/config.json").json
    assert config["signIn"] == "identity-provider"
    assert config["clientId"] == "fhir-facade-staff-app" and "user/Slot.rs" in config["scope"]
    assert _get(client, "/app/sign-in").status_code == 404
    assert client.post("/app/sign-in", json={"user": "alex.morgan"}).status_code in (404, 405)
    assert _get(client, "/app/").status_code == 200

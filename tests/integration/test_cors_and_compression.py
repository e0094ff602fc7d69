"""CORS for browser clients on other origins (off by default; FHIR_FACADE_CORS_ORIGINS)
and compressed responses (gzip, br) for clients that accept them."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import shutil
from pathlib import Path

import brotli
import pytest

from fhir_facade import create_app
from tests.conftest import STAFF_SCOPE, TEST_SECRET
from tests.factories import make_clinic, make_patient, make_session
from tests.integration.helpers import appointment, fhir
from tests.validation import assert_valid

APP_ORIGIN = "https://scheduler.example.org"


@pytest.fixture
def make_client(sqlite_template: Path, tmp_path: Path):
    """(app, client, staff headers) for an app with the given settings on a fresh SQLite."""
    apps = []

    def build(**settings):
        path = tmp_path / f"facade-{len(apps)}.sqlite3"
        shutil.copy(sqlite_template, path)
        app = create_app(
            {
                "database_url": f"sqlite:///{path}",
                "instance_path": tmp_path / "instance",
                "jwt_secret": TEST_SECRET,
                "base_url": "http://testserver/fhir",
                **settings,
            }
        )
        apps.append(app)
        tokens = app.extensions["fhir_facade.tokens"]
        token = tokens.mint("tester", STAFF_SCOPE, dt.timedelta(hours=1))
        return app, app.test_client(), {"Authorization": f"Bearer {token}"}

    yield build
    for app in apps:
        app.extensions["fhir_facade.db"].dispose()


def _clinic(app, patients: int = 1):
    def build(db):
        clinic = make_clinic(db)
        return make_session(db, clinic).id, [make_patient(db).id for _ in range(patients)]

    return app.extensions["fhir_facade.db"].write(build)


PREFLIGHT = {
    "Origin": APP_ORIGIN,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type, prefer",
}


def test_cors_is_off_by_default(make_client):
    app, client, auth = make_client()
    session_id, _ = _clinic(app)

    preflight = client.options("/fhir/Appointment", headers=PREFLIGHT)
    read = client.get(f"/fhir/Slot/{session_id}", headers={**auth, "Origin": APP_ORIGIN})

    assert preflight.status_code == 401
    assert "Access-Control-Allow-Origin" not in read.headers
    metadata = client.get("/fhir/metadata").get_json()
    assert metadata["rest"][0]["security"]["cors"] is False


def test_a_preflight_from_an_allowed_origin_is_answered_without_a_token(make_client):
    _, client, _ = make_client(cors_origins=f"{APP_ORIGIN}, https://other.example.org")

    response = client.options("/fhir/Appointment", headers=PREFLIGHT)

    assert response.status_code == 204
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert {"authorization", "content-type", "prefer", "if-match"} <= {
        h.strip() for h in allowed.split(",")
    }
    assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_an_origin_not_listed_gets_no_cors_headers(make_client):
    app, client, auth = make_client(cors_origins=APP_ORIGIN)
    session_id, _ = _clinic(app)

    preflight = client.options(
        "/fhir/Appointment", headers={**PREFLIGHT, "Origin": "https://evil.example"}
    )
    read = client.get(
        f"/fhir/Slot/{session_id}", headers={**auth, "Origin": "https://evil.example"}
    )

    assert "Access-Control-Allow-Origin" not in preflight.headers
    assert "Access-Control-Allow-Methods" not in preflight.headers
    assert read.status_code == 200 and "Access-Control-Allow-Origin" not in read.headers
    assert "Origin" in read.headers["Vary"]


def test_a_cross_origin_booking_exposes_etag_location_and_warning(make_client):
    app, client, auth = make_client(cors_origins=APP_ORIGIN)
    session_id, (patient_id,) = _clinic(app)

    response = client.post(
        "/fhir/Appointment",
        data=json.dumps(appointment(session_id, patient_id)),
        headers={**auth, "Origin": APP_ORIGIN, "Content-Type": "application/fhir+json"},
    )

    fhir(response, 201)
    assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    exposed = {h.strip() for h in response.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"ETag", "Location", "Warning", "Content-Location", "Last-Modified"} <= exposed
    metadata = client.get("/fhir/metadata").get_json()
    assert_valid(metadata)
    assert metadata["rest"][0]["security"]["cors"] is True


def _big_search(make_client, **settings):
    app, client, auth = make_client(**settings)
    _clinic(app, patients=40)
    return client, auth, "/fhir/Patient?_count=40"


@pytest.mark.parametrize(
    ("accept", "coding", "decode"),
    [("gzip", "gzip", gzip.decompress), ("gzip, deflate, br", "br", brotli.decompress)],
)
def test_a_large_response_is_compressed_as_the_client_accepts(make_client, accept, coding, decode):
    client, auth, url = _big_search(make_client)
    plain = client.get(url, headers=auth)

    packed = client.get(url, headers={**auth, "Accept-Encoding": accept})

    assert packed.headers["Content-Encoding"] == coding
    assert "Accept-Encoding" in packed.headers["Vary"]
    assert len(packed.data) < len(plain.data) / 3
    assert json.loads(decode(packed.data)) == plain.get_json()
    assert "Content-Encoding" not in plain.headers and "Accept-Encoding" in plain.headers["Vary"]


def test_small_responses_and_refused_codings_go_out_as_they_are(make_client):
    client, auth, url = _big_search(make_client)

    small = client.get("/fhir/Slot?_count=0", headers={**auth, "Accept-Encoding": "gzip"})
    refused = client.get(url, headers={**auth, "Accept-Encoding": "gzip;q=0, br;q=0"})

    assert "Content-Encoding" not in small.headers
    assert "Content-Encoding" not in refused.headers
    assert refused.get_json()["total"] == 40


def test_compression_can_be_turned_off(make_client):
    client, auth, url = _big_search(make_client, compress_min_bytes=0)

    response = client.get(url, headers={**auth, "Accept-Encoding": "gzip, br"})

    assert "Content-Encoding" not in response.headers
    assert response.get_json()["total"] == 40


def test_the_swagger_ui_assets_are_compressed_too(make_client):
    _, client, _ = make_client()

    with client.get("/docs/assets/swagger-ui-bundle.js", headers={"Accept-Encoding": "gzip"}) as r:
        assert r.headers["Content-Encoding"] == "gzip"
        assert r.headers["ETag"].startswith("W/")
        assert b"SwaggerUIBundle" in gzip.decompress(r.data)

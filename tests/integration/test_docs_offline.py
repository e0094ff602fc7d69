"""`/docs` works offline: the page names only assets the server itself serves (Swagger UI
from the package, pinned), each of them loads, and nothing is fetched from elsewhere."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from fhir_facade import create_app
from fhir_facade.docs import SWAGGER_UI_VERSION


@pytest.fixture
def offline_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    app = create_app(
        {
            "database_url": f"sqlite:///{tmp_path / 'unused.sqlite3'}",
            "instance_path": tmp_path / "instance",
            "jwt_secret": "test-signing-key-not-for-production-0123456789",
        }
    )

    def no_network(self: socket.socket, address: object) -> None:
        raise OSError(f"offline test: connection to {address!r} attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    yield app.test_client()
    app.extensions["fhir_facade.db"].dispose()


def test_the_docs_page_and_every_asset_it_names_load_without_the_internet(offline_client):
    page = offline_client.get("/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)

    urls = re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r'url: "([^"]+)"', html)
    assert len(urls) == 4, urls  # stylesheet, two scripts, the OpenAPI document
    assert not [u for u in urls if "//" in u], "the page names another host"
    kinds = {}
    for url in urls:
        with offline_client.get(url) as response:
            assert response.status_code == 200, url
            assert len(response.data) > 1000, url
            kinds[url.rsplit("/", 1)[-1]] = response.mimetype
    assert kinds == {
        "swagger-ui.css": "text/css",
        "swagger-ui-standalone-preset.js": "text/javascript",
        "swagger-ui-bundle.js": "text/javascript",
        "openapi.json": "application/json",
    }
    # Swagger UI's default validator badge would be fetched from validator.swagger.io.
    assert '"validatorUrl": null' in html


def test_the_vendored_swagger_ui_is_the_pinned_version_with_its_licence(offline_client):
    with offline_client.get("/docs/assets/swagger-ui-bundle.js") as response:
        bundle = response.get_data(as_text=True)
    assert SWAGGER_UI_VERSION in bundle
    assets = Path(__file__).resolve().parents[2] / "fhir_facade" / "swagger_ui"
    assert "Apache License" in (assets / "LICENSE").read_text()
    assert offline_client.get("/docs/assets/SOURCE").status_code == 404  # only the three assets

"""The interactive API docs (`/docs`): Swagger UI served from the package, so the page
works without the internet (swagger_ui/SOURCE says where the files come from)."""

from __future__ import annotations

from pathlib import Path

from flask import Flask, Response, send_from_directory

SWAGGER_UI_VERSION = "5.17.14"
ASSETS_URL = "/docs/assets/"
_ASSETS = Path(__file__).resolve().parent / "swagger_ui"
_FILES = frozenset({"swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"})


def configure(app: Flask) -> None:
    app.config.update(
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL=ASSETS_URL,
        # Swagger UI would otherwise fetch a validity badge from validator.swagger.io.
        OPENAPI_SWAGGER_UI_CONFIG={"validatorUrl": None},
    )

    def asset(name: str) -> Response:
        if name not in _FILES:
            return Response("not found", status=404, content_type="text/plain")
        return send_from_directory(_ASSETS, name, max_age=86400)

    app.add_url_rule(f"{ASSETS_URL}<path:name>", "swagger_ui_asset", asset)

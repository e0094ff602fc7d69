"""HTTP + FHIR layer: the Flask application factory."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

from apispec import APISpec
from flask import Flask, Response, g, request
from flask_smorest import Api, Blueprint
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import NotFound as NoRoute
from werkzeug.routing import Rule

from fhir_facade import compression, cors, docs
from fhir_facade.auth import TokenService, ssn_hasher
from fhir_facade.config import Settings
from fhir_facade.http import check_accept, check_request_size, fhir_response
from fhir_facade.notify.conformance import RESOURCE_TYPE as SUBSCRIPTION
from fhir_facade.notify.events import record_events
from fhir_facade.outcomes import NotServed, describe
from fhir_facade.registry import RESOURCE_TYPES, snapshot
from mappings.limits import check_id
from store.db import Database, DatabaseSettings

log = logging.getLogger("fhir_facade")

_PUBLIC = ("/fhir/metadata", "/fhir/.well-known/smart-configuration")


class FhirApi(Api):  # type: ignore[misc]
    """flask-smorest's Api whose HTTP errors answer with an OperationOutcome, and whose
    OpenAPI document is written when first read: documenting ~300 routes is half the
    cost of building the application, and a server process may never be asked for it."""

    # Errors are documented per route as OperationOutcome (fhir_facade.openapi), not
    # as flask-smorest's own error schema.
    DEFAULT_ERROR_RESPONSE_NAME = None

    def __init__(self, app: Flask) -> None:
        self._undocumented: list[Callable[[], None]] = []
        self._documenting = threading.RLock()
        self._writing = True  # nothing deferred runs until the Api is built
        super().__init__(app)
        self._writing = False

    def _register_responses(self) -> None:
        # flask-smorest's error responses for every HTTP status (a marshmallow schema
        # resolved for each): deferred like the rest of the document.
        self.document_later(super()._register_responses)

    @property
    def spec(self) -> APISpec:
        spec: APISpec = self.__dict__["_spec"]
        with self._documenting:  # reentrant: the work itself reads the spec, as it is
            if not self._writing:
                self._writing = True
                try:
                    while self._undocumented:
                        self._undocumented.pop(0)()
                finally:
                    self._writing = False
        return spec

    @spec.setter
    def spec(self, value: APISpec) -> None:
        self.__dict__["_spec"] = value

    def document_later(self, work: Callable[[], None]) -> None:
        """Run `work` (which adds to the spec) when the spec is first read."""
        self._undocumented.append(work)

    def register_blueprint(self, blp: Blueprint, **options: Any) -> None:
        """Serve the blueprint's routes now; document them when the spec is read."""
        self._app.extensions["flask-smorest"]["blp_name_to_api"][blp.name] = self
        self._app.register_blueprint(blp, **options)

        def document() -> None:
            blp.register_views_in_doc(self, self._app, self.spec, name=blp.name, parameters=None)
            self.spec.tag({"name": blp.name, "description": blp.description})

        self.document_later(document)

    def handle_http_exception(self, error: HTTPException) -> Response:
        return _error_response(error)


class _Rule(Rule):
    """A URL rule whose URL builder (for `url_for`) is compiled when first used: werkzeug
    compiles two for each of our ~330 rules, most never used, and that was most of
    the cost of building the application."""

    def _compile_builder(self, append_unknown: bool = True) -> Callable[..., tuple[str, str]]:
        compiled: list[Callable[..., tuple[str, str]]] = []

        def build(rule: Rule, *args: Any, **kwargs: Any) -> tuple[str, str]:
            if not compiled:
                compiled.append(Rule._compile_builder(rule, append_unknown).__get__(rule, None))
            return compiled[0](*args, **kwargs)

        return build


@functools.cache
def _blueprints() -> tuple[Blueprint, ...]:
    """The FHIR routes, built once per process: a blueprint may be registered on any
    number of applications (each test builds its own), and building it is costly."""
    from fhir_facade.api import build_blueprint
    from fhir_facade.notify.api import blueprint as subscriptions

    return build_blueprint(), subscriptions()


def _error_response(error: BaseException) -> Response:
    if isinstance(error, NoRoute) and request.path.startswith("/fhir/"):
        error = _no_route(request.path.split("/")[2])
    status, outcome = describe(error)
    if status == 500:
        log.exception("unhandled error", exc_info=error)
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="fhir-facade"'
    return fhir_response(outcome, status, headers)


def _no_route(segment: str) -> NotServed:
    if segment[:1].isupper() and segment not in {*RESOURCE_TYPES, SUBSCRIPTION}:
        served = ", ".join(sorted({*RESOURCE_TYPES, SUBSCRIPTION}))
        return NotServed(
            f"resource type {segment!r} is not served here; served: {served}", code="not-supported"
        )
    return NotServed("no FHIR interaction is served at this URL")


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the application. `test_config` overrides `Settings` fields (see config.py)."""
    settings = Settings.from_env(test_config)
    app = Flask(__name__, instance_path=str(settings.instance_path))
    app.url_rule_class = _Rule
    # Werkzeug would answer `//` in a path with an HTML redirect to the merged path;
    # FHIR clients get a 404 OperationOutcome for a URL we do not serve instead.
    app.url_map.merge_slashes = False
    app.config.update(
        API_TITLE="fhir-facade",
        API_VERSION="0.1.0",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={
            "info": {"description": "FHIR R4 (4.0.1) group-session booking; JSON only."},
            "servers": [{"url": "/"}],
            "security": [{"bearer": []}],
        },
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        FHIR_BASE_URL=settings.base_url,
        FHIR_FACADE_SETTINGS=settings,
    )
    database = Database(
        DatabaseSettings(
            url=settings.effective_database_url,
            pool_size=settings.db_pool_size,
            statement_timeout_ms=settings.statement_timeout_ms,
            connect_timeout_s=settings.db_connect_timeout_s,
            read_timeout_ms=settings.db_read_timeout_ms,
            keepalive_s=settings.db_keepalive_s,
        )
    )
    database.keep_versions(snapshot, record_events)
    app.extensions["fhir_facade.db"] = database
    app.extensions["fhir_facade.tokens"] = TokenService(settings)
    app.extensions["fhir_facade.ssn"] = ssn_hasher(settings)

    docs.configure(app)  # interactive docs at /docs, Swagger UI served from the package
    api = FhirApi(app)
    from fhir_facade.openapi import register

    api.document_later(lambda: register(api))
    for blueprint in _blueprints():
        api.register_blueprint(blueprint)
    if not settings.jwks_url:  # production: tokens come from the identity provider
        from fhir_facade.oauth import blueprint as token_service

        app.register_blueprint(token_service())
    from fhir_facade import web

    web.register(app, settings)
    app.register_error_handler(Exception, _error_response)

    @app.before_request
    def _authenticate() -> None:
        check_request_size()
        if not request.path.startswith("/fhir"):
            return
        check_accept()
        if request.path in _PUBLIC:
            return
        g.grants = app.extensions["fhir_facade.tokens"].verify(request.headers.get("Authorization"))
        path = request.view_args or {}
        for name, element in (("ident", "id"), ("version", "meta.versionId")):
            if isinstance(value := path.get(name), str):
                check_id(value, request.path.split("/")[2], element)

    # Registered last: CORS puts its preflight answer ahead of authentication, and
    # compression sees the finished response.
    cors.install(app, cors.allowed_origins(settings.cors_origins))
    compression.install(app, settings.compress_min_bytes)

    from fhir_facade.cli import register_commands

    register_commands(app)
    return app

"""The FHIR route table: one MethodView per URL, built for every resource type we serve."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from flask import Response, request
from flask.views import MethodView
from flask_smorest import Blueprint

from fhir_facade import bundles, openapi, operations
from fhir_facade.capability import OAuthEndpoints, capability_statement, smart_configuration
from fhir_facade.context import settings
from fhir_facade.http import base_url, fhir_response
from fhir_facade.reads import history, read, search, vread
from fhir_facade.registry import RESOURCE_TYPES
from fhir_facade.writes import WRITES


def build_blueprint() -> Blueprint:
    blp = Blueprint("fhir", __name__, url_prefix="/fhir", description="FHIR R4 REST API")

    @blp.route("", endpoint="system")
    class System(MethodView):
        @openapi.documented(blp, openapi.system_doc())
        def post(self) -> Response:
            return bundles.process()

    @blp.route("/metadata")
    class Metadata(MethodView):
        @openapi.documented(blp, openapi.metadata_doc())
        def get(self) -> Response:
            base = base_url()
            endpoints = OAuthEndpoints.of(settings(), base)
            cors = bool(settings().cors_origins)
            return fhir_response(capability_statement(base, endpoints, cors=cors))

    @blp.route("/.well-known/smart-configuration")
    class SmartConfiguration(MethodView):
        @openapi.documented(blp, openapi.smart_configuration_doc())
        def get(self) -> Response:
            base = base_url()
            body = orjson.dumps(smart_configuration(base, OAuthEndpoints.of(settings(), base)))
            return Response(body, content_type="application/json")

    # Operations first: their literal "$name" segment must not be read as an id.
    _operation_routes(blp)
    for name, spec in RESOURCE_TYPES.items():
        _type_routes(blp, name, spec.interactions)
    return blp


def _operation_routes(blp: Blueprint) -> None:
    routes: tuple[tuple[str, str, Callable[..., Response]], ...] = (
        ("/Appointment/$find", "find", lambda self: operations.find()),
        ("/Appointment/$book", "book", lambda self: operations.book()),
        (
            "/Appointment/<string:ident>/$cancel-series",
            "cancel-series",
            lambda self, ident: operations.cancel(ident),
        ),
    )
    for url, code, post in routes:
        endpoint = f"Appointment-{code}"
        methods = {"post": openapi.documented(blp, openapi.operation_doc(code))(post)}
        view = type(endpoint.replace("-", ""), (MethodView,), methods)
        blp.route(url, endpoint=endpoint)(view)


def _type_routes(blp: Blueprint, name: str, interactions: tuple[str, ...]) -> None:
    type_methods: dict[str, Any] = {
        "get": openapi.documented(blp, openapi.search_doc(name))(
            lambda self: search(name, _query_pairs())
        )
    }
    if "create" in interactions:
        type_methods["post"] = openapi.documented(blp, openapi.create_doc(name))(
            lambda self: WRITES[(name, "create")]()
        )
    instance_methods: dict[str, Any] = {
        "get": openapi.documented(blp, openapi.read_doc(name))(
            lambda self, ident: read(name, ident, _query_pairs())
        )
    }
    if "update" in interactions:
        instance_methods["put"] = openapi.documented(blp, openapi.update_doc(name))(
            lambda self, ident: WRITES[(name, "update")](ident)
        )
    search_methods: dict[str, Any] = {
        "post": openapi.documented(blp, openapi.search_post_doc(name))(
            lambda self: search(name, _form_pairs())
        )
    }

    history_methods: dict[str, Any] = {
        "get": openapi.documented(blp, openapi.history_doc(name))(
            lambda self, ident: history(name, ident, _query_pairs())
        )
    }
    vread_methods: dict[str, Any] = {
        "get": openapi.documented(blp, openapi.vread_doc(name))(
            lambda self, ident, version: vread(name, ident, version)
        )
    }

    blp.route(f"/{name}", endpoint=f"{name}-type")(type(f"{name}Type", (MethodView,), type_methods))
    blp.route(f"/{name}/<string:ident>", endpoint=f"{name}-instance")(
        type(f"{name}Instance", (MethodView,), instance_methods)
    )
    blp.route(f"/{name}/_search", endpoint=f"{name}-search")(
        type(f"{name}Search", (MethodView,), search_methods)
    )
    blp.route(f"/{name}/<string:ident>/_history", endpoint=f"{name}-history")(
        type(f"{name}History", (MethodView,), history_methods)
    )
    blp.route(f"/{name}/<string:ident>/_history/<string:version>", endpoint=f"{name}-vread")(
        type(f"{name}Version", (MethodView,), vread_methods)
    )


def _query_pairs() -> list[tuple[str, str]]:
    return list(request.args.items(multi=True))


def _form_pairs() -> list[tuple[str, str]]:
    return list(request.args.items(multi=True)) + list(request.form.items(multi=True))

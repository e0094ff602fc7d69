"""The FHIR route table (R4 http.html): one MethodView per URL.

`ROUTES` reads like the spec's list of interactions. A row whose path holds `{type}`
is served for every resource type whose registry entry wires its interaction; the
operations (`[type]/$code`, `[type]/[id]/$code`) are served where the registry
declares them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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
from fhir_facade.writes import create, update


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # under /fhir; `{type}` stands for each resource type wiring `interaction`
    interaction: str  # R4 interaction code
    view: Callable[..., Response]  # `{type}` rows: (resource type, URL arguments)
    doc: Callable[..., dict[str, Any]]  # its OpenAPI operation (`{type}` rows: of the type)


def _metadata() -> Response:
    base = base_url()
    endpoints = OAuthEndpoints.of(settings(), base)
    return fhir_response(capability_statement(base, endpoints, cors=bool(settings().cors_origins)))


def _smart_configuration() -> Response:
    base = base_url()
    body = orjson.dumps(smart_configuration(base, OAuthEndpoints.of(settings(), base)))
    return Response(body, content_type="application/json")


def _search(resource_type: str) -> Response:
    return search(resource_type, _query_pairs())


def _search_post(resource_type: str) -> Response:
    return search(resource_type, _query_pairs() + list(request.form.items(multi=True)))


def _read(resource_type: str, ident: str) -> Response:
    return read(resource_type, ident, _query_pairs())


def _history(resource_type: str, ident: str) -> Response:
    return history(resource_type, ident, _query_pairs())


def _query_pairs() -> list[tuple[str, str]]:
    return list(request.args.items(multi=True))


# fmt: off
ROUTES: tuple[Route, ...] = (
    Route("POST", "",                            "batch",            bundles.process, openapi.system_doc),
    Route("GET",  "/metadata",                   "capabilities",     _metadata,       openapi.metadata_doc),
    Route("GET",  "/.well-known/smart-configuration", "smart-configuration", _smart_configuration, openapi.smart_configuration_doc),
    Route("GET",  "/{type}",                     "search-type",      _search,         openapi.search_doc),
    Route("POST", "/{type}",                     "create",           create,          openapi.create_doc),
    Route("GET",  "/{type}/{id}",                "read",             _read,           openapi.read_doc),
    Route("PUT",  "/{type}/{id}",                "update",           update,          openapi.update_doc),
    Route("POST", "/{type}/_search",             "search-type",      _search_post,    openapi.search_post_doc),
    Route("GET",  "/{type}/{id}/_history",       "history-instance", _history,        openapi.history_doc),
    Route("GET",  "/{type}/{id}/_history/{vid}", "vread",            vread,           openapi.vread_doc),
)
# fmt: on

#: Flask's spelling of the URL arguments.
_ARGUMENTS = {"{id}": "<string:ident>", "{vid}": "<string:version>"}
#: Endpoint (and view class) names: `system` ones by path, `{type}` ones `[type]-[suffix]`.
_SYSTEM = {
    "": "system",
    "/metadata": "Metadata",
    "/.well-known/smart-configuration": "SmartConfiguration",
}
_SUFFIXES = {
    "/{type}": "type",
    "/{type}/{id}": "instance",
    "/{type}/_search": "search",
    "/{type}/{id}/_history": "history",
    "/{type}/{id}/_history/{vid}": "vread",
}


def build_blueprint() -> Blueprint:
    blp = Blueprint("fhir", __name__, url_prefix="/fhir", description="FHIR R4 REST API")
    for route in ROUTES:
        if "{type}" not in route.path:
            view = _documented(blp, route.view, route.doc())
            _register(blp, route.path, _SYSTEM[route.path], {route.method: view})
    # Operations before the instance URLs: their literal "$code" must not be read as an id.
    for name, spec in RESOURCE_TYPES.items():
        for op in spec.operations:
            path = f"/{name}/{{id}}/${op.code}" if op.instance else f"/{name}/${op.code}"
            view = _documented(blp, operations.VIEWS[op.code], openapi.operation_doc(name, op))
            _register(blp, path, f"{name}-{op.code}", {"POST": view})
    for name, spec in RESOURCE_TYPES.items():
        by_path: dict[str, dict[str, Any]] = {}
        for route in ROUTES:
            if "{type}" in route.path and route.interaction in spec.interactions:
                view = _documented(blp, _of_type(route.view, name), route.doc(name))
                by_path.setdefault(route.path, {})[route.method] = view
        for path, methods in by_path.items():
            _register(blp, path.replace("{type}", name), f"{name}-{_SUFFIXES[path]}", methods)
    return blp


def _of_type(view: Callable[..., Response], name: str) -> Callable[..., Response]:
    return lambda **arguments: view(name, **arguments)


def _documented(
    blp: Blueprint, view: Callable[..., Response], doc: dict[str, Any]
) -> Callable[..., Response]:
    """The view as a MethodView method (it ignores `self`), documented for OpenAPI."""

    def method(self: MethodView, **arguments: str) -> Response:
        return view(**arguments)

    documented: Callable[..., Response] = openapi.documented(blp, doc)(method)
    return documented


def _register(blp: Blueprint, path: str, endpoint: str, methods: dict[str, Any]) -> None:
    for placeholder, argument in _ARGUMENTS.items():
        path = path.replace(placeholder, argument)
    handlers = {method.lower(): view for method, view in methods.items()}
    view_class = type(endpoint.title().replace("-", ""), (MethodView,), handlers)
    blp.route(path, endpoint=endpoint)(view_class)

"""FHIR-over-HTTP helpers: JSON responses, ETags, preconditions, request bodies."""

from __future__ import annotations

import re
from typing import Any

import orjson
from flask import Response, current_app, request

from fhir_facade.outcomes import FhirError
from fhir_facade.references import without_hidden_references

FHIR_JSON = "application/fhir+json"
_ACCEPTED_BODY_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")


def fhir_response(
    body: dict[str, Any] | None, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    if body is not None:
        without_hidden_references(body)
    payload = orjson.dumps(body) if body is not None else b""
    response = Response(payload, status=status, content_type=f"{FHIR_JSON}; charset=utf-8")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def resource_headers(resource: dict[str, Any]) -> dict[str, str]:
    version = resource["meta"]["versionId"]
    return {"ETag": f'W/"{version}"', "Last-Modified": _http_date(resource["meta"]["lastUpdated"])}


def _http_date(instant: str) -> str:
    import datetime as dt
    from email.utils import format_datetime

    parsed = dt.datetime.strptime(instant, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    return format_datetime(parsed, usegmt=True)


def base_url() -> str:
    configured = current_app.config.get("FHIR_BASE_URL")
    if configured:
        return str(configured).rstrip("/")
    return request.url_root.rstrip("/") + "/fhir"


def read_json_body() -> Any:
    """The request body as JSON; 415 for other media types, 400 for malformed JSON."""
    mimetype = (request.mimetype or "").lower()
    if mimetype not in _ACCEPTED_BODY_TYPES:
        raise FhirError(
            415,
            "not-supported",
            f"send {FHIR_JSON} (got {request.content_type or 'no Content-Type'})",
        )
    raw = request.get_data(cache=True)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FhirError(400, "structure", f"malformed JSON: {exc}") from None


_ETAG = re.compile(r'^(?:W/)?"(\d+)"$')


def if_match_version() -> int | None:
    value = request.headers.get("If-Match")
    if value is None:
        return None
    match = _ETAG.match(value.strip())
    if match is None:
        raise FhirError(
            400,
            "invalid",
            f'If-Match must be an ETag like W/"3", got {value!r}',
            expression="If-Match",
        )
    return int(match.group(1))


def prefer(name: str) -> str | None:
    """A preference from the Prefer header (return=..., handling=...)."""
    for part in request.headers.get("Prefer", "").split(";"):
        for item in part.split(","):
            key, _, value = item.strip().partition("=")
            if key.strip() == name:
                return value.strip().strip('"')
    return None


def check_accept() -> None:
    """406 unless the client accepts JSON; `_format` overrides Accept."""
    wanted = request.args.get("_format")
    if wanted is not None:
        if "json" not in wanted:
            raise FhirError(
                406, "not-supported", "only JSON is served (_format=json)", expression="_format"
            )
        return
    accept = request.accept_mimetypes
    if not accept or accept.provided is False:
        return
    if any(accept[m] for m in (FHIR_JSON, "application/json", "application/json+fhir")):
        return
    raise FhirError(406, "not-supported", f"only {FHIR_JSON} is served")

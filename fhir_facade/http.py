"""FHIR-over-HTTP helpers: JSON responses, ETags, preconditions, request bodies."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
from flask import Response, current_app, request
from werkzeug.exceptions import (
    RequestEntityTooLarge,
    RequestHeaderFieldsTooLarge,
    RequestURITooLarge,
)
from werkzeug.http import parse_options_header

from fhir_facade.outcomes import BadRequest, NotAcceptable, UnsupportedMediaType
from fhir_facade.references import without_hidden_references
from mappings.limits import check_body
from mappings.references import Unchecked

#: Longest path and query string answered (414 beyond); below gunicorn's request-line
#: limit (8190 bytes with the method and version, see cli.py), so the app answers first.
MAX_URL_CHARS = 8000
#: Largest sum of header names and values answered (431 beyond).
MAX_HEADER_BYTES = 32_000

FHIR_JSON = "application/fhir+json"


def fhir_response(
    body: dict[str, Any] | None, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    if body is not None:
        without_hidden_references(body)
    payload = json_bytes(body) if body is not None else b""
    response = Response(payload, status=status, content_type=f"{FHIR_JSON}; charset=utf-8")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def json_bytes(body: Any) -> bytes:
    """A response body as JSON. A shared rendering (`Unchecked`) is written from the
    bytes kept with it; every other subclass of a JSON type (`Checked`, an enum's
    value) is written as its plain value."""
    return orjson.dumps(body, default=_plain, option=orjson.OPT_PASSTHROUGH_SUBCLASS)


def _plain(value: Any) -> Any:
    if isinstance(value, Unchecked):
        return value.json()
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__index__(value)
    if isinstance(value, list):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


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
    params = {k.lower(): v for k, v in request.mimetype_params.items()}
    if mimetype not in _JSON_TYPES or _refusal(mimetype, params) is not None:
        raise UnsupportedMediaType(
            f"send {FHIR_JSON} for FHIR 4.0 in utf-8 "
            f"(got {request.content_type or 'no Content-Type'})",
            expression="Content-Type",
        )
    raw = request.get_data(cache=True)
    limit = request.max_content_length
    # A streamed (chunked) body is cut at the limit without a word (werkzeug's
    # LimitedStream): one byte more behind it means the body was too large.
    at_limit = limit is not None and len(raw) >= limit
    if request.content_length is None and at_limit and request.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge(f"the body is larger than {limit} bytes")
    return parse_json(raw)


def parse_json(raw: bytes) -> Any:
    """One unambiguous JSON document, or a 400.

    orjson refuses what JSON itself forbids: NaN and Infinity, trailing data, invalid
    UTF-8, lone surrogates in escapes, more than 1024 levels. `check_body` then refuses
    deep nesting, forbidden characters and over-long elements (mappings.limits), and an
    object naming one key twice at any depth, which parsers answer differently (last or
    first wins) and so cannot be trusted, is refused too. orjson keeps the last; text
    that is exactly what orjson writes back for the body (compact JSON, as clients
    mostly send it) names no key twice, since it is written from dicts, so only other
    text needs the second, stdlib pass that sees every key as written (25 times
    orjson's time: 3.3 ms for a series' `$book`).
    """
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}", code="structure") from None
    check_body(body, characters=_ESCAPED_CONTROL.search(raw) is not None)
    if orjson.dumps(body) == raw:
        return body
    try:
        json.loads(raw, object_pairs_hook=_refuse_duplicate_keys)
    except _DuplicateKey as exc:
        raise BadRequest(
            f"malformed JSON: the key {exc.key!r} appears twice in one object", code="structure"
        ) from None
    except ValueError as exc:  # what orjson accepted, the stdlib should too
        raise BadRequest(f"malformed JSON: {exc}", code="structure") from None
    return body


#: orjson refuses raw control characters and lone surrogate escapes in strings, so a
#: forbidden character (mappings.limits) can only arrive as one of these escapes.
_ESCAPED_CONTROL = re.compile(rb"\\u00[01][0-9a-fA-F]")


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> None:
    if len(pairs) > 1 and len({key for key, _ in pairs}) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)


def check_request_size() -> None:
    """414 for a URL, 431 for headers larger than we answer (see the limits above)."""
    if len(request.full_path) > MAX_URL_CHARS:
        raise RequestURITooLarge(f"the URL is longer than {MAX_URL_CHARS} characters")
    size = sum(len(name) + len(value) for name, value in request.headers.items())
    if size > MAX_HEADER_BYTES:
        raise RequestHeaderFieldsTooLarge(
            f"the request's headers are larger than {MAX_HEADER_BYTES} bytes"
        )


_ETAG = re.compile(r'^(?:W/)?"(\d+)"$')


def if_match_version() -> int | None:
    value = request.headers.get("If-Match")
    return None if value is None else etag_version(value, "If-Match")


def etag_version(value: str, expression: str) -> int:
    """The version an ETag (`W/"3"`) names, from If-Match or a Bundle entry's ifMatch."""
    match = _ETAG.match(value.strip())
    if match is None:
        raise BadRequest(
            f'{expression} must be an ETag like W/"3", got {value!r}', expression=expression
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


#: Media types we answer with (FHIR R4 §2.21.0.6: application/fhir+json; the others are
#: what clients also send for it).
_JSON_TYPES = frozenset({FHIR_JSON, "application/json", "application/json+fhir"})
_FORMAT_ALIASES = {"json": FHIR_JSON}
#: `fhirVersion` values naming the version we serve (R4 §3.1.0.1.6: major.minor).
_FHIR_VERSIONS = frozenset({"4.0", "4.0.1"})


def check_accept() -> None:
    """406 unless the client accepts FHIR R4 JSON (R4 §3.1.0.1.6 content types).

    `_format` overrides Accept; both may carry `charset` (utf-8 only) and `fhirVersion`
    (4.0 only) parameters; media ranges (`*/*`, `application/*`) and `q` are honoured.
    """
    wanted = request.args.get("_format")
    if wanted is not None:
        media_type, params = parse_options_header(wanted)
        media_type = _FORMAT_ALIASES.get(media_type.lower(), media_type.lower())
        refusal = _refusal(media_type, params)
        if refusal is not None:
            raise NotAcceptable(f"_format={wanted}: {refusal}", expression="_format")
        return
    header = request.headers.get("Accept", "").strip()
    if not header:
        return
    refusals = []
    for item in header.split(","):
        media_type, params = parse_options_header(item)
        if not media_type or _quality(params) == 0:
            continue
        refusal = _refusal(media_type.lower(), params)
        if refusal is None:
            return
        refusals.append(f"{item.strip()}: {refusal}")
    raise NotAcceptable(
        "; ".join(refusals) or f"nothing acceptable: only {FHIR_JSON} is served",
        expression="Accept",
    )


def _refusal(media_type: str, params: dict[str, str]) -> str | None:
    """Why one media range cannot be served, or None when FHIR R4 JSON fits it."""
    if media_type not in _JSON_TYPES and media_type not in ("*/*", "application/*"):
        if "xml" in media_type:
            return f"only {FHIR_JSON} is served, not XML"
        return f"only {FHIR_JSON} is served"
    version = params.get("fhirversion")
    if version is not None and version not in _FHIR_VERSIONS:
        return f"only FHIR 4.0 (R4) is served, not fhirVersion={version}"
    charset = params.get("charset")
    if charset is not None and charset.lower() not in ("utf-8", "utf8"):
        return f"only charset=utf-8 is served, not {charset}"
    return None


def _quality(params: dict[str, str]) -> float:
    try:
        return float(params.get("q", "1"))
    except ValueError:
        return 0.0

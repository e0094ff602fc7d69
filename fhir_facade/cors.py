"""Cross-origin requests (CORS) for browser clients on other origins.

Off unless `FHIR_FACADE_CORS_ORIGINS` lists origins (comma-separated, or `*`). A
preflight (`OPTIONS` with `Access-Control-Request-Method`) from an allowed origin is
answered here, before authentication: browsers send it without the Authorization
header. Tokens travel in that header, never in cookies, so credentials are not allowed.
"""

from __future__ import annotations

from flask import Flask, Response, request

ALLOWED_METHODS = "GET, POST, PUT, OPTIONS"
ALLOWED_HEADERS = (
    "Authorization, Content-Type, Accept, Prefer, If-Match, If-None-Exist, If-None-Match, "
    "If-Modified-Since, X-Request-Id"
)
EXPOSED_HEADERS = "ETag, Location, Content-Location, Last-Modified, Warning"
MAX_AGE_S = "600"


def allowed_origins(setting: str | None) -> frozenset[str]:
    """The origins of `FHIR_FACADE_CORS_ORIGINS` (`*`: any), without trailing slashes."""
    return frozenset(o.strip().rstrip("/") for o in (setting or "").split(",") if o.strip())


def install(app: Flask, origins: frozenset[str]) -> None:
    """Answer preflights and label responses for `origins`; nothing when it is empty."""
    if not origins:
        return

    def allowed() -> str | None:
        origin = request.headers.get("Origin")
        if origin is None:
            return None
        if "*" in origins:
            return "*"
        return origin if origin.rstrip("/") in origins else None

    def preflight() -> Response | None:
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return None
        response = Response(status=204)
        if allowed() is not None:
            response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = MAX_AGE_S
        return response  # a refused origin gets no CORS headers: the browser stops there

    def label(response: Response) -> Response:
        origin = allowed()
        if origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        if "*" not in origins:
            response.vary.add("Origin")
        return response

    # First in line: a preflight must not reach authentication.
    app.before_request_funcs.setdefault(None, []).insert(0, preflight)
    app.after_request(label)

"""Response compression: Brotli or gzip, as the client's Accept-Encoding prefers, for
bodies of at least `FHIR_FACADE_COMPRESS_MIN_BYTES` (0 turns it off). A 126 KB search
page goes out as ~10 KB. Brotli runs at a low quality: on these bodies it still beats
gzip's size at a fraction of its best level's time."""

from __future__ import annotations

import gzip

from flask import Flask, Response, request

try:  # optional: the brotli wheel is a dependency, but a missing one only costs "br"
    import brotli
except ImportError:  # pragma: no cover - depends on the environment
    brotli = None

_BROTLI_QUALITY = 4
_GZIP_LEVEL = 6
_SKIPPED_STATUSES = frozenset({204, 206, 304})


def encoding_for(
    accept_encoding: str | None, available_br: bool = brotli is not None
) -> str | None:
    """The coding to use for a client sending `accept_encoding`: br, gzip or None."""
    qualities: dict[str, float] = {}
    for item in (accept_encoding or "").split(","):
        name, _, params = item.strip().partition(";")
        quality = 1.0
        key, _, value = params.strip().partition("=")
        if key.strip() == "q":
            try:
                quality = float(value)
            except ValueError:
                quality = 0.0
        if name.strip():
            qualities[name.strip().lower()] = quality
    star = qualities.get("*", 0.0)
    br = qualities.get("br", star) if available_br else 0.0
    gz = qualities.get("gzip", qualities.get("x-gzip", star))
    if br > 0 and br >= gz:
        return "br"
    if gz > 0:
        return "gzip"
    return None


def install(app: Flask, min_bytes: int) -> None:
    if min_bytes <= 0:
        return

    @app.after_request
    def compress(response: Response) -> Response:
        if (
            request.method == "HEAD"
            or response.status_code in _SKIPPED_STATUSES
            or response.status_code < 200
            or "Content-Encoding" in response.headers
            or response.is_streamed
            and not response.direct_passthrough
        ):
            return response
        response.direct_passthrough = False  # a file sent from the package: read it
        body = response.get_data()
        if len(body) < min_bytes:
            return response
        response.vary.add("Accept-Encoding")
        coding = encoding_for(request.headers.get("Accept-Encoding"))
        if coding is None:
            return response
        if coding == "br":
            packed = brotli.compress(body, quality=_BROTLI_QUALITY)
        else:
            packed = gzip.compress(body, compresslevel=_GZIP_LEVEL, mtime=0)
        response.set_data(packed)
        response.headers["Content-Encoding"] = coding
        etag = response.headers.get("ETag")
        if etag is not None and not etag.startswith("W/"):
            response.headers["ETag"] = f"W/{etag}"  # the bytes differ from the identity ones
        return response

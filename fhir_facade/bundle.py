"""Searchset Bundles (R4 §3.1.1.5.7 paging, §2.36 Bundle)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from mappings.search import SearchRequest


def searchset(
    base: str,
    request: SearchRequest,
    matches: list[dict[str, Any]],
    included: list[dict[str, Any]],
    total: int | None,
) -> dict[str, Any]:
    query = request.query
    link = [{"relation": "self", "url": _page_url(base, request, query.offset)}]
    if total is not None and query.limit > 0 and query.offset + query.limit < total:
        link.append(
            {"relation": "next", "url": _page_url(base, request, query.offset + query.limit)}
        )
    if query.offset > 0:
        previous = max(query.offset - query.limit, 0)
        link.append({"relation": "previous", "url": _page_url(base, request, previous)})
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if total is not None:
        bundle["total"] = total
    bundle["link"] = link
    entries = [_entry(base, r, "match") for r in matches]
    entries.extend(_entry(base, r, "include") for r in included)
    if entries:
        bundle["entry"] = entries
    return bundle


def _entry(base: str, resource: dict[str, Any], mode: str) -> dict[str, Any]:
    return {
        "fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}",
        "resource": resource,
        "search": {"mode": mode},
    }


def _page_url(base: str, request: SearchRequest, offset: int) -> str:
    params = [p for p in request.canonical if p[0] != "_count"]
    params.append(("_count", str(request.query.limit)))
    if offset:
        params.append(("_offset", str(offset)))
    return f"{base}/{request.resource_type}?{urlencode(params)}"

"""Searchset Bundles (R4 §3.1.1.5.7 paging, §2.36 Bundle)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from mappings.references import Unchecked
from mappings.search import SearchRequest


def searchset(
    base: str,
    request: SearchRequest,
    matches: list[dict[str, Any]],
    included: list[dict[str, Any]],
    total: int | None,
    more: bool = False,
) -> dict[str, Any]:
    """One page of matches (`more`: another page follows), cut to `request.subset`."""
    query = request.query
    link = [{"relation": "self", "url": _page_url(base, request, query.offset)}]
    known_more = total is not None and query.offset + query.limit < total
    if query.limit > 0 and (more or known_more):
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
    if request.subset is not None:
        matches = [request.subset.apply(r) for r in matches]
    entries = [_entry(base, r, "match") for r in matches]
    entries.extend(_entry(base, r, "include") for r in included)
    if entries:
        bundle["entry"] = entries
    return bundle


def _entry(base: str, resource: dict[str, Any], mode: str) -> dict[str, Any]:
    if isinstance(resource, Unchecked):  # a shared rendering keeps its entry too
        return resource.entry(base, mode)
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


def history(
    base: str, resource_type: str, ident: str, versions: list[dict[str, Any]], page: slice
) -> dict[str, Any]:
    """An instance history Bundle (R4 §3.1.0.4): `versions` newest first, one page of them."""
    url = f"{base}/{resource_type}/{ident}/_history"
    count = page.stop - page.start

    def page_url(offset: int) -> str:
        params = [("_count", count), ("_offset", offset)] if offset else [("_count", count)]
        return f"{url}?{urlencode(params)}"

    link = [{"relation": "self", "url": page_url(page.start)}]
    if page.stop < len(versions):
        link.append({"relation": "next", "url": page_url(page.stop)})
    if page.start > 0:
        link.append({"relation": "previous", "url": page_url(max(page.start - count, 0))})
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "history",
        "total": len(versions),
        "link": link,
    }
    entries = [_history_entry(base, r) for r in versions[page]]
    if entries:
        bundle["entry"] = entries
    return bundle


def _history_entry(base: str, resource: dict[str, Any]) -> dict[str, Any]:
    """A version and the interaction that made it: version 1 was created, later ones updated."""
    meta = resource["meta"]
    created = meta["versionId"] == "1"
    path = f"{resource['resourceType']}/{resource['id']}"
    return {
        "fullUrl": f"{base}/{path}",
        "resource": resource,
        "request": {
            "method": "POST" if created else "PUT",
            "url": resource["resourceType"] if created else path,
        },
        "response": {
            "status": "201 Created" if created else "200 OK",
            "location": f"{path}/_history/{meta['versionId']}",
            "etag": f'W/"{meta["versionId"]}"',
            "lastModified": meta["lastUpdated"],
        },
    }

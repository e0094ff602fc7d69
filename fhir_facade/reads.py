"""Read, vread, history and search views, the same for every resource type: parse the
request, run the interaction (fhir_facade.interactions) in a read transaction of the
caller's store, answer. Reading a restricted patient's data (only possible with the
privacy permission) leaves an AuditEvent per patient.
"""

from __future__ import annotations

from flask import Response

from fhir_facade import interactions
from fhir_facade.audit import disclosures, record_disclosures
from fhir_facade.context import caller, database, ssn
from fhir_facade.http import base_url, fhir_response, prefer, resource_headers
from fhir_facade.registry import RESOURCE_TYPES
from fhir_facade.searchset import history as history_bundle
from fhir_facade.searchset import searchset
from mappings.search import parse_history, parse_read, parse_search


def read(resource_type: str, ident: str, params: list[tuple[str, str]]) -> Response:
    """Read, whole or in part (`_summary`, `_elements`: marked SUBSETTED)."""
    grants = caller()
    grants.authorize(resource_type, "r", RESOURCE_TYPES[resource_type].permission)
    subset = parse_read(resource_type, params)
    with database().read_as(grants.access) as store:
        resource = interactions.read(store, grants, resource_type, ident)
        disclosed = disclosures(store, grants, [resource], "R", "read")
    record_disclosures(grants, disclosed)
    headers = resource_headers(resource)
    return fhir_response(subset.apply(resource) if subset else resource, headers=headers)


def vread(resource_type: str, ident: str, version: str) -> Response:
    """A version of a resource (R4 §3.1.0.3)."""
    grants = caller()
    with database().read_as(grants.access) as store:
        resource = interactions.vread(store, grants, resource_type, ident, version)
        disclosed = disclosures(store, grants, [resource], "R", "vread")
    record_disclosures(grants, disclosed)
    return fhir_response(resource, headers=resource_headers(resource))


def history(resource_type: str, ident: str, params: list[tuple[str, str]]) -> Response:
    """Every kept version of a resource, newest first (R4 §3.1.0.4, history-instance)."""
    grants = caller()
    grants.authorize(resource_type, "r", RESOURCE_TYPES[resource_type].permission)
    page = parse_history(params, lenient=prefer("handling") == "lenient")
    with database().read_as(grants.access) as store:
        versions = interactions.history(store, grants, resource_type, ident)
        disclosed = disclosures(store, grants, versions[page], "R", "history-instance")
    record_disclosures(grants, disclosed)
    return fhir_response(history_bundle(base_url(), resource_type, ident, versions, page))


def search(resource_type: str, params: list[tuple[str, str]]) -> Response:
    grants = caller()
    grants.authorize(resource_type, "s", RESOURCE_TYPES[resource_type].permission)
    lenient = prefer("handling") == "lenient"
    parsed = parse_search(resource_type, params, grants.access, lenient=lenient, ssn=ssn())
    with database().read_as(grants.access) as store:
        found = interactions.search(store, grants, parsed)
        shown = found.matches + found.included
        disclosed = disclosures(store, grants, shown, "E", "search-type")
    record_disclosures(grants, disclosed)
    page = found.page
    bundle = searchset(base_url(), parsed, found.matches, found.included, page.total, page.more)
    return fhir_response(bundle)

"""Recurring-series operations (DESIGN §5): `$find`, `$book` and `$cancel-series` on Appointment.

Thin views: parse the Parameters, call a use case of the caller's Store in one
transaction, render.
`$find` only reads; `$book` stores a whole series (or resolves drafts) or nothing;
`$cancel-series` cancels "this and all following" occurrences or the whole series.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from flask import Response

from fhir_facade.audit import audit_bookings, failures_audited
from fhir_facade.context import caller, database, settings
from fhir_facade.http import base_url, fhir_response, if_match_version, read_json_body
from fhir_facade.outcomes import BadRequest
from fhir_facade.references import Vouched, checked_in, chosen_coverages
from fhir_facade.registry import prerendered, rendered
from mappings.locations import Where, located
from mappings.series import (
    BOOK_TIMING,
    FIND_TIMING,
    DraftChoice,
    book_from_fhir,
    bookings_to_fhir,
    find_from_fhir,
    preview_to_fhir,
    summary_of,
)
from store.audit import Audited
from store.booking import Notice
from store.models import Booking
from store.scope import Store
from store.series import Limits

_SCOPES = {"this-and-following": True, "all": False}


def find() -> Response:
    """Preview a recurring series: one proposed Appointment per occurrence; writes nothing."""
    grants = caller()
    grants.require("Appointment", "s")
    query = find_from_fhir(read_json_body())
    with located(Where({"Timing": FIND_TIMING})), database().read_as(grants.access) as store:
        preview = store.preview_series(query, today=_today(), limits=_limits())
        bundle = preview_to_fhir(preview)
    return fhir_response(bundle)


def book() -> Response:
    """Book the kept occurrences as one series (drafts for the unmatched), or resolve drafts."""
    grants = caller()
    grants.require("Appointment", "c")
    parsed = book_from_fhir(read_json_body())
    base = base_url()

    def work(store: Store) -> Response:
        seen: set[tuple[str, str]] = set()
        if isinstance(parsed, list):
            bookings, notices = _resolve(store, parsed)
            audit_bookings(store, grants, "U", "operation", bookings)
            summary = f"{len(bookings)} drafts booked"
        else:
            # Each occurrence audited in the INSERT that stores it.
            audited = Audited("C", "operation", grants.subject)
            result = store.book_series(parsed, today=_today(), limits=_limits(), audited=audited)
            bookings, notices = result.bookings, result.notices
            summary = f"series Appointment/{result.series.id}: {summary_of(bookings)}"
            # New occurrences of a patient the caller sees, and their coverages: the
            # answer's check for hidden references need not ask about them again.
            seen = {("Appointment", b.id) for b in bookings} | chosen_coverages(bookings)
        # Made while the database may still be writing a series' bookings, on the other
        # core (`store.direct.Direct.start`): the answer, the Slots' new versions and the
        # response's bytes (sent only if the commit then succeeds).
        answer = bookings_to_fhir(base, bookings, notices, summary)
        for booking, entry in zip(bookings, answer["entry"], strict=False):
            rendered(booking, entry["resource"])  # their version snapshots, rendered once
        # Checked here, before the commit, not in a transaction of its own when sent.
        response = fhir_response(checked_in(store, Vouched(answer, seen)))
        prerendered(store.session_versions_to_keep())
        return response

    with located(Where({"Timing": BOOK_TIMING})), failures_audited("C", "operation", "Appointment"):
        return database().write_as(grants.access, work)


def cancel(ident: str) -> Response:
    """Cancel "this and all following" occurrences of a series (or `scope` = all)."""
    grants = caller()
    grants.require("Appointment", "u")
    scope, reason = _cancel_parameters(read_json_body())
    expected = if_match_version()
    base = base_url()

    def work(store: Store) -> dict[str, Any]:
        cancelled = store.cancel_series(
            ident, following=_SCOPES[scope], reason=reason, expected_version=expected
        )
        audit_bookings(store, grants, "U", "operation", cancelled)
        summary = f"{len(cancelled)} occurrences cancelled ({scope})"
        return bookings_to_fhir(base, cancelled, [], summary)

    with failures_audited("U", "operation", "Appointment", ident):
        return fhir_response(database().write_as(grants.access, work))


#: The view of each operation the registry declares on Appointment (`registry.Operation`).
VIEWS: dict[str, Callable[..., Response]] = {"find": find, "book": book, "cancel-series": cancel}


def _resolve(store: Store, choices: list[DraftChoice]) -> tuple[list[Booking], list[Notice]]:
    bookings, notices = [], []
    for choice in choices:
        result = store.resolve_draft(
            choice.booking_id, choice.request, expected_version=choice.expected_version
        )
        bookings.append(result.booking)
        notices.extend(result.warnings)
    return bookings, notices


def _cancel_parameters(body: Any) -> tuple[str, str | None]:
    scope = "this-and-following"
    reason: str | None = None
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise BadRequest("send a Parameters resource", code="structure", expression="resourceType")
    for index, parameter in enumerate(body.get("parameter") or []):
        name = parameter.get("name") if isinstance(parameter, dict) else None
        if name == "scope" and parameter.get("valueCode") in _SCOPES:
            scope = parameter["valueCode"]
        elif name == "reason" and isinstance(parameter.get("valueString"), str):
            reason = parameter["valueString"]
        else:
            raise BadRequest(
                "this operation takes scope (valueCode this-and-following | all) and "
                "reason (valueString)",
                expression=f"Parameters.parameter[{index}]",
            )
    return scope, reason


def _limits() -> Limits:
    configured = settings()
    return Limits(
        max_occurrences=configured.series_max_occurrences, max_years=configured.series_max_years
    )


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()

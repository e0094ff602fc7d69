"""References from a record the caller sees to one they may not (DESIGN §security).

A visible patient's Appointment may name a Coverage the caller cannot see: a family
plan whose subscriber is restricted (now, or since the booking), or a payer's view of
another payer's plan. The reference is left out of every response body at the moment
it is sent, whatever path rendered the Appointment (read, search, include, vread and
history snapshots, writes, Bundles, operations), so it follows the restriction as it
is now, both ways.
"""

from __future__ import annotations

from typing import Any

from fhir_facade.context import caller, database
from mappings.appointment import appointments_in, coverage_ids_of, without_coverages
from store.models import Coverage
from store.search import visible_ids


def without_hidden_references(body: Any) -> None:
    """Remove, in place, the references in `body` to records the caller may not see."""
    appointments = [a for a in appointments_in(body) if coverage_ids_of(a)]
    if not appointments:
        return
    named = {cid for a in appointments for cid in coverage_ids_of(a)}
    access = caller().access
    with database().reading() as db:
        hidden = named - visible_ids(db, Coverage, named, access)
    if hidden:
        for appointment in appointments:
            without_coverages(appointment, hidden)

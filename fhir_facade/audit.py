"""AuditEvents the HTTP layer records (DESIGN §7: every write, every access to a
blocked patient's data), each in the transaction it belongs to or on its own."""

from __future__ import annotations

from typing import Any

from fhir_facade.auth import Grants
from fhir_facade.context import database
from mappings.audit import patient_of
from store.audit import AuditEntry
from store.scope import Store


def disclosures(
    store: Store, grants: Grants, resources: list[dict[str, Any]], action: str, subtype: str
) -> list[AuditEntry]:
    """One AuditEvent per restricted patient whose data is about to be returned. Only a
    caller with the privacy permission can be shown any: for others this asks nothing."""
    owners = {p for r in resources if (p := patient_of(r)) is not None}
    return [
        AuditEntry(
            action,
            subtype,
            grants.subject,
            entity_kind="Patient",
            entity_id=patient_id,
            patient_id=patient_id,
            description="restricted patient's data disclosed",
        )
        for patient_id in store.restricted_among(owners)
    ]


def record_disclosures(grants: Grants, entries: list[AuditEntry]) -> None:
    """Record what a read transaction disclosed, in a write of its own (none: no write)."""
    if entries:
        database().write_as(grants.access, lambda store: store.record_many(entries))

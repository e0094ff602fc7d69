"""AuditEvents the HTTP layer records (DESIGN §7: every write, every access to a
blocked patient's data), each in the transaction it belongs to or on its own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fhir_facade.auth import Grants
from fhir_facade.context import caller, database
from mappings.audit import patient_of
from store.audit import MINOR_FAILURE, AuditEntry
from store.errors import StoreError
from store.models import Booking
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


@contextmanager
def failures_audited(
    action: str,
    interaction: str,
    resource_type: str,
    ident: str | None = None,
    patient: str | None = None,
) -> Iterator[None]:
    """A refused change rolled back with its audit record: record the failure on its own."""
    try:
        yield
    except StoreError as exc:
        grants = caller()
        failure = AuditEntry(
            action,
            interaction,
            grants.subject,
            resource_type,
            ident,
            patient,
            outcome=MINOR_FAILURE,
            description=exc.message,
        )
        database().write_as(grants.access, lambda store: store.record(failure))
        raise


def audit_bookings(
    store: Store, grants: Grants, action: str, interaction: str, bookings: list[Booking]
) -> None:
    """One AuditEvent per booking an operation created or changed, in its transaction."""
    store.record_many(
        [
            AuditEntry(action, interaction, grants.subject, "Appointment", b.id, b.patient_id)
            for b in bookings
        ]
    )

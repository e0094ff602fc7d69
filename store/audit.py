"""The audit trail: who did what to which record, when, and how it ended.

A change's audit record is written in the change's own transaction; so is its
absence when the change rolls back (the failure is then recorded on its own).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from store.common import insert_rows, new_id, table_of
from store.models import AuditRecord, utcnow

SUCCESS = "0"
MINOR_FAILURE = "4"


@dataclass(frozen=True)
class AuditEntry:
    action: str  # C create, R read, U update, D delete, E execute (search, operation)
    subtype: str  # the FHIR interaction: create, update, read, search-type, operation
    agent: str
    entity_kind: str | None = None
    entity_id: str | None = None
    patient_id: str | None = None
    outcome: str = SUCCESS
    description: str | None = None


def record(db: Session, entry: AuditEntry) -> None:
    record_many(db, [entry])


@dataclass(frozen=True)
class Audited:
    """Who is changing records, and how: for a store function that writes them to audit
    each in the same statement (`store.booking`: a series' bookings)."""

    action: str
    subtype: str
    agent: str

    def of(self, kind: str, ident: str, patient_id: str | None) -> AuditEntry:
        return AuditEntry(self.action, self.subtype, self.agent, kind, ident, patient_id)


def record_many(db: Session, entries: list[AuditEntry]) -> None:
    """Write audit records in the transaction, with one INSERT (no unit of work: a series
    writes 156). Who may read them is decided when they are read, from the patient's
    restriction at that moment (store.visibility)."""
    rows = audit_rows(entries)
    if rows:
        db.flush()  # what the change left pending goes first, as an autoflush would send it
        insert_rows(db, _TABLE, rows)  # Core: the ORM adds nothing to plain rows


def audit_rows(entries: list[AuditEntry]) -> list[dict[str, object]]:
    """The audit records' rows, by column name."""
    now = utcnow()
    return [
        {
            "id": new_id(),
            "recorded": now,
            "action": entry.action,
            "subtype": entry.subtype,
            "outcome": entry.outcome,
            "agent": entry.agent,
            "entity_kind": entry.entity_kind,
            "entity_id": entry.entity_id,
            "patient_id": entry.patient_id,
            "description": entry.description,
        }
        for entry in entries
    ]


_TABLE = table_of(AuditRecord)

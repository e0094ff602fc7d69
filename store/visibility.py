"""What a caller may see: the one visibility rule (DESIGN §7).

Restricted ("blocked") patients and everything in their compartment (appointments,
drafts, coverages, audit records, the identifiers on those) vanish for a caller
without the "access blocked patients" permission; SMART v2 granular scopes narrow
further; a payer sees its own members only. Derived records follow their patient's
restriction as it is *now*: the rule is a SQL condition evaluated at every read, never
a flag copied onto them.

Nothing else in the store or the HTTP layer tests the restriction: the access-scoped
`store.scope.Store` hands out only what `visibility` lets through, and the use cases
ask `visible_patient` / `visible_coverage` here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, not_, or_, select, true, union
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import True_

from store.access import Access, built_once_per_access
from store.models import AuditRecord, Base, Booking, BookingCoverage, Coverage, Patient


@built_once_per_access(maxsize=64)  # most callers: a handful of shapes, each built once
def visibility(kind: type[Base], access: Access) -> ColumnElement[bool]:
    """What the caller may see of `kind`: restricted patients and their compartment vanish
    without the permission; granular scopes narrow further; a payer sees its members only.
    Every read path (read, search, include, revinclude, chain) and every use case's
    check goes through here."""
    clauses = [_restriction(kind, access), _narrowing(kind, access)]
    if access.coverage_members and kind is Patient:
        # correlate(None): the subquery's coverage is its own, even inside a Coverage search.
        members = select(Coverage.beneficiary_id).where(_narrowing(Coverage, access))
        members = members.correlate(None)
        clauses.append(Patient.id.in_(members))
    if access.coverage_members and kind is Booking:
        used = (
            select(BookingCoverage.booking_id)
            .join(Coverage, Coverage.id == BookingCoverage.coverage_id)
            .where(_narrowing(Coverage, access))
            .correlate(None)
        )
        clauses.append(Booking.id.in_(used))
    return and_(*clauses)


def sees_all(kind: type[Base], access: Access) -> bool:
    """Whether nothing of `kind` is hidden from `access`: no restricted patient's record, no
    granular scope, no payer's view stands between the caller and the whole table."""
    return isinstance(_restriction(kind, access), True_) and not narrowed(kind, access)


def narrowed(kind: type[Base], access: Access) -> bool:
    """Whether anything beyond patient restriction limits what the caller sees of `kind`."""
    members = access.coverage_members and kind in (Patient, Booking)
    return members or any(n.kind is kind for n in access.narrowed)


def _narrowing(kind: type[Base], access: Access) -> ColumnElement[bool]:
    """Granular scopes: the record matches one of its kind's scope queries."""
    # A scope's query is a search, compiled by the search field table, whose chains in
    # turn apply this rule: imported here, where it is used, to break the cycle.
    from store.search import all_of

    for narrowing in access.narrowed:
        if narrowing.kind is kind:
            return or_(*(all_of(kind, where, None) for where in narrowing.alternatives))
    return true()


def _restriction(kind: type[Base], access: Access) -> ColumnElement[bool]:
    """Restricted patients and everything in their compartment vanish without the permission."""
    if access.restricted_patients:
        return true()
    if kind is Patient:
        return Patient.restricted.is_(False)
    if kind is Booking:
        return not_(exists().where(Patient.id == Booking.patient_id, Patient.restricted.is_(True)))
    if kind is AuditRecord:
        # NOT EXISTS each (not NOT (a OR b)): PostgreSQL plans every one as an anti-join.
        return and_(*(not_(reason) for reason in _audit_hidden_by(access)))
    if kind is Coverage:
        return not_(
            exists().where(
                Patient.restricted.is_(True),
                or_(*(and_(Patient.id == owner, *when) for owner, *when in _COVERAGE_PATIENTS)),
            )
        )
    return true()


#: The patients a coverage is about (each hides it): beneficiary, subscriber, and the
#: payor when a patient pays for themselves; with the condition under which it counts.
_COVERAGE_PATIENTS: list[tuple[Any, ...]] = [
    (Coverage.beneficiary_id,),
    (Coverage.subscriber_patient_id,),
    (Coverage.payor_id, Coverage.payor_kind == "patient"),
]


def _audit_hidden_by(access: Access) -> list[ColumnElement[bool]]:
    """Why an audit record is hidden: its patient is restricted *now*, or the record it
    names is hidden now (a restricted patient's appointment, a coverage a restricted
    patient subscribes to). Decided at every read, so restricting a patient hides the
    trail about them at once, and lifting the restriction shows it again.

    Written from the restricted side (the few restricted patients, their bookings and
    coverages, each an uncorrelated set the database builds once) rather than as
    correlated EXISTS per audit record: counting a 500,000-record trail took ~5 s that
    way (every coverage's visibility evaluated), ~0.3 s this way.
    """
    restricted = select(Patient.id).where(Patient.restricted.is_(True))
    hidden_records: dict[str, Any] = {
        "Patient": restricted,
        "Appointment": select(Booking.id).where(Booking.patient_id.in_(restricted)),
        "Coverage": union(
            *(
                select(Coverage.id).where(owner.in_(restricted), *when)
                for owner, *when in _COVERAGE_PATIENTS
            )
        ),
    }
    hidden = [_among(AuditRecord.patient_id, restricted)]
    hidden += [
        and_(func.coalesce(AuditRecord.entity_kind, "") == kind, _among(AuditRecord.entity_id, ids))
        for kind, ids in hidden_records.items()
    ]
    return hidden


def _among(column: Any, ids: Any) -> ColumnElement[bool]:
    """`column IN (ids)`, false (not unknown) when the column is NULL."""
    return and_(column.is_not(None), column.in_(ids))


def visible_patient(db: Session, patient_id: str, access: Access) -> bool:
    """True when the patient exists and the caller may see them."""
    seen = db.scalar(
        select(Patient.id).where(Patient.id == patient_id, visibility(Patient, access))
    )
    return seen is not None


def visible_coverage(db: Session, coverage_id: str, access: Access) -> bool:
    """True when the coverage exists and the caller may see it."""
    seen = db.scalar(
        select(Coverage.id).where(Coverage.id == coverage_id, visibility(Coverage, access))
    )
    return seen is not None


def restricted_among(db: Session, patient_ids: Iterable[str], access: Access) -> list[str]:
    """Which of these patients are restricted and seen by the caller: disclosing their
    data is audited. Without the permission none is seen, so the answer is empty."""
    ids = sorted(set(patient_ids))
    if not ids or not access.restricted_patients:
        return []  # no query: a caller without the permission sees no restricted patient
    rows = db.scalars(
        select(Patient.id).where(
            Patient.id.in_(ids), Patient.restricted.is_(True), visibility(Patient, access)
        )
    ).all()
    return sorted(rows)


def may_mark_restricted(access: Access) -> bool:
    """Marking a patient restricted (or lifting it) needs the privacy permission."""
    return access.restricted_patients

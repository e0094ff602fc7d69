"""Coverages (insurance plans and self-pay) and the insurance chosen for a booking.

A booking carries a primary coverage (or self-pay) and optionally a secondary one.
The rule that a coverage must be the patient's, active, and valid on the session
date lives here, once, and is used by single bookings and series alike.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import Session

from store.access import Access, built_once_per_access
from store.common import new_id
from store.direct import direct
from store.errors import NotFound, RuleViolation, VersionMismatch
from store.models import Coverage, CoverageIdentifier, Patient, ProviderGroup
from store.search import visible_ids
from store.visibility import narrowed, visibility, visible_coverage, visible_patient

ACTIVE = "active"
COVERAGE_FIELD = "booking.coverage"


@dataclass(frozen=True)
class CoverageSpec:
    beneficiary_id: str
    payor_kind: str  # "organization" or "patient"
    payor_id: str
    status: str
    self_pay: bool = False
    subscriber_patient_id: str | None = None
    subscriber_id: str | None = None
    type_system: str | None = None
    type_code: str | None = None
    order: int | None = None
    period_start: dt.datetime | None = None
    period_end: dt.datetime | None = None  # exclusive
    identifiers: tuple[tuple[str, str], ...] = ()
    document: str | None = None


def create_coverage(
    db: Session, spec: CoverageSpec, access: Access, *, coverage_id: str | None = None
) -> Coverage:
    _check(db, spec, access)
    coverage = Coverage(id=coverage_id or new_id(), version=1)
    _apply(coverage, spec)
    db.add(coverage)
    db.flush()
    return coverage


def update_coverage(
    db: Session,
    coverage_id: str,
    spec: CoverageSpec,
    access: Access,
    *,
    expected_version: int | None = None,
) -> Coverage:
    coverage = db.get(Coverage, coverage_id, with_for_update=True, populate_existing=True)
    if coverage is None or not visible_coverage(db, coverage_id, access):
        raise NotFound("Coverage", coverage_id)
    if expected_version is not None and coverage.version != expected_version:
        raise VersionMismatch("Coverage", coverage_id, expected_version, coverage.version)
    _check(db, spec, access)
    _apply(coverage, spec)
    coverage.touch()
    db.flush()
    return coverage


def choose_coverages(
    db: Session, patient_id: str, chosen: tuple[str, ...], on: dt.datetime, access: Access
) -> list[str]:
    """The coverages to record on a booking of `patient_id` for a session starting `on`
    (see `CoverageChooser.choose`)."""
    return CoverageChooser(db, patient_id, access).choose(chosen, on)


def keeping_hidden(db: Session, current: list[str], chosen: list[str], access: Access) -> list[str]:
    """A booking's new coverages when the caller chose `chosen` among those they see:
    the ones on it they may not see (a plan whose subscriber is restricted) stay at their
    rank, since the caller can neither remove nor replace what they cannot see; the
    choice fills the other ranks. Refused like any choice when together they break a rule.
    """
    hidden = set(current) - visible_ids(db, Coverage, current, access)
    if not hidden:
        return chosen
    remaining = iter(chosen)
    merged = [cid if cid in hidden else next(remaining, None) for cid in current]
    merged += list(remaining)
    result = [cid for cid in merged if cid is not None]
    if len(result) > 2:
        raise RuleViolation("at most a primary and a secondary coverage", field=COVERAGE_FIELD)
    together = db.scalars(select(Coverage.self_pay).where(Coverage.id.in_(result)))
    if len(result) > 1 and any(together):
        raise RuleViolation(
            "self-pay is a choice of its own: it cannot be combined with another coverage",
            field=COVERAGE_FIELD,
        )
    return result


class CoverageChooser:
    """Chooses the insurance of one patient's bookings; reads each coverage once, so a
    series of bookings costs no more queries than one."""

    def __init__(self, db: Session, patient_id: str, access: Access) -> None:
        self.db = db
        self.patient_id = patient_id
        self.access = access
        self._seen: dict[str, Coverage | None] = {}
        self._own: list[CoverageTerms] | None = None

    def choose(self, chosen: tuple[str, ...], on: dt.datetime) -> list[str]:
        """With a choice: each must exist, be the patient's, be active and cover the date;
        self-pay only as the sole choice. Without one: the patient's valid coverages in
        `order` (lowest first; self-pay only when there is no insurance), at most two.
        """
        if len(chosen) > 2:
            raise RuleViolation("at most a primary and a secondary coverage", field=COVERAGE_FIELD)
        if len(set(chosen)) != len(chosen):
            raise RuleViolation("the same coverage is chosen twice", field=COVERAGE_FIELD)
        if chosen:
            coverages = []
            for index, coverage_id in enumerate(chosen):
                field = f"{COVERAGE_FIELD}[{index}]"
                coverage = self._visible_coverage(coverage_id)
                if coverage is None:
                    raise NotFound("Coverage", coverage_id, field=field)
                problem = _unusable(coverage, self.patient_id, on)
                if problem:
                    raise RuleViolation(f"Coverage/{coverage_id} {problem}", field=field)
                coverages.append(coverage)
            if len(coverages) == 2 and any(c.self_pay for c in coverages):
                raise RuleViolation(
                    "self-pay is a choice of its own: it cannot be combined with another coverage",
                    field=COVERAGE_FIELD,
                )
            return list(chosen)
        usable = sorted(
            (c for c in self._own_coverages() if not _unusable(c, self.patient_id, on)),
            key=lambda c: (c.self_pay, c.order if c.order is not None else 1_000_000, c.id),
        )
        if not usable:
            raise RuleViolation(
                f"Patient/{self.patient_id} has no active coverage for {on.date().isoformat()}: "
                "choose a Coverage (or the patient's self-pay Coverage) in supportingInformation",
                field=COVERAGE_FIELD,
            )
        if usable[0].self_pay:
            return [usable[0].id]
        insured = [c.id for c in usable if not c.self_pay]
        return insured[:2]

    def patient_visible(self) -> bool:
        """Whether the caller sees the patient (`visible_patient`), asked together with
        loading the patient's coverages a choice without one picks from: one statement
        where there are some (and the caller's view of patients is the restriction alone)."""
        if narrowed(Patient, self.access):
            return visible_patient(self.db, self.patient_id, self.access)
        statement = _own_and_seen(self.access)
        asked = {"patient_id": self.patient_id}
        # Built once per access, so run directly (a narrowed access builds it per call).
        rows = (
            self.db.execute(statement, asked).all()
            if self.access.narrowed
            else direct(statement).rows(self.db, asked)
        )
        if not rows:  # none the caller sees: the patient may still be visible
            return visible_patient(self.db, self.patient_id, self.access)
        if not rows[0][-1]:
            return False
        self._own = [CoverageTerms(*row[:-1]) for row in rows]
        return True

    def _own_coverages(self) -> list[CoverageTerms]:
        if self._own is None:
            rows = self.db.execute(_own_statement(self.access), {"patient_id": self.patient_id})
            self._own = [CoverageTerms(*row) for row in rows]
        return self._own

    def _visible_coverage(self, coverage_id: str) -> Coverage | None:
        if coverage_id not in self._seen:
            coverage = self.db.get(Coverage, coverage_id)
            visible = coverage is not None and visible_coverage(self.db, coverage_id, self.access)
            self._seen[coverage_id] = coverage if visible else None
        return self._seen[coverage_id]


@dataclass(frozen=True, slots=True)
class CoverageTerms:
    """What choosing among a patient's coverages reads of each (its columns only: no
    document, no identifiers)."""

    id: str
    beneficiary_id: str
    status: str
    self_pay: bool
    order: int | None
    period_start: dt.datetime | None
    period_end: dt.datetime | None


_TERMS = (
    Coverage.id,
    Coverage.beneficiary_id,
    Coverage.status,
    Coverage.self_pay,
    Coverage.order,
    Coverage.period_start,
    Coverage.period_end,
)


def _own_statement(access: Access) -> Select[*tuple[Any, ...]]:
    """The terms of the coverages of the patient `patient_id` (bound) that `access` sees."""
    return (
        select(*_TERMS)
        .where(Coverage.beneficiary_id == bindparam("patient_id"))
        # Not one the caller may not see (a plan a restricted patient subscribes
        # to): choosing it would show its id in the booking.
        .where(visibility(Coverage, access))
    )


@built_once_per_access(maxsize=16)
def _own_and_seen(access: Access) -> Select[*tuple[Any, ...]]:
    """`_own_statement`, each row with whether `access` sees the patient (for callers whose
    view of patients is the restriction alone)."""
    seen = (
        select(Patient.id)
        .where(Patient.id == bindparam("patient_id"), visibility(Patient, access))
        .exists()
    )
    return _own_statement(access).add_columns(seen)


def _unusable(coverage: Coverage | CoverageTerms, patient_id: str, on: dt.datetime) -> str | None:
    if coverage.beneficiary_id != patient_id:
        return "is not this patient's coverage"
    if coverage.status != ACTIVE:
        return f"is not active (status {coverage.status})"
    if coverage.period_start is not None and on < coverage.period_start:
        return f"does not cover {on.date().isoformat()}: it starts later"
    if coverage.period_end is not None and on >= coverage.period_end:
        return f"does not cover {on.date().isoformat()}: it has ended"
    return None


def _check(db: Session, spec: CoverageSpec, access: Access) -> None:
    if not visible_patient(db, spec.beneficiary_id, access):
        raise NotFound("Patient", spec.beneficiary_id, field="coverage.beneficiary")
    if spec.subscriber_patient_id and not visible_patient(db, spec.subscriber_patient_id, access):
        raise NotFound("Patient", spec.subscriber_patient_id, field="coverage.subscriber")
    if spec.payor_kind == "patient":
        if not visible_patient(db, spec.payor_id, access):
            raise NotFound("Patient", spec.payor_id, field="coverage.payor")
    elif db.get(ProviderGroup, spec.payor_id) is None:
        raise NotFound("Organization", spec.payor_id, field="coverage.payor")
    if spec.self_pay and spec.payor_kind != "patient":
        raise RuleViolation("a self-pay coverage is paid by a Patient", field="coverage.payor")
    if spec.period_start and spec.period_end and spec.period_end <= spec.period_start:
        raise RuleViolation("period end is before its start", field="coverage.period_end")


def _apply(coverage: Coverage, spec: CoverageSpec) -> None:
    coverage.beneficiary_id = spec.beneficiary_id
    coverage.subscriber_patient_id = spec.subscriber_patient_id
    coverage.subscriber_id = spec.subscriber_id
    coverage.payor_kind = spec.payor_kind
    coverage.payor_id = spec.payor_id
    coverage.status = spec.status
    coverage.type_system = spec.type_system
    coverage.type_code = spec.type_code
    coverage.self_pay = spec.self_pay
    coverage.order = spec.order
    coverage.period_start = spec.period_start
    coverage.period_end = spec.period_end
    coverage.document = spec.document
    wanted = list(spec.identifiers)
    if [(i.system, i.value) for i in coverage.identifiers] != wanted:
        coverage.identifiers[:] = [CoverageIdentifier(system=s, value=v) for s, v in wanted]

"""Registering and updating patients (the registration form)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session

from store.access import Access
from store.common import new_id
from store.errors import NotFound, RestrictedWithoutPermission, RuleViolation, VersionMismatch
from store.models import Patient, PatientIdentifier, PatientPhone
from store.ssn import SSN_SYSTEM, SsnHasher, masked_last4
from store.text import fold, phone_digits
from store.visibility import may_mark_restricted, visible_patient


@dataclass(frozen=True)
class PatientSpec:
    family: str
    given: str = ""
    birth_date: dt.date | None = None
    gender: str | None = None
    phones: tuple[tuple[str, str | None], ...] = ()  # (number as written, use)
    identifiers: tuple[tuple[str, str], ...] = ()  # (system, value); an SSN in clear here
    restricted: bool = False
    document: str | None = None


def register_patient(
    db: Session, spec: PatientSpec, ssn: SsnHasher, access: Access, *, patient_id: str | None = None
) -> Patient:
    _check_privacy(spec, access)
    patient = Patient(id=patient_id or new_id(), version=1)
    _apply(patient, spec, ssn)
    db.add(patient)
    db.flush()
    return patient


def update_patient(
    db: Session,
    patient_id: str,
    spec: PatientSpec,
    ssn: SsnHasher,
    access: Access,
    *,
    expected_version: int | None = None,
) -> Patient:
    patient = db.get(Patient, patient_id, with_for_update=True, populate_existing=True)
    if patient is None or not visible_patient(db, patient_id, access):
        raise NotFound("Patient", patient_id)
    if expected_version is not None and patient.version != expected_version:
        raise VersionMismatch("Patient", patient_id, expected_version, patient.version)
    _check_privacy(spec, access)
    _apply(patient, spec, ssn)
    patient.touch()
    db.flush()
    return patient


def _check_privacy(spec: PatientSpec, access: Access) -> None:
    if spec.restricted and not may_mark_restricted(access):
        raise RestrictedWithoutPermission(
            "only staff with the 'Privacy: Access Blocked Patients' permission may mark a "
            "patient restricted",
            field="patient.restricted",
        )


def _apply(patient: Patient, spec: PatientSpec, ssn: SsnHasher) -> None:
    if not spec.family.strip():
        raise RuleViolation("a patient needs a family name", field="patient.family")
    patient.family = spec.family
    patient.given = spec.given
    patient.family_folded = fold(spec.family)
    patient.given_folded = fold(spec.given)
    patient.birth_date = spec.birth_date
    patient.gender = spec.gender
    patient.restricted = spec.restricted
    patient.document = spec.document
    old_ssn = next((i for i in patient.identifiers if i.system == SSN_SYSTEM), None)
    identifiers: list[PatientIdentifier] = []
    for position, (system, value) in enumerate(spec.identifiers):
        if system != SSN_SYSTEM:
            identifiers.append(PatientIdentifier(system=system, value=value, position=position))
            continue
        last4 = masked_last4(value)
        if last4 is not None and old_ssn is not None and old_ssn.last4 == last4:
            # The masked value we showed came back unchanged: keep the stored hash.
            identifiers.append(
                PatientIdentifier(
                    system=SSN_SYSTEM,
                    value=old_ssn.value,
                    last4=last4,
                    position=position,
                    kind="SS",
                )
            )
            continue
        digits = ssn.normalize(value, field=f"patient.ssn[{position}]")
        identifiers.append(
            PatientIdentifier(
                system=SSN_SYSTEM,
                value=ssn.digest(digits),
                last4=digits[-4:],
                position=position,
                kind="SS",
            )
        )
    patient.identifiers[:] = identifiers
    patient.phones[:] = [
        PatientPhone(value=value, digits=phone_digits(value), use=use, position=position)
        for position, (value, use) in enumerate(spec.phones)
    ]

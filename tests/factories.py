"""Small factories that build clinic data straight through the store."""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass

from sqlalchemy.orm import Session

from store.models import (
    Coverage,
    Department,
    GroupSession,
    Patient,
    PatientIdentifier,
    PatientPhone,
    Provider,
    ProviderGroup,
    ProviderSchedule,
)
from store.text import fold, phone_digits

_counter = itertools.count(1)
MRN = "http://fhir-facade.org/fhir/sid/mrn"
MONDAY = dt.datetime(2027, 1, 4, 15, 0, tzinfo=dt.UTC)  # 10:00 in New York


@dataclass
class Clinic:
    group_id: str
    department_id: str
    provider_id: str
    other_provider_id: str
    schedule_id: str


def make_clinic(db: Session) -> Clinic:
    n = next(_counter)
    db.add(ProviderGroup(id=f"org-{n}", name=f"Harbor Group {n}"))
    db.flush()
    db.add(
        Department(
            id=f"dept-{n}",
            name="Brooklyn",
            timezone="America/New_York",
            provider_group_id=f"org-{n}",
        )
    )
    db.add(
        Provider(
            id=f"prac-{n}",
            prefix="Dr.",
            given="Ana",
            family="Rivera",
            identifier_system="http://hl7.org/fhir/sid/us-npi",
            identifier_value=f"14876{n:05d}",
        )
    )
    db.add(Provider(id=f"prac-{n}b", given="Wei", family="Chen"))
    db.flush()
    db.add(
        ProviderSchedule(
            id=f"sched-{n}",
            provider_id=f"prac-{n}",
            department_id=f"dept-{n}",
            name="Rivera groups",
            active=True,
        )
    )
    db.flush()
    return Clinic(f"org-{n}", f"dept-{n}", f"prac-{n}", f"prac-{n}b", f"sched-{n}")


def make_session(
    db: Session,
    clinic: Clinic,
    *,
    capacity: int = 10,
    start: dt.datetime = MONDAY,
    minutes: int = 90,
    closed: bool = False,
    appointment_type: str = "group-therapy",
) -> GroupSession:
    session = GroupSession(
        id=f"session-{next(_counter)}",
        schedule_id=clinic.schedule_id,
        start=start,
        end=start + dt.timedelta(minutes=minutes),
        capacity=capacity,
        booked=0,
        appointment_type=appointment_type,
        service_type="behavioral-health-group",
        closed=closed,
    )
    db.add(session)
    db.flush()
    return session


def make_patient(
    db: Session,
    *,
    family: str = "García",
    given: str = "Maria",
    phone: str = "(555) 010-2233",
    restricted: bool = False,
    self_pay: bool = True,
) -> Patient:
    """A patient; by default with an active self-pay Coverage, so bookings need no choice."""
    n = next(_counter)
    patient = Patient(
        id=f"pat-{n}",
        family=family,
        given=given,
        family_folded=fold(family),
        given_folded=fold(given),
        birth_date=dt.date(1980, 5, 17),
        gender="female",
        restricted=restricted,
    )
    patient.phones.append(PatientPhone(value=phone, digits=phone_digits(phone), position=0))
    patient.identifiers.append(PatientIdentifier(system=MRN, value=f"MRN{n:06d}", position=0))
    db.add(patient)
    db.flush()
    if self_pay:
        make_coverage(db, patient.id, self_pay=True)
    return patient


SELF_PAY_SYSTEM = "http://terminology.hl7.org/CodeSystem/coverage-selfpay"


def make_coverage(
    db: Session,
    patient_id: str,
    *,
    self_pay: bool = False,
    payor_id: str | None = None,
    status: str = "active",
    order: int | None = None,
    period: tuple[dt.datetime | None, dt.datetime | None] = (None, None),
) -> Coverage:
    coverage = Coverage(
        id=f"cov-{next(_counter)}",
        beneficiary_id=patient_id,
        payor_kind="patient" if self_pay else "organization",
        payor_id=patient_id if self_pay else (payor_id or "payer-missing"),
        status=status,
        type_system=SELF_PAY_SYSTEM if self_pay else None,
        type_code="pay" if self_pay else None,
        self_pay=self_pay,
        order=order,
        period_start=period[0],
        period_end=period[1],
    )
    db.add(coverage)
    db.flush()
    return coverage

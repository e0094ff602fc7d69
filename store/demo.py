"""The demo clinic: one provider group, two departments in different time zones,
five providers with weekly group sessions for the next 12 weeks, 60 patients.

The demo stays current: `extend_demo` (run whenever the demo starts) adds the weekly
sessions of the 12 weeks ahead of *today*, whenever the clinic was loaded, and sets up
what the README walkthrough shows on the coming Monday (the first Monday after today,
as GNU `date -d "next monday"` says): Dr. Rivera's 10:00 group closed, Dr. Lindqvist's
09:00 DBT group full. Bookings are made through `store.booking.book_patient`, so
booked counts are real.
"""

from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from store.access import PRIVACY_OFFICER
from store.booking import BookingRequest, book_patient
from store.models import (
    HOLDS_PLACE,
    Booking,
    Coverage,
    Department,
    GroupSession,
    OrganizationKind,
    Patient,
    PatientIdentifier,
    PatientPhone,
    Provider,
    ProviderGroup,
    ProviderSchedule,
)
from store.text import fold, phone_digits

MRN_SYSTEM = "http://fhir-facade.org/fhir/sid/mrn"
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
WEEKS = 12
DEMO_GROUP = "org-harbor"
#: The README walkthrough books this patient itself: the demo books them nowhere.
WALKTHROUGH_PATIENT = "pat-003"
CLOSED_SCHEDULE = "sched-rivera-bk"  # the coming Monday's session is closed
FULL_SCHEDULE = "sched-lindqvist-dn"  # the coming Monday's session is full

DEPARTMENTS = [
    ("dept-brooklyn", "Brooklyn Behavioral Health", "America/New_York"),
    ("dept-denver", "Denver Behavioral Health", "America/Denver"),
]

# id, prefix, given, family, NPI
PROVIDERS = [
    ("prac-rivera", "Dr.", "Ana", "Rivera", "1487654321"),
    ("prac-chen", "Dr.", "Wei", "Chen", "1598765432"),
    ("prac-okafor", None, "Chidi", "Okafor", "1609876543"),
    ("prac-lindqvist", "Dr.", "Maja", "Lindqvist", "1710987654"),
    ("prac-haddad", None, "Rami", "Haddad", "1821098765"),
]

# schedule id, provider, department, weekday (0=Mon), local start, minutes, capacity, type
SESSIONS = [
    ("sched-rivera-bk", "prac-rivera", "dept-brooklyn", 0, "10:00", 90, 10, "group-therapy"),
    ("sched-rivera-bk", "prac-rivera", "dept-brooklyn", 2, "10:00", 90, 10, "group-therapy"),
    ("sched-rivera-bk", "prac-rivera", "dept-brooklyn", 4, "10:00", 90, 10, "group-therapy"),
    ("sched-chen-bk", "prac-chen", "dept-brooklyn", 1, "14:00", 60, 8, "anxiety-cbt"),
    ("sched-chen-bk", "prac-chen", "dept-brooklyn", 3, "14:00", 60, 8, "anxiety-cbt"),
    (
        "sched-okafor-bk",
        "prac-okafor",
        "dept-brooklyn",
        2,
        "18:00",
        90,
        12,
        "substance-use-recovery",
    ),
    ("sched-lindqvist-dn", "prac-lindqvist", "dept-denver", 0, "09:00", 120, 6, "dbt-skills"),
    ("sched-lindqvist-dn", "prac-lindqvist", "dept-denver", 3, "09:00", 120, 6, "dbt-skills"),
    ("sched-haddad-dn", "prac-haddad", "dept-denver", 1, "17:30", 60, 12, "grief-support"),
]

FAMILIES = [
    "Smith",
    "Johnson",
    "García",
    "Nguyen",
    "Müller",
    "O'Brien",
    "Kowalski",
    "Haddad",
    "Patel",
    "Kim",
    "Rossi",
    "Novák",
    "Jensen",
    "Dubois",
    "Silva",
    "Ibrahim",
    "Cohen",
    "Yamamoto",
    "Andersson",
    "López",
]
GIVENS = [
    "Maria",
    "James",
    "Zoë",
    "Liam",
    "Aisha",
    "Noah",
    "Sofía",
    "Ethan",
    "Chloé",
    "Mateo",
    "Olivia",
    "Lucas",
    "Amara",
    "Jonas",
    "Elif",
    "Daniel",
    "Hana",
    "Samuel",
]


def monday_of(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


def coming_monday(day: dt.date) -> dt.date:
    """The first Monday after `day` (a Monday gives the next week's): GNU `date -d
    "next monday"`."""
    return day + dt.timedelta(days=7 - day.weekday())


def demo_dates(today: dt.date | None, now: dt.datetime | None = None) -> tuple[dt.date, dt.date]:
    """The day the demo is set up for (the machine's date unless given) and the Monday its
    sessions start from: that day's week, or the week before while a department's clock
    still shows the day before (just after midnight UTC on a Monday it is Sunday in
    Denver, and the staff app opens on the department's own week, which ends that day)."""
    if today is not None:
        return today, monday_of(today)
    now = now or dt.datetime.now(dt.UTC)
    today = now.astimezone().date()  # the machine's own date, as `date` says
    local = min(now.astimezone(ZoneInfo(zone)).date() for _, _, zone in DEPARTMENTS)
    return today, monday_of(min(today, local))


def load_demo(db: Session, *, today: dt.date | None = None, seed: int = 42) -> bool:
    """Load the demo clinic unless data is already present. Returns True when loaded."""
    if db.scalar(select(func.count()).select_from(Department)):
        return False
    today, start_week = demo_dates(today)
    rng = random.Random(seed)
    db.add(
        ProviderGroup(
            id=DEMO_GROUP,
            name="Harbor Behavioral Health Group",
            identifier_system="http://hl7.org/fhir/sid/us-npi",
            identifier_value="1912345678",
        )
    )
    for ident, name, _ in PAYERS:
        db.add(ProviderGroup(id=ident, name=name, kind=OrganizationKind.PAYER))
    db.flush()
    for ident, name, zone in DEPARTMENTS:
        db.add(Department(id=ident, name=name, timezone=zone, provider_group_id=DEMO_GROUP))
    for ident, prefix, given, family, npi in PROVIDERS:
        db.add(
            Provider(
                id=ident,
                prefix=prefix,
                given=given,
                family=family,
                identifier_system=NPI_SYSTEM,
                identifier_value=npi,
            )
        )
    db.flush()
    horizon_start = dt.datetime.combine(start_week, dt.time(0), tzinfo=dt.UTC)
    for schedule_id, provider_id, department_id, *_ in SESSIONS:
        if db.get(ProviderSchedule, schedule_id) is None:
            provider = db.get(Provider, provider_id)
            assert provider is not None
            db.add(
                ProviderSchedule(
                    id=schedule_id,
                    provider_id=provider_id,
                    department_id=department_id,
                    name=f"{provider.display} group sessions",
                    active=True,
                    horizon_start=horizon_start,
                    horizon_end=horizon_start + dt.timedelta(weeks=WEEKS),
                )
            )
            db.flush()
    sessions = _add_sessions(db, start_week)
    patients = _add_patients(db, rng, today)
    _book_some(db, rng, sessions, patients)
    _prepare_walkthrough(db, today)
    return True


def extend_demo(db: Session, *, today: dt.date | None = None) -> int:
    """Keep a demo clinic loaded earlier current: add the weekly sessions of the WEEKS
    weeks from this week on that are missing, and set up the coming Monday's closed and
    full sessions. Does nothing without the demo clinic. Returns the sessions added."""
    if db.get(ProviderGroup, DEMO_GROUP) is None or any(
        db.get(ProviderSchedule, schedule_id) is None for schedule_id, *_ in SESSIONS
    ):
        return 0
    today, start_week = demo_dates(today)
    added = _add_sessions(db, start_week)
    horizon_end = dt.datetime.combine(start_week, dt.time(0), tzinfo=dt.UTC)
    horizon_end += dt.timedelta(weeks=WEEKS)
    for schedule_id in {s[0] for s in SESSIONS}:
        schedule = db.get(ProviderSchedule, schedule_id)
        assert schedule is not None
        if schedule.horizon_end is None or schedule.horizon_end < horizon_end:
            schedule.horizon_end = horizon_end
            schedule.touch()
    _renew_plans(db, today)
    _prepare_walkthrough(db, today)
    db.flush()
    return len(added)


def _renew_plans(db: Session, today: dt.date) -> None:
    """The demo patients' insurance plans run to the end of next year, as when loaded."""
    end = dt.datetime(today.year + 2, 1, 1, tzinfo=dt.UTC)
    plans = db.scalars(
        select(Coverage).where(
            Coverage.id.like("cov-pat-%"),
            Coverage.period_end.is_not(None),
            Coverage.period_end < end,
        )
    )
    for plan in plans:
        plan.period_end = end
        plan.touch()


def _session_id(schedule_id: str, day: dt.date, at: str) -> str:
    hour, minute = map(int, at.split(":"))
    return f"{schedule_id.removeprefix('sched-')}-{day:%Y%m%d}-{hour:02d}{minute:02d}"


def _add_sessions(db: Session, start_week: dt.date) -> list[GroupSession]:
    """The weekly sessions of WEEKS weeks from `start_week` that do not exist yet."""
    sessions: list[GroupSession] = []
    zones = {ident: ZoneInfo(zone) for ident, _, zone in DEPARTMENTS}
    for week in range(WEEKS):
        for schedule_id, _, dept, weekday, at, minutes, capacity, kind in SESSIONS:
            day = start_week + dt.timedelta(weeks=week, days=weekday)
            ident = _session_id(schedule_id, day, at)
            if db.get(GroupSession, ident) is not None:
                continue
            hour, minute = map(int, at.split(":"))
            local = dt.datetime.combine(day, dt.time(hour, minute), tzinfo=zones[dept])
            start = local.astimezone(dt.UTC)
            session = GroupSession(
                id=ident,
                schedule_id=schedule_id,
                start=start,
                end=start + dt.timedelta(minutes=minutes),
                capacity=capacity,
                booked=0,
                appointment_type=kind,
                service_type="behavioral-health-group",
                closed=False,
            )
            db.add(session)
            sessions.append(session)
    db.flush()
    return sessions


def _prepare_walkthrough(db: Session, today: dt.date) -> None:
    """The coming Monday's Rivera group closed and Lindqvist DBT group full, whatever
    day it is: the README walkthrough books into them."""
    monday = coming_monday(today)
    for schedule_id, _, _, weekday, at, *_ in SESSIONS:
        if weekday != 0 or schedule_id not in (CLOSED_SCHEDULE, FULL_SCHEDULE):
            continue
        session = db.get(GroupSession, _session_id(schedule_id, monday, at))
        if session is None:
            continue
        if schedule_id == CLOSED_SCHEDULE and not session.closed:
            session.closed = True
            session.touch()
        if schedule_id == FULL_SCHEDULE:
            _fill(db, session)


def _fill(db: Session, session: GroupSession) -> None:
    """Book demo patients into the session until it is full (the walkthrough's patient
    and restricted patients excepted)."""
    held = set(
        db.scalars(
            select(Booking.patient_id).where(
                Booking.session_id == session.id, Booking.status.in_(HOLDS_PLACE)
            )
        )
    )
    candidates = db.scalars(
        select(Patient.id)
        .where(
            Patient.id.like("pat-%"),
            Patient.id != WALKTHROUGH_PATIENT,
            Patient.restricted.is_(False),
        )
        .order_by(Patient.id)
    ).all()
    for patient_id in candidates:
        if session.booked >= session.capacity:
            break
        if patient_id in held:
            continue
        book_patient(
            db, BookingRequest(patient_id=patient_id, session_id=session.id), PRIVACY_OFFICER
        )
        db.refresh(session)


def _add_patients(db: Session, rng: random.Random, today: dt.date) -> list[Patient]:
    patients: list[Patient] = []
    for n in range(1, 61):
        family = FAMILIES[(n - 1) % len(FAMILIES)]
        given = GIVENS[(n * 7) % len(GIVENS)]
        phone = f"(555) 010-{2200 + n:04d}"
        patient = Patient(
            id=f"pat-{n:03d}",
            family=family,
            given=given,
            family_folded=fold(family),
            given_folded=fold(given),
            birth_date=dt.date(
                1950 + rng.randrange(55), rng.randrange(1, 13), rng.randrange(1, 29)
            ),
            gender=rng.choice(["female", "male", "female", "male", "other"]),
            restricted=n in (13, 42),
        )
        patient.phones.append(
            PatientPhone(value=phone, digits=phone_digits(phone), use="mobile", position=0)
        )
        patient.identifiers.append(
            PatientIdentifier(system=MRN_SYSTEM, value=f"MRN{100000 + n}", kind="MR", position=0)
        )
        db.add(patient)
        patients.append(patient)
    db.flush()
    for patient in patients:
        _add_coverages(db, patient, int(patient.id.removeprefix("pat-")), today)
    db.flush()
    return patients


PAYERS = [
    ("payer-bluecross", "Blue Harbor Health Plan", "BH"),
    ("payer-medicaid", "State Medicaid Program", "MCD"),
]
SELF_PAY_SYSTEM = "http://terminology.hl7.org/CodeSystem/coverage-selfpay"
V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def _add_coverages(db: Session, patient: Patient, n: int, today: dt.date) -> None:
    """Two of three patients insured (every fifth with a secondary plan); the rest self-pay.
    Plans run from the start of the year of this week's Monday to the end of next year."""
    if n % 3 == 0:
        db.add(
            Coverage(
                id=f"cov-{patient.id}-self",
                beneficiary_id=patient.id,
                payor_kind="patient",
                payor_id=patient.id,
                status="active",
                type_system=SELF_PAY_SYSTEM,
                type_code="pay",
                self_pay=True,
                order=1,
            )
        )
        return
    payer_id, _, prefix = PAYERS[n % 2]
    db.add(
        Coverage(
            id=f"cov-{patient.id}-1",
            beneficiary_id=patient.id,
            payor_kind="organization",
            payor_id=payer_id,
            status="active",
            type_system=V3_ACT_CODE,
            type_code="EHCPOL",
            subscriber_patient_id=patient.id,
            subscriber_id=f"{prefix}{700000 + n}",
            order=1,
            period_start=dt.datetime(monday_of(today).year, 1, 1, tzinfo=dt.UTC),
            period_end=dt.datetime(today.year + 2, 1, 1, tzinfo=dt.UTC),
        )
    )
    if n % 5 == 0:
        other_id, _, other_prefix = PAYERS[(n + 1) % 2]
        db.add(
            Coverage(
                id=f"cov-{patient.id}-2",
                beneficiary_id=patient.id,
                payor_kind="organization",
                payor_id=other_id,
                status="active",
                type_system=V3_ACT_CODE,
                type_code="EHCPOL",
                subscriber_patient_id=patient.id,
                subscriber_id=f"{other_prefix}{800000 + n}",
                order=2,
            )
        )


def _book_some(
    db: Session, rng: random.Random, sessions: list[GroupSession], patients: list[Patient]
) -> None:
    """The first two weeks partly booked (the walkthrough's patient nowhere)."""
    first_weeks = [s for s in sessions if s.start < sessions[0].start + dt.timedelta(weeks=2)]
    others = [p for p in patients if p.id != WALKTHROUGH_PATIENT]
    for session in first_weeks:
        wanted = rng.randrange(1, session.capacity // 2 + 1)
        for patient in rng.sample(others, wanted):
            book_patient(
                db,
                BookingRequest(patient_id=patient.id, session_id=session.id),
                PRIVACY_OFFICER,
            )
    db.flush()

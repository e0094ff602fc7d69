"""Creating and altering schedules and group sessions (the schedule admin's work)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session

from store.common import new_id
from store.directory import check_schedule_move
from store.errors import CapacityBelowBooked, Inactive, NotFound, RuleViolation, VersionMismatch
from store.models import Department, GroupSession, Provider, ProviderSchedule


@dataclass(frozen=True)
class SessionSpec:
    schedule_id: str
    start: dt.datetime
    end: dt.datetime
    capacity: int
    appointment_type: str | None = None
    service_type: str | None = None
    closed: bool = False
    # True blocks the session, False opens it; None ("busy" as sent by a client) holds
    # a new session and leaves an existing one as it is: full or not is ours to count.
    blocked: bool | None = False
    comment: str | None = None
    identifier_system: str | None = None
    identifier_value: str | None = None
    document: str | None = None

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise RuleViolation("end must be after start", field="session.end")


@dataclass(frozen=True)
class ScheduleSpec:
    department_id: str
    provider_id: str | None = None
    active: bool = True
    horizon_start: dt.datetime | None = None
    horizon_end: dt.datetime | None = None
    identifier_system: str | None = None
    identifier_value: str | None = None
    name: str | None = None
    document: str | None = None


def create_schedule(
    db: Session, spec: ScheduleSpec, *, schedule_id: str | None = None
) -> ProviderSchedule:
    """Open a calendar: a provider's in a department, or a department's own."""
    _check_schedule(db, spec)
    schedule = ProviderSchedule(id=schedule_id or new_id(), version=1)
    _apply_schedule(schedule, spec)
    db.add(schedule)
    db.flush()
    return schedule


def update_schedule(
    db: Session, schedule_id: str, spec: ScheduleSpec, *, expected_version: int | None = None
) -> ProviderSchedule:
    """Change a calendar. Its department and provider change only while none of its
    sessions that have not ended holds bookings (`store.directory.check_schedule_move`)."""
    schedule = db.get(
        ProviderSchedule,
        schedule_id,
        with_for_update={"of": ProviderSchedule},  # not the joined provider and department
        populate_existing=True,
    )
    if schedule is None:
        raise NotFound("Schedule", schedule_id)
    if expected_version is not None and schedule.version != expected_version:
        raise VersionMismatch("Schedule", schedule_id, expected_version, schedule.version)
    _check_schedule(db, spec)
    check_schedule_move(db, schedule, spec.department_id, spec.provider_id)
    _apply_schedule(schedule, spec)
    schedule.touch()
    db.flush()
    db.refresh(schedule)  # its provider and department, as now referenced
    return schedule


def _check_schedule(db: Session, spec: ScheduleSpec) -> None:
    if db.get(Department, spec.department_id) is None:
        raise NotFound("Location", spec.department_id, field="schedule.actor")
    if spec.provider_id is not None and db.get(Provider, spec.provider_id) is None:
        raise NotFound("Practitioner", spec.provider_id, field="schedule.actor")
    if spec.horizon_start and spec.horizon_end and spec.horizon_end < spec.horizon_start:
        raise RuleViolation(
            "the planning horizon ends before it starts", field="schedule.planning_horizon"
        )


def _apply_schedule(schedule: ProviderSchedule, spec: ScheduleSpec) -> None:
    schedule.provider_id = spec.provider_id
    schedule.department_id = spec.department_id
    schedule.name = spec.name
    schedule.active = spec.active
    schedule.horizon_start = spec.horizon_start
    schedule.horizon_end = spec.horizon_end
    schedule.identifier_system = spec.identifier_system
    schedule.identifier_value = spec.identifier_value
    schedule.document = spec.document


def inactive_reason(schedule: ProviderSchedule) -> str | None:
    """Why a schedule takes no new sessions, or None when it does."""
    if not schedule.active:
        return f"Schedule/{schedule.id} is inactive"
    if schedule.provider is not None and not schedule.provider.active:
        return f"Practitioner/{schedule.provider_id} is inactive"
    if not schedule.department.active:
        return f"Location/{schedule.department_id} is inactive"
    return None


def create_session(
    db: Session, spec: SessionSpec, *, session_id: str | None = None
) -> GroupSession:
    """Add a group session to a provider's schedule ("Create New Slot"). An inactive
    schedule, provider or department takes none."""
    _check_spec(db, spec, new_schedule=True)
    # A new session is blocked when asked to be, and held when declared busy.
    session = GroupSession(
        id=session_id or new_id(), booked=0, version=1, blocked=spec.blocked is not False
    )
    _apply(session, spec)
    db.add(session)
    db.flush()
    return session


def update_session(
    db: Session, session_id: str, spec: SessionSpec, *, expected_version: int | None = None
) -> GroupSession:
    """Alter a session. Capacity never drops below the places already booked.

    The row is locked first, so a booking running at the same time either lands
    before (and is counted here) or waits and sees the new capacity.
    """
    session = db.get(
        GroupSession,
        session_id,
        with_for_update={"of": GroupSession},  # not the outer-joined provider
        populate_existing=True,
    )
    if session is None:
        raise NotFound("Slot", session_id)
    if expected_version is not None and session.version != expected_version:
        raise VersionMismatch("Slot", session_id, expected_version, session.version)
    _check_spec(db, spec, new_schedule=spec.schedule_id != session.schedule_id)
    if spec.capacity < session.booked:
        raise CapacityBelowBooked(spec.capacity, session.booked, field="session.capacity")
    moved = (spec.start, spec.end, spec.schedule_id) != (
        session.start,
        session.end,
        session.schedule_id,
    )
    if moved and session.booked > 0:
        raise RuleViolation(
            f"the session has {session.booked} booked patients; move or cancel their "
            "appointments before changing its time or schedule",
            field="session.start",
        )
    _apply(session, spec)
    session.touch()
    db.flush()
    return session


def _check_spec(db: Session, spec: SessionSpec, *, new_schedule: bool) -> None:
    """`new_schedule`: the session joins this schedule now (created, or moved to it)."""
    if spec.capacity < 1:
        raise RuleViolation("capacity must be at least 1", field="session.capacity")
    schedule = db.get(ProviderSchedule, spec.schedule_id)
    if schedule is None:
        raise NotFound("Schedule", spec.schedule_id, field="session.schedule")
    if new_schedule and (reason := inactive_reason(schedule)):
        raise Inactive(f"{reason}: it takes no new sessions", field="session.schedule")


def _apply(session: GroupSession, spec: SessionSpec) -> None:
    session.schedule_id = spec.schedule_id
    session.start = spec.start
    session.end = spec.end
    session.capacity = spec.capacity
    session.appointment_type = spec.appointment_type
    session.service_type = spec.service_type
    session.closed = spec.closed
    if spec.blocked is not None:  # None leaves it as it is (set at creation)
        session.blocked = spec.blocked
    session.comment = spec.comment
    session.identifier_system = spec.identifier_system
    session.identifier_value = spec.identifier_value
    session.document = spec.document

"""The clinic's directory: provider groups, departments and providers (a schedule
admin's work, like opening calendars and sessions).

Two rules guard what is already booked. A department's time zone is how its
sessions' local times are read, and a schedule's department and provider are where
and with whom its sessions happen: neither changes while a session of theirs that
has not ended holds bookings (`SessionsWouldMove`). Inactive providers and
departments keep their history; `store.sessions` refuses them new sessions.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from store.common import new_id
from store.errors import NotFound, RuleViolation, SessionsWouldMove, VersionMismatch
from store.models import (
    Department,
    GroupSession,
    OrganizationKind,
    Provider,
    ProviderGroup,
    ProviderSchedule,
    Versioned,
    utcnow,
)


@dataclass(frozen=True)
class OrganizationSpec:
    name: str
    kind: OrganizationKind = OrganizationKind.PROVIDER_GROUP
    active: bool = True
    identifier_system: str | None = None
    identifier_value: str | None = None
    document: str | None = None


@dataclass(frozen=True)
class DepartmentSpec:
    name: str
    timezone: str
    provider_group_id: str
    active: bool = True
    identifier_system: str | None = None
    identifier_value: str | None = None
    document: str | None = None


@dataclass(frozen=True)
class ProviderSpec:
    family: str
    given: str = ""
    prefix: str | None = None
    active: bool = True
    identifier_system: str | None = None
    identifier_value: str | None = None
    document: str | None = None


def is_time_zone(name: str) -> bool:
    """An IANA zone name the zone database knows ("Europe/Berlin"; not "CET+1")."""
    if name not in _zone_names():
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


_ZONES: set[str] = set()


def _zone_names() -> set[str]:
    if not _ZONES:
        _ZONES.update(available_timezones())
    return _ZONES


def create_provider_group(
    db: Session, spec: OrganizationSpec, *, group_id: str | None = None
) -> ProviderGroup:
    group = ProviderGroup(id=group_id or new_id(), version=1)
    _apply_group(group, spec)
    db.add(group)
    db.flush()
    return group


def update_provider_group(
    db: Session, group_id: str, spec: OrganizationSpec, *, expected_version: int | None = None
) -> ProviderGroup:
    group = _locked(db, ProviderGroup, "Organization", group_id, expected_version)
    if spec.kind != group.kind and _departments_of(db, group_id):
        raise RuleViolation(
            "this organization manages departments, so it stays a provider group",
            field="provider_group.kind",
        )
    _apply_group(group, spec)
    group.touch()
    db.flush()
    return group


def create_department(
    db: Session, spec: DepartmentSpec, *, department_id: str | None = None
) -> Department:
    _check_department(db, spec)
    department = Department(id=department_id or new_id(), version=1)
    _apply_department(department, spec)
    db.add(department)
    db.flush()
    return department


def update_department(
    db: Session, department_id: str, spec: DepartmentSpec, *, expected_version: int | None = None
) -> Department:
    """Change a department. Its time zone changes only while none of its sessions that
    have not ended holds bookings: their patients were told a local time in the old zone.
    Sessions keep their instants (UTC); their local times are read in the new zone."""
    department = _locked(db, Department, "Location", department_id, expected_version)
    _check_department(db, spec)
    if spec.timezone != department.timezone:
        _refuse_if_booked(
            db,
            ProviderSchedule.department_id == department_id,
            f"changing the time zone of Location/{department_id} from {department.timezone} "
            f"to {spec.timezone} would move",
            "department.timezone",
        )
    _apply_department(department, spec)
    department.touch()
    db.flush()
    return department


def create_provider(db: Session, spec: ProviderSpec, *, provider_id: str | None = None) -> Provider:
    provider = Provider(id=provider_id or new_id(), version=1)
    _apply_provider(provider, spec)
    db.add(provider)
    db.flush()
    return provider


def update_provider(
    db: Session, provider_id: str, spec: ProviderSpec, *, expected_version: int | None = None
) -> Provider:
    provider = _locked(db, Provider, "Practitioner", provider_id, expected_version)
    _apply_provider(provider, spec)
    provider.touch()
    db.flush()
    return provider


def check_schedule_move(
    db: Session, schedule: ProviderSchedule, department_id: str, provider_id: str | None
) -> None:
    """Refuse re-pointing a schedule (another department or provider) while a session of
    it that has not ended holds bookings."""
    if (department_id, provider_id) == (schedule.department_id, schedule.provider_id):
        return
    what = "department" if department_id != schedule.department_id else "provider"
    _refuse_if_booked(
        db,
        ProviderSchedule.id == schedule.id,
        f"giving Schedule/{schedule.id} another {what} would move",
        "schedule.actor",
    )


def _refuse_if_booked(db: Session, schedules: object, what: str, field: str) -> None:
    booked = db.execute(
        select(func.count(), func.min(GroupSession.start))
        .select_from(GroupSession)
        .join(ProviderSchedule, GroupSession.schedule_id == ProviderSchedule.id)
        .where(schedules, GroupSession.booked > 0, GroupSession.end > utcnow())  # type: ignore[arg-type]
    ).one()
    count, first = booked
    if count:
        raise SessionsWouldMove(
            f"{what} {count} booked session(s) (the first at {_instant(first)}); move or "
            "cancel their appointments first",
            field=field,
        )


def _instant(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_department(db: Session, spec: DepartmentSpec) -> None:
    if not is_time_zone(spec.timezone):
        raise RuleViolation(
            f"{spec.timezone!r} is not an IANA time zone (e.g. Europe/Berlin)",
            field="department.timezone",
        )
    group = db.get(ProviderGroup, spec.provider_group_id)
    if group is None:
        raise NotFound("Organization", spec.provider_group_id, field="department.provider_group")
    if group.kind != OrganizationKind.PROVIDER_GROUP:
        raise RuleViolation(
            f"Organization/{group.id} is a payer, not a provider group",
            field="department.provider_group",
        )


def _departments_of(db: Session, group_id: str) -> int:
    count = db.scalar(
        select(func.count()).select_from(Department).where(Department.provider_group_id == group_id)
    )
    return int(count or 0)


_V = TypeVar("_V", bound=Versioned)


def _locked(
    db: Session, kind: type[_V], resource_type: str, ident: str, expected_version: int | None
) -> _V:
    record = db.get(kind, ident, with_for_update=True, populate_existing=True)
    if record is None:
        raise NotFound(resource_type, ident)
    if expected_version is not None and record.version != expected_version:
        raise VersionMismatch(resource_type, ident, expected_version, record.version)
    return record


def _apply_group(group: ProviderGroup, spec: OrganizationSpec) -> None:
    group.name = spec.name
    group.kind = spec.kind
    group.active = spec.active
    group.identifier_system = spec.identifier_system
    group.identifier_value = spec.identifier_value
    group.document = spec.document


def _apply_department(department: Department, spec: DepartmentSpec) -> None:
    department.name = spec.name
    department.timezone = spec.timezone
    department.provider_group_id = spec.provider_group_id
    department.active = spec.active
    department.identifier_system = spec.identifier_system
    department.identifier_value = spec.identifier_value
    department.document = spec.document


def _apply_provider(provider: Provider, spec: ProviderSpec) -> None:
    provider.family = spec.family
    provider.given = spec.given
    provider.prefix = spec.prefix
    provider.active = spec.active
    provider.identifier_system = spec.identifier_system
    provider.identifier_value = spec.identifier_value
    provider.document = spec.document

"""Organization (provider group), Location (department), Practitioner (provider), Schedule.

FHIR R4: Organization §8.1, Location §8.10, Practitioner §8.4, Schedule §11.4.
"""

from __future__ import annotations

from typing import Any

import orjson

from mappings.codes import (
    CS_ORGANIZATION_TYPE,
    EXT_TIMEZONE,
    IDENTIFIER_USES,
    check_required_codes,
)
from mappings.common import (
    JSON,
    aware,
    instant,
    kept_document,
    meta,
    parse_reference,
    parse_resource,
    reference,
)
from mappings.errors import Unprocessable
from store.models import (
    Department,
    OrganizationKind,
    Provider,
    ProviderGroup,
    ProviderSchedule,
)
from store.sessions import ScheduleSpec


def _identifiers(system: str | None, value: str | None) -> list[JSON]:
    if value is None:
        return []
    ident: JSON = {"value": value}
    if system:
        ident["system"] = system
    return [ident]


_ORGANIZATION_TYPES = {
    OrganizationKind.PROVIDER_GROUP: ("prov", "Healthcare Provider", "Provider Group"),
    OrganizationKind.PAYER: ("ins", "Insurance Company", "Payer"),
}


def organization_to_fhir(group: ProviderGroup) -> JSON:
    kind = OrganizationKind(group.kind or OrganizationKind.PROVIDER_GROUP)
    code, display, text = _ORGANIZATION_TYPES[kind]
    resource: JSON = {
        "resourceType": "Organization",
        "id": group.id,
        "meta": meta(group.version, group.last_updated),
        "active": True,
        "type": [
            {
                "coding": [{"system": CS_ORGANIZATION_TYPE, "code": code, "display": display}],
                "text": text,
            }
        ],
        "name": group.name,
    }
    if identifiers := _identifiers(group.identifier_system, group.identifier_value):
        resource["identifier"] = identifiers
    return resource


def location_to_fhir(department: Department) -> JSON:
    resource: JSON = {
        "resourceType": "Location",
        "id": department.id,
        "meta": meta(department.version, department.last_updated),
        "extension": [{"url": EXT_TIMEZONE, "valueCode": department.timezone}],
        "status": "active",
        "name": department.name,
        "mode": "instance",
        "managingOrganization": reference("Organization", department.provider_group_id),
    }
    if identifiers := _identifiers(department.identifier_system, department.identifier_value):
        resource["identifier"] = identifiers
    return resource


def practitioner_to_fhir(provider: Provider) -> JSON:
    name: JSON = {"text": provider.display, "family": provider.family}
    if provider.given:
        name["given"] = provider.given.split()
    if provider.prefix:
        name["prefix"] = [provider.prefix]
    resource: JSON = {
        "resourceType": "Practitioner",
        "id": provider.id,
        "meta": meta(provider.version, provider.last_updated),
        "active": True,
        "name": [name],
    }
    if identifiers := _identifiers(provider.identifier_system, provider.identifier_value):
        resource["identifier"] = identifiers
    return resource


def schedule_to_fhir(schedule: ProviderSchedule) -> JSON:
    resource: JSON = {
        "resourceType": "Schedule",
        "id": schedule.id,
        "meta": meta(schedule.version, schedule.last_updated),
    }
    if schedule.document:  # created through the API: given back as it was sent
        resource.update(orjson.loads(schedule.document))
        return resource
    resource["active"] = schedule.active
    actors = [reference("Location", schedule.department_id, schedule.department.name)]
    if schedule.provider_id and schedule.provider:
        actors.insert(0, reference("Practitioner", schedule.provider_id, schedule.provider.display))
    resource["actor"] = actors
    if identifiers := _identifiers(schedule.identifier_system, schedule.identifier_value):
        resource["identifier"] = identifiers
    if schedule.horizon_start or schedule.horizon_end:
        horizon: JSON = {}
        if schedule.horizon_start:
            horizon["start"] = instant(schedule.horizon_start)
        if schedule.horizon_end:
            horizon["end"] = instant(schedule.horizon_end)
        resource["planningHorizon"] = horizon
    if schedule.name:
        resource["comment"] = schedule.name
    return resource


def schedule_from_fhir(body: Any) -> ScheduleSpec:
    """Read a Schedule a schedule admin creates: one Location (the department, whose time
    zone its sessions keep) and at most one Practitioner among its actors."""
    schedule: Any = parse_resource(body, "Schedule")
    check_required_codes(body, "Schedule", {"identifier.use": IDENTIFIER_USES})
    actors: dict[str, list[str]] = {"Practitioner": [], "Location": []}
    for index, actor in enumerate(schedule.actor):
        kind, ident = parse_reference(
            actor.reference, ("Practitioner", "Location"), f"Schedule.actor[{index}]"
        )
        actors[kind].append(ident)
    if len(actors["Location"]) != 1 or len(actors["Practitioner"]) > 1:
        raise Unprocessable(
            "a schedule has exactly one Location actor (its department) and at most one "
            "Practitioner actor",
            expression="Schedule.actor",
        )
    horizon = schedule.planningHorizon
    first = (schedule.identifier or [None])[0]
    return ScheduleSpec(
        department_id=actors["Location"][0],
        provider_id=actors["Practitioner"][0] if actors["Practitioner"] else None,
        active=schedule.active is not False,
        horizon_start=aware(horizon.start, "Schedule.planningHorizon.start")
        if horizon and horizon.start
        else None,
        horizon_end=aware(horizon.end, "Schedule.planningHorizon.end")
        if horizon and horizon.end
        else None,
        identifier_system=first.system if first else None,
        identifier_value=first.value if first else None,
        name=schedule.comment,
        document=kept_document(body),
    )

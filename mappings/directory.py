"""Organization (provider group), Location (department), Practitioner (provider), Schedule.

FHIR R4: Organization §8.1, Location §8.10, Practitioner §8.4, Schedule §11.4. What a
client creates is given back as it sent it (elements we do not model included); what
the clinic's own tools made is rendered from the columns.
"""

from __future__ import annotations

from typing import Any

import orjson

from mappings.codes import (
    CS_ORGANIZATION_TYPE,
    EXT_TIMEZONE,
    EXT_WAITLIST_POLICY,
    IDENTIFIER_USES,
    REQUIRED_CODES,
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
from store.directory import DepartmentSpec, OrganizationSpec, ProviderSpec
from store.models import (
    Department,
    OrganizationKind,
    Provider,
    ProviderGroup,
    ProviderSchedule,
)
from store.promotion import Policy
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


def _as_sent(resource_type: str, record: Any, document: str | None) -> JSON | None:
    """A resource a client created, given back as it was sent."""
    if not document:
        return None
    resource: JSON = {
        "resourceType": resource_type,
        "id": record.id,
        "meta": meta(record.version, record.last_updated),
    }
    resource.update(orjson.loads(document))
    return resource


def organization_to_fhir(group: ProviderGroup) -> JSON:
    if (sent := _as_sent("Organization", group, group.document)) is not None:
        return sent
    kind = OrganizationKind(group.kind or OrganizationKind.PROVIDER_GROUP)
    code, display, text = _ORGANIZATION_TYPES[kind]
    resource: JSON = {
        "resourceType": "Organization",
        "id": group.id,
        "meta": meta(group.version, group.last_updated),
        "active": group.active is not False,
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
    if (sent := _as_sent("Location", department, department.document)) is not None:
        return sent
    resource: JSON = {
        "resourceType": "Location",
        "id": department.id,
        "meta": meta(department.version, department.last_updated),
        "extension": [{"url": EXT_TIMEZONE, "valueCode": department.timezone}],
        "status": "inactive" if department.active is False else "active",
        "name": department.name,
        "mode": "instance",
        "managingOrganization": reference("Organization", department.provider_group_id),
    }
    if identifiers := _identifiers(department.identifier_system, department.identifier_value):
        resource["identifier"] = identifiers
    return resource


def practitioner_to_fhir(provider: Provider) -> JSON:
    if (sent := _as_sent("Practitioner", provider, provider.document)) is not None:
        return sent
    name: JSON = {"text": provider.display, "family": provider.family}
    if provider.given:
        name["given"] = provider.given.split()
    if provider.prefix:
        name["prefix"] = [provider.prefix]
    resource: JSON = {
        "resourceType": "Practitioner",
        "id": provider.id,
        "meta": meta(provider.version, provider.last_updated),
        "active": provider.active is not False,
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
    policy = Policy(schedule.waitlist_policy or Policy.BOOK)  # unset until first stored
    if policy != Policy.BOOK or schedule.offer_seconds:
        resource["extension"] = [waitlist_policy_extension(policy, schedule.offer_seconds)]
    return resource


#: Durations a waitlist offer may be given in (UCUM units of time), in seconds.
_DURATION_UNITS = {"s": 1, "min": 60, "h": 3600, "d": 86400}
_UCUM = "http://unitsofmeasure.org"


def waitlist_policy_extension(policy: Policy, offer_seconds: int | None) -> JSON:
    parts: list[JSON] = [{"url": "mode", "valueCode": policy.value}]
    if offer_seconds:
        unit = "min" if offer_seconds % 60 == 0 else "s"
        parts.append(
            {
                "url": "offerDuration",
                "valueDuration": {
                    "value": offer_seconds // _DURATION_UNITS[unit],
                    "unit": unit,
                    "system": _UCUM,
                    "code": unit,
                },
            }
        )
    return {"url": EXT_WAITLIST_POLICY, "extension": parts}


def _waitlist_policy(extensions: list[Any]) -> tuple[Policy, int | None]:
    """A schedule's waitlist policy (`book` when it says none) and how long an offer holds
    its place."""
    for index, ext in enumerate(extensions):
        if ext.url != EXT_WAITLIST_POLICY:
            continue
        at = f"Schedule.extension[{index}]"
        parts = {part.url: part for part in ext.extension or []}
        mode = parts["mode"].valueCode if "mode" in parts else None
        if mode not in {p.value for p in Policy}:
            raise Unprocessable(
                f"{EXT_WAITLIST_POLICY} needs its 'mode': 'book' or 'offer'", expression=at
            )
        duration = parts["offerDuration"].valueDuration if "offerDuration" in parts else None
        if duration is None:
            return Policy(mode), None
        factor = _DURATION_UNITS.get(duration.code or "")
        if factor is None or duration.system != _UCUM or duration.value is None:
            raise Unprocessable("offerDuration is a UCUM duration in s, min, h or d", expression=at)
        seconds = int(duration.value * factor)
        if seconds < 1:
            raise Unprocessable("offerDuration must be at least a second", expression=at)
        return Policy(mode), seconds
    return Policy.BOOK, None


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
    system, value = _first_identifier(schedule.identifier)
    policy, offer_seconds = _waitlist_policy(schedule.extension or [])
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
        identifier_system=system,
        identifier_value=value,
        name=schedule.comment,
        waitlist_policy=policy,
        offer_seconds=offer_seconds,
        document=kept_document(body),
    )


def _first_identifier(identifiers: Any) -> tuple[str | None, str | None]:
    first = (identifiers or [None])[0]
    return (first.system, first.value) if first else (None, None)


def organization_from_fhir(body: Any) -> OrganizationSpec:
    """Read an Organization: a provider group, or a payer when its type is
    organization-type#ins. It needs a name."""
    organization: Any = parse_resource(body, "Organization")
    check_required_codes(body, "Organization")
    if not organization.name:
        raise Unprocessable("an organization needs a name", expression="Organization.name")
    codes = {
        coding.code
        for concept in organization.type or []
        for coding in concept.coding or []
        if coding.system == CS_ORGANIZATION_TYPE
    }
    kind = OrganizationKind.PAYER if "ins" in codes else OrganizationKind.PROVIDER_GROUP
    system, value = _first_identifier(organization.identifier)
    return OrganizationSpec(
        name=organization.name,
        kind=kind,
        active=organization.active is not False,
        identifier_system=system,
        identifier_value=value,
        document=kept_document(body),
    )


_LOCATION_CODES = {
    **REQUIRED_CODES,
    "status": ("active", "suspended", "inactive"),
    "mode": ("instance", "kind"),
}


def location_from_fhir(body: Any) -> DepartmentSpec:
    """Read a Location (a department): a name, the provider group managing it
    (managingOrganization) and its IANA time zone in the timezone extension. `status`
    other than active (suspended, inactive) makes the department take no new sessions."""
    location: Any = parse_resource(body, "Location")
    check_required_codes(body, "Location", _LOCATION_CODES)
    zones = [
        (index, ext.valueCode)
        for index, ext in enumerate(location.extension or [])
        if ext.url == EXT_TIMEZONE
    ]
    if len(zones) != 1 or not zones[0][1]:
        raise Unprocessable(
            f"a department needs exactly one time zone: extension {EXT_TIMEZONE} with an "
            "IANA zone as valueCode (e.g. Europe/Berlin)",
            expression="Location.extension",
        )
    if not location.name:
        raise Unprocessable("a department needs a name", expression="Location.name")
    managing = location.managingOrganization
    _, group_id = parse_reference(
        managing.reference if managing else None,
        ("Organization",),
        "Location.managingOrganization",
    )
    system, value = _first_identifier(location.identifier)
    return DepartmentSpec(
        name=location.name,
        timezone=str(zones[0][1]),
        provider_group_id=group_id,
        active=location.status in (None, "active"),
        identifier_system=system,
        identifier_value=value,
        document=kept_document(body),
    )


def practitioner_from_fhir(body: Any) -> ProviderSpec:
    """Read a Practitioner (a provider). Its official name (else its first) needs a family
    name; given names and the first prefix are kept for display."""
    practitioner: Any = parse_resource(body, "Practitioner")
    check_required_codes(body, "Practitioner")
    names = practitioner.name or []
    index, name = next(
        ((i, n) for i, n in enumerate(names) if n.use == "official"),
        (0, names[0] if names else None),
    )
    if name is None or not name.family:
        raise Unprocessable(
            "a provider needs a family name", expression=f"Practitioner.name[{index}].family"
        )
    system, value = _first_identifier(practitioner.identifier)
    return ProviderSpec(
        family=name.family,
        given=" ".join(name.given or []),
        prefix=(name.prefix or [None])[0],
        active=practitioner.active is not False,
        identifier_system=system,
        identifier_value=value,
        document=kept_document(body),
    )

"""A second clinic, described once and sent either as one transaction Bundle (urn:uuid
references, `ifNoneExist` on identifiers) or as NDJSON (one resource per line, `Type/id`
references): a provider group with departments in Berlin and New York, a provider and
a weekly session calendar in each, and weekly sessions at 10:00 local time across that
zone's next daylight-saving change."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from mappings.codes import EXT_GROUP_CAPACITY, EXT_TIMEZONE

SYSTEM = "urn:example:spree-clinic"
LOCAL_TIME = dt.time(10, 0)
WEEKS = 5  # three Mondays before the change, two after


@dataclass(frozen=True)
class Department:
    code: str
    name: str
    zone: str
    provider: str  # family name


DEPARTMENTS = (
    Department("BER", "Spree Group Therapy Berlin", "Europe/Berlin", "Schulz"),
    Department("NYC", "Spree Group Therapy New York", "America/New_York", "Okonkwo"),
)


def next_dst_change(zone: str, after: dt.date) -> dt.date:
    """The first day after `after` on which the zone's UTC offset at noon changes."""
    tz = ZoneInfo(zone)
    day = after
    offset = dt.datetime.combine(day, dt.time(12), tz).utcoffset()
    for _ in range(400):
        day += dt.timedelta(days=1)
        now = dt.datetime.combine(day, dt.time(12), tz).utcoffset()
        if now != offset:
            return day
    raise AssertionError(f"{zone} has no daylight-saving change within a year")


def first_monday(department: Department, today: dt.date) -> dt.date:
    """Two Mondays before the Monday of the week of the zone's next DST change (at least
    three weeks ahead, so every session is in the future)."""
    change = next_dst_change(department.zone, today + dt.timedelta(days=21))
    return change - dt.timedelta(days=change.weekday(), weeks=2)


def _id(system_value: str) -> dict[str, str]:
    return {"system": SYSTEM, "value": system_value}


def resources(today: dt.date) -> list[tuple[str, dict[str, Any]]]:
    """(key, resource) in file order; references name other resources by key."""
    found: list[tuple[str, dict[str, Any]]] = [
        (
            "Organization/spree",
            {
                "resourceType": "Organization",
                "identifier": [_id("org-spree")],
                "active": True,
                "name": "Spree Behavioral Health",
            },
        )
    ]
    for department in DEPARTMENTS:
        code = department.code.lower()
        found.append(
            (
                f"Location/{code}",
                {
                    "resourceType": "Location",
                    "identifier": [_id(f"dept-{code}")],
                    "extension": [{"url": EXT_TIMEZONE, "valueCode": department.zone}],
                    "status": "active",
                    "name": department.name,
                    "mode": "instance",
                    "managingOrganization": {"reference": "Organization/spree"},
                },
            )
        )
        found.append(
            (
                f"Practitioner/{code}",
                {
                    "resourceType": "Practitioner",
                    "identifier": [_id(f"prac-{code}")],
                    "active": True,
                    "name": [{"family": department.provider, "given": ["Alex"]}],
                },
            )
        )
        found.append(
            (
                f"Schedule/{code}",
                {
                    "resourceType": "Schedule",
                    "identifier": [_id(f"sched-{code}")],
                    "active": True,
                    "actor": [
                        {"reference": f"Practitioner/{code}"},
                        {"reference": f"Location/{code}"},
                    ],
                    "comment": f"{department.provider}'s Monday group",
                },
            )
        )
        monday = first_monday(department, today)
        for week in range(WEEKS):
            day = monday + dt.timedelta(weeks=week)
            start = dt.datetime.combine(day, LOCAL_TIME, ZoneInfo(department.zone))
            found.append(
                (
                    f"Slot/{code}-{day:%Y%m%d}",
                    {
                        "resourceType": "Slot",
                        "identifier": [_id(f"session-{code}-{day:%Y%m%d}")],
                        "extension": [
                            {
                                "url": EXT_GROUP_CAPACITY,
                                "extension": [{"url": "capacity", "valueUnsignedInt": 6}],
                            }
                        ],
                        "schedule": {"reference": f"Schedule/{code}"},
                        "status": "free",
                        "start": _instant(start),
                        "end": _instant(start + dt.timedelta(minutes=90)),
                    },
                )
            )
    return found


def _instant(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _urn(key: str) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, SYSTEM + '/' + key)}"


def _pointed(value: Any, target: Any) -> Any:
    if isinstance(value, dict):
        out = {k: _pointed(v, target) for k, v in value.items()}
        if isinstance(out.get("reference"), str):
            out["reference"] = target(out["reference"])
        return out
    if isinstance(value, list):
        return [_pointed(v, target) for v in value]
    return value


def transaction(today: dt.date) -> dict[str, Any]:
    """The clinic as one transaction Bundle: urn:uuid references, conditional creates."""
    entries = []
    for key, resource in resources(today):
        identifier = resource["identifier"][0]
        entries.append(
            {
                "fullUrl": _urn(key),
                "resource": _pointed(resource, _urn),
                "request": {
                    "method": "POST",
                    "url": resource["resourceType"],
                    "ifNoneExist": f"identifier={identifier['system']}|{identifier['value']}",
                },
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def ndjson(today: dt.date) -> str:
    """The clinic as NDJSON: each resource with its source id, references `Type/id`."""
    lines = []
    for key, resource in resources(today):
        lines.append(json.dumps({**resource, "id": key.split("/", 1)[1]}))
    return "\n".join(lines) + "\n"


def stored_view(resources_by_type: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """What a clinic's resources say, ids replaced by identifiers (so two stores compare)."""
    key_of = {
        f"{kind}/{r['id']}": f"{kind}/{r['identifier'][0]['value']}"
        for kind, found in resources_by_type.items()
        for r in found
        if r.get("identifier")
    }
    view: dict[str, Any] = {}
    for kind, found in resources_by_type.items():
        for resource in found:
            if not resource.get("identifier"):
                continue
            kept = {k: v for k, v in resource.items() if k not in ("id", "meta")}
            if kind == "Slot":  # what the server counts is not what was sent
                kept = {k: kept[k] for k in ("identifier", "schedule", "start", "end")}
            view[key_of[f"{kind}/{resource['id']}"]] = _pointed(
                kept, lambda ref: key_of.get(ref, ref)
            )
    return view


def sent_view(today: dt.date) -> dict[str, Any]:
    """`stored_view` of the clinic as described here."""
    described = resources(today)
    key_of = {key: f"{key.split('/')[0]}/{r['identifier'][0]['value']}" for key, r in described}
    view = {}
    for key, resource in described:
        kept = dict(resource)
        if resource["resourceType"] == "Slot":
            kept = {k: kept[k] for k in ("identifier", "schedule", "start", "end")}
        view[key_of[key]] = _pointed(kept, lambda ref: key_of.get(ref, ref))
    return view

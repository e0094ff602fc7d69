"""Coverage (FHIR R4 §15.4 Coverage): insurance plans and self-pay.

Self-pay is a Coverage typed `coverage-selfpay#pay` whose payor is the Patient, as
in the official R4 example SP1234. What an EHR sends is kept as sent.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

from mappings.common import (
    JSON,
    beyond_calendar,
    instant,
    kept_document,
    meta,
    parse_reference,
    parse_resource,
)
from mappings.errors import InvalidResource, Unprocessable
from mappings.search_params import date_range
from store.insurance import CoverageSpec
from store.models import Coverage

CS_SELF_PAY = "http://terminology.hl7.org/CodeSystem/coverage-selfpay"
CS_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
_TYPE_DISPLAY = {
    (CS_SELF_PAY, "pay"): "PAY",
    (CS_ACT_CODE, "EHCPOL"): "extended healthcare",
}
_STATUSES = ("active", "cancelled", "draft", "entered-in-error")


def coverage_to_fhir(coverage: Coverage) -> JSON:
    resource: JSON = {
        "resourceType": "Coverage",
        "id": coverage.id,
        "meta": meta(coverage.version, coverage.last_updated),
    }
    if coverage.document:
        resource.update(orjson.loads(coverage.document))
        return resource
    if coverage.identifiers:
        resource["identifier"] = [
            {"system": i.system, "value": i.value} for i in coverage.identifiers
        ]
    resource["status"] = coverage.status
    if coverage.type_code:
        coding: JSON = {"code": coverage.type_code}
        if coverage.type_system:
            coding = {"system": coverage.type_system, **coding}
        display = _TYPE_DISPLAY.get((coverage.type_system or "", coverage.type_code))
        if display:
            coding["display"] = display
        resource["type"] = {"coding": [coding]}
    if coverage.subscriber_patient_id:
        resource["subscriber"] = {"reference": f"Patient/{coverage.subscriber_patient_id}"}
    if coverage.subscriber_id:
        resource["subscriberId"] = coverage.subscriber_id
    resource["beneficiary"] = {"reference": f"Patient/{coverage.beneficiary_id}"}
    if coverage.period_start or coverage.period_end:
        period: JSON = {}
        if coverage.period_start:
            period["start"] = instant(coverage.period_start)
        if coverage.period_end:
            # Stored as an exclusive bound; FHIR's period end is inclusive.
            period["end"] = instant(coverage.period_end - dt.timedelta(seconds=1))
        resource["period"] = period
    payor_type = "Patient" if coverage.payor_kind == "patient" else "Organization"
    resource["payor"] = [{"reference": f"{payor_type}/{coverage.payor_id}"}]
    if coverage.order is not None:
        resource["order"] = coverage.order
    return resource


def coverage_from_fhir(body: Any) -> CoverageSpec:
    coverage: Any = parse_resource(body, "Coverage")
    if coverage.status not in _STATUSES:
        raise InvalidResource(
            f"Coverage.status: {coverage.status!r} is not one of {', '.join(_STATUSES)}",
            expression="Coverage.status",
        )
    _, beneficiary = parse_reference(
        coverage.beneficiary.reference, ("Patient",), "Coverage.beneficiary"
    )
    payor_type, payor_id = parse_reference(
        coverage.payor[0].reference, ("Organization", "Patient"), "Coverage.payor[0]"
    )
    if len(coverage.payor) > 1:
        raise Unprocessable("one payor per coverage", expression="Coverage.payor")
    subscriber = None
    if coverage.subscriber is not None:
        _, subscriber = parse_reference(
            coverage.subscriber.reference, ("Patient",), "Coverage.subscriber"
        )
    codings = (coverage.type.coding or []) if coverage.type else []
    first = codings[0] if codings else None
    self_pay = any(c.system == CS_SELF_PAY and c.code == "pay" for c in codings)
    period = coverage.period
    start = _bound(period.start, "Coverage.period.start")[0] if period and period.start else None
    end = _bound(period.end, "Coverage.period.end")[1] if period and period.end else None
    return CoverageSpec(
        beneficiary_id=beneficiary,
        payor_kind="patient" if payor_type == "Patient" else "organization",
        payor_id=payor_id,
        status=coverage.status,
        self_pay=self_pay,
        subscriber_patient_id=subscriber,
        subscriber_id=coverage.subscriberId,
        type_system=(CS_SELF_PAY if self_pay else first.system) if first else None,
        type_code=("pay" if self_pay else first.code) if first else None,
        order=coverage.order,
        period_start=start,
        period_end=end,
        identifiers=tuple(
            (i.system or "", i.value) for i in (coverage.identifier or []) if i.value
        ),
        document=kept_document(body),
    )


def _bound(value: Any, expression: str) -> tuple[dt.datetime, dt.datetime]:
    """The UTC range [lo, hi) a FHIR dateTime of any precision covers."""
    try:
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=dt.UTC)
            value = value.astimezone(dt.UTC)
            return value, value + dt.timedelta(seconds=1)
        if isinstance(value, dt.date):
            lo = dt.datetime.combine(value, dt.time(0), tzinfo=dt.UTC)
            return lo, lo + dt.timedelta(days=1)
    except OverflowError:
        raise beyond_calendar(value, expression) from None
    return date_range(str(value), expression)

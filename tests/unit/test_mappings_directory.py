"""Organization, Location, Practitioner and Schedule as rendered from the store."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from mappings.codes import CS_ORGANIZATION_TYPE
from mappings.directory import (
    location_from_fhir,
    location_to_fhir,
    organization_from_fhir,
    organization_to_fhir,
    practitioner_from_fhir,
    practitioner_to_fhir,
    schedule_to_fhir,
)
from mappings.errors import InvalidResource, Unprocessable
from store.models import OrganizationKind
from tests.unit.builders import (
    NPI,
    TIMEZONE,
    department,
    extension,
    provider,
    provider_group,
    schedule,
)
from tests.validation import assert_valid


def test_a_provider_group_maps_to_a_valid_organization():
    organization = organization_to_fhir(
        provider_group(identifier_system="urn:oid:2.16.840.1", identifier_value="HG-1")
    )
    assert_valid(organization)
    assert organization["id"] == "org-1"
    assert organization["name"] == "Harbor Group"
    assert organization["identifier"] == [{"system": "urn:oid:2.16.840.1", "value": "HG-1"}]
    assert organization["meta"] == {"versionId": "1", "lastUpdated": "2026-12-01T09:30:00Z"}


def test_an_organization_without_identifier_has_no_identifier_element():
    organization = organization_to_fhir(provider_group())
    assert_valid(organization)
    assert "identifier" not in organization


def test_a_department_maps_to_a_location_carrying_its_time_zone():
    location = location_to_fhir(department(timezone="America/Denver"))
    assert_valid(location)
    assert extension(location, TIMEZONE) == {"url": TIMEZONE, "valueCode": "America/Denver"}
    assert location["managingOrganization"] == {"reference": "Organization/org-1"}
    assert location["name"] == "Brooklyn Behavioral Health"


def test_a_provider_maps_to_a_practitioner_with_prefix_given_and_npi():
    practitioner = practitioner_to_fhir(provider())
    assert_valid(practitioner)
    assert practitioner["name"] == [
        {"text": "Dr. Ana Rivera", "family": "Rivera", "given": ["Ana"], "prefix": ["Dr."]}
    ]
    assert practitioner["identifier"] == [{"system": NPI, "value": "1487654321"}]


def test_a_provider_without_prefix_or_identifier_still_validates():
    practitioner = practitioner_to_fhir(
        provider(prefix=None, given="Wei", identifier_system=None, identifier_value=None)
    )
    assert_valid(practitioner)
    assert practitioner["name"] == [{"text": "Wei Rivera", "family": "Rivera", "given": ["Wei"]}]
    assert "identifier" not in practitioner


def test_a_provider_schedule_maps_to_a_schedule_naming_practitioner_and_location():
    rendered = schedule_to_fhir(schedule())
    assert_valid(rendered)
    assert rendered["active"] is True
    assert rendered["actor"] == [
        {"reference": "Practitioner/prac-1", "display": "Dr. Ana Rivera"},
        {"reference": "Location/dept-1", "display": "Brooklyn Behavioral Health"},
    ]
    assert rendered["comment"] == "Rivera groups"
    assert "planningHorizon" not in rendered


def test_a_schedule_horizon_becomes_a_utc_planning_horizon():
    new_york = dt.timezone(dt.timedelta(hours=-5))
    rendered = schedule_to_fhir(
        schedule(
            horizon_start=dt.datetime(2027, 1, 1, 0, 0, tzinfo=new_york),
            horizon_end=dt.datetime(2027, 3, 31, tzinfo=dt.UTC),
        )
    )
    assert_valid(rendered)
    assert rendered["planningHorizon"] == {
        "start": "2027-01-01T05:00:00Z",
        "end": "2027-03-31T00:00:00Z",
    }


def test_an_inactive_schedule_says_so():
    rendered = schedule_to_fhir(schedule(active=False, name=None))
    assert_valid(rendered)
    assert rendered["active"] is False
    assert "comment" not in rendered


# -- what a schedule admin sends (issue 12) ------------------------------------------


def _location_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Location",
        "identifier": [{"system": "urn:example:dept", "value": "BER"}],
        "extension": [{"url": TIMEZONE, "valueCode": "Europe/Berlin"}],
        "status": "active",
        "name": "Berlin Mitte",
        "telecom": [{"system": "phone", "value": "+49 30 1234"}],
        "managingOrganization": {"reference": "Organization/org-1"},
    }
    body.update(overrides)
    return body


def test_a_location_is_read_with_its_zone_group_identifier_and_everything_else_kept():
    spec = location_from_fhir(_location_body())

    assert (spec.name, spec.timezone, spec.provider_group_id) == (
        "Berlin Mitte",
        "Europe/Berlin",
        "org-1",
    )
    assert (spec.identifier_system, spec.identifier_value, spec.active) == (
        "urn:example:dept",
        "BER",
        True,
    )
    rendered = location_to_fhir(department(document=spec.document))
    assert_valid(rendered)
    assert rendered["telecom"] == [{"system": "phone", "value": "+49 30 1234"}]
    assert {k: v for k, v in rendered.items() if k not in ("id", "meta")} == _location_body()


@pytest.mark.parametrize(
    ("change", "expression"),
    [
        ({"extension": []}, "Location.extension"),
        (
            {"extension": [{"url": TIMEZONE, "valueCode": "Europe/Berlin"}] * 2},
            "Location.extension",
        ),
        ({"name": None}, "Location.name"),
        ({"managingOrganization": None}, "Location.managingOrganization"),
        (
            {"managingOrganization": {"reference": "Practitioner/p"}},
            "Location.managingOrganization",
        ),
    ],
)
def test_a_location_without_one_zone_a_name_or_its_group_is_unprocessable(change, expression):
    body = {k: v for k, v in {**_location_body(), **change}.items() if v is not None}

    with pytest.raises(Unprocessable) as refused:
        location_from_fhir(body)

    assert refused.value.expression == expression


@pytest.mark.parametrize(
    ("status", "active"), [("active", True), ("suspended", False), ("inactive", False)]
)
def test_only_an_active_location_takes_new_sessions(status, active):
    assert location_from_fhir(_location_body(status=status)).active is active


def test_a_location_status_outside_its_value_set_is_invalid():
    with pytest.raises(InvalidResource):
        location_from_fhir(_location_body(status="closed-for-lunch"))


def test_an_organization_typed_ins_is_a_payer_and_others_provider_groups():
    ins = {"coding": [{"system": CS_ORGANIZATION_TYPE, "code": "ins"}]}
    payer = organization_from_fhir({"resourceType": "Organization", "name": "Kasse", "type": [ins]})
    group = organization_from_fhir(
        {"resourceType": "Organization", "name": "Spree", "active": False}
    )

    assert payer.kind is OrganizationKind.PAYER and payer.active
    assert group.kind is OrganizationKind.PROVIDER_GROUP and not group.active
    with pytest.raises(Unprocessable) as nameless:
        organization_from_fhir({"resourceType": "Organization"})
    assert nameless.value.expression == "Organization.name"


def test_a_practitioner_is_read_from_its_official_name():
    spec = practitioner_from_fhir(
        {
            "resourceType": "Practitioner",
            "active": False,
            "name": [
                {"use": "nickname", "given": ["Lenny"]},
                {
                    "use": "official",
                    "family": "Schulz",
                    "given": ["Lena", "Marie"],
                    "prefix": ["Dr."],
                },
            ],
        }
    )

    assert (spec.family, spec.given, spec.prefix, spec.active) == (
        "Schulz",
        "Lena Marie",
        "Dr.",
        False,
    )
    rendered = practitioner_to_fhir(provider(document=spec.document, active=False))
    assert_valid(rendered)
    assert rendered["active"] is False


def test_a_column_made_inactive_department_renders_as_inactive():
    rendered = location_to_fhir(department(active=False))
    assert_valid(rendered)
    assert rendered["status"] == "inactive"

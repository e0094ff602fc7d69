"""Organization, Location, Practitioner and Schedule as rendered from the store."""

from __future__ import annotations

import datetime as dt

from mappings.directory import (
    location_to_fhir,
    organization_to_fhir,
    practitioner_to_fhir,
    schedule_to_fhir,
)
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

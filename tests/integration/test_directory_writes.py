"""The clinic's directory through FHIR (issue 12, item 1): provider groups, departments
and providers created and updated, schedules updated, behind __schedule.manage; what is
already booked never moves; inactive providers and departments take no new sessions."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, select

from fhir_facade.auth import AUDIT_READ
from mappings.codes import EXT_TIMEZONE
from store.models import Department, GroupSession, Provider, ProviderGroup
from tests.conftest import ADMIN_SCOPE, STAFF_SCOPE
from tests.factories import make_clinic, make_patient, make_session
from tests.integration.helpers import book, fhir, outcome, post, put, slot

SOON = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).replace(
    hour=9, minute=0, second=0, microsecond=0
)


def organization(name: str = "Spree Mental Health GmbH", **elements: Any) -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "identifier": [{"system": "urn:example:org", "value": name}],
        "active": True,
        "name": name,
        **elements,
    }


def location(group_id: str, zone: str | None = "Europe/Berlin", **elements: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Location",
        "identifier": [{"system": "urn:example:dept", "value": "BER"}],
        "status": "active",
        "name": "Berlin Mitte",
        "managingOrganization": {"reference": f"Organization/{group_id}"},
    }
    if zone is not None:
        body["extension"] = [{"url": EXT_TIMEZONE, "valueCode": zone}]
    body.update(elements)
    return body


def practitioner(family: str = "Schulz", **elements: Any) -> dict[str, Any]:
    return {
        "resourceType": "Practitioner",
        "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1999999999"}],
        "active": True,
        "name": [{"use": "official", "family": family, "given": ["Lena"], "prefix": ["Dr."]}],
        **elements,
    }


@pytest.fixture
def clinic(database):
    return database.write(make_clinic)


def counts(database) -> tuple[int, int, int]:
    with database.reading() as db:
        return tuple(  # type: ignore[return-value]
            db.scalar(select(func.count()).select_from(kind)) or 0
            for kind in (ProviderGroup, Department, Provider)
        )


def test_a_berlin_department_is_created_with_its_group_and_provider_and_read_back(
    client, mint, database
):
    admin = mint(f"{ADMIN_SCOPE} user/AuditEvent.rs {AUDIT_READ}")

    group = fhir(post(client, "/fhir/Organization", organization(), admin), 201)
    department = fhir(post(client, "/fhir/Location", location(group["id"]), admin), 201)
    provider = fhir(post(client, "/fhir/Practitioner", practitioner(), admin), 201)

    for created in (group, department, provider):
        kind = created["resourceType"]
        read = client.get(f"/fhir/{kind}/{created['id']}", headers=admin)
        assert fhir(read, 200) == created
        assert read.headers["ETag"] == 'W/"1"'
        audit = fhir(
            client.get(f"/fhir/AuditEvent?entity={kind}/{created['id']}", headers=admin), 200
        )
        assert audit["total"] == 1, kind
    assert department["extension"] == [{"url": EXT_TIMEZONE, "valueCode": "Europe/Berlin"}]
    found = fhir(client.get("/fhir/Location?identifier=urn:example:dept|BER", headers=admin), 200)
    assert [e["resource"]["id"] for e in found["entry"]] == [department["id"]]
    with database.reading() as db:
        stored = db.get(Department, department["id"])
        assert stored is not None
        assert (stored.timezone, stored.provider_group_id) == ("Europe/Berlin", group["id"])


@pytest.mark.parametrize(
    ("zone", "status", "code", "expression"),
    [
        (None, 422, "processing", "Location.extension"),
        ("Mars/Olympus_Mons", 422, "business-rule", "Location.extension"),
        ("CET+1", 422, "business-rule", "Location.extension"),
    ],
)
def test_a_department_needs_a_valid_iana_time_zone(
    client, mint, database, clinic, zone, status, code, expression
):
    before = counts(database)

    response = post(client, "/fhir/Location", location(clinic.group_id, zone), mint(ADMIN_SCOPE))

    outcome(response, status, code=code, expression=expression)
    assert counts(database) == before


def test_a_department_must_belong_to_a_provider_group_not_a_payer(client, mint, database, clinic):
    admin = mint(ADMIN_SCOPE)
    payer = organization(
        "Spree Kasse",
        type=[
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/organization-type",
                        "code": "ins",
                    }
                ]
            }
        ],
    )
    payer_id = fhir(post(client, "/fhir/Organization", payer, admin), 201)["id"]

    outcome(
        post(client, "/fhir/Location", location(payer_id), admin),
        422,
        expression="Location.managingOrganization",
    )
    outcome(
        post(client, "/fhir/Location", location("org-nowhere"), admin),
        404,
        expression="Location.managingOrganization",
    )


def test_a_provider_needs_a_family_name(client, mint, database):
    body = practitioner()
    body["name"] = [{"given": ["Lena"]}]

    outcome(
        post(client, "/fhir/Practitioner", body, mint(ADMIN_SCOPE)),
        422,
        expression="Practitioner.name[0].family",
    )
    assert counts(database)[2] == 0


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/fhir/Organization", organization()),
        ("/fhir/Practitioner", practitioner()),
        ("/fhir/Location", location("org-1")),
    ],
)
def test_directory_writes_need_the_schedule_admin_permission(client, mint, database, url, body):
    before = counts(database)

    outcome(post(client, url, body, mint(STAFF_SCOPE)), 403, code="forbidden")

    assert counts(database) == before


def test_a_schedule_update_needs_the_schedule_admin_permission(client, mint, clinic):
    schedule = fhir(client.get(f"/fhir/Schedule/{clinic.schedule_id}", headers=mint()), 200)

    response = put(client, f"/fhir/Schedule/{clinic.schedule_id}", schedule, mint(STAFF_SCOPE))

    outcome(response, 403, code="forbidden")


def test_updates_honour_if_match_and_move_the_version_on(client, mint, clinic):
    admin = mint(ADMIN_SCOPE)
    current = fhir(client.get(f"/fhir/Practitioner/{clinic.provider_id}", headers=admin), 200)
    current["name"][0]["given"] = ["Ana", "Maria"]

    stale = put(
        client,
        f"/fhir/Practitioner/{clinic.provider_id}",
        current,
        {**admin, "If-Match": 'W/"7"'},
    )
    outcome(stale, 412, detail="version-mismatch")
    updated = put(
        client,
        f"/fhir/Practitioner/{clinic.provider_id}",
        current,
        {**admin, "If-Match": 'W/"1"'},
    )

    assert fhir(updated, 200)["name"][0]["given"] == ["Ana", "Maria"]
    assert updated.headers["ETag"] == 'W/"2"'


def test_a_retried_create_with_if_none_exist_creates_once(client, mint, database):
    admin = mint(ADMIN_SCOPE)
    condition = {"If-None-Exist": "identifier=http://hl7.org/fhir/sid/us-npi|1999999999"}

    first = post(client, "/fhir/Practitioner", practitioner(), {**admin, **condition})
    again = post(client, "/fhir/Practitioner", practitioner(), {**admin, **condition})

    assert fhir(first, 201)["id"] == fhir(again, 200)["id"]
    assert counts(database)[2] == 1


def _booked_session(database, clinic) -> str:
    def build(db):
        return make_session(db, clinic, start=SOON).id, make_patient(db).id

    session_id, patient_id = database.write(build)
    book(database, session_id, patient_id)
    return session_id


def test_re_zoning_a_department_with_booked_sessions_is_refused_and_changes_nothing(
    client, mint, database, clinic
):
    _booked_session(database, clinic)
    admin = mint(ADMIN_SCOPE)
    current = fhir(client.get(f"/fhir/Location/{clinic.department_id}", headers=admin), 200)
    current["extension"] = [{"url": EXT_TIMEZONE, "valueCode": "Europe/Berlin"}]

    issue = outcome(
        put(client, f"/fhir/Location/{clinic.department_id}", current, admin),
        422,
        detail="booked-sessions-would-move",
        expression="Location.extension",
    )

    assert "1 booked session" in issue["details"]["text"]
    after = fhir(client.get(f"/fhir/Location/{clinic.department_id}", headers=admin), 200)
    assert after["meta"]["versionId"] == "1"
    assert after["extension"][0]["valueCode"] == "America/New_York"


def test_re_zoning_a_department_without_bookings_keeps_its_sessions_instants(
    client, mint, database, clinic
):
    session_id = database.write(lambda db: make_session(db, clinic, start=SOON).id)
    admin = mint(ADMIN_SCOPE)
    current = fhir(client.get(f"/fhir/Location/{clinic.department_id}", headers=admin), 200)
    current["extension"] = [{"url": EXT_TIMEZONE, "valueCode": "America/Chicago"}]

    updated = fhir(put(client, f"/fhir/Location/{clinic.department_id}", current, admin), 200)

    assert updated["extension"][0]["valueCode"] == "America/Chicago"
    with database.reading() as db:
        session = db.get(GroupSession, session_id)
        assert session is not None and session.start == SOON


def test_re_pointing_a_schedule_with_booked_sessions_is_refused(client, mint, database, clinic):
    _booked_session(database, clinic)
    admin = mint(ADMIN_SCOPE)
    schedule = fhir(client.get(f"/fhir/Schedule/{clinic.schedule_id}", headers=admin), 200)
    schedule["actor"][0] = {"reference": f"Practitioner/{clinic.other_provider_id}"}

    outcome(
        put(client, f"/fhir/Schedule/{clinic.schedule_id}", schedule, admin),
        422,
        detail="booked-sessions-would-move",
        expression="Schedule.actor",
    )
    schedule["actor"][0] = {"reference": f"Practitioner/{clinic.provider_id}"}
    schedule["comment"] = "Rivera's Tuesday groups"
    updated = fhir(put(client, f"/fhir/Schedule/{clinic.schedule_id}", schedule, admin), 200)
    assert updated["comment"] == "Rivera's Tuesday groups"
    assert updated["meta"]["versionId"] == "2"


def test_an_inactive_provider_keeps_its_sessions_but_takes_no_new_ones(
    client, mint, database, clinic
):
    session_id = _booked_session(database, clinic)
    admin = mint(ADMIN_SCOPE)
    provider = fhir(client.get(f"/fhir/Practitioner/{clinic.provider_id}", headers=admin), 200)
    provider["active"] = False
    assert (
        fhir(put(client, f"/fhir/Practitioner/{clinic.provider_id}", provider, admin), 200)[
            "active"
        ]
        is False
    )

    refused = post(
        client, "/fhir/Slot", slot(clinic.schedule_id, SOON + dt.timedelta(days=7)), admin
    )

    outcome(refused, 422, detail="inactive", expression="Slot.schedule")
    assert fhir(client.get(f"/fhir/Slot/{session_id}", headers=admin), 200)["id"] == session_id
    history = fhir(client.get(f"/fhir/Appointment?slot=Slot/{session_id}", headers=admin), 200)
    assert history["total"] == 1


def test_an_inactive_department_takes_no_new_sessions(client, mint, database, clinic):
    admin = mint(ADMIN_SCOPE)
    department = fhir(client.get(f"/fhir/Location/{clinic.department_id}", headers=admin), 200)
    department["status"] = "inactive"
    fhir(put(client, f"/fhir/Location/{clinic.department_id}", department, admin), 200)

    refused = post(client, "/fhir/Slot", slot(clinic.schedule_id, SOON), admin)

    outcome(refused, 422, detail="inactive")
    with database.reading() as db:
        assert db.scalar(select(func.count()).select_from(GroupSession)) == 0


def test_a_series_preview_for_an_inactive_provider_or_department_is_refused(
    client, mint, database, clinic
):
    """$find matches no session of an inactive provider or department: it says so (422)
    instead of proposing drafts that could never be booked."""
    patient_id = database.write(lambda db: make_patient(db).id)
    database.write(lambda db: make_session(db, clinic, start=SOON))
    admin = mint(ADMIN_SCOPE)
    local = SOON.astimezone(dt.timezone(dt.timedelta(hours=-5)))  # New York in winter or not
    find = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueReference": {"reference": f"Patient/{patient_id}"}},
            {
                "name": "practitioner",
                "valueReference": {"reference": f"Practitioner/{clinic.provider_id}"},
            },
            {
                "name": "timing",
                "valueTiming": {
                    "repeat": {
                        "boundsPeriod": {"start": local.date().isoformat()},
                        "count": 2,
                        "period": 1,
                        "periodUnit": "wk",
                        "timeOfDay": [local.strftime("%H:%M:%S")],
                    }
                },
            },
        ],
    }
    assert fhir(post(client, "/fhir/Appointment/$find", find, admin), 200)["type"] == "searchset"

    department = fhir(client.get(f"/fhir/Location/{clinic.department_id}", headers=admin), 200)
    department["status"] = "suspended"
    fhir(put(client, f"/fhir/Location/{clinic.department_id}", department, admin), 200)
    outcome(post(client, "/fhir/Appointment/$find", find, admin), 422)

    department["status"] = "active"
    fhir(put(client, f"/fhir/Location/{clinic.department_id}", department, admin), 200)
    provider = fhir(client.get(f"/fhir/Practitioner/{clinic.provider_id}", headers=admin), 200)
    provider["active"] = False
    fhir(put(client, f"/fhir/Practitioner/{clinic.provider_id}", provider, admin), 200)
    outcome(
        post(client, "/fhir/Appointment/$find", find, admin),
        422,
        detail="inactive",
        expression="Parameters.parameter[practitioner]",
    )

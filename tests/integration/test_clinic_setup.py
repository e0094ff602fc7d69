"""A clinic set up from nothing through FHIR (issue 12, "done when"): one transaction
Bundle, sent twice; the same clinic imported as NDJSON; then staff book a weekly series
in each department across that zone's daylight-saving change."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from store.models import AuditRecord
from tests import clinic_setup
from tests.conftest import ADMIN_SCOPE
from tests.factories import make_patient
from tests.integration.helpers import fhir, monday_series_find, post

TODAY = dt.date.today()
KINDS = ("Organization", "Location", "Practitioner", "Schedule", "Slot")


def everything(client, headers) -> dict[str, list[dict[str, Any]]]:
    found = {}
    for kind in KINDS:
        bundle = fhir(client.get(f"/fhir/{kind}?_count=1000", headers=headers), 200)
        found[kind] = [e["resource"] for e in bundle.get("entry", [])]
    return found


def versions(client, headers) -> dict[str, str]:
    return {
        f"{kind}/{r['id']}": r["meta"]["versionId"]
        for kind, found in everything(client, headers).items()
        for r in found
    }


def audit_records(database) -> int:
    with database.reading() as db:
        return db.scalar(select(func.count()).select_from(AuditRecord)) or 0


def send_clinic(client, headers) -> list[str]:
    """POST the clinic's transaction Bundle; the entries' statuses."""
    answer = fhir(post(client, "/fhir", clinic_setup.transaction(TODAY), headers), 200)
    assert answer["type"] == "transaction-response"
    return [e["response"]["status"] for e in answer["entry"]]


def run_import(app, tmp_path: Path, text: str, *options: str) -> Any:
    path = tmp_path / "clinic.ndjson"
    path.write_text(text)
    return app.test_cli_runner().invoke(args=["import", str(path), *options])


@pytest.fixture
def admin(mint):
    return mint(ADMIN_SCOPE)


def test_a_clinic_is_set_up_by_one_transaction_and_sending_it_again_changes_nothing(
    app, client, admin, database, tmp_path
):
    count = len(clinic_setup.resources(TODAY))

    assert send_clinic(client, admin) == ["201 Created"] * count

    stored = everything(client, admin)
    assert clinic_setup.stored_view(stored) == clinic_setup.sent_view(TODAY)
    zones = {r["name"]: r["extension"][0]["valueCode"] for r in stored["Location"]}
    assert sorted(zones.values()) == ["America/New_York", "Europe/Berlin"]
    before, audited = versions(client, admin), audit_records(database)

    assert send_clinic(client, admin) == ["200 OK"] * count
    assert versions(client, admin) == before
    assert audit_records(database) == audited

    result = run_import(app, tmp_path, clinic_setup.ndjson(TODAY))
    assert result.exit_code == 0, result.output
    assert "created: 0\n" in result.output and "updated: 0\n" in result.output
    assert f"unchanged: {count} " in result.output
    assert versions(client, admin) == before
    assert audit_records(database) == audited


def test_importing_the_clinic_as_ndjson_gives_what_the_transaction_gives(
    app, client, admin, tmp_path
):
    count = len(clinic_setup.resources(TODAY))

    result = run_import(app, tmp_path, clinic_setup.ndjson(TODAY))

    assert result.exit_code == 0, result.output
    assert f"created: {count} " in result.output
    assert "refused: 0" in result.output
    assert clinic_setup.stored_view(everything(client, admin)) == clinic_setup.sent_view(TODAY)
    before = versions(client, admin)
    assert send_clinic(client, admin) == ["200 OK"] * count
    again = run_import(app, tmp_path, clinic_setup.ndjson(TODAY))
    assert f"unchanged: {count} " in again.output
    assert versions(client, admin) == before


def _weekly_series(patient_id: str, practitioner_id: str, first: dt.date) -> dict[str, Any]:
    return monday_series_find(
        patient_id, practitioner_id, first.isoformat(), clinic_setup.WEEKS, frequency=1
    )


@pytest.mark.parametrize("department", clinic_setup.DEPARTMENTS, ids=lambda d: d.code)
def test_staff_book_a_weekly_series_across_the_zones_dst_change_at_the_same_local_time(
    client, admin, database, department
):
    send_clinic(client, admin)
    patient_id = database.write(lambda db: make_patient(db).id)
    found = fhir(
        client.get(
            f"/fhir/Practitioner?identifier={clinic_setup.SYSTEM}|prac-{department.code.lower()}",
            headers=admin,
        ),
        200,
    )
    (practitioner,) = [e["resource"] for e in found["entry"]]
    first = clinic_setup.first_monday(department, TODAY)

    preview = fhir(
        post(
            client,
            "/fhir/Appointment/$find",
            _weekly_series(patient_id, practitioner["id"], first),
            admin,
        ),
        200,
    )
    proposals = [e["resource"] for e in preview["entry"] if e["search"]["mode"] == "match"]
    assert len(proposals) == clinic_setup.WEEKS
    assert all(p.get("slot") for p in proposals), "every Monday matches its session"
    booked = fhir(
        post(
            client,
            "/fhir/Appointment/$book",
            {
                "resourceType": "Parameters",
                "parameter": [{"name": "appointment-resource", "resource": p} for p in proposals],
            },
            admin,
        ),
        200,
    )

    appointments = [
        e["resource"] for e in booked["entry"] if e["resource"]["resourceType"] == "Appointment"
    ]
    assert [a["status"] for a in appointments] == ["booked"] * clinic_setup.WEEKS
    zone = ZoneInfo(department.zone)
    starts = [dt.datetime.fromisoformat(a["start"]).astimezone(zone) for a in appointments]
    assert {s.time() for s in starts} == {clinic_setup.LOCAL_TIME}
    assert {s.weekday() for s in starts} == {0}
    assert len({s.utcoffset() for s in starts}) == 2, "the series crosses the DST change"

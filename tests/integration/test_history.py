"""Version reads (vread) and instance history: `Location` and `meta.versionId` resolve,
past versions keep their past content, and visibility follows the record as it is now."""

from __future__ import annotations

from fhir_facade.auth import PATIENT_BLOCKED
from tests.factories import make_clinic, make_patient, make_session
from tests.integration.helpers import appointment, capacity_of, fhir, outcome, post, put

BASE = "http://testserver/fhir"


def _world(database):
    def build(db):
        clinic = make_clinic(db)
        session = make_session(db, clinic, capacity=5)
        return session.id, make_patient(db).id

    return database.write(build)


def _book(client, mint, session_id: str, patient_id: str, **headers: str):
    response = post(
        client, "/fhir/Appointment", appointment(session_id, patient_id), {**mint(), **headers}
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    return response


def test_the_location_of_a_minimal_create_resolves_to_the_stored_version(client, database, mint):
    session_id, patient_id = _world(database)

    created = _book(client, mint, session_id, patient_id, Prefer="return=minimal")

    location = created.headers["Location"]
    assert location.startswith(f"{BASE}/Appointment/") and location.endswith("/_history/1")
    version = fhir(client.get(location.removeprefix("http://testserver"), headers=mint()), 200)
    assert version["meta"]["versionId"] == "1" and version["status"] == "booked"


def test_a_past_version_keeps_its_past_content_after_a_cancel(client, database, mint):
    session_id, patient_id = _world(database)
    booked = fhir(_book(client, mint, session_id, patient_id), 201)
    slot_after_booking = fhir(client.get(f"/fhir/Slot/{session_id}", headers=mint()), 200)
    cancelled = {**booked, "status": "cancelled"}
    fhir(put(client, f"/fhir/Appointment/{booked['id']}", cancelled, mint()), 200)

    first = client.get(f"/fhir/Appointment/{booked['id']}/_history/1", headers=mint())
    second = client.get(f"/fhir/Appointment/{booked['id']}/_history/2", headers=mint())

    assert fhir(first, 200) == booked
    assert first.headers["ETag"] == 'W/"1"'
    assert fhir(second, 200)["status"] == "cancelled"
    # The Slot's version moved with each place taken and given back; its past is kept too.
    old_slot = client.get(
        f"/fhir/Slot/{session_id}/_history/{slot_after_booking['meta']['versionId']}",
        headers=mint(),
    )
    assert fhir(old_slot, 200) == slot_after_booking
    assert capacity_of(slot_after_booking) == "1/5"
    now = fhir(client.get(f"/fhir/Slot/{session_id}", headers=mint()), 200)
    assert capacity_of(now) == "0/5"
    assert int(now["meta"]["versionId"]) == int(slot_after_booking["meta"]["versionId"]) + 1


def test_instance_history_lists_every_version_newest_first(client, database, mint):
    session_id, patient_id = _world(database)
    booked = fhir(_book(client, mint, session_id, patient_id), 201)
    fhir(
        put(client, f"/fhir/Appointment/{booked['id']}", {**booked, "status": "cancelled"}, mint()),
        200,
    )

    bundle = fhir(client.get(f"/fhir/Appointment/{booked['id']}/_history", headers=mint()), 200)

    assert bundle["type"] == "history" and bundle["total"] == 2
    assert [e["resource"]["meta"]["versionId"] for e in bundle["entry"]] == ["2", "1"]
    assert [e["resource"]["status"] for e in bundle["entry"]] == ["cancelled", "booked"]
    assert [e["request"]["method"] for e in bundle["entry"]] == ["PUT", "POST"]
    assert bundle["entry"][1]["response"]["status"] == "201 Created"
    paged = fhir(
        client.get(f"/fhir/Appointment/{booked['id']}/_history?_count=1", headers=mint()), 200
    )
    assert [e["resource"]["meta"]["versionId"] for e in paged["entry"]] == ["2"]
    next_url = next(link["url"] for link in paged["link"] if link["relation"] == "next")
    rest = fhir(client.get(next_url.removeprefix("http://testserver"), headers=mint()), 200)
    assert [e["resource"]["meta"]["versionId"] for e in rest["entry"]] == ["1"]


def test_an_unknown_version_or_id_is_404_and_a_bad_history_parameter_400(client, database, mint):
    session_id, patient_id = _world(database)
    booked = fhir(_book(client, mint, session_id, patient_id), 201)

    for url in (
        f"/fhir/Appointment/{booked['id']}/_history/7",
        f"/fhir/Appointment/{booked['id']}/_history/x",
        "/fhir/Appointment/nobody/_history/1",
        "/fhir/Appointment/nobody/_history",
    ):
        outcome(client.get(url, headers=mint()), 404, code="not-found")
    outcome(
        client.get(f"/fhir/Appointment/{booked['id']}/_history?_since=2020", headers=mint()),
        400,
        expression="_since",
    )


def test_a_patient_restricted_now_hides_every_version_of_their_data(client, database, mint, app):
    session_id, patient_id = _world(database)
    booked = fhir(_book(client, mint, session_id, patient_id), 201)
    privacy = mint(f"user/*.cruds {PATIENT_BLOCKED}")
    patient = fhir(client.get(f"/fhir/Patient/{patient_id}", headers=privacy), 200)
    patient = fhir(put(client, f"/fhir/Patient/{patient_id}", patient, privacy), 200)  # kept
    restricted = {
        **patient,
        "meta": {
            "security": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
            ]
        },
    }
    fhir(put(client, f"/fhir/Patient/{patient_id}", restricted, privacy), 200)

    coverage_id = booked["supportingInformation"][0]["reference"].split("/")[1]
    for url in (
        f"/fhir/Patient/{patient_id}/_history/{patient['meta']['versionId']}",
        f"/fhir/Patient/{patient_id}/_history",
        f"/fhir/Appointment/{booked['id']}/_history/1",
        f"/fhir/Appointment/{booked['id']}/_history",
        f"/fhir/Coverage/{coverage_id}/_history",
    ):
        outcome(client.get(url, headers=mint()), 404, code="not-found")
        assert client.get(url, headers=privacy).status_code == 200, url

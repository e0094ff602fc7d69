"""Batch and transaction Bundles at POST /fhir: an EHR sends Patient, Coverage and
Appointment together."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from store.models import Booking, Patient
from tests.conftest import STAFF_SCOPE
from tests.factories import make_clinic, make_patient, make_session
from tests.validation import assert_valid

SELF_PAY = "http://terminology.hl7.org/CodeSystem/coverage-selfpay"
MRN = "urn:example:mrn"


def _session(database: Any, capacity: int = 10, booked: int = 0) -> str:
    def build(db: Any) -> str:
        clinic = make_clinic(db)
        session = make_session(db, clinic, capacity=capacity)
        return session.id

    session_id = database.write(build)
    for _ in range(booked):
        _book_someone(database, session_id)
    return session_id


def _book_someone(database: Any, session_id: str) -> None:
    from store.access import STAFF
    from store.booking import BookingRequest, book_patient

    def work(db: Any) -> None:
        patient = make_patient(db)
        book_patient(db, BookingRequest(patient_id=patient.id, session_id=session_id), STAFF)

    database.write(work)


def _new_patient_visit(session_id: str, *, mrn: str = "NEW-1") -> dict[str, Any]:
    patient = "urn:uuid:5d4a0f1e-0000-4000-8000-000000000001"
    coverage = "urn:uuid:5d4a0f1e-0000-4000-8000-000000000002"
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:5d4a0f1e-0000-4000-8000-000000000003",
                "resource": {
                    "resourceType": "Appointment",
                    "status": "booked",
                    "slot": [{"reference": f"Slot/{session_id}"}],
                    "participant": [{"actor": {"reference": patient}, "status": "accepted"}],
                    "supportingInformation": [{"reference": coverage}],
                },
                "request": {"method": "POST", "url": "Appointment"},
            },
            {
                "fullUrl": patient,
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": MRN, "value": mrn}],
                    "name": [{"family": "Okonkwo", "given": ["Ada"]}],
                },
                "request": {
                    "method": "POST",
                    "url": "Patient",
                    "ifNoneExist": f"identifier={MRN}|{mrn}",
                },
            },
            {
                "fullUrl": coverage,
                "resource": {
                    "resourceType": "Coverage",
                    "status": "active",
                    "type": {"coding": [{"system": SELF_PAY, "code": "pay"}]},
                    "beneficiary": {"reference": patient},
                    "payor": [{"reference": patient}],
                },
                "request": {"method": "POST", "url": "Coverage"},
            },
        ],
    }


def _counts(database: Any) -> tuple[int, int]:
    with database.reading() as db:
        return (
            db.scalar(select(func.count()).select_from(Patient)) or 0,
            db.scalar(select(func.count()).select_from(Booking)) or 0,
        )


def _booked(client: Any, session_id: str, headers: dict[str, str]) -> int:
    slot = client.get(f"/fhir/Slot/{session_id}", headers=headers).json
    parts = slot["extension"][0]["extension"]
    return int(next(p["valueUnsignedInt"] for p in parts if p["url"] == "booked"))


def test_a_transaction_registers_insures_and_books_a_new_patient_at_once(client, database, mint):
    session_id = _session(database)
    headers = mint(STAFF_SCOPE)

    response = client.post("/fhir", json=_new_patient_visit(session_id), headers=headers)

    assert response.status_code == 200, response.json
    bundle = response.json
    assert_valid(bundle)
    assert bundle["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in bundle["entry"]]
    assert statuses == ["201 Created", "201 Created", "201 Created"]
    appointment, patient, coverage = (e["resource"] for e in bundle["entry"])
    assert appointment["participant"][0]["actor"]["reference"] == f"Patient/{patient['id']}"
    assert appointment["supportingInformation"] == [{"reference": f"Coverage/{coverage['id']}"}]
    assert coverage["beneficiary"]["reference"] == f"Patient/{patient['id']}"
    assert _booked(client, session_id, headers) == 1


def test_a_full_session_fails_the_whole_transaction_and_stores_nothing(client, database, mint):
    session_id = _session(database, capacity=1, booked=1)
    headers = mint(STAFF_SCOPE)
    before = _counts(database)

    response = client.post("/fhir", json=_new_patient_visit(session_id), headers=headers)

    assert response.status_code == 409
    outcome = response.json
    assert_valid(outcome)
    issue = outcome["issue"][0]
    assert issue["details"]["coding"][0]["code"] == "session-full"
    assert issue["expression"] == ["Bundle.entry[0].resource.slot"]
    assert _counts(database) == before
    assert _booked(client, session_id, headers) == 1


def test_if_none_exist_inside_a_transaction_reuses_the_known_patient(client, database, mint):
    session_id = _session(database)
    headers = mint(STAFF_SCOPE)
    first = client.post("/fhir", json=_new_patient_visit(session_id), headers=headers)
    assert first.status_code == 200
    known = first.json["entry"][1]["resource"]["id"]
    other = _session(database)

    second = client.post("/fhir", json=_new_patient_visit(other), headers=headers)

    assert second.status_code == 200, second.json
    entries = second.json["entry"]
    assert entries[1]["response"]["status"] == "200 OK"
    assert entries[1]["resource"]["id"] == known
    assert entries[0]["resource"]["participant"][0]["actor"]["reference"] == f"Patient/{known}"


def test_a_batch_reports_each_entry_and_keeps_what_succeeded(client, database, mint):
    roomy = _session(database)
    full = _session(database, capacity=1, booked=1)
    patients = database.write(lambda db: [make_patient(db).id for _ in range(2)])
    headers = mint(STAFF_SCOPE)

    def booking(session_id: str, patient_id: str) -> dict[str, Any]:
        return {
            "resource": {
                "resourceType": "Appointment",
                "status": "booked",
                "slot": [{"reference": f"Slot/{session_id}"}],
                "participant": [
                    {"actor": {"reference": f"Patient/{patient_id}"}, "status": "accepted"}
                ],
            },
            "request": {"method": "POST", "url": "Appointment"},
        }

    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            booking(roomy, patients[0]),
            booking(full, patients[1]),
            {"request": {"method": "GET", "url": f"Slot/{roomy}"}},
            {"request": {"method": "GET", "url": f"Appointment?slot=Slot/{roomy}"}},
        ],
    }

    response = client.post("/fhir", json=batch, headers=headers)

    assert response.status_code == 200, response.json
    bundle = response.json
    assert_valid(bundle)
    assert bundle["type"] == "batch-response"
    booked, refused, slot, search = bundle["entry"]
    assert booked["response"]["status"] == "201 Created"
    assert refused["response"]["status"] == "409"
    assert refused["response"]["outcome"]["issue"][0]["details"]["coding"][0]["code"] == (
        "session-full"
    )
    assert "resource" not in refused
    assert slot["resource"]["id"] == roomy
    assert search["resource"]["total"] == 1
    assert _booked(client, roomy, headers) == 1


def test_only_batch_and_transaction_bundles_are_accepted(client, database, mint):
    headers = mint(STAFF_SCOPE)
    for bundle, expression in (
        ({"resourceType": "Bundle", "type": "collection"}, "Bundle.type"),
        (
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [{"request": {"method": "DELETE", "url": "Patient/1"}}],
            },
            "Bundle.entry[0].request",
        ),
    ):
        response = client.post("/fhir", json=bundle, headers=headers)
        assert response.status_code == 400, response.json
        assert_valid(response.json)
        assert response.json["issue"][0]["expression"] == [expression]


def test_a_transaction_needs_the_scopes_of_every_entry(client, database, mint):
    session_id = _session(database)
    before = _counts(database)

    response = client.post(
        "/fhir", json=_new_patient_visit(session_id), headers=mint("user/Appointment.cruds")
    )

    assert response.status_code == 403
    assert _counts(database) == before

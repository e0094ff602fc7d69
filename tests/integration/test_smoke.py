from tests.factories import make_clinic, make_patient, make_session


def test_booking_a_patient_raises_the_booked_count(client, database, mint):
    def setup(db):
        clinic = make_clinic(db)
        return make_session(db, clinic, capacity=2).id, make_patient(db).id

    session_id, patient_id = database.write(setup)
    body = {
        "resourceType": "Appointment",
        "status": "booked",
        "slot": [{"reference": f"Slot/{session_id}"}],
        "participant": [{"actor": {"reference": f"Patient/{patient_id}"}, "status": "accepted"}],
    }
    created = client.post("/fhir/Appointment", json=body, headers=mint())
    assert created.status_code == 201, created.json
    slot = client.get(f"/fhir/Slot/{session_id}", headers=mint()).json
    assert slot["extension"][0]["extension"][1] == {"url": "booked", "valueUnsignedInt": 1}

"""The audit trail (issue 3, point 6; DESIGN §7): every create, update and cancel, and
every read or search that discloses a restricted patient's data, leaves a FHIR
AuditEvent (who, what, when, outcome) written in the transaction of the change; a
refused change leaves a failure record and no success record. Only callers with the
`__audit.read` permission (and an AuditEvent read scope) may read or search the trail.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from mappings.audit import AGENT_SYSTEM
from store.access import PRIVACY_OFFICER as PRIVACY
from store.booking import BookingRequest, book_patient
from store.direct import IN_BACKGROUND
from store.models import AuditRecord, Booking, Patient
from tests.factories import MONDAY, make_clinic, make_coverage, make_patient, make_session
from tests.integration.helpers import (
    appointment,
    book,
    entries,
    fhir,
    ids,
    monday_series_find,
    outcome,
    slot,
    state,
)
from tests.integration.privacy_helpers import (
    AUDITOR,
    PLAIN_AUDITOR,
    PRIVACY_OFFICER,
    STAFF,
    coverage_body,
    create,
    patient_body,
    send,
    token,
)

ADMIN = "user/*.cruds __schedule.manage"
INTERACTION = "http://hl7.org/fhir/restful-interaction"


def trail(client, app, **params: str) -> list[dict[str, Any]]:
    """The AuditEvents an auditor finds with `params` (newest first)."""
    headers = token(app, AUDITOR, "auditor")
    response = client.get(
        "/fhir/AuditEvent", query_string={**params, "_count": "200"}, headers=headers
    )
    return entries(fhir(response, 200))


def summary(event: dict[str, Any]) -> tuple[str, str, str, str]:
    """(action, subtype, first entity, outcome) of an AuditEvent."""
    entity = event["entity"][0]["what"]["reference"] if event.get("entity") else ""
    return event["action"], event["subtype"][0]["code"], entity, event["outcome"]


def agent_of(event: dict[str, Any]) -> str:
    (agent,) = event["agent"]
    assert agent["requestor"] is True
    assert agent["who"]["identifier"]["system"] == AGENT_SYSTEM
    value: str = agent["who"]["identifier"]["value"]
    return value


def audit_count(database) -> int:
    with database.reading() as db:
        return db.scalar(select(func.count()).select_from(AuditRecord)) or 0


def test_every_create_update_and_cancel_writes_a_success_audit_event(app, client, database):
    clinic = database.write(make_clinic)
    alice = token(app, ADMIN, "alice")
    patient = create(client, patient_body("Audited", "Ann"), alice)
    pid = patient["id"]
    fhir(send(client, "PUT", f"/fhir/Patient/{pid}", {**patient, "gender": "other"}, alice), 200)
    coverage = create(client, coverage_body(pid, payor=f"Patient/{pid}", self_pay=True), alice)
    cid = coverage["id"]
    fhir(send(client, "PUT", f"/fhir/Coverage/{cid}", {**coverage, "order": 1}, alice), 200)
    session = create(client, slot(clinic.schedule_id, MONDAY), alice)
    sid = session["id"]
    booking = create(client, appointment(sid, pid), alice)
    aid = booking["id"]
    cancel = {**booking, "status": "cancelled"}
    fhir(send(client, "PUT", f"/fhir/Appointment/{aid}", cancel, alice), 200)

    events = trail(client, app, agent="alice")

    assert sorted(summary(e) for e in events) == sorted(
        [
            ("C", "create", f"Patient/{pid}", "0"),
            ("U", "update", f"Patient/{pid}", "0"),
            ("C", "create", f"Coverage/{cid}", "0"),
            ("U", "update", f"Coverage/{cid}", "0"),
            ("C", "create", f"Slot/{sid}", "0"),
            ("C", "create", f"Appointment/{aid}", "0"),
            ("U", "update", f"Appointment/{aid}", "0"),
        ]
    )
    assert {agent_of(e) for e in events} == {"alice"}
    for event in events:
        assert event["type"]["code"] == "rest"
        assert event["subtype"][0]["system"] == INTERACTION
        assert event["recorded"] == event["meta"]["lastUpdated"]
    # Records about a patient's data also name the patient.
    (booked,) = [e for e in events if summary(e)[:3] == ("C", "create", f"Appointment/{aid}")]
    assert {"what": {"reference": f"Patient/{pid}"}} in booked["entity"]
    recorded = [e["recorded"] for e in events]
    assert recorded == sorted(recorded, reverse=True)  # newest first


def test_an_audit_record_shares_the_transaction_of_the_change_it_records(
    app, client, database, monkeypatch
):
    def broken_record(store, entry):
        raise RuntimeError("the audit trail is unavailable")

    monkeypatch.setattr("store.scope.Store.record", broken_record)
    with database.reading() as db:
        patients = db.scalar(select(func.count()).select_from(Patient))

    response = send(client, "POST", "/fhir/Patient", patient_body("Unrecorded"), token(app, STAFF))

    assert response.status_code == 500
    with database.reading() as db:
        assert db.scalar(select(func.count()).select_from(Patient)) == patients
    assert audit_count(database) == 0


def test_a_refused_booking_writes_a_failure_record_and_no_success_record(app, client, database):
    def build(db):
        clinic = make_clinic(db)
        full = make_session(db, clinic, capacity=1).id
        spare = make_session(db, clinic, start=MONDAY + dt.timedelta(days=7)).id
        patient, other = make_patient(db).id, make_patient(db, family="Other").id
        others_coverage = make_coverage(db, other, self_pay=True).id
        return full, spare, patient, other, others_coverage

    full, spare, patient, other, others_coverage = database.write(build)
    book(database, full, other)
    headers = token(app, STAFF, "bob")
    before = state(database)

    outcome(send(client, "POST", "/fhir/Appointment", appointment(full, patient), headers), 409)
    wrong_coverage = appointment(
        spare, patient, supportingInformation=[{"reference": f"Coverage/{others_coverage}"}]
    )
    outcome(send(client, "POST", "/fhir/Appointment", wrong_coverage, headers), 422)

    assert state(database) == before
    events = trail(client, app, agent="bob")
    assert [(e["action"], e["outcome"]) for e in events] == [("C", "4"), ("C", "4")]
    assert {e["entity"][0]["what"]["reference"] for e in events} == {f"Patient/{patient}"}
    descriptions = [e["outcomeDesc"] for e in events]
    assert any("is full" in d for d in descriptions), descriptions
    assert any(f"Coverage/{others_coverage}" in d for d in descriptions), descriptions
    with database.reading() as db:
        successes = db.scalars(
            select(AuditRecord).where(AuditRecord.agent == "bob", AuditRecord.outcome == "0")
        ).all()
    assert successes == []


@pytest.fixture
def restricted_world(database):
    """A restricted patient R booked into a session with a visible patient V."""

    def build(db):
        clinic = make_clinic(db)
        session = make_session(db, clinic).id
        hidden = make_patient(db, family="Zzyzx", given="Quillon", restricted=True)
        visible = make_patient(db, family="Visible", given="Vera")
        return session, hidden.id, visible.id

    session, hidden, visible = database.write(build)

    def book_both(db):
        return [
            book_patient(db, BookingRequest(patient_id=p, session_id=session), PRIVACY).booking.id
            for p in (hidden, visible)
        ]

    booking_ids = database.write(book_both)
    with database.reading() as db:
        coverage = db.get(Booking, booking_ids[0]).coverages[0].coverage_id
    return {
        "session": session,
        "R": hidden,
        "V": visible,
        "Ra": booking_ids[0],
        "Va": booking_ids[1],
        "Rc": coverage,
    }


def test_reading_or_searching_a_restricted_patients_data_is_audited_naming_them(
    app, client, restricted_world
):
    w = restricted_world
    officer = token(app, PRIVACY_OFFICER, "officer")
    reads = [
        (f"/fhir/Patient/{w['R']}", "R", "read"),
        ("/fhir/Patient?family=zzy", "E", "search-type"),
        (f"/fhir/Appointment/{w['Ra']}", "R", "read"),
        (f"/fhir/Appointment?slot=Slot/{w['session']}", "E", "search-type"),
        (f"/fhir/Coverage/{w['Rc']}", "R", "read"),
        (f"/fhir/Coverage?patient={w['R']}", "E", "search-type"),
        (f"/fhir/Slot?_id={w['session']}&_revinclude=Appointment:slot", "E", "search-type"),
        (f"/fhir/Appointment?_id={w['Va']}&_include=Appointment:patient", None, None),
        (f"/fhir/Patient/{w['V']}", None, None),
        ("/fhir/Patient?family=visible", None, None),
    ]
    for url, action, subtype in reads:
        before = trail(client, app, agent="officer")

        fhir(client.get(url, headers=officer), 200)

        after = trail(client, app, agent="officer")
        new = after[: len(after) - len(before)]  # newest first
        if action is None:
            assert new == [], url
            continue
        (event,) = new
        assert summary(event) == (action, subtype, f"Patient/{w['R']}", "0"), url
        assert agent_of(event) == "officer"


def test_reads_that_disclose_no_restricted_data_are_not_audited(app, client, restricted_world):
    w = restricted_world
    staff = token(app, STAFF, "front-desk")
    for url in (
        f"/fhir/Patient/{w['V']}",
        "/fhir/Patient?family=zzy",
        "/fhir/Patient",
        f"/fhir/Appointment?slot=Slot/{w['session']}",
        "/fhir/Coverage",
    ):
        client.get(url, headers=staff)
    outcome(client.get(f"/fhir/Patient/{w['R']}", headers=staff), 404)

    assert trail(client, app, agent="front-desk") == []


def test_only_auditors_may_read_or_search_the_audit_trail(app, client, restricted_world):
    create(client, patient_body("Anyone"), token(app, STAFF))  # something to hide
    (event,) = trail(client, app)
    scopes = [
        STAFF,
        PRIVACY_OFFICER,
        ADMIN,
        "user/*.cruds __schedule.manage __patient.blocked",
        "user/AuditEvent.rs",
        "user/*.* __patient.blocked",
        "__audit.read",
        "patient/AuditEvent.rs __audit.read",
    ]
    for scope in scopes:
        headers = token(app, scope)
        for response in (
            client.get("/fhir/AuditEvent", headers=headers),
            client.get(f"/fhir/AuditEvent?patient={restricted_world['R']}", headers=headers),
            client.get(f"/fhir/AuditEvent/{event['id']}", headers=headers),
            client.post("/fhir/AuditEvent/_search", data={"action": "C"}, headers=headers),
        ):
            issue = outcome(response, 403, code="forbidden")
            assert event["id"] not in response.get_data(as_text=True), scope
            text = issue["details"]["text"]
            assert "AuditEvent" in text or "__audit.read" in text, (scope, text)
    for scope in (AUDITOR, "user/*.rs __audit.read", "system/AuditEvent.read __audit.read"):
        bundle = fhir(client.get("/fhir/AuditEvent", headers=token(app, scope)), 200)
        assert ids(bundle) == [event["id"]], scope


def test_the_audit_trail_cannot_be_written_through_the_api(app, client):
    auditor = token(app, f"{AUDITOR} user/*.cruds")
    forged = {
        "resourceType": "AuditEvent",
        "type": {"code": "rest"},
        "recorded": "2027-01-01T00:00:00Z",
        "agent": [{"requestor": True}],
        "source": {"observer": {"display": "x"}},
    }

    assert send(client, "POST", "/fhir/AuditEvent", forged, auditor).status_code == 405
    assert send(client, "PUT", "/fhir/AuditEvent/x", forged, auditor).status_code == 405


def test_auditors_search_the_trail_by_patient_entity_agent_action_and_date(app, client, database):
    clinic = database.write(make_clinic)
    session = database.write(lambda db: make_session(db, clinic).id)
    alice, bob = token(app, ADMIN, "alice"), token(app, STAFF, "bob")
    ann = create(client, patient_body("Ann", "A"), alice)
    ben = create(client, patient_body("Ben", "B"), bob)
    fhir(send(client, "PUT", f"/fhir/Patient/{ann['id']}", {**ann, "gender": "other"}, bob), 200)
    ann_pay = create(
        client, coverage_body(ann["id"], payor=f"Patient/{ann['id']}", self_pay=True), alice
    )
    visit = create(client, appointment(session, ann["id"]), alice)
    fhir(
        send(
            client, "PUT", f"/fhir/Appointment/{visit['id']}", {**visit, "status": "cancelled"}, bob
        ),
        200,
    )
    new_slot = create(client, slot(clinic.schedule_id, MONDAY), alice)
    today = dt.datetime.now(dt.UTC).date()
    everything = trail(client, app)
    assert len(everything) == 7
    by_id = {e["id"]: summary(e) for e in everything}

    def found(**params: str) -> list[tuple[str, str, str, str]]:
        return sorted(summary(e) for e in trail(client, app, **params))

    def expected(*wanted: tuple[str, str, str, str]) -> list[tuple[str, str, str, str]]:
        return sorted(wanted)

    ann_created = ("C", "create", f"Patient/{ann['id']}", "0")
    ann_updated = ("U", "update", f"Patient/{ann['id']}", "0")
    ben_created = ("C", "create", f"Patient/{ben['id']}", "0")
    pay_created = ("C", "create", f"Coverage/{ann_pay['id']}", "0")
    booked = ("C", "create", f"Appointment/{visit['id']}", "0")
    cancelled = ("U", "update", f"Appointment/{visit['id']}", "0")
    slot_created = ("C", "create", f"Slot/{new_slot['id']}", "0")
    assert sorted(by_id.values()) == expected(
        ann_created, ann_updated, ben_created, pay_created, booked, cancelled, slot_created
    )
    ann_all = expected(ann_created, ann_updated, pay_created, booked, cancelled)
    assert found(patient=f"Patient/{ann['id']}") == ann_all
    assert found(patient=ann["id"]) == ann_all
    assert found(entity=f"Appointment/{visit['id']}") == expected(booked, cancelled)
    assert found(entity=f"Patient/{ann['id']}") == expected(ann_created, ann_updated)
    assert found(entity=visit["id"]) == expected(booked, cancelled)
    assert found(agent="bob") == expected(ben_created, ann_updated, cancelled)
    assert found(agent=f"{AGENT_SYSTEM}|alice") == expected(
        ann_created, pay_created, booked, slot_created
    )
    assert found(action="U") == expected(ann_updated, cancelled)
    assert found(action="C", agent="bob") == expected(ben_created)
    assert found(action="C,U") == sorted(by_id.values())
    assert found(subtype="update", patient=ann["id"]) == expected(ann_updated, cancelled)
    assert found(date=today.isoformat()) == sorted(by_id.values())
    assert found(date=f"ge{today.isoformat()}") == sorted(by_id.values())
    assert found(date="lt2000-01-01") == []
    assert found(date=f"gt{(today + dt.timedelta(days=1)).isoformat()}") == []
    auditor = token(app, AUDITOR)
    some = everything[0]
    assert fhir(client.get(f"/fhir/AuditEvent/{some['id']}", headers=auditor), 200) == some
    via_form = client.post("/fhir/AuditEvent/_search", data={"agent": "bob"}, headers=auditor)
    assert sorted(ids(fhir(via_form, 200))) == sorted(
        e["id"] for e in everything if agent_of(e) == "bob"
    )
    outcome(client.get("/fhir/AuditEvent?action=X", headers=auditor), 400, expression="action")


def test_booking_and_cancelling_a_series_through_the_operations_is_audited(app, client, database):
    def build(db):
        clinic = make_clinic(db)
        make_session(db, clinic)  # Monday 2027-01-04 10:00 New York
        return clinic, make_patient(db).id

    clinic, patient = database.write(build)
    carol = token(app, STAFF, "carol")
    find = monday_series_find(patient, clinic.provider_id, "2027-01-04", 2, frequency=1)
    preview = fhir(send(client, "POST", "/fhir/Appointment/$find", find, carol), 200)
    kept = [{"name": "appointment-resource", "resource": p} for p in entries(preview)]

    stored = fhir(
        send(
            client,
            "POST",
            "/fhir/Appointment/$book",
            {"resourceType": "Parameters", "parameter": kept},
            carol,
        ),
        200,
    )
    appointments = [
        e["resource"]["id"]
        for e in stored["entry"]
        if e["resource"]["resourceType"] == "Appointment"
    ]
    assert len(appointments) == 2
    first = appointments[0]
    cancel = {"resourceType": "Parameters", "parameter": [{"name": "scope", "valueCode": "all"}]}
    fhir(send(client, "POST", f"/fhir/Appointment/{first}/$cancel-series", cancel, carol), 200)

    events = trail(client, app, agent="carol")
    created = {summary(e)[2] for e in events if summary(e)[0] == "C" and e["outcome"] == "0"}
    updated = {summary(e)[2] for e in events if summary(e)[0] == "U" and e["outcome"] == "0"}
    assert created == {f"Appointment/{a}" for a in appointments}
    assert updated == {f"Appointment/{a}" for a in appointments}


def test_every_occurrence_of_a_long_series_is_audited_with_its_booking(app, client, database):
    """A long series' bookings and drafts are written with their audit records, in one
    statement each (`store.booking`, in the background on PostgreSQL): one event per
    stored occurrence, naming who booked it."""
    weeks = IN_BACKGROUND + 2

    def build(db):
        clinic = make_clinic(db)
        first = MONDAY.astimezone(ZoneInfo("America/New_York"))  # 2027-01-04 10:00
        for week in range(weeks):  # every Monday at 10:00 New York, summer time too
            start = (first + dt.timedelta(weeks=week)).astimezone(dt.UTC)
            make_session(db, clinic, start=start)
        return clinic, make_patient(db).id

    clinic, patient = database.write(build)
    dana = token(app, STAFF, "dana")
    count = weeks + IN_BACKGROUND  # then as many drafts, with no session
    find = monday_series_find(patient, clinic.provider_id, "2027-01-04", count, frequency=1)
    preview = fhir(send(client, "POST", "/fhir/Appointment/$find", find, dana), 200)
    kept = [{"name": "appointment-resource", "resource": p} for p in entries(preview)]
    book = {"resourceType": "Parameters", "parameter": kept}

    stored = fhir(send(client, "POST", "/fhir/Appointment/$book", book, dana), 200)

    appointments = {
        e["resource"]["id"]: e["resource"]["status"]
        for e in stored["entry"]
        if e["resource"]["resourceType"] == "Appointment"
    }
    assert sorted(appointments.values()) == ["booked"] * weeks + ["proposed"] * IN_BACKGROUND
    events = trail(client, app, agent="dana")
    created = [summary(e) for e in events if summary(e)[0] == "C"]
    assert sorted(e[2] for e in created) == sorted(f"Appointment/{a}" for a in appointments)
    assert {(e[0], e[1]) for e in created} == {("C", "operation")}


def test_an_auditor_without_the_privacy_permission_sees_no_restricted_patients_events(
    app, client, restricted_world
):
    w = restricted_world
    officer = token(app, PRIVACY_OFFICER, "officer")
    fhir(client.get(f"/fhir/Patient/{w['R']}", headers=officer), 200)
    assert any(e.get("entity") for e in trail(client, app, patient=f"Patient/{w['R']}"))

    plain = token(app, PLAIN_AUDITOR, "plain-auditor")
    response = client.get("/fhir/AuditEvent", query_string={"_count": "200"}, headers=plain)
    text = response.get_data(as_text=True)
    assert response.status_code == 200
    assert w["R"] not in text

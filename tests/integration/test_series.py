"""Recurring series through the API: preview ($find), book ($book), drafts, resolve, cancel.

Every test runs on SQLite and PostgreSQL. The clinic: Dr. Rivera's Mon/Wed/Fri 10:00
(New York) groups over two weeks, one of them full, one closed, one missing.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, replace
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import fhir_facade.registry
import store.booking
import store.models
import store.series
from mappings.series import FIND_TIMING
from mappings.timing import EXT_ORIGINATING_APPOINTMENT, EXT_RECURRENCE_ID, EXT_RECURRENCE_TEMPLATE
from store.access import STAFF
from store.db import Database
from store.errors import RuleViolation
from store.models import HOLDS_PLACE, Booking, GroupSession, ProviderSchedule, Series
from store.recurrence import Frequency, Recurrence
from store.series import KeptOccurrence, SeriesBooking, book_series
from tests.factories import MONDAY, make_clinic, make_patient, make_session
from tests.integration.helpers import book, booked, fhir, outcome, post, put, state

DAY = dt.timedelta(days=1)
ALL = "user/*.cruds"


@dataclass
class Clinic:
    patient: str
    other_patient: str
    provider: str
    other_provider: str
    department: str
    sessions: dict[str, str]  # "mon1", "wed1" (full), "fri1" (closed), "mon2", "fri2"
    spare: str  # Dr. Chen's Wednesday 13 session, for "Use this slot"
    full_spare: str


def _clinic(database: Database) -> Clinic:
    def build(db: Session) -> Clinic:
        clinic = make_clinic(db)
        sessions = {
            "mon1": make_session(db, clinic, start=MONDAY).id,
            "wed1": make_session(db, clinic, start=MONDAY + 2 * DAY, capacity=1).id,
            "fri1": make_session(db, clinic, start=MONDAY + 4 * DAY, closed=True).id,
            "mon2": make_session(db, clinic, start=MONDAY + 7 * DAY, capacity=2).id,
            "fri2": make_session(db, clinic, start=MONDAY + 11 * DAY).id,
        }
        db.add(
            ProviderSchedule(
                id=f"{clinic.schedule_id}-chen",
                provider_id=clinic.other_provider_id,
                department_id=clinic.department_id,
                active=True,
            )
        )
        db.flush()
        chen = type(clinic)(**{**clinic.__dict__, "schedule_id": f"{clinic.schedule_id}-chen"})
        spare = make_session(db, chen, start=MONDAY + 9 * DAY + dt.timedelta(hours=4)).id
        full_spare = make_session(db, chen, start=MONDAY + 9 * DAY, capacity=1).id
        patient = make_patient(db).id
        other = make_patient(db, given="Luis").id
        return Clinic(
            patient,
            other,
            clinic.provider_id,
            clinic.other_provider_id,
            clinic.department_id,
            sessions,
            spare,
            full_spare,
        )

    clinic = database.write(build)
    book(database, clinic.sessions["wed1"], clinic.other_patient)  # wed1 is now full (1/1)
    book(database, clinic.full_spare, clinic.other_patient)
    return clinic


def timing(**repeat: Any) -> dict[str, Any]:
    """Mon/Wed/Fri 10:00 from Monday 2027-01-04, six occurrences, 90 minutes."""
    settings: dict[str, Any] = {
        "boundsPeriod": {"start": "2027-01-04"},
        "count": 6,
        "period": 1,
        "periodUnit": "wk",
        "dayOfWeek": ["mon", "wed", "fri"],
        "timeOfDay": ["10:00:00"],
        "duration": 90,
        "durationUnit": "min",
    }
    settings.update(repeat)
    return {"repeat": {k: v for k, v in settings.items() if v is not None}}


def find_body(clinic: Clinic, patient: str | None = None, **repeat: Any) -> dict[str, Any]:
    patient_ref = {"reference": f"Patient/{patient or clinic.patient}"}
    practitioner_ref = {"reference": f"Practitioner/{clinic.provider}"}
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueReference": patient_ref},
            {"name": "practitioner", "valueReference": practitioner_ref},
            {"name": "timing", "valueTiming": timing(**repeat)},
        ],
    }


def book_body(proposals: list[dict[str, Any]], *coverages: str) -> dict[str, Any]:
    parameters = [{"name": "appointment-resource", "resource": p} for p in proposals]
    parameters += [{"name": "coverage", "valueReference": {"reference": c}} for c in coverages]
    return {"resourceType": "Parameters", "parameter": parameters}


def preview(client: FlaskClient, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    return fhir(post(client, "/fhir/Appointment/$find", body, headers), 200)


def proposals(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "match"]


def warnings(bundle: dict[str, Any]) -> list[str]:
    (oo,) = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] != "Appointment"
    ]
    return [i["details"]["coding"][0]["code"] for i in oo["issue"] if i["severity"] == "warning"]


def appointments(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Appointment"
    ]


def ext(resource: dict[str, Any], url: str) -> Any:
    found = [e for e in resource.get("extension", []) if e["url"] == url]
    return found[0] if found else None


def booked_series(
    client: FlaskClient, headers: dict[str, str], clinic: Clinic, drop: tuple[int, ...] = ()
) -> list[dict[str, Any]]:
    kept = [p for i, p in enumerate(proposals(preview(client, headers, find_body(clinic))), 1)
            if i not in drop]  # fmt: skip
    return appointments(
        fhir(post(client, "/fhir/Appointment/$book", book_body(kept), headers), 200)
    )


# --- preview ----------------------------------------------------------------------------


def test_the_preview_proposes_every_occurrence_and_writes_nothing(client, database, mint):
    clinic = _clinic(database)
    before = state(database)

    bundle = preview(client, mint(ALL), find_body(clinic))

    assert state(database) == before
    found = proposals(bundle)
    assert [ext(p, EXT_RECURRENCE_ID)["valuePositiveInt"] for p in found] == [1, 2, 3, 4, 5, 6]
    slots = [p.get("slot", [{}])[0].get("reference") for p in found]
    s = clinic.sessions
    assert slots == [f"Slot/{s['mon1']}", None, f"Slot/{s['fri1']}", f"Slot/{s['mon2']}", None,
                     f"Slot/{s['fri2']}"]  # fmt: skip
    assert found[1]["requestedPeriod"] == [
        {"start": "2027-01-06T15:00:00Z", "end": "2027-01-06T16:30:00Z"}
    ]
    assert found[0]["start"] == "2027-01-04T15:00:00Z"
    assert warnings(bundle) == ["session-full", "session-closed", "no-session"]


def test_the_preview_follows_the_local_time_across_daylight_saving_and_reports_a_gap(
    client, database, mint
):
    clinic = _clinic(database)
    body = find_body(
        clinic,
        boundsPeriod={"start": "2027-03-07"},
        count=3,
        dayOfWeek=["sun"],
        timeOfDay=["02:30:00"],
    )

    found = proposals(preview(client, mint(ALL), body))

    assert found[0]["requestedPeriod"][0]["start"] == "2027-03-07T07:30:00Z"  # EST
    assert "requestedPeriod" not in found[1]  # 2027-03-14 02:30 does not exist
    assert found[2]["requestedPeriod"][0]["start"] == "2027-03-21T06:30:00Z"  # EDT
    assert "dst-gap" in warnings(preview(client, mint(ALL), body))


# --- book ---------------------------------------------------------------------------------


def test_booking_the_kept_occurrences_books_the_matched_and_drafts_the_rest(client, database, mint):
    clinic = _clinic(database)
    headers = mint(ALL)
    before = state(database)
    kept = [p for i, p in enumerate(proposals(preview(client, headers, find_body(clinic))), 1)
            if i != 6]  # the user removed the last card  # fmt: skip

    answer = fhir(post(client, "/fhir/Appointment/$book", book_body(kept), headers), 200)

    stored = appointments(answer)
    assert [a["status"] for a in stored] == ["booked", "proposed", "booked", "booked", "proposed"]
    after = state(database)
    moved = {
        k: after.booked[k] - before.booked[k]
        for k in before.booked
        if after.booked[k] != before.booked[k]
    }
    s = clinic.sessions
    assert moved == {s["mon1"]: 1, s["fri1"]: 1, s["mon2"]: 1}
    assert after.appointments == before.appointments + 5
    assert "session-closed" in warnings(answer)
    origin, *others = stored
    assert ext(origin, EXT_RECURRENCE_TEMPLATE) is not None
    for other in others:
        link = ext(other, EXT_ORIGINATING_APPOINTMENT)["valueReference"]["reference"]
        assert link == f"Appointment/{origin['id']}"
    drafts = [a for a in stored if a["status"] == "proposed"]
    assert all("slot" not in d and d["requestedPeriod"] for d in drafts)
    template = ext(fhir(client.get(f"/fhir/Appointment/{origin['id']}", headers=headers), 200),
                   EXT_RECURRENCE_TEMPLATE)  # fmt: skip
    assert {"url": "excludingRecurrenceId", "valuePositiveInt": 6} in template["extension"]

    mine = fhir(client.get(f"/fhir/Appointment?patient={clinic.patient}", headers=headers), 200)
    assert mine["total"] == 5
    only_drafts = fhir(
        client.get(f"/fhir/Appointment?patient={clinic.patient}&status=proposed", headers=headers),
        200,
    )
    assert sorted(e["resource"]["id"] for e in only_drafts["entry"]) == sorted(
        d["id"] for d in drafts
    )


def test_each_stored_occurrence_has_its_first_version_as_book_answered_it(
    client, database, mint, monkeypatch
):
    clinic = _clinic(database)
    headers = mint(ALL)
    rendered_at_commit: list[str] = []
    appointment_type = fhir_facade.registry._BY_KIND[Booking]

    def counted(record: Any) -> dict[str, Any]:
        rendered_at_commit.append(record.id)
        return appointment_type.to_fhir(record)

    monkeypatch.setitem(
        fhir_facade.registry._BY_KIND, Booking, replace(appointment_type, to_fhir=counted)
    )
    stored = booked_series(client, headers, clinic)

    assert rendered_at_commit == []  # the answer's renderings were kept as the snapshots
    for appointment in stored:
        url = f"/fhir/Appointment/{appointment['id']}"
        assert fhir(client.get(f"{url}/_history/1", headers=headers), 200) == appointment
        assert fhir(client.get(url, headers=headers), 200) == appointment
        history = fhir(client.get(f"{url}/_history", headers=headers), 200)
        assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["1"]
    slot = fhir(client.get(f"/fhir/Slot/{clinic.sessions['mon1']}", headers=headers), 200)
    version = slot["meta"]["versionId"]
    url = f"/fhir/Slot/{clinic.sessions['mon1']}/_history/{version}"
    assert fhir(client.get(url, headers=headers), 200) == slot  # the sessions' versions too


def test_a_session_that_filled_since_the_preview_becomes_a_draft_with_a_warning(
    client, database, mint
):
    clinic = _clinic(database)
    headers = mint(ALL)
    kept = proposals(preview(client, headers, find_body(clinic)))
    book(database, clinic.sessions["mon2"], clinic.other_patient)
    book(database, clinic.sessions["mon2"], make_other_patient(database))  # now 2/2

    answer = fhir(post(client, "/fhir/Appointment/$book", book_body(kept), headers), 200)

    assert [a["status"] for a in appointments(answer)][3] == "proposed"
    assert "session-full" in warnings(answer)
    assert booked(database, clinic.sessions["mon2"]) == 2


def make_other_patient(database: Database) -> str:
    return database.write(lambda db: make_patient(db, given="Ana").id)


def test_a_chosen_coverage_applies_to_every_booked_occurrence(client, database, mint):
    clinic = _clinic(database)
    headers = mint(ALL)
    with database.reading() as db:
        coverage = db.scalar(
            select(store.models.Coverage.id).where(
                store.models.Coverage.beneficiary_id == clinic.patient
            )
        )
    kept = proposals(preview(client, headers, find_body(clinic)))

    answer = fhir(
        post(client, "/fhir/Appointment/$book", book_body(kept, f"Coverage/{coverage}"), headers),
        200,
    )

    booked_ones = [a for a in appointments(answer) if a["status"] == "booked"]
    assert booked_ones
    assert all(
        a["supportingInformation"] == [{"reference": f"Coverage/{coverage}"}] for a in booked_ones
    )


# --- drafts ---------------------------------------------------------------------------


def test_resolving_a_draft_books_it_into_the_chosen_slot_under_the_capacity_rule(
    client, database, mint
):
    clinic = _clinic(database)
    headers = mint(ALL)
    stored = booked_series(client, headers, clinic)
    draft = [a for a in stored if a["status"] == "proposed"][1]  # Wednesday 13, no session
    url = f"/fhir/Appointment/{draft['id']}"
    full = {**draft, "status": "booked", "slot": [{"reference": f"Slot/{clinic.full_spare}"}]}
    outcome(put(client, url, full, {**headers, "If-Match": 'W/"1"'}), 409, detail="session-full")
    chosen = {**draft, "status": "booked", "slot": [{"reference": f"Slot/{clinic.spare}"}]}
    outcome(put(client, url, chosen, {**headers, "If-Match": 'W/"7"'}), 412)

    resolved = fhir(put(client, url, chosen, {**headers, "If-Match": 'W/"1"'}), 200)

    assert resolved["status"] == "booked"
    assert resolved["slot"] == [{"reference": f"Slot/{clinic.spare}"}]
    assert "requestedPeriod" not in resolved
    assert ext(resolved, EXT_RECURRENCE_ID) == ext(draft, EXT_RECURRENCE_ID)
    assert ext(resolved, EXT_ORIGINATING_APPOINTMENT) == ext(draft, EXT_ORIGINATING_APPOINTMENT)
    assert resolved["supportingInformation"]  # the default insurance choice, as for a booking
    assert booked(database, clinic.spare) == 1
    assert booked(database, clinic.full_spare) == 1


def test_a_draft_can_be_resolved_through_book(client, database, mint):
    clinic = _clinic(database)
    headers = mint(ALL)
    draft = [a for a in booked_series(client, headers, clinic) if a["status"] == "proposed"][1]
    chosen = {**draft, "status": "booked", "slot": [{"reference": f"Slot/{clinic.spare}"}]}

    answer = fhir(post(client, "/fhir/Appointment/$book", book_body([chosen]), headers), 200)

    (resolved,) = appointments(answer)
    assert (resolved["id"], resolved["status"]) == (draft["id"], "booked")
    assert booked(database, clinic.spare) == 1
    again = post(client, "/fhir/Appointment/$book", book_body([chosen]), headers)
    outcome(again, 422)  # no longer a draft


# --- cancel ---------------------------------------------------------------------------


def test_cancelling_this_and_all_following_frees_their_places(client, database, mint):
    clinic = _clinic(database)
    headers = mint(ALL)
    stored = booked_series(client, headers, clinic)
    s = clinic.sessions
    before = state(database)
    third = stored[2]  # Friday 8
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "scope", "valueCode": "this-and-following"},
        {"name": "reason", "valueString": "moving away"},
    ]}  # fmt: skip

    answer = fhir(
        post(client, f"/fhir/Appointment/{third['id']}/$cancel-series", body, headers), 200
    )

    cancelled = appointments(answer)
    assert [ext(a, EXT_RECURRENCE_ID)["valuePositiveInt"] for a in cancelled] == [3, 4, 5, 6]
    assert {a["status"] for a in cancelled} == {"cancelled"}
    after = state(database)
    assert after.booked[s["fri1"]] == before.booked[s["fri1"]] - 1
    assert after.booked[s["mon2"]] == before.booked[s["mon2"]] - 1
    assert after.booked[s["fri2"]] == before.booked[s["fri2"]] - 1
    assert after.booked[s["mon1"]] == before.booked[s["mon1"]]
    first = fhir(client.get(f"/fhir/Appointment/{stored[0]['id']}", headers=headers), 200)
    assert first["status"] == "booked"


def test_cancelling_the_whole_series(client, database, mint):
    clinic = _clinic(database)
    headers = mint(ALL)
    before = state(database)
    stored = booked_series(client, headers, clinic)
    body = {"resourceType": "Parameters", "parameter": [{"name": "scope", "valueCode": "all"}]}

    answer = post(client, f"/fhir/Appointment/{stored[-1]['id']}/$cancel-series", body, headers)

    assert len(appointments(fhir(answer, 200))) == 6
    assert state(database).booked == before.booked


# --- refusals -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("repeat", "status", "expression"),
    [
        ({"count": 367, "periodUnit": "d", "dayOfWeek": None}, 422, "repeat.count"),
        ({"count": 0}, 400, "repeat.count"),
        ({"dayOfWeek": ["mon", "funday"]}, 400, "repeat.dayOfWeek[1]"),
        ({"count": None, "boundsPeriod": {"start": "2027-01-04", "end": "2027-01-01"}}, 422,
         "repeat.boundsPeriod.end"),
        ({"period": -1}, 422, "repeat.period"),
        ({"count": None, "boundsPeriod": {"start": "2027-01-04", "end": "2031-01-01"}}, 422,
         "repeat.boundsPeriod.end"),
    ],
)  # fmt: skip
def test_a_refused_series_names_the_offending_timing_element(
    client, database, mint, repeat, status, expression
):
    clinic = _clinic(database)
    before = state(database)

    response = post(client, "/fhir/Appointment/$find", find_body(clinic, **repeat), mint(ALL))

    outcome(response, status, expression=f"{FIND_TIMING}.{expression}")
    assert state(database) == before


def test_a_restricted_patient_is_not_found_without_the_permission(client, database, mint):
    clinic = _clinic(database)
    hidden = database.write(lambda db: make_patient(db, restricted=True).id)

    refused = post(client, "/fhir/Appointment/$find", find_body(clinic, hidden), mint(ALL))
    allowed = post(
        client,
        "/fhir/Appointment/$find",
        find_body(clinic, hidden),
        mint(f"{ALL} __patient.blocked"),
    )

    outcome(refused, 404, code="not-found")
    fhir(allowed, 200)


def test_a_series_failing_half_way_leaves_nothing_behind(client, database, mint, monkeypatch):
    """The places are taken first; a failure while storing the drafts must undo them."""
    clinic = _clinic(database)
    headers = mint(ALL)
    kept = proposals(preview(client, headers, find_body(clinic)))
    assert any("slot" in p for p in kept), "the failure must come after places were taken"
    before = state(database)
    calls = []

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        raise RuleViolation("forced failure", field="booking.slot")

    monkeypatch.setattr(store.series, "store_drafts", failing)

    outcome(post(client, "/fhir/Appointment/$book", book_body(kept), headers), 422)

    assert len(calls) == 1
    assert state(database) == before
    with database.reading() as db:
        assert db.scalar(select(func.count()).select_from(Series)) == 0


def test_concurrent_series_competing_for_the_last_places_never_overbook(database):
    def build(db: Session) -> tuple[list[str], list[str]]:
        clinic = make_clinic(db)
        sessions = [
            make_session(db, clinic, start=MONDAY + 7 * DAY * week, capacity=2).id
            for week in range(4)
        ]
        patients = [make_patient(db, given=f"P{i}").id for i in range(5)]
        return sessions, [clinic.department_id, *patients]

    sessions, (department, *patients) = database.write(build)
    recurrence = Recurrence(
        frequency=Frequency.WEEKLY,
        first_date=MONDAY.date(),
        local_time=dt.time(10),
        duration=dt.timedelta(minutes=90),
        timezone="",
        count=4,
    )
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(patients))

    def run(patient: str) -> None:
        kept = tuple(
            KeptOccurrence(
                i + 1,
                store.booking.BookingRequest(
                    patient_id=patient, session_id=s, department_id=department
                ),
            )
            for i, s in enumerate(sessions)
        )
        barrier.wait()
        try:
            database.write(
                lambda db: book_series(
                    db, SeriesBooking(recurrence, kept), STAFF, today=dt.date(2026, 12, 1)
                )
            )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(p,)) for p in patients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    with database.reading() as db:
        for session_id in sessions:
            session = db.get(GroupSession, session_id)
            assert session is not None
            holding = db.scalar(
                select(func.count())
                .select_from(Booking)
                .where(Booking.session_id == session_id, Booking.status.in_(list(HOLDS_PLACE)))
            )
            assert session.booked == holding == 2
        drafts = db.scalar(
            select(func.count()).select_from(Booking).where(Booking.status == "proposed")
        )
        assert drafts == 4 * (len(patients) - 2)

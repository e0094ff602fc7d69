"""The waitlist through the FHIR API: joining a full session, its order, and the freed
place going down it in the transaction that freed it (book or offer)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, select, update

from mappings.codes import EXT_OFFER_EXPIRES, EXT_WAITLIST_PASSED_OVER, EXT_WAITLIST_POLICY
from store.access import Access
from store.booking import BookingRequest, BookingResult, Placement, SessionFull, book_patients
from store.models import (
    AuditRecord,
    Booking,
    Coverage,
    GroupSession,
    ProviderSchedule,
    utcnow,
)
from store.promotion import WAITLIST_AGENT, has_lapsed_offers, sweep_expired_offers
from tests.conftest import ADMIN_SCOPE
from tests.factories import MONDAY, Clinic, make_clinic, make_coverage, make_patient, make_session
from tests.integration.helpers import (
    appointment,
    book,
    booked,
    capacity_of,
    fhir,
    outcome,
    post,
    put,
    state,
)


@dataclass
class World:
    clinic: Clinic
    session: str
    seated: list[str]  # the bookings filling the session
    waiting: list[str]  # patients not yet on its list


def full_session(
    database, *, capacity: int = 2, waiting: int = 3, policy: str = "book", offer_seconds=None
) -> World:
    def build(db):
        clinic = make_clinic(db)
        schedule = db.get(ProviderSchedule, clinic.schedule_id)
        schedule.waitlist_policy = policy
        schedule.offer_seconds = offer_seconds
        session = make_session(db, clinic, capacity=capacity)
        seated = [make_patient(db).id for _ in range(capacity)]
        return World(clinic, session.id, seated, [make_patient(db).id for _ in range(waiting)])

    w = database.write(build)
    w.seated = book(database, w.session, *w.seated)
    return w


def join(client, mint, w: World, patient: str, **elements: Any) -> dict[str, Any]:
    body = appointment(w.session, patient, status="waitlist", **elements)
    return fhir(post(client, "/fhir/Appointment", body, mint()), 201)


def read(client, mint, appointment_id: str) -> dict[str, Any]:
    return fhir(client.get(f"/fhir/Appointment/{appointment_id}", headers=mint()), 200)


def cancel(client, mint, appointment_id: str) -> dict[str, Any]:
    current = read(client, mint, appointment_id)
    body = {**current, "status": "cancelled"}
    return fhir(put(client, f"/fhir/Appointment/{appointment_id}", body, mint()), 200)


def waitlist(client, mint, session_id: str, headers=None) -> list[dict[str, Any]]:
    bundle = fhir(
        client.get(
            f"/fhir/Appointment?slot=Slot/{session_id}&status=waitlist",
            headers=headers or mint(),
        ),
        200,
    )
    return [e["resource"] for e in bundle.get("entry", [])]


def patient_of(resource: dict[str, Any]) -> str:
    return str(resource["participant"][0]["actor"]["reference"].removeprefix("Patient/"))


def extension(resource: dict[str, Any], url: str) -> Any:
    values = [e for e in resource.get("extension", []) if e["url"] == url]
    return values[0] if values else None


def waitlist_audits(database, appointment_id: str) -> list[str]:
    with database.reading() as db:
        rows = db.scalars(
            select(AuditRecord.description)
            .where(AuditRecord.entity_id == appointment_id, AuditRecord.agent == WAITLIST_AGENT)
            .order_by(AuditRecord.recorded)
        ).all()
    return [r or "" for r in rows]


# -- joining -------------------------------------------------------------------------


def test_joining_a_full_sessions_waitlist_takes_no_place(client, database, mint):
    w = full_session(database)

    entry = join(client, mint, w, w.waiting[0])

    assert entry["status"] == "waitlist"
    assert entry["slot"] == [{"reference": f"Slot/{w.session}"}]
    assert entry["supportingInformation"][0]["reference"].startswith("Coverage/")
    assert "start" in entry and "end" in entry
    assert booked(database, w.session) == 2
    assert read(client, mint, entry["id"]) == entry


def test_a_session_with_room_tells_the_client_to_book_instead(client, database, mint):
    w = full_session(database)
    cancel(client, mint, w.seated[0])
    before = state(database)

    response = post(
        client, "/fhir/Appointment", appointment(w.session, w.waiting[0], status="waitlist"), mint()
    )

    issue = outcome(response, 409, detail="session-has-room", expression="Appointment.status")
    assert "book it" in issue["details"]["text"]
    assert state(database) == before


def test_a_patient_joins_a_sessions_waitlist_once_and_not_while_booked_there(
    client, database, mint
):
    w = full_session(database)
    join(client, mint, w, w.waiting[0])
    seated_patient = patient_of(read(client, mint, w.seated[0]))
    before = state(database)

    twice = post(
        client, "/fhir/Appointment", appointment(w.session, w.waiting[0], status="waitlist"), mint()
    )
    seated = post(
        client,
        "/fhir/Appointment",
        appointment(w.session, seated_patient, status="waitlist"),
        mint(),
    )

    outcome(twice, 409, detail="already-waitlisted")
    outcome(seated, 409, detail="already-booked")
    assert state(database) == before


def test_the_waitlist_search_shows_entries_first_come_first_served_with_priority_ahead(
    client, database, mint
):
    w = full_session(database, waiting=4)
    first = join(client, mint, w, w.waiting[0])
    second = join(client, mint, w, w.waiting[1])
    urgent = join(client, mint, w, w.waiting[2], priority=1)
    fourth = join(client, mint, w, w.waiting[3])

    listed = waitlist(client, mint, w.session)

    assert [e["id"] for e in listed] == [urgent["id"], first["id"], second["id"], fourth["id"]]
    assert urgent["priority"] == 1


def test_a_restricted_patients_entry_is_hidden_from_staff_without_the_permission(
    client, database, mint
):
    w = full_session(database)
    hidden = database.write(lambda db: make_patient(db, restricted=True).id)
    join(client, mint, w, w.waiting[0])
    officer = {**mint("user/*.cruds __patient.blocked")}
    entry = fhir(
        post(
            client,
            "/fhir/Appointment",
            appointment(w.session, hidden, status="waitlist"),
            officer,
        ),
        201,
    )

    assert [patient_of(e) for e in waitlist(client, mint, w.session)] == [w.waiting[0]]
    assert client.get(f"/fhir/Appointment/{entry['id']}", headers=mint()).status_code == 404
    assert [patient_of(e) for e in waitlist(client, mint, w.session, officer)] == [
        w.waiting[0],
        hidden,
    ]


def test_new_appointments_cannot_be_pending_and_bookings_cannot_be_put_on_a_waitlist(
    client, database, mint
):
    w = full_session(database)
    before = state(database)
    booking = read(client, mint, w.seated[0])

    pending = post(
        client, "/fhir/Appointment", appointment(w.session, w.waiting[0], status="pending"), mint()
    )
    demoted = put(
        client, f"/fhir/Appointment/{w.seated[0]}", {**booking, "status": "waitlist"}, mint()
    )

    outcome(pending, 422, expression="Appointment.status")
    outcome(demoted, 422, expression="Appointment.status")
    assert state(database) == before


# -- promotion under the book policy --------------------------------------------------


def test_a_cancellation_books_the_first_waiting_patient_in_the_same_transaction(
    client, database, mint
):
    w = full_session(database)
    first = join(client, mint, w, w.waiting[0])
    second = join(client, mint, w, w.waiting[1])

    cancel(client, mint, w.seated[0])

    promoted = read(client, mint, first["id"])
    assert promoted["status"] == "booked"
    assert promoted["participant"][0]["status"] == "accepted"
    assert read(client, mint, second["id"])["status"] == "waitlist"
    assert booked(database, w.session) == 2
    assert [e["id"] for e in waitlist(client, mint, w.session)] == [second["id"]]
    (audit,) = waitlist_audits(database, first["id"])
    assert f"booked into the freed place in Slot/{w.session}" in audit


def test_moving_a_booking_away_promotes_the_next_waiting_patient(client, database, mint):
    w = full_session(database)
    other = database.write(
        lambda db: make_session(db, w.clinic, start=MONDAY + dt.timedelta(days=7)).id
    )
    entry = join(client, mint, w, w.waiting[0])
    booking = read(client, mint, w.seated[0])
    moved = {
        **{k: v for k, v in booking.items() if k not in ("start", "end")},
        "slot": [{"reference": f"Slot/{other}"}],
    }

    fhir(put(client, f"/fhir/Appointment/{w.seated[0]}", moved, mint()), 200)

    assert read(client, mint, entry["id"])["status"] == "booked"
    assert (booked(database, w.session), booked(database, other)) == (2, 1)


def test_raising_a_sessions_capacity_books_as_many_waiting_patients_as_places_opened(
    client, database, mint
):
    w = full_session(database)
    entries = [join(client, mint, w, p) for p in w.waiting]
    admin = mint(ADMIN_SCOPE)
    slot = fhir(client.get(f"/fhir/Slot/{w.session}", headers=admin), 200)
    capacity = slot["extension"][0]
    capacity["extension"] = [{"url": "capacity", "valueUnsignedInt": 4}]

    stored = fhir(put(client, f"/fhir/Slot/{w.session}", slot, admin), 200)

    assert capacity_of(stored) == "4/4"
    statuses = [read(client, mint, e["id"])["status"] for e in entries]
    assert statuses == ["booked", "booked", "waitlist"]


def test_an_entry_whose_insurance_lapsed_is_passed_over_with_its_reason(client, database, mint):
    w = full_session(database)

    def insured_until_before_the_session(db):
        patient = make_patient(db, self_pay=False)
        coverage = make_coverage(db, patient.id, payor_id=w.clinic.group_id)
        return patient.id, coverage.id

    patient, coverage = database.write(insured_until_before_the_session)
    lapsing = join(
        client,
        mint,
        w,
        patient,
        supportingInformation=[{"reference": f"Coverage/{coverage}"}],
    )
    nextone = join(client, mint, w, w.waiting[0])
    database.write(  # the plan now ends before the session
        lambda db: db.execute(
            update(Coverage)
            .where(Coverage.id == coverage)
            .values(period_end=MONDAY - dt.timedelta(days=1))
        )
    )

    cancel(client, mint, w.seated[0])

    skipped = read(client, mint, lapsing["id"])
    assert skipped["status"] == "waitlist"
    note = extension(skipped, EXT_WAITLIST_PASSED_OVER)["valueString"]
    assert note.startswith("insurance: ") and f"Coverage/{coverage}" in note
    assert read(client, mint, nextone["id"])["status"] == "booked"
    assert any("passed over" in a for a in waitlist_audits(database, lapsing["id"]))


def test_nobody_is_promoted_into_a_session_that_has_ended(client, database, mint):
    w = full_session(database)
    entry = join(client, mint, w, w.waiting[0])
    past = utcnow() - dt.timedelta(days=2)
    database.write(  # the week goes by; a booking is cancelled after the fact
        lambda db: db.execute(
            update(GroupSession)
            .where(GroupSession.id == w.session)
            .values(start=past, end=past + dt.timedelta(hours=1))
        )
    )

    cancel(client, mint, w.seated[0])
    late = post(
        client, "/fhir/Appointment", appointment(w.session, w.waiting[1], status="waitlist"), mint()
    )

    assert read(client, mint, entry["id"])["status"] == "waitlist"
    assert booked(database, w.session) == 1
    outcome(late, 422, expression="Appointment.slot")


# -- promotion under the offer policy -------------------------------------------------


def test_an_offer_holds_the_freed_place_until_the_patient_accepts_it(client, database, mint):
    w = full_session(database, policy="offer", offer_seconds=3600)
    entry = join(client, mint, w, w.waiting[0])

    cancel(client, mint, w.seated[0])

    offer = read(client, mint, entry["id"])
    assert offer["status"] == "pending"
    assert offer["participant"][0]["status"] == "needs-action"
    expires = dt.datetime.fromisoformat(extension(offer, EXT_OFFER_EXPIRES)["valueInstant"])
    assert dt.timedelta(minutes=59) < expires - utcnow() <= dt.timedelta(hours=1)
    assert booked(database, w.session) == 2  # the offer holds the place
    late = post(client, "/fhir/Appointment", appointment(w.session, w.waiting[1]), mint())
    outcome(late, 409, detail="session-full")

    accepted = fhir(
        put(client, f"/fhir/Appointment/{entry['id']}", {**offer, "status": "booked"}, mint()),
        200,
    )

    assert accepted["status"] == "booked"
    assert extension(accepted, EXT_OFFER_EXPIRES) is None
    assert booked(database, w.session) == 2


def test_a_declined_offer_passes_the_place_to_the_next_patient(client, database, mint):
    w = full_session(database, policy="offer", offer_seconds=3600)
    first = join(client, mint, w, w.waiting[0])
    second = join(client, mint, w, w.waiting[1])
    cancel(client, mint, w.seated[0])

    cancel(client, mint, first["id"])

    assert read(client, mint, second["id"])["status"] == "pending"
    assert booked(database, w.session) == 2


def test_an_expired_offer_cannot_be_accepted_and_its_place_goes_down_the_queue(
    client, database, mint
):
    w = full_session(database, policy="offer", offer_seconds=3600)
    first = join(client, mint, w, w.waiting[0])
    second = join(client, mint, w, w.waiting[1])
    cancel(client, mint, w.seated[0])
    offer = read(client, mint, first["id"])
    database.write(  # the hour passes
        lambda db: db.execute(
            update(Booking)
            .where(Booking.id == first["id"])
            .values(offer_expires=utcnow() - dt.timedelta(seconds=1))
        )
    )

    late = put(client, f"/fhir/Appointment/{first['id']}", {**offer, "status": "booked"}, mint())

    outcome(late, 422, expression="Appointment.status")
    lapsed = read(client, mint, first["id"])
    assert lapsed["status"] == "cancelled"
    assert lapsed["cancelationReason"]["text"] == "waitlist offer expired"
    assert read(client, mint, second["id"])["status"] == "pending"
    assert booked(database, w.session) == 2
    assert any("expired" in a for a in waitlist_audits(database, first["id"]))
    assert any("offered" in a for a in waitlist_audits(database, second["id"]))


def test_the_sweep_passes_lapsed_offers_on_without_any_other_write(client, database, mint):
    w = full_session(database, policy="offer", offer_seconds=60)
    first = join(client, mint, w, w.waiting[0])
    second = join(client, mint, w, w.waiting[1])
    cancel(client, mint, w.seated[0])

    later = utcnow() + dt.timedelta(minutes=2)
    lapsed = database.write(lambda db: [b.id for b in sweep_expired_offers(db, now=later)])

    assert lapsed == [first["id"]]
    assert read(client, mint, first["id"])["status"] == "cancelled"
    assert read(client, mint, second["id"])["status"] == "pending"
    assert booked(database, w.session) == 2


def test_a_series_booking_lets_a_lapsed_offer_go_before_it_takes_places(client, database, mint):
    """A batch of bookings (a series' occurrences) reclaims the lapsed offers of its
    sessions first, like any write touching them: the lapsed offer is cancelled and its
    place goes down the queue (here to the next waiting patient), not to the batch. With
    no offer lapsed anywhere, one probe stands for that reclaiming."""
    w = full_session(database, policy="offer", offer_seconds=3600)
    first = join(client, mint, w, w.waiting[0])
    second = join(client, mint, w, w.waiting[1])
    cancel(client, mint, w.seated[0])
    database.write(  # the hour passes
        lambda db: db.execute(
            update(Booking)
            .where(Booking.id == first["id"])
            .values(offer_expires=utcnow() - dt.timedelta(seconds=1))
        )
    )
    other = database.write(lambda db: make_session(db, w.clinic, capacity=2).id)
    requests = [BookingRequest(w.waiting[2], s) for s in (w.session, other)]

    results = database.write(
        lambda db: book_patients(db, [Placement(r) for r in requests], Access())
    )

    assert isinstance(results[0], SessionFull)  # the lapsed offer's place went down the queue
    assert isinstance(results[1], BookingResult)
    assert read(client, mint, first["id"])["status"] == "cancelled"
    assert read(client, mint, second["id"])["status"] == "pending"
    assert booked(database, w.session) == 2
    assert any("expired" in a for a in waitlist_audits(database, first["id"]))


def test_the_lapsed_offer_probe_of_every_write_reads_live_offers_only(database):
    """Offers that lapsed or were declined are cancelled and keep their expiry: a clinic's
    history fills up with them. The probe every write makes for lapsed offers must not
    read them (an index on the expiry alone walked through every one, on every write)."""

    def build(db):
        clinic = make_clinic(db)
        session = make_session(db, clinic, capacity=40)
        return session.id, [make_patient(db).id for _ in range(30)]

    session_id, patients = database.write(build)
    old_offers = book(database, session_id, *patients)
    database.write(
        lambda db: db.execute(
            update(Booking)
            .where(Booking.id.in_(old_offers))
            .values(status="cancelled", offer_expires=utcnow() - dt.timedelta(days=3))
        )
    )
    engine = database.engine
    ran: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        ran.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", seen)
    try:
        with database.reading() as db:
            assert has_lapsed_offers(db) is False
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    ((probe, parameters),) = [(s, p) for s, p in ran if "FROM booking" in s]
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql("SET enable_seqscan = off")  # a table this small
            (plan,) = connection.exec_driver_sql(
                f"EXPLAIN (ANALYZE, FORMAT JSON) {probe}", parameters
            ).scalar_one()
            scan = plan["Plan"]["Plans"][0]
            assert scan["Index Name"] == "ix_booking_offer_pending", scan
            assert scan.get("Rows Removed by Filter", 0) == 0, scan
        else:
            plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {probe}", parameters).all()
            assert any("INDEX ix_booking_offer_pending" in row[3] for row in plan), plan


# -- the schedule's policy -----------------------------------------------------------


def test_a_schedule_states_its_waitlist_policy_as_an_extension(client, database, mint):
    clinic = database.write(make_clinic)
    admin = mint(ADMIN_SCOPE)
    policy = {
        "url": EXT_WAITLIST_POLICY,
        "extension": [
            {"url": "mode", "valueCode": "offer"},
            {
                "url": "offerDuration",
                "valueDuration": {
                    "value": 2,
                    "unit": "h",
                    "system": "http://unitsofmeasure.org",
                    "code": "h",
                },
            },
        ],
    }
    body = {
        "resourceType": "Schedule",
        "extension": [policy],
        "actor": [{"reference": f"Location/{clinic.department_id}"}],
    }

    stored = fhir(post(client, "/fhir/Schedule", body, admin), 201)
    bad = {**body, "extension": [{"url": EXT_WAITLIST_POLICY, "extension": []}]}
    refused = post(client, "/fhir/Schedule", bad, admin)

    assert stored["extension"] == [policy]
    with database.reading() as db:
        schedule = db.get(ProviderSchedule, stored["id"])
        assert (schedule.waitlist_policy, schedule.offer_seconds) == ("offer", 7200)
    outcome(refused, 422, expression="Schedule.extension[0]")

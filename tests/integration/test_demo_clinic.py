"""The demo clinic stays current (issue 12, item 4): whenever it was loaded and whatever
day it is, it has sessions in the 12 weeks ahead, and the coming Monday has the closed
and the full session the README walkthrough books into."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from store.access import PRIVACY_OFFICER
from store.booking import BookingRequest, book_patient
from store.demo import (
    SESSIONS,
    WALKTHROUGH_PATIENT,
    WEEKS,
    coming_monday,
    demo_dates,
    extend_demo,
    load_demo,
    monday_of,
)
from store.models import Base, Booking, GroupSession

LOADED = dt.date(2026, 8, 17)  # a Monday


def walkthrough_sessions(db, today: dt.date) -> tuple[GroupSession, GroupSession]:
    monday = coming_monday(today)
    rivera = db.get(GroupSession, f"rivera-bk-{monday:%Y%m%d}-1000")
    lindqvist = db.get(GroupSession, f"lindqvist-dn-{monday:%Y%m%d}-0900")
    assert rivera is not None and lindqvist is not None, (today, monday)
    return rivera, lindqvist


def weeks_with_all_sessions(db, today: dt.date) -> int:
    """Of the WEEKS weeks from this week on, how many have every weekly session."""
    full_weeks = 0
    for week in range(WEEKS):
        start = dt.datetime.combine(monday_of(today), dt.time(), dt.UTC)
        start += dt.timedelta(weeks=week)
        count = db.scalar(
            select(func.count())
            .select_from(GroupSession)
            .where(GroupSession.start >= start, GroupSession.start < start + dt.timedelta(weeks=1))
        )
        full_weeks += count == len(SESSIONS)
    return full_weeks


def test_the_coming_monday_has_a_closed_and_a_full_session_on_every_day_of_the_week(database):
    database.write(lambda db: load_demo(db, today=LOADED))

    for offset in range(8):  # Monday to the next Monday: each day's "next monday"
        today = LOADED + dt.timedelta(days=offset)
        database.write(lambda db, today=today: extend_demo(db, today=today))
        with database.reading() as db:
            rivera, lindqvist = walkthrough_sessions(db, today)
            assert rivera.closed, today
            assert lindqvist.booked == lindqvist.capacity, today
            assert rivera.booked < rivera.capacity, today
            assert weeks_with_all_sessions(db, today) == WEEKS, today


def test_a_demo_loaded_three_months_ago_is_extended_to_the_weeks_ahead_once(database):
    today = LOADED + dt.timedelta(days=93)  # a Thursday
    database.write(lambda db: load_demo(db, today=LOADED))
    with database.reading() as db:
        assert weeks_with_all_sessions(db, today) == 0

    added = database.write(lambda db: extend_demo(db, today=today))
    again = database.write(lambda db: extend_demo(db, today=today))

    assert (added, again) == (len(SESSIONS) * WEEKS, 0)
    with database.reading() as db:
        assert weeks_with_all_sessions(db, today) == WEEKS
        rivera, lindqvist = walkthrough_sessions(db, today)
        assert rivera.closed and lindqvist.booked == lindqvist.capacity
        walkthrough_patient = select(func.count()).where(Booking.patient_id == WALKTHROUGH_PATIENT)
        assert db.scalar(walkthrough_patient) == 0, "the README books them itself"


def test_extending_without_the_demo_clinic_does_nothing(database):
    assert database.write(lambda db: extend_demo(db, today=LOADED)) == 0
    with database.reading() as db:
        assert db.scalar(select(func.count()).select_from(GroupSession)) == 0


def test_a_copied_demo_clinic_holds_what_loading_it_writes_and_takes_new_bookings(
    database, demo_clinic, demo_snapshots, database_url
):
    kind = make_url(database_url).get_backend_name()
    loaded = demo_snapshots.rows(kind, LOADED)

    assert (demo_clinic(LOADED), demo_clinic(LOADED)) == (True, False)

    with database.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            copied = [dict(row._mapping) for row in conn.execute(select(table))]
            key = [c.name for c in table.primary_key.columns]
            by_key = sorted(copied, key=lambda row: [row[k] for k in key])
            assert by_key == sorted(loaded[table.name], key=lambda row: [row[k] for k in key])
    rivera, _ = database.write(lambda db: walkthrough_sessions(db, LOADED))
    # New rows get ids past the copied ones (PostgreSQL's sequences moved on).
    request = BookingRequest(patient_id=WALKTHROUGH_PATIENT, session_id=rivera.id)
    result = database.write(lambda db: book_patient(db, request, PRIVACY_OFFICER))
    with database.reading() as db:
        booked = db.get(Booking, result.booking.id)
        assert booked is not None and booked.patient_id == WALKTHROUGH_PATIENT
        assert [link.provider_id for link in booked.providers] == ["prac-rivera"]


def test_the_demo_starts_on_the_week_the_staff_app_opens_on_in_every_department() -> None:
    """The staff app opens on the department's own week. Just after midnight UTC on a
    Monday it is still Sunday in Denver, where that week is the one ending today: the
    demo's sessions start then, not on the Monday the machine's clock shows."""
    denver_sunday = dt.datetime(2026, 11, 30, 0, 30, tzinfo=dt.UTC)  # 17:30 Sunday there
    _, first = demo_dates(None, now=denver_sunday)
    assert first == dt.date(2026, 11, 23)
    everywhere_monday = dt.datetime(2026, 11, 30, 8, 0, tzinfo=dt.UTC)  # 01:00 in Denver
    _, first = demo_dates(None, now=everywhere_monday)
    assert first == dt.date(2026, 11, 30)
    # A day given (`db load-demo --as-of`, the tests) is taken as it is.
    assert demo_dates(LOADED, now=denver_sunday) == (LOADED, LOADED)

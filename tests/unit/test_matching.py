"""Series matching without a database: occurrences and in-memory sessions in, proposals out.

The candidate sessions are the only thing `preview_series` reads for matching; here they
are plain model instances, never added to a session, so every matching rule runs in
microseconds.
"""

from __future__ import annotations

import datetime as dt

from store.matching import (
    NO_SESSION,
    OTHER_TYPE,
    SESSION_BLOCKED,
    SESSION_FULL,
    Defaults,
    propose_all,
)
from store.models import GroupSession, ProviderSchedule
from store.recurrence import PROBLEM_DST_GAP, Frequency, Recurrence, expand

ZONE = "America/New_York"
SCHEDULE = ProviderSchedule(id="sched", provider_id="prac", department_id="dept", active=True)
DEFAULT = Defaults(department_id="dept", provider_ids=("prac",), appointment_type=None)
TODAY = dt.date(2027, 1, 1)


def mondays(count: int = 3, *, first: dt.date = dt.date(2027, 1, 4)) -> Recurrence:
    """Mondays 10:00 New York, 90 minutes."""
    return Recurrence(
        Frequency.WEEKLY,
        first,
        dt.time(10, 0),
        dt.timedelta(minutes=90),
        ZONE,
        weekdays=(0,),
        count=count,
    )


def session(
    start: dt.datetime,
    *,
    ident: str | None = None,
    capacity: int = 10,
    booked: int = 0,
    blocked: bool = False,
    closed: bool = False,
    appointment_type: str = "group-therapy",
) -> GroupSession:
    return GroupSession(
        id=ident or f"s-{start:%Y%m%d%H%M}",
        schedule_id=SCHEDULE.id,
        schedule=SCHEDULE,
        start=start,
        end=start + dt.timedelta(minutes=90),
        capacity=capacity,
        booked=booked,
        blocked=blocked,
        closed=closed,
        appointment_type=appointment_type,
    )


def utc(day: int, hour: int = 15, minute: int = 0) -> dt.datetime:
    return dt.datetime(2027, 1, day, hour, minute, tzinfo=dt.UTC)


def proposals(sessions, *, recurrence=None, default=DEFAULT, tolerance=dt.timedelta(0)):
    occurrences = expand(recurrence or mondays(), today=TODAY)
    return propose_all(occurrences, sessions, default, tolerance=tolerance, zone=ZONE)


def codes(proposal) -> list[str]:
    return [n.code for n in proposal.notices]


def test_each_occurrence_is_matched_to_the_session_starting_at_its_instant():
    first, third = session(utc(4)), session(utc(18))
    found = proposals([first, third])
    assert [p.session for p in found] == [first, None, third]
    assert codes(found[1]) == [NO_SESSION]
    assert found[0].department_id == "dept" and found[0].provider_ids == ("prac",)


def test_a_session_at_another_time_does_not_match_without_a_tolerance():
    assert proposals([session(utc(4, 15, 30))])[0].session is None


def test_a_tolerance_matches_the_nearest_session_within_it():
    near, nearer = session(utc(4, 15, 40)), session(utc(4, 14, 50))
    found = proposals([near, nearer], tolerance=dt.timedelta(hours=1))
    assert found[0].session is nearer


def test_a_full_session_is_named_as_the_reason_there_is_no_match():
    found = proposals([session(utc(4), ident="full", capacity=3, booked=3)])
    assert found[0].session is None
    assert codes(found[0]) == [SESSION_FULL]
    assert "3/3" in found[0].notices[0].text


def test_a_blocked_session_is_named_as_blocked():
    assert codes(proposals([session(utc(4), blocked=True)])[0]) == [SESSION_BLOCKED]


def test_an_open_session_is_chosen_over_a_full_one_at_the_same_time():
    full = session(utc(4), ident="a-full", capacity=1, booked=1)
    open_ = session(utc(4), ident="b-open")
    assert proposals([full, open_])[0].session is open_


def test_a_session_of_another_appointment_type_does_not_match():
    default = Defaults("dept", ("prac",), appointment_type="yoga")
    found = proposals([session(utc(4))], default=default)
    assert found[0].session is None
    assert codes(found[0]) == [OTHER_TYPE]


def test_a_closed_session_matches_with_a_warning():
    found = proposals([session(utc(4), closed=True)])
    assert found[0].session is not None
    assert codes(found[0]) == ["session-closed"]


def test_an_occurrence_in_a_daylight_saving_gap_is_reported_not_shifted():
    # 2027-03-14 02:30 does not exist in New York (clocks jump from 02:00 to 03:00).
    gap = Recurrence(
        Frequency.DAILY,
        dt.date(2027, 3, 14),
        dt.time(2, 30),
        dt.timedelta(minutes=60),
        ZONE,
        count=1,
    )
    (found,) = proposals([], recurrence=gap)
    assert found.session is None and found.occurrence.start is None
    assert codes(found) == [PROBLEM_DST_GAP]

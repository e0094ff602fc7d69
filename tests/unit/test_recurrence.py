"""Expanding recurrence settings into occurrences, in the department's time zone (DESIGN §8)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from mappings.locations import fhir_path
from store.errors import InvalidRecurrence, RuleViolation, SeriesTooLong, UnknownTimeZone
from store.recurrence import (
    Frequency,
    Occurrence,
    Recurrence,
    expand,
    weekday_codes,
)

TODAY = dt.date(2026, 1, 5)
MON, TUE, WED, THU, FRI, SAT, SUN = range(7)
NEW_YORK = "America/New_York"
BERLIN = "Europe/Berlin"


def series(**overrides: Any) -> Recurrence:
    """Weekly, Mondays 10:00 New York, one hour, four times, unless told otherwise."""
    settings: dict[str, Any] = {
        "frequency": Frequency.WEEKLY,
        "first_date": dt.date(2026, 2, 2),
        "local_time": dt.time(10, 0),
        "duration": dt.timedelta(hours=1),
        "timezone": NEW_YORK,
        "count": 4,
    }
    settings.update(overrides)
    return Recurrence(**settings)


def dates(occurrences: list[Occurrence]) -> list[dt.date]:
    return [occurrence.local_start.date() for occurrence in occurrences]


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


# --- patterns ---------------------------------------------------------------------------


def test_a_daily_series_has_one_occurrence_per_day_at_the_local_time():
    occurrences = expand(series(frequency=Frequency.DAILY, count=3), today=TODAY)

    assert [o.local_start for o in occurrences] == [
        dt.datetime(2026, 2, 2, 10, 0),
        dt.datetime(2026, 2, 3, 10, 0),
        dt.datetime(2026, 2, 4, 10, 0),
    ]
    assert [o.start for o in occurrences] == [
        utc(2026, 2, 2, 15, 0),
        utc(2026, 2, 3, 15, 0),
        utc(2026, 2, 4, 15, 0),
    ]
    assert all(o.problem is None for o in occurrences)


def test_occurrences_are_numbered_from_one_and_end_after_their_duration():
    occurrences = expand(series(duration=dt.timedelta(minutes=90), count=3), today=TODAY)

    assert [o.recurrence_id for o in occurrences] == [1, 2, 3]
    first = occurrences[0]
    assert first.start == utc(2026, 2, 2, 15, 0)
    assert first.end == utc(2026, 2, 2, 16, 30)


def test_start_and_end_are_aware_utc_and_the_local_start_is_naive():
    (occurrence,) = expand(series(count=1), today=TODAY)

    assert occurrence.local_start.tzinfo is None
    assert occurrence.start is not None and occurrence.start.utcoffset() == dt.timedelta(0)
    assert occurrence.end is not None and occurrence.end.utcoffset() == dt.timedelta(0)


def test_a_weekly_monday_wednesday_friday_series_of_six_gives_two_full_weeks():
    occurrences = expand(series(weekdays=(MON, WED, FRI), count=6), today=TODAY)

    assert dates(occurrences) == [
        dt.date(2026, 2, 2),
        dt.date(2026, 2, 4),
        dt.date(2026, 2, 6),
        dt.date(2026, 2, 9),
        dt.date(2026, 2, 11),
        dt.date(2026, 2, 13),
    ]


def test_weekdays_given_out_of_order_still_yield_chronological_occurrences():
    occurrences = expand(series(weekdays=(FRI, MON, WED, MON), count=4), today=TODAY)

    assert dates(occurrences) == [
        dt.date(2026, 2, 2),
        dt.date(2026, 2, 4),
        dt.date(2026, 2, 6),
        dt.date(2026, 2, 9),
    ]


def test_a_weekly_series_starting_midweek_begins_with_the_first_matching_day():
    first_date = dt.date(2026, 2, 3)  # a Tuesday
    occurrences = expand(
        series(first_date=first_date, weekdays=(MON, WED, FRI), count=3), today=TODAY
    )

    assert dates(occurrences) == [dt.date(2026, 2, 4), dt.date(2026, 2, 6), dt.date(2026, 2, 9)]


def test_a_weekly_series_without_weekdays_repeats_on_the_weekday_of_the_first_date():
    occurrences = expand(series(first_date=dt.date(2026, 2, 5), count=3), today=TODAY)

    assert dates(occurrences) == [dt.date(2026, 2, 5), dt.date(2026, 2, 12), dt.date(2026, 2, 19)]


def test_a_monthly_series_by_day_of_month_starts_on_the_first_such_day_after_the_first_date():
    occurrences = expand(
        series(frequency=Frequency.MONTHLY, first_date=dt.date(2026, 1, 20), month_day=15, count=3),
        today=TODAY,
    )

    assert dates(occurrences) == [dt.date(2026, 2, 15), dt.date(2026, 3, 15), dt.date(2026, 4, 15)]


def test_a_monthly_series_without_a_day_repeats_on_the_day_of_the_first_date():
    occurrences = expand(
        series(frequency=Frequency.MONTHLY, first_date=dt.date(2026, 1, 12), count=3),
        today=TODAY,
    )

    assert dates(occurrences) == [dt.date(2026, 1, 12), dt.date(2026, 2, 12), dt.date(2026, 3, 12)]


def test_a_monthly_series_on_the_second_tuesday():
    occurrences = expand(
        series(
            frequency=Frequency.MONTHLY,
            first_date=dt.date(2026, 1, 1),
            nth_weekday=(TUE, 2),
            count=3,
        ),
        today=TODAY,
    )

    assert dates(occurrences) == [dt.date(2026, 1, 13), dt.date(2026, 2, 10), dt.date(2026, 3, 10)]


def test_a_monthly_series_on_the_last_friday():
    occurrences = expand(
        series(
            frequency=Frequency.MONTHLY,
            first_date=dt.date(2026, 1, 1),
            nth_weekday=(FRI, -1),
            count=3,
        ),
        today=TODAY,
    )

    assert dates(occurrences) == [dt.date(2026, 1, 30), dt.date(2026, 2, 27), dt.date(2026, 3, 27)]


# --- ending: count or end date ----------------------------------------------------------


def test_an_end_date_and_the_matching_count_give_the_same_occurrences():
    by_count = expand(series(weekdays=(MON, THU), count=5), today=TODAY)
    by_date = expand(
        series(weekdays=(MON, THU), count=None, until=dt.date(2026, 2, 16)), today=TODAY
    )

    assert by_count == by_date
    assert dates(by_date)[-1] == dt.date(2026, 2, 16)


def test_the_end_date_is_inclusive():
    ends_on_a_monday = expand(series(count=None, until=dt.date(2026, 2, 16)), today=TODAY)
    ends_the_day_before = expand(series(count=None, until=dt.date(2026, 2, 15)), today=TODAY)

    assert dates(ends_on_a_monday) == [
        dt.date(2026, 2, 2),
        dt.date(2026, 2, 9),
        dt.date(2026, 2, 16),
    ]
    assert dates(ends_the_day_before) == [dt.date(2026, 2, 2), dt.date(2026, 2, 9)]


def test_an_end_date_before_the_first_matching_day_gives_no_occurrences():
    first_date = dt.date(2026, 2, 3)  # a Tuesday; the series runs on Mondays
    occurrences = expand(
        series(first_date=first_date, weekdays=(MON,), count=None, until=dt.date(2026, 2, 8)),
        today=TODAY,
    )

    assert occurrences == []


# --- intervals ----------------------------------------------------------------------------


def test_every_two_weeks_on_monday_and_wednesday_skips_the_week_between():
    occurrences = expand(series(interval=2, weekdays=(MON, WED), count=4), today=TODAY)

    assert dates(occurrences) == [
        dt.date(2026, 2, 2),
        dt.date(2026, 2, 4),
        dt.date(2026, 2, 16),
        dt.date(2026, 2, 18),
    ]


def test_every_three_days():
    occurrences = expand(series(frequency=Frequency.DAILY, interval=3, count=4), today=TODAY)

    assert dates(occurrences) == [
        dt.date(2026, 2, 2),
        dt.date(2026, 2, 5),
        dt.date(2026, 2, 8),
        dt.date(2026, 2, 11),
    ]


def test_every_two_months_on_the_tenth():
    occurrences = expand(
        series(
            frequency=Frequency.MONTHLY,
            first_date=dt.date(2026, 1, 10),
            month_day=10,
            interval=2,
            count=3,
        ),
        today=TODAY,
    )

    assert dates(occurrences) == [dt.date(2026, 1, 10), dt.date(2026, 3, 10), dt.date(2026, 5, 10)]


# --- daylight saving time -------------------------------------------------------------------


def test_mondays_at_ten_in_new_york_stay_at_ten_across_the_march_change():
    occurrences = expand(series(first_date=dt.date(2026, 3, 2), count=2), today=TODAY)

    assert [o.local_start.time() for o in occurrences] == [dt.time(10, 0), dt.time(10, 0)]
    assert [o.start for o in occurrences] == [utc(2026, 3, 2, 15, 0), utc(2026, 3, 9, 14, 0)]
    assert all(o.problem is None for o in occurrences)


def test_mondays_at_ten_in_new_york_stay_at_ten_across_the_november_change():
    occurrences = expand(series(first_date=dt.date(2026, 10, 26), count=2), today=TODAY)

    assert [o.local_start.time() for o in occurrences] == [dt.time(10, 0), dt.time(10, 0)]
    assert [o.start for o in occurrences] == [utc(2026, 10, 26, 14, 0), utc(2026, 11, 2, 15, 0)]
    assert all(o.problem is None for o in occurrences)


def test_mondays_at_ten_in_berlin_stay_at_ten_across_the_march_change():
    occurrences = expand(
        series(first_date=dt.date(2026, 3, 23), timezone=BERLIN, count=2), today=TODAY
    )

    assert [o.local_start.time() for o in occurrences] == [dt.time(10, 0), dt.time(10, 0)]
    assert [o.start for o in occurrences] == [utc(2026, 3, 23, 9, 0), utc(2026, 3, 30, 8, 0)]


def test_mondays_at_ten_in_berlin_stay_at_ten_across_the_october_change():
    occurrences = expand(
        series(first_date=dt.date(2026, 10, 19), timezone=BERLIN, count=2), today=TODAY
    )

    assert [o.local_start.time() for o in occurrences] == [dt.time(10, 0), dt.time(10, 0)]
    assert [o.start for o in occurrences] == [utc(2026, 10, 19, 8, 0), utc(2026, 10, 26, 9, 0)]


def test_half_past_two_on_the_new_york_spring_forward_day_is_a_reported_gap_not_shifted():
    occurrences = expand(
        series(
            frequency=Frequency.DAILY,
            first_date=dt.date(2026, 3, 7),
            local_time=dt.time(2, 30),
            count=3,
        ),
        today=TODAY,
    )

    before, gap, after = occurrences
    assert gap.local_start == dt.datetime(2026, 3, 8, 2, 30)
    assert gap.start is None and gap.end is None
    assert gap.problem == "dst-gap"
    assert gap.recurrence_id == 2
    assert before.start == utc(2026, 3, 7, 7, 30) and before.problem is None
    assert after.start == utc(2026, 3, 9, 6, 30) and after.problem is None


def test_half_past_two_on_the_berlin_spring_forward_day_is_a_reported_gap():
    occurrences = expand(
        series(
            frequency=Frequency.DAILY,
            first_date=dt.date(2026, 3, 28),
            local_time=dt.time(2, 30),
            timezone=BERLIN,
            count=3,
        ),
        today=TODAY,
    )

    assert [o.problem for o in occurrences] == [None, "dst-gap", None]
    assert [o.start for o in occurrences] == [
        utc(2026, 3, 28, 1, 30),
        None,
        utc(2026, 3, 30, 0, 30),
    ]


def test_half_past_one_on_the_new_york_fall_back_day_is_ambiguous_and_takes_the_earlier_instant():
    occurrences = expand(
        series(
            frequency=Frequency.DAILY,
            first_date=dt.date(2026, 10, 31),
            local_time=dt.time(1, 30),
            count=3,
        ),
        today=TODAY,
    )

    before, ambiguous, after = occurrences
    assert ambiguous.problem == "dst-ambiguous"
    assert ambiguous.local_start == dt.datetime(2026, 11, 1, 1, 30)
    assert ambiguous.start == utc(2026, 11, 1, 5, 30)  # 01:30 EDT, the first of the two
    assert ambiguous.end == utc(2026, 11, 1, 6, 30)
    assert before.start == utc(2026, 10, 31, 5, 30) and before.problem is None
    assert after.start == utc(2026, 11, 2, 6, 30) and after.problem is None


def test_half_past_two_on_the_berlin_fall_back_day_is_ambiguous():
    occurrences = expand(
        series(
            frequency=Frequency.DAILY,
            first_date=dt.date(2026, 10, 25),
            local_time=dt.time(2, 30),
            timezone=BERLIN,
            count=1,
        ),
        today=TODAY,
    )

    (ambiguous,) = occurrences
    assert ambiguous.problem == "dst-ambiguous"
    assert ambiguous.start == utc(2026, 10, 25, 0, 30)  # 02:30 CEST, the first of the two


def test_a_session_spanning_the_change_lasts_its_full_duration():
    (occurrence,) = expand(
        series(
            frequency=Frequency.DAILY,
            first_date=dt.date(2026, 3, 8),
            local_time=dt.time(1, 0),
            duration=dt.timedelta(hours=2),
            count=1,
        ),
        today=TODAY,
    )

    assert occurrence.start == utc(2026, 3, 8, 6, 0)
    assert occurrence.end == utc(2026, 3, 8, 8, 0)


# --- month ends -----------------------------------------------------------------------------


def test_the_thirty_first_falls_on_the_last_day_of_shorter_months():
    occurrences = expand(
        series(frequency=Frequency.MONTHLY, first_date=dt.date(2026, 1, 1), month_day=31, count=5),
        today=TODAY,
    )

    assert dates(occurrences) == [
        dt.date(2026, 1, 31),
        dt.date(2026, 2, 28),
        dt.date(2026, 3, 31),
        dt.date(2026, 4, 30),
        dt.date(2026, 5, 31),
    ]


def test_the_thirty_first_falls_on_february_the_twenty_ninth_in_a_leap_year():
    occurrences = expand(
        series(
            frequency=Frequency.MONTHLY,
            first_date=dt.date(2028, 1, 31),
            month_day=31,
            count=2,
        ),
        today=dt.date(2027, 6, 1),
    )

    assert dates(occurrences) == [dt.date(2028, 1, 31), dt.date(2028, 2, 29)]


def test_the_thirtieth_falls_on_the_last_day_of_february():
    occurrences = expand(
        series(frequency=Frequency.MONTHLY, first_date=dt.date(2026, 1, 30), month_day=30, count=3),
        today=TODAY,
    )

    assert dates(occurrences) == [dt.date(2026, 1, 30), dt.date(2026, 2, 28), dt.date(2026, 3, 30)]


def test_a_monthly_series_from_the_thirty_first_returns_to_the_thirty_first_after_february():
    occurrences = expand(
        series(frequency=Frequency.MONTHLY, first_date=dt.date(2026, 1, 31), count=3),
        today=TODAY,
    )

    assert dates(occurrences) == [dt.date(2026, 1, 31), dt.date(2026, 2, 28), dt.date(2026, 3, 31)]


# --- refusals -------------------------------------------------------------------------------


REFUSALS = {
    "neither a count nor an end date": (dict(count=None), "Timing.repeat"),
    "both a count and an end date": (dict(count=3, until=dt.date(2026, 3, 1)), "Timing.repeat"),
    "a count of zero": (dict(count=0), "Timing.repeat.count"),
    "a negative count": (dict(count=-2), "Timing.repeat.count"),
    "an interval of zero": (dict(interval=0), "Timing.repeat.period"),
    "a negative interval": (dict(interval=-1), "Timing.repeat.period"),
    "an unknown frequency": (dict(frequency="yearly"), "Timing.repeat.periodUnit"),
    "a weekday above sunday": (dict(weekdays=(MON, 7)), "Timing.repeat.dayOfWeek"),
    "a negative weekday": (dict(weekdays=(-1,)), "Timing.repeat.dayOfWeek"),
    "weekdays on a daily series": (
        dict(frequency=Frequency.DAILY, weekdays=(MON,)),
        "Timing.repeat.dayOfWeek",
    ),
    "weekdays on a monthly series": (
        dict(frequency=Frequency.MONTHLY, weekdays=(MON,)),
        "Timing.repeat.dayOfWeek",
    ),
    "a day of the month of zero": (
        dict(frequency=Frequency.MONTHLY, month_day=0),
        "Timing.repeat.dayOfMonth",
    ),
    "a day of the month of thirty-two": (
        dict(frequency=Frequency.MONTHLY, month_day=32),
        "Timing.repeat.dayOfMonth",
    ),
    "a day of the month on a weekly series": (dict(month_day=15), "Timing.repeat.dayOfMonth"),
    "an nth weekday on a daily series": (
        dict(frequency=Frequency.DAILY, nth_weekday=(TUE, 2)),
        "Timing.repeat.dayOfWeek",
    ),
    "both a day of the month and an nth weekday": (
        dict(frequency=Frequency.MONTHLY, month_day=15, nth_weekday=(TUE, 2)),
        "Timing.repeat.dayOfMonth",
    ),
    "a fifth weekday of the month": (
        dict(frequency=Frequency.MONTHLY, nth_weekday=(TUE, 5)),
        "Timing.repeat.dayOfWeek",
    ),
    "a zeroth weekday of the month": (
        dict(frequency=Frequency.MONTHLY, nth_weekday=(TUE, 0)),
        "Timing.repeat.dayOfWeek",
    ),
    "an nth weekday that is no weekday": (
        dict(frequency=Frequency.MONTHLY, nth_weekday=(7, 1)),
        "Timing.repeat.dayOfWeek",
    ),
    "an end date before the first date": (
        dict(count=None, until=dt.date(2026, 2, 1)),
        "Timing.repeat.boundsPeriod.end",
    ),
    "a zero duration": (dict(duration=dt.timedelta(0)), "Timing.repeat.duration"),
    "a negative duration": (dict(duration=dt.timedelta(minutes=-30)), "Timing.repeat.duration"),
    "a time of day with its own offset": (
        dict(local_time=dt.time(10, 0, tzinfo=dt.UTC)),
        "Timing.repeat.timeOfDay",
    ),
}


@pytest.mark.parametrize(("overrides", "field"), REFUSALS.values(), ids=REFUSALS.keys())
def test_malformed_settings_are_refused_naming_the_offending_timing_element(overrides, field):
    with pytest.raises(InvalidRecurrence) as refused:
        expand(series(**overrides), today=TODAY)

    assert fhir_path(refused.value.field) == field
    assert isinstance(refused.value, RuleViolation)
    assert refused.value.message


@pytest.mark.parametrize("timezone", ["Mars/Olympus_Mons", "", "../../etc/passwd", "EST5EDT "])
def test_an_unknown_time_zone_is_refused(timezone):
    with pytest.raises(UnknownTimeZone) as refused:
        expand(series(timezone=timezone), today=TODAY)

    assert fhir_path(refused.value.field) == "Timing.repeat.timeOfDay"
    assert repr(timezone) in refused.value.message


def test_a_refusal_says_what_is_wrong():
    with pytest.raises(InvalidRecurrence, match="count must be at least 1, got 0"):
        expand(series(count=0), today=TODAY)


# --- limits ---------------------------------------------------------------------------------


def daily_from_today(**overrides: Any) -> Recurrence:
    return series(frequency=Frequency.DAILY, first_date=TODAY, **overrides)


def test_a_series_of_366_occurrences_is_accepted():
    occurrences = expand(daily_from_today(count=366), today=TODAY)

    assert len(occurrences) == 366
    assert [o.recurrence_id for o in occurrences] == list(range(1, 367))


def test_a_series_of_367_occurrences_is_refused():
    with pytest.raises(SeriesTooLong, match="at most 366 occurrences") as refused:
        expand(daily_from_today(count=367), today=TODAY)

    assert fhir_path(refused.value.field) == "Timing.repeat.count"


def test_an_end_date_giving_366_occurrences_is_accepted():
    until = TODAY + dt.timedelta(days=365)

    assert len(expand(daily_from_today(count=None, until=until), today=TODAY)) == 366


def test_an_end_date_giving_367_occurrences_is_refused():
    until = TODAY + dt.timedelta(days=366)

    with pytest.raises(SeriesTooLong, match="at most 366 occurrences") as refused:
        expand(daily_from_today(count=None, until=until), today=TODAY)

    assert fhir_path(refused.value.field) == "Timing.repeat.boundsPeriod.end"


def test_an_end_date_exactly_two_years_ahead_is_accepted():
    occurrences = expand(series(count=None, until=dt.date(2028, 1, 5)), today=TODAY)

    assert dates(occurrences)[-1] <= dt.date(2028, 1, 5)


def test_an_end_date_two_years_and_one_day_ahead_is_refused():
    with pytest.raises(SeriesTooLong, match="more than 2 years ahead") as refused:
        expand(series(count=None, until=dt.date(2028, 1, 6)), today=TODAY)

    assert fhir_path(refused.value.field) == "Timing.repeat.boundsPeriod.end"


def test_a_counted_series_reaching_more_than_two_years_ahead_is_refused():
    monthly = series(frequency=Frequency.MONTHLY, first_date=TODAY, count=26)

    with pytest.raises(SeriesTooLong, match="more than 2 years ahead") as refused:
        expand(monthly, today=TODAY)

    assert fhir_path(refused.value.field) == "Timing.repeat.count"


def test_a_counted_series_ending_exactly_two_years_ahead_is_accepted():
    monthly = series(frequency=Frequency.MONTHLY, first_date=TODAY, count=25)

    assert dates(expand(monthly, today=TODAY))[-1] == dt.date(2028, 1, 5)


def test_an_interval_so_large_the_calendar_runs_out_is_refused_not_truncated():
    huge = series(frequency=Frequency.MONTHLY, first_date=TODAY, interval=10**9, count=2)

    with pytest.raises(SeriesTooLong) as refused:
        expand(huge, today=TODAY)

    assert fhir_path(refused.value.field) == "Timing.repeat.count"


def test_the_limits_are_configurable():
    with pytest.raises(SeriesTooLong, match="at most 10 occurrences"):
        expand(daily_from_today(count=11), today=TODAY, max_occurrences=10)
    with pytest.raises(SeriesTooLong, match="more than 1 year ahead"):
        expand(series(count=None, until=dt.date(2027, 1, 6)), today=TODAY, max_years=1)


def test_a_year_of_monday_wednesday_friday_sessions_has_156_occurrences():
    occurrences = expand(series(weekdays=(MON, WED, FRI), count=156), today=TODAY)

    assert len(occurrences) == 156
    assert dates(occurrences) == sorted(dates(occurrences))
    assert {o.local_start.time() for o in occurrences} == {dt.time(10, 0)}


# --- FHIR day codes -------------------------------------------------------------------------


def test_fhir_day_of_week_codes_map_monday_to_zero_through_sunday_to_six():
    assert weekday_codes() == {
        "mon": 0,
        "tue": 1,
        "wed": 2,
        "thu": 3,
        "fri": 4,
        "sat": 5,
        "sun": 6,
    }

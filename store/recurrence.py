"""Expanding a recurring availability into occurrences (DESIGN §8 Time).

A patient's "Recurrence Settings" (daily, weekly on chosen weekdays, monthly;
every N; ending after N sessions or on a date) become a list of occurrences. The
series is expanded on *local dates* with python-dateutil's rrule and each date is
then put at the same wall-clock time in the department's IANA time zone, so
"Mondays 10:00 America/New_York" stays 10:00 local across the DST changes while
its UTC instant moves. An occurrence whose wall-clock time does not exist (DST
gap) is reported, not shifted; one that exists twice (DST overlap) uses the
earlier instant and is reported too.

Refusals are `store.errors.InvalidRecurrence` naming the recurrence field refused
(`recurrence.count`, …), which `mappings.locations` places in the request's Timing.
"""

from __future__ import annotations

import datetime as dt
import enum
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.relativedelta import relativedelta
from dateutil.rrule import DAILY, MO, MONTHLY, WEEKLY, rrule, weekday

from store.errors import InvalidRecurrence, SeriesTooLong, UnknownTimeZone

# The recurrence fields refusals name (`mappings.locations` places them in a FHIR Timing).
FIELD_REPEAT = "recurrence"
FIELD_COUNT = "recurrence.count"
FIELD_END = "recurrence.end"
FIELD_PERIOD = "recurrence.period"
FIELD_PERIOD_UNIT = "recurrence.period_unit"
FIELD_DAY_OF_WEEK = "recurrence.day_of_week"
FIELD_DAY_OF_MONTH = "recurrence.day_of_month"
FIELD_TIME_OF_DAY = "recurrence.time_of_day"
FIELD_DURATION = "recurrence.duration"

PROBLEM_DST_GAP = "dst-gap"
PROBLEM_DST_AMBIGUOUS = "dst-ambiguous"

_WEEKDAY_CODES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_NTH_WEEKDAY_POSITIONS = (1, 2, 3, 4, -1)


class Frequency(enum.StrEnum):
    """How the series repeats; FHIR Timing.repeat.periodUnit d | wk | mo."""

    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


_RRULE_FREQUENCY: dict[Frequency, Literal[1, 2, 3]] = {
    Frequency.DAILY: DAILY,
    Frequency.WEEKLY: WEEKLY,
    Frequency.MONTHLY: MONTHLY,
}
_UNIT_NAME = {Frequency.DAILY: "days", Frequency.WEEKLY: "weeks", Frequency.MONTHLY: "months"}


@dataclass(frozen=True)
class Recurrence:
    """A patient's recurrence settings, as chosen in "Recurrence Settings".

    Exactly one of `count` and `until` ends the series. `weekdays` (0=Mon..6=Sun)
    is for WEEKLY only; `month_day` or `nth_weekday` (weekday, n with n in 1..4 or
    -1 for the last) for MONTHLY only. A `month_day` past a month's end falls on
    that month's last day.
    """

    frequency: Frequency
    first_date: dt.date
    local_time: dt.time
    duration: dt.timedelta
    timezone: str
    interval: int = 1
    weekdays: tuple[int, ...] = ()
    month_day: int | None = None
    nth_weekday: tuple[int, int] | None = None
    count: int | None = None
    until: dt.date | None = None


@dataclass(frozen=True)
class Occurrence:
    """One occurrence of a series.

    `local_start` is the naive wall-clock start in the department's zone; `start`
    and `end` are aware UTC instants, both None when `local_start` falls into a
    DST gap. `problem` is None, "dst-gap" or "dst-ambiguous" (then the earlier of
    the two instants is used).
    """

    recurrence_id: int
    local_start: dt.datetime
    start: dt.datetime | None
    end: dt.datetime | None
    problem: str | None


def weekday_codes() -> dict[str, int]:
    """FHIR days-of-week codes (mon..sun, R4 Timing.repeat.dayOfWeek) to 0=Mon..6=Sun."""
    return {code: index for index, code in enumerate(_WEEKDAY_CODES)}


def expand(
    rec: Recurrence,
    *,
    today: dt.date,
    max_occurrences: int = 366,
    max_years: int = 2,
) -> list[Occurrence]:
    """Expand `rec` into its occurrences, in chronological order.

    The first occurrence is the first matching date on or after `first_date`.
    Raises InvalidRecurrence (or a subclass) naming the offending Timing element
    when the settings are malformed, the zone is unknown, or the series has more
    than `max_occurrences` occurrences or reaches more than `max_years` past `today`.
    """
    zone = _validate(rec)
    horizon = today + relativedelta(years=max_years)
    dates = _local_dates(rec, today=today, horizon=horizon, max_occurrences=max_occurrences)
    return [
        _occurrence(position, dt.datetime.combine(day, rec.local_time), rec.duration, zone)
        for position, day in enumerate(dates, start=1)
    ]


def _validate(rec: Recurrence) -> ZoneInfo:
    if not isinstance(rec.frequency, Frequency):
        raise InvalidRecurrence(
            f"frequency must be one of {', '.join(Frequency)}, got {rec.frequency!r}",
            field=FIELD_PERIOD_UNIT,
        )
    if (rec.count is None) == (rec.until is None):
        raise InvalidRecurrence(
            "give exactly one end: a number of occurrences (count) or an end date "
            "(boundsPeriod.end)",
            field=FIELD_REPEAT,
        )
    if rec.count is not None and rec.count < 1:
        raise InvalidRecurrence(f"count must be at least 1, got {rec.count}", field=FIELD_COUNT)
    if rec.until is not None and rec.until < rec.first_date:
        raise InvalidRecurrence(
            f"end date {rec.until.isoformat()} is before the first date "
            f"{rec.first_date.isoformat()}",
            field=FIELD_END,
        )
    if rec.interval < 1:
        raise InvalidRecurrence(
            f"the series repeats every N {_UNIT_NAME[rec.frequency]}: N must be at least 1, "
            f"got {rec.interval}",
            field=FIELD_PERIOD,
        )
    if rec.duration <= dt.timedelta(0):
        raise InvalidRecurrence(
            f"duration must be positive, got {rec.duration}", field=FIELD_DURATION
        )
    if rec.local_time.tzinfo is not None:
        # The zone is the department's; a time carrying its own offset would contradict it.
        raise InvalidRecurrence(
            "the time of day is wall-clock time in the department's zone and carries no offset",
            field=FIELD_TIME_OF_DAY,
        )
    _validate_weekdays(rec)
    _validate_monthly(rec)
    return _zone(rec.timezone)


def _validate_weekdays(rec: Recurrence) -> None:
    if not rec.weekdays:
        return
    if rec.frequency is not Frequency.WEEKLY:
        raise InvalidRecurrence(
            f"days of the week apply to weekly series only, not {rec.frequency}",
            field=FIELD_DAY_OF_WEEK,
        )
    for day in rec.weekdays:
        if not 0 <= day <= 6:
            raise InvalidRecurrence(
                f"day of the week must be 0 (Monday) to 6 (Sunday), got {day}",
                field=FIELD_DAY_OF_WEEK,
            )


def _validate_monthly(rec: Recurrence) -> None:
    if rec.frequency is not Frequency.MONTHLY:
        if rec.month_day is not None:
            raise InvalidRecurrence(
                f"a day of the month applies to monthly series only, not {rec.frequency}",
                field=FIELD_DAY_OF_MONTH,
            )
        if rec.nth_weekday is not None:
            raise InvalidRecurrence(
                f'"the nth weekday of the month" applies to monthly series only, '
                f"not {rec.frequency}",
                field=FIELD_DAY_OF_WEEK,
            )
        return
    if rec.month_day is not None and rec.nth_weekday is not None:
        raise InvalidRecurrence(
            'give either a day of the month or "the nth weekday of the month", not both',
            field=FIELD_DAY_OF_MONTH,
        )
    if rec.month_day is not None and not 1 <= rec.month_day <= 31:
        raise InvalidRecurrence(
            f"day of the month must be 1 to 31, got {rec.month_day}", field=FIELD_DAY_OF_MONTH
        )
    if rec.nth_weekday is not None:
        day, position = rec.nth_weekday
        if not 0 <= day <= 6:
            raise InvalidRecurrence(
                f"day of the week must be 0 (Monday) to 6 (Sunday), got {day}",
                field=FIELD_DAY_OF_WEEK,
            )
        if position not in _NTH_WEEKDAY_POSITIONS:
            raise InvalidRecurrence(
                f"the weekday's position in the month must be 1 to 4, or -1 for the last; "
                f"got {position}",
                field=FIELD_DAY_OF_WEEK,
            )


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        # ValueError: names that are not zone keys at all ("", "../etc/passwd").
        raise UnknownTimeZone(name) from None


def _local_dates(
    rec: Recurrence, *, today: dt.date, horizon: dt.date, max_occurrences: int
) -> list[dt.date]:
    if rec.count is not None:
        if rec.count > max_occurrences:
            raise SeriesTooLong(
                f"a series may have at most {max_occurrences} occurrences, not {rec.count}",
                field=FIELD_COUNT,
            )
        dates = list(itertools.islice(_rule_dates(rec), rec.count))
        # rrule stops silently past year 9999, so a short list also means "too far".
        if len(dates) < rec.count or dates[-1] > horizon:
            raise SeriesTooLong(
                f"the series of {rec.count} occurrences would end after "
                f"{horizon.isoformat()}, more than {_years(horizon, today)} ahead",
                field=FIELD_COUNT,
            )
        return dates
    assert rec.until is not None  # _validate guarantees exactly one end
    if rec.until > horizon:
        raise SeriesTooLong(
            f"end date {rec.until.isoformat()} is more than {_years(horizon, today)} ahead "
            f"(latest {horizon.isoformat()})",
            field=FIELD_END,
        )
    # Taking one more than allowed is enough to know the series is too long.
    dates = list(itertools.islice(_rule_dates(rec), max_occurrences + 1))
    if len(dates) > max_occurrences:
        raise SeriesTooLong(
            f"a series may have at most {max_occurrences} occurrences; ending on "
            f"{rec.until.isoformat()} it would have more",
            field=FIELD_END,
        )
    return dates


def _years(horizon: dt.date, today: dt.date) -> str:
    years = relativedelta(horizon, today).years
    return f"{years} year" if years == 1 else f"{years} years"


def _rule_dates(rec: Recurrence) -> Iterator[dt.date]:
    byweekday: tuple[int, ...] | weekday | None = None
    bymonthday: tuple[int, ...] | None = None
    bysetpos: int | None = None
    if rec.frequency is Frequency.WEEKLY:
        byweekday = tuple(sorted(set(rec.weekdays))) or (rec.first_date.weekday(),)
    elif rec.frequency is Frequency.MONTHLY and rec.nth_weekday is not None:
        day, position = rec.nth_weekday
        byweekday = weekday(day, position)
    elif rec.frequency is Frequency.MONTHLY:
        month_day = rec.month_day or rec.first_date.day
        # rrule skips months that lack the day; the clinic wants their last day
        # instead: the last existing day among 28..month_day of each month.
        bymonthday = tuple(range(min(month_day, 28), month_day + 1))
        bysetpos = -1
    # The rule runs on naive local midnights: only dates come from rrule, the
    # wall-clock time is attached afterwards (rrule would also drop microseconds).
    rule = rrule(
        _RRULE_FREQUENCY[rec.frequency],
        dtstart=dt.datetime.combine(rec.first_date, dt.time()),
        interval=rec.interval,
        until=None if rec.until is None else dt.datetime.combine(rec.until, dt.time()),
        # Fixed to Monday so "every 2 weeks" does not depend on calendar.firstweekday().
        wkst=MO,
        byweekday=byweekday,
        bymonthday=bymonthday,
        bysetpos=bysetpos,
    )
    for moment in rule:
        yield moment.date()


def _occurrence(
    position: int, local_start: dt.datetime, duration: dt.timedelta, zone: ZoneInfo
) -> Occurrence:
    earlier = local_start.replace(tzinfo=zone, fold=0)
    start = earlier.astimezone(dt.UTC)
    if start.astimezone(zone).replace(tzinfo=None) != local_start:
        # A wall-clock time in the gap does not survive the round trip through UTC.
        return Occurrence(position, local_start, None, None, PROBLEM_DST_GAP)
    later = local_start.replace(tzinfo=zone, fold=1)
    problem = PROBLEM_DST_AMBIGUOUS if earlier.utcoffset() != later.utcoffset() else None
    # The end is the start plus elapsed time, so a session spanning a DST change
    # still lasts its full duration.
    return Occurrence(position, local_start, start, start + duration, problem)

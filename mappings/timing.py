"""Recurrence settings <-> FHIR R4 Timing, and the R5 series extensions (DESIGN §4, §5).

Input: an R4 `Timing` (§2.24.0.24) describes "Recurrence Settings":
`repeat.periodUnit` d | wk | mo, `repeat.period` = every N, `repeat.frequency`
1 (once per period), `dayOfWeek`, one `timeOfDay` (wall-clock time in the
department's zone), `duration` + `durationUnit` min | h (default 60 min),
`boundsPeriod.start` = first date, and either `count` or `boundsPeriod.end`.
Monthly series fall on `boundsPeriod.start`'s day of the month unless
`repeat` carries one of our extensions:

* `.../recurrence-day-of-month` (valuePositiveInt 1..31; past a month's end the
  last day of that month), or
* `.../recurrence-week-of-month` (valueCode first | second | third | fourth | last,
  the R5 week-of-month codes) with exactly one `dayOfWeek`: "the 2nd Tuesday".

Output: the same normalised Timing (extension `series-timing`), and R5's
`Appointment.recurrenceTemplate`, `originatingAppointment` and `recurrenceId` as
the official cross-version extensions.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from mappings.codes import CANONICAL
from mappings.common import JSON
from mappings.errors import InvalidResource, Unprocessable
from store.models import Series
from store.recurrence import Frequency, Recurrence, weekday_codes
from store.series import excluded_ids, recurrence_of

EXT_DAY_OF_MONTH = f"{CANONICAL}/StructureDefinition/recurrence-day-of-month"
EXT_WEEK_OF_MONTH = f"{CANONICAL}/StructureDefinition/recurrence-week-of-month"
EXT_SERIES_TIMING = f"{CANONICAL}/StructureDefinition/series-timing"
_R5 = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Appointment"
EXT_RECURRENCE_TEMPLATE = f"{_R5}.recurrenceTemplate"
EXT_ORIGINATING_APPOINTMENT = f"{_R5}.originatingAppointment"
EXT_RECURRENCE_ID = f"{_R5}.recurrenceId"

CS_UCUM = "http://unitsofmeasure.org"
CS_DAYS_OF_WEEK = "http://hl7.org/fhir/days-of-week"
CS_WEEK_OF_MONTH = "http://hl7.org/fhir/week-of-month"
CS_IANA_TIMEZONES = "https://www.iana.org/time-zones"

DEFAULT_DURATION = dt.timedelta(minutes=60)

_UNITS = {"d": Frequency.DAILY, "wk": Frequency.WEEKLY, "mo": Frequency.MONTHLY}
_UNIT_OF = {frequency: unit for unit, frequency in _UNITS.items()}
_DURATION_UNITS = {"min": 1, "h": 60}
_WEEK_OF_MONTH = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1}
_WEEK_CODE = {n: code for code, n in _WEEK_OF_MONTH.items()}
_DAY_CODE = {n: code for code, n in weekday_codes().items()}
_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_UNSUPPORTED_REPEAT = (
    "boundsDuration",
    "boundsRange",
    "countMax",
    "durationMax",
    "frequencyMax",
    "periodMax",
    "when",
    "offset",
)


def timing_to_recurrence(timing: Any, at: str) -> Recurrence:
    """Read a validated R4B Timing model as recurrence settings (zone left empty).

    `at` is the FHIRPath of the Timing in the request, used in every refusal's
    expression. Limits and consistency (count >= 1, end after start, weekly-only
    weekdays, ...) are checked by `store.recurrence.expand`.
    """
    if timing.event:
        raise Unprocessable(
            "give a repeating pattern (repeat), not events", expression=f"{at}.event"
        )
    repeat = timing.repeat
    if repeat is None:
        raise Unprocessable("the timing needs a repeat", expression=f"{at}.repeat")
    at = f"{at}.repeat"
    for name in _UNSUPPORTED_REPEAT:
        if getattr(repeat, name, None):
            raise Unprocessable(f"repeat.{name} is not supported", expression=f"{at}.{name}")
    frequency = _UNITS.get(repeat.periodUnit or "")
    if frequency is None:
        raise Unprocessable(
            f"periodUnit must be d, wk or mo, got {repeat.periodUnit!r}",
            expression=f"{at}.periodUnit",
        )
    if repeat.frequency not in (None, 1):
        raise Unprocessable(
            f"a series has one session per period: frequency must be 1, got {repeat.frequency}",
            expression=f"{at}.frequency",
        )
    bounds = repeat.boundsPeriod
    first_date = _date(bounds.start if bounds else None, f"{at}.boundsPeriod.start", True)
    until = _date(bounds.end if bounds else None, f"{at}.boundsPeriod.end", False)
    days = _weekdays(repeat.dayOfWeek or [], f"{at}.dayOfWeek")
    month_day, week = _monthly_extensions(repeat.extension or [], at)
    nth_weekday = None
    if week is not None:
        if frequency is not Frequency.MONTHLY or len(days) != 1:
            raise Unprocessable(
                "the week of the month needs a monthly series (periodUnit mo) and exactly "
                "one dayOfWeek",
                expression=f"{at}.dayOfWeek",
            )
        nth_weekday, days = (days[0], week), []
    elif frequency is Frequency.MONTHLY and days:
        raise Unprocessable(
            "a monthly series on a weekday needs the week of the month "
            f"(extension {EXT_WEEK_OF_MONTH})",
            expression=f"{at}.extension",
        )
    return Recurrence(
        frequency=frequency,
        first_date=first_date,
        local_time=_time_of_day(repeat.timeOfDay or [], f"{at}.timeOfDay"),
        duration=_duration(repeat.duration, repeat.durationUnit, at),
        timezone="",
        interval=_whole(repeat.period, f"{at}.period", default=1),
        weekdays=tuple(days),
        month_day=month_day,
        nth_weekday=nth_weekday,
        count=repeat.count,
        until=until,
    )


def recurrence_to_timing(rec: Recurrence) -> JSON:
    """The recurrence as a normalised R4 Timing (the inverse of `timing_to_recurrence`)."""
    repeat: JSON = {}
    if rec.month_day is not None:
        repeat["extension"] = [{"url": EXT_DAY_OF_MONTH, "valuePositiveInt": rec.month_day}]
    elif rec.nth_weekday is not None:
        repeat["extension"] = [
            {"url": EXT_WEEK_OF_MONTH, "valueCode": _WEEK_CODE[rec.nth_weekday[1]]}
        ]
    bounds: JSON = {"start": rec.first_date.isoformat()}
    if rec.until is not None:
        bounds["end"] = rec.until.isoformat()
    repeat["boundsPeriod"] = bounds
    if rec.count is not None:
        repeat["count"] = rec.count
    minutes = int(rec.duration.total_seconds() // 60)
    repeat["duration"] = minutes
    repeat["durationUnit"] = "min"
    repeat["frequency"] = 1
    repeat["period"] = rec.interval
    repeat["periodUnit"] = _UNIT_OF[rec.frequency]
    days = rec.weekdays or ((rec.nth_weekday[0],) if rec.nth_weekday else ())
    if days:
        repeat["dayOfWeek"] = [_DAY_CODE[d] for d in sorted(set(days))]
    repeat["timeOfDay"] = [rec.local_time.strftime("%H:%M:%S")]
    return {"repeat": repeat}


def series_extensions(
    series_id: str, recurrence_id: int | None, template: Series | None
) -> list[JSON]:
    """R5 series elements of an occurrence of series `series_id`: the template on the
    originating one (`template`: its series; None for the others), a link to it on the
    others, and every occurrence's position (recurrenceId)."""
    extensions: list[JSON] = []
    if template is not None:
        rec = recurrence_of(template)
        extensions.append(recurrence_template(rec, excluded_ids(template)))
        extensions.append({"url": EXT_SERIES_TIMING, "valueTiming": recurrence_to_timing(rec)})
    else:
        extensions.append(
            {
                "url": EXT_ORIGINATING_APPOINTMENT,
                "valueReference": {"reference": f"Appointment/{series_id}"},
            }
        )
    if recurrence_id is not None:
        extensions.append({"url": EXT_RECURRENCE_ID, "valuePositiveInt": recurrence_id})
    return extensions


def recurrence_template(rec: Recurrence, excluded: list[int]) -> JSON:
    """R5 Appointment.recurrenceTemplate as the R4 cross-version extension."""
    parts: list[JSON] = [
        {
            "url": "timezone",
            "valueCodeableConcept": {
                "coding": [{"system": CS_IANA_TIMEZONES, "code": rec.timezone}]
            },
        },
        {
            "url": "recurrenceType",
            "valueCodeableConcept": {
                "coding": [{"system": CS_UCUM, "code": _UNIT_OF[rec.frequency]}]
            },
        },
    ]
    if rec.until is not None:
        parts.append({"url": "lastOccurrenceDate", "valueDate": rec.until.isoformat()})
    if rec.count is not None:
        parts.append({"url": "occurrenceCount", "valuePositiveInt": rec.count})
    if rec.frequency is Frequency.WEEKLY:
        days = set(rec.weekdays) or {rec.first_date.weekday()}
        weekly: list[JSON] = [
            {"url": name, "valueBoolean": True} for d, name in enumerate(_DAY_NAMES) if d in days
        ]
        weekly.append({"url": "weekInterval", "valuePositiveInt": rec.interval})
        parts.append({"url": "weeklyTemplate", "extension": weekly})
    elif rec.frequency is Frequency.MONTHLY:
        monthly: list[JSON] = []
        if rec.nth_weekday is not None:
            day, week = rec.nth_weekday
            monthly.append(
                {
                    "url": "nthWeekOfMonth",
                    "valueCoding": {"system": CS_WEEK_OF_MONTH, "code": _WEEK_CODE[week]},
                }
            )
            monthly.append(
                {
                    "url": "dayOfWeek",
                    "valueCoding": {"system": CS_DAYS_OF_WEEK, "code": _DAY_CODE[day]},
                }
            )
        else:
            monthly.append(
                {"url": "dayOfMonth", "valuePositiveInt": rec.month_day or rec.first_date.day}
            )
        monthly.append({"url": "monthInterval", "valuePositiveInt": rec.interval})
        parts.append({"url": "monthlyTemplate", "extension": monthly})
    parts.extend({"url": "excludingRecurrenceId", "valuePositiveInt": i} for i in excluded)
    return {"url": EXT_RECURRENCE_TEMPLATE, "extension": parts}


def _date(value: Any, expression: str, required: bool) -> Any:
    if value is None:
        if required:
            raise Unprocessable("the first date of the series is required", expression=expression)
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    raise Unprocessable(f"give a full date (YYYY-MM-DD), got {value!r}", expression=expression)


def _weekdays(codes: list[Any], expression: str) -> list[int]:
    known = weekday_codes()
    days = []
    for index, code in enumerate(codes):
        if code not in known:
            raise InvalidResource(
                f"unknown day of the week {code!r}; use {', '.join(known)}",
                expression=f"{expression}[{index}]",
            )
        days.append(known[code])
    return days


def _monthly_extensions(extensions: list[Any], at: str) -> tuple[int | None, int | None]:
    month_day: int | None = None
    week: int | None = None
    for index, extension in enumerate(extensions):
        expression = f"{at}.extension[{index}]"
        if extension.url == EXT_DAY_OF_MONTH:
            if extension.valuePositiveInt is None:
                raise Unprocessable("give valuePositiveInt (1 to 31)", expression=expression)
            month_day = int(extension.valuePositiveInt)
        elif extension.url == EXT_WEEK_OF_MONTH:
            if extension.valueCode not in _WEEK_OF_MONTH:
                raise InvalidResource(
                    f"week of the month must be one of {', '.join(_WEEK_OF_MONTH)}, "
                    f"got {extension.valueCode!r}",
                    expression=expression,
                )
            week = _WEEK_OF_MONTH[extension.valueCode]
        else:
            raise Unprocessable(f"unknown extension {extension.url!r}", expression=expression)
    return month_day, week


def _time_of_day(times: list[Any], expression: str) -> dt.time:
    if len(times) != 1:
        raise Unprocessable(
            f"give exactly one timeOfDay (the sessions' local start time), got {len(times)}",
            expression=expression,
        )
    value = times[0]
    if not isinstance(value, dt.time):
        value = dt.time.fromisoformat(str(value))
    return value


def _duration(value: Decimal | None, unit: str | None, at: str) -> dt.timedelta:
    if value is None:
        return DEFAULT_DURATION
    factor = _DURATION_UNITS.get(unit or "")
    if factor is None:
        raise Unprocessable(
            f"durationUnit must be min or h, got {unit!r}", expression=f"{at}.durationUnit"
        )
    return dt.timedelta(minutes=float(value) * factor)


def _whole(value: Decimal | None, expression: str, *, default: int) -> int:
    if value is None:
        return default
    if value != value.to_integral_value():
        raise Unprocessable(f"must be a whole number, got {value}", expression=expression)
    return int(value)

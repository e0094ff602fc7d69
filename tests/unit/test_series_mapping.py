"""$find / $book Parameters, the R4 Timing of a series, and what the operations emit."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import pytest

from mappings.appointment import appointment_to_fhir
from mappings.errors import InvalidResource, Unprocessable
from mappings.locations import Where, fhir_path, located, rooted, where_of
from mappings.series import (
    FIND_TIMING,
    DraftChoice,
    book_from_fhir,
    bookings_to_fhir,
    find_from_fhir,
    preview_to_fhir,
)
from mappings.timing import (
    EXT_DAY_OF_MONTH,
    EXT_ORIGINATING_APPOINTMENT,
    EXT_RECURRENCE_ID,
    EXT_RECURRENCE_TEMPLATE,
    EXT_WEEK_OF_MONTH,
    recurrence_to_timing,
)
from store.booking import Notice
from store.matching import Proposal
from store.models import (
    Booking,
    BookingProvider,
    BookingStatus,
    Series,
)
from store.recurrence import Frequency, Occurrence, Recurrence, expand
from store.series import SeriesBooking, SeriesPreview, _record_recurrence
from tests.unit.builders import scheduled_session
from tests.validation import assert_valid

NEW_YORK = "America/New_York"
START = dt.datetime(2027, 1, 4, 15, 0, tzinfo=dt.UTC)


def weekly_timing(**repeat: Any) -> dict[str, Any]:
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


def find_body(timing: dict[str, Any], *extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueReference": {"reference": "Patient/pat-1"}},
            {"name": "practitioner", "valueReference": {"reference": "Practitioner/prac-1"}},
            {"name": "timing", "valueTiming": timing},
            *extra,
        ],
    }


# --- reading $find ---------------------------------------------------------------------


def test_a_weekly_mon_wed_fri_timing_becomes_recurrence_settings():
    query = find_from_fhir(
        find_body(
            weekly_timing(),
            {
                "name": "appointment-type",
                "valueCoding": {
                    "system": "http://fhir-facade.org/fhir/CodeSystem/group-appointment-type",
                    "code": "dbt-skills",
                },
            },
        )
    )

    assert query.patient_id == "pat-1"
    assert query.provider_id == "prac-1"
    assert query.appointment_type == "dbt-skills"
    rec = query.recurrence
    assert rec.frequency is Frequency.WEEKLY
    assert rec.weekdays == (0, 2, 4)
    assert rec.first_date == dt.date(2027, 1, 4)
    assert rec.local_time == dt.time(10, 0)
    assert rec.duration == dt.timedelta(minutes=90)
    assert (rec.count, rec.until, rec.interval) == (6, None, 1)


def test_an_end_date_ends_the_series_instead_of_a_count():
    timing = weekly_timing(count=None, boundsPeriod={"start": "2027-01-04", "end": "2027-06-30"})

    rec = find_from_fhir(find_body(timing)).recurrence

    assert (rec.count, rec.until) == (None, dt.date(2027, 6, 30))


def test_the_second_tuesday_of_every_month_uses_the_week_of_month_extension():
    timing = weekly_timing(
        periodUnit="mo",
        dayOfWeek=["tue"],
        extension=[{"url": EXT_WEEK_OF_MONTH, "valueCode": "second"}],
    )

    rec = find_from_fhir(find_body(timing)).recurrence

    assert rec.frequency is Frequency.MONTHLY
    assert rec.nth_weekday == (1, 2)
    assert rec.weekdays == ()


def test_a_day_of_the_month_uses_its_extension_and_every_n_months_the_period():
    timing = weekly_timing(
        periodUnit="mo",
        period=2,
        dayOfWeek=None,
        extension=[{"url": EXT_DAY_OF_MONTH, "valuePositiveInt": 31}],
    )

    rec = find_from_fhir(find_body(timing)).recurrence

    assert (rec.month_day, rec.interval) == (31, 2)


def test_a_missing_duration_defaults_to_an_hour():
    rec = find_from_fhir(find_body(weekly_timing(duration=None, durationUnit=None))).recurrence

    assert rec.duration == dt.timedelta(hours=1)


def test_timing_round_trips_through_the_normalised_form():
    original = find_from_fhir(
        find_body(
            weekly_timing(
                periodUnit="mo",
                dayOfWeek=["tue"],
                extension=[{"url": EXT_WEEK_OF_MONTH, "valueCode": "last"}],
            )
        )
    ).recurrence

    again = find_from_fhir(find_body(recurrence_to_timing(original))).recurrence

    assert again == original


@pytest.mark.parametrize(
    ("repeat", "error", "expression"),
    [
        ({"count": 0}, InvalidResource, f"{FIND_TIMING}.repeat.count"),
        ({"dayOfWeek": ["mon", "funday"]}, InvalidResource, f"{FIND_TIMING}.repeat.dayOfWeek[1]"),
        ({"frequency": 2}, Unprocessable, f"{FIND_TIMING}.repeat.frequency"),
        ({"periodUnit": "h"}, Unprocessable, f"{FIND_TIMING}.repeat.periodUnit"),
        ({"period": 1.5}, Unprocessable, f"{FIND_TIMING}.repeat.period"),
        ({"timeOfDay": ["10:00:00", "14:00:00"]}, Unprocessable, f"{FIND_TIMING}.repeat.timeOfDay"),
        ({"boundsPeriod": {"end": "2027-02-01"}}, Unprocessable,
         f"{FIND_TIMING}.repeat.boundsPeriod.start"),
        ({"countMax": 9}, Unprocessable, f"{FIND_TIMING}.repeat.countMax"),
    ],
)  # fmt: skip
def test_a_malformed_timing_is_refused_naming_the_element(
    repeat: dict[str, Any], error: type[Exception], expression: str
):
    with pytest.raises(error) as refused:
        find_from_fhir(find_body(weekly_timing(**repeat)))

    assert refused.value.expression == expression  # type: ignore[attr-defined]


def test_a_weekday_of_the_month_without_its_week_is_refused():
    with pytest.raises(Unprocessable) as refused:
        find_from_fhir(find_body(weekly_timing(periodUnit="mo", dayOfWeek=["tue"])))

    assert refused.value.expression == f"{FIND_TIMING}.repeat.extension"


def test_unknown_parameters_and_a_missing_provider_are_refused():
    body = find_body(weekly_timing(), {"name": "colour", "valueString": "blue"})
    with pytest.raises(InvalidResource) as unknown:
        find_from_fhir(body)
    assert unknown.value.expression == "Parameters.parameter[3].name"

    no_provider = find_body(weekly_timing())
    del no_provider["parameter"][1]
    with pytest.raises(Unprocessable) as missing:
        find_from_fhir(no_provider)
    assert missing.value.expression == "Parameters.parameter[practitioner]"


def test_store_refusals_are_pointed_at_the_timing_of_the_request():
    where = Where({"Timing": FIND_TIMING})
    assert rooted(fhir_path("recurrence.count"), where) == f"{FIND_TIMING}.repeat.count"
    assert rooted(fhir_path("booking.slot"), where) == "Appointment.slot"


def test_the_innermost_place_a_refusal_is_located_in_wins():
    inner = Where({"Appointment": "Parameters.parameter[appointment-resource][0].resource"})
    outer = Where({"Timing": FIND_TIMING})
    with pytest.raises(ValueError) as caught, located(outer), located(inner):
        raise ValueError("refused")
    assert where_of(caught.value) == inner


# --- what $find emits -----------------------------------------------------------------


def _preview() -> SeriesPreview:
    rec = Recurrence(
        frequency=Frequency.WEEKLY,
        first_date=dt.date(2027, 1, 4),
        local_time=dt.time(10),
        duration=dt.timedelta(minutes=90),
        timezone=NEW_YORK,
        weekdays=(0, 2),
        count=3,
    )
    occurrences = expand(rec, today=dt.date(2026, 12, 1))
    gap = Occurrence(4, dt.datetime(2027, 3, 14, 2, 30), None, None, "dst-gap")
    proposals = [
        Proposal(
            occurrences[0], scheduled_session("s1", START), "dept-1", ("prac-1",), "group-therapy"
        ),
        Proposal(
            occurrences[1], None, "dept-1", ("prac-1",), None, (Notice("no-session", "none"),)
        ),
        Proposal(occurrences[2], None, "dept-1", ("prac-1",), None, (Notice("session-full", "x"),)),
        Proposal(gap, None, "dept-1", ("prac-1",), None, (Notice("dst-gap", "gap"),)),
    ]
    return SeriesPreview("pat-1", rec, proposals)


def test_the_preview_bundle_lists_proposals_in_order_then_the_warnings():
    bundle = preview_to_fhir(_preview())

    assert_valid(bundle)
    assert bundle["type"] == "searchset"
    assert bundle["total"] == 4
    modes = [e["search"]["mode"] for e in bundle["entry"]]
    assert modes == ["match"] * 4 + ["outcome"]
    matched, unmatched, full, gap = (e["resource"] for e in bundle["entry"][:4])
    assert matched["slot"] == [{"reference": "Slot/s1"}]
    assert matched["start"] == "2027-01-04T15:00:00Z"
    assert "requestedPeriod" not in matched
    assert unmatched["requestedPeriod"] == [
        {"start": "2027-01-06T15:00:00Z", "end": "2027-01-06T16:30:00Z"}
    ]
    assert "slot" not in unmatched and "start" not in unmatched
    assert "requestedPeriod" not in gap and "start" not in gap
    assert [e["valuePositiveInt"] for r in (matched, unmatched, full, gap) for e in r["extension"]
            if e["url"] == EXT_RECURRENCE_ID] == [1, 2, 3, 4]  # fmt: skip
    outcome = bundle["entry"][-1]["resource"]
    warnings = [i for i in outcome["issue"] if i["severity"] == "warning"]
    assert [w["expression"] for w in warnings] == [
        ["Bundle.entry[1].resource"],
        ["Bundle.entry[2].resource"],
        ["Bundle.entry[3].resource"],
    ]


def test_proposals_from_the_preview_read_back_as_a_series_booking():
    bundle = preview_to_fhir(_preview())
    kept = [e["resource"] for e in bundle["entry"][:3]]
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "appointment-resource", "resource": r} for r in kept]
        + [{"name": "coverage", "valueReference": {"reference": "Coverage/cov-1"}}],
    }

    booking = book_from_fhir(body)

    assert isinstance(booking, SeriesBooking)
    assert [k.recurrence_id for k in booking.kept] == [1, 2, 3]
    assert booking.kept[0].request.session_id == "s1"
    assert booking.kept[1].request.session_id is None
    assert booking.kept[1].request.start == dt.datetime(2027, 1, 6, 15, tzinfo=dt.UTC)
    assert booking.coverage_ids == ("cov-1",)
    assert booking.recurrence == replace(_preview().recurrence, timezone="")


def test_appointments_with_an_id_are_drafts_to_resolve():
    draft = {
        "resourceType": "Appointment",
        "id": "draft-1",
        "meta": {"versionId": "2"},
        "status": "booked",
        "slot": [{"reference": "Slot/s9"}],
        "participant": [{"actor": {"reference": "Patient/pat-1"}, "status": "accepted"}],
    }

    parameter = {"name": "appointment-resource", "resource": draft}
    choices = book_from_fhir({"resourceType": "Parameters", "parameter": [parameter]})

    assert isinstance(choices, list)
    assert choices[0] == DraftChoice("draft-1", choices[0].request, 2)
    assert choices[0].request.session_id == "s9"


# --- stored series shapes -------------------------------------------------------------


def _occurrence(ident: str, recurrence_id: int, **fields: Any) -> Booking:
    booking = Booking(
        id=ident,
        patient_id="pat-1",
        version=1,
        last_updated=START,
        created=START,
        series_id="origin",
        recurrence_id=recurrence_id,
        department_id="dept-1",
        **fields,
    )
    booking.providers.append(BookingProvider(provider_id="prac-1", position=0))
    return booking


def test_template_booked_occurrence_and_draft_are_valid_r4_with_r5_series_extensions():
    series = Series(id="origin", patient_id="pat-1", excluded="3,5")
    _record_recurrence(series, _preview().recurrence, "group-therapy")
    series.excluded = "3,5"
    template = _occurrence(
        "origin", 1, status=BookingStatus.BOOKED, session_id="s1", start=START,
        end=START + dt.timedelta(minutes=90),
    )  # fmt: skip
    template.series = series
    booked = _occurrence(
        "occ-2", 2, status=BookingStatus.BOOKED, session_id="s2",
        start=START + dt.timedelta(days=2), end=START + dt.timedelta(days=2, minutes=90),
    )  # fmt: skip
    draft = _occurrence(
        "occ-4", 4, status=BookingStatus.PROPOSED, session_id=None,
        start=START + dt.timedelta(days=7), end=START + dt.timedelta(days=7, minutes=90),
    )  # fmt: skip

    rendered = [appointment_to_fhir(b) for b in (template, booked, draft)]

    for resource in rendered:
        assert_valid(resource)
    urls = [[e["url"] for e in r["extension"]] for r in rendered]
    assert EXT_RECURRENCE_TEMPLATE in urls[0] and EXT_ORIGINATING_APPOINTMENT not in urls[0]
    assert EXT_ORIGINATING_APPOINTMENT in urls[1] and EXT_ORIGINATING_APPOINTMENT in urls[2]
    (origin_link,) = [
        e for e in rendered[2]["extension"] if e["url"] == EXT_ORIGINATING_APPOINTMENT
    ]
    assert origin_link["valueReference"] == {"reference": "Appointment/origin"}
    (template_ext,) = [e for e in rendered[0]["extension"] if e["url"] == EXT_RECURRENCE_TEMPLATE]
    parts = {p["url"]: p for p in template_ext["extension"] if p["url"] != "excludingRecurrenceId"}
    assert parts["timezone"]["valueCodeableConcept"]["coding"][0]["code"] == NEW_YORK
    assert parts["occurrenceCount"]["valuePositiveInt"] == 3
    weekly = {e["url"] for e in parts["weeklyTemplate"]["extension"]}
    assert weekly == {"monday", "wednesday", "weekInterval"}
    excluded = [p["valuePositiveInt"] for p in template_ext["extension"]
                if p["url"] == "excludingRecurrenceId"]  # fmt: skip
    assert excluded == [3, 5]
    assert rendered[2]["status"] == "proposed"
    assert "slot" not in rendered[2]
    assert rendered[2]["requestedPeriod"] == [
        {"start": "2027-01-11T15:00:00Z", "end": "2027-01-11T16:30:00Z"}
    ]
    assert rendered[2]["participant"][0]["status"] == "needs-action"


def test_the_book_answer_is_a_valid_collection_with_an_outcome():
    booked = _occurrence(
        "occ-2", 2, status=BookingStatus.BOOKED, session_id="s2",
        start=START, end=START + dt.timedelta(minutes=90),
    )  # fmt: skip

    bundle = bookings_to_fhir(
        "http://x/fhir", [booked], [Notice("session-closed", "occurrence 2: closed")], "1 booked"
    )

    assert_valid(bundle)
    assert bundle["type"] == "collection"
    assert bundle["entry"][0]["fullUrl"] == "http://x/fhir/Appointment/occ-2"
    assert bundle["entry"][-1]["resource"]["issue"][1]["details"]["coding"][0]["code"] == (
        "session-closed"
    )

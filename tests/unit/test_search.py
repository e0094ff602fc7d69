"""FHIR search parameters -> store conditions (mappings.search.parse_search)."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
from sqlalchemy.dialects import sqlite

from mappings.errors import InvalidSearch
from mappings.search import DEFAULT_COUNT, MAX_COUNT, parse_search
from mappings.search_params import date_range
from store.access import Access
from store.search import AnyOf, Condition, where_clause


def search(resource_type: str, query: str, *, lenient: bool = False):
    pairs = [tuple(part.split("=", 1)) for part in query.split("&")] if query else []
    return parse_search(resource_type, pairs, Access(), lenient=lenient)


def where(resource_type: str, query: str) -> list[AnyOf]:
    return search(resource_type, query).query.where


def only(resource_type: str, query: str) -> Condition:
    """The single condition a one-parameter, one-value query produces."""
    ((condition,),) = (alternatives.conditions for alternatives in where(resource_type, query))
    return condition


def refused(resource_type: str, query: str, *, lenient: bool = False) -> InvalidSearch:
    with pytest.raises(InvalidSearch) as caught:
        search(resource_type, query, lenient=lenient)
    return caught.value


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


# -- dates: precision ---------------------------------------------------------------


def test_a_year_stands_for_the_whole_year():
    assert date_range("2027", "start") == (utc(2027, 1, 1), utc(2028, 1, 1))


def test_a_month_stands_for_the_whole_month():
    assert date_range("2027-02", "start") == (utc(2027, 2, 1), utc(2027, 3, 1))


def test_december_ends_at_the_next_new_year():
    assert date_range("2027-12", "start") == (utc(2027, 12, 1), utc(2028, 1, 1))


def test_a_day_stands_for_the_whole_utc_day():
    assert date_range("2027-01-04", "start") == (utc(2027, 1, 4), utc(2027, 1, 5))


def test_a_datetime_with_zone_is_converted_to_utc_at_minute_precision():
    assert date_range("2027-01-04T10:00-05:00", "start") == (
        utc(2027, 1, 4, 15, 0),
        utc(2027, 1, 4, 15, 1),
    )


def test_a_datetime_with_seconds_stands_for_that_second():
    assert date_range("2027-01-04T15:00:00Z", "start") == (
        utc(2027, 1, 4, 15, 0, 0),
        utc(2027, 1, 4, 15, 0, 1),
    )


def test_a_datetime_with_a_half_hour_zone_is_converted_to_utc():
    lo, _ = date_range("2027-01-04T20:30:00+05:30", "start")
    assert lo == utc(2027, 1, 4, 15, 0)


def test_a_datetime_without_zone_is_taken_as_utc():
    lo, _ = date_range("2027-01-04T15:00", "start")
    assert lo == utc(2027, 1, 4, 15, 0)


@pytest.mark.parametrize("text", ["yesterday", "2027-13", "2027-02-30", "27-01-04", "2027-1-4"])
def test_a_malformed_date_is_refused(text):
    assert refused("Slot", f"start={text}").expression == "start"


# -- dates: prefixes (half-open [lo, hi) of the value) ------------------------------

JAN_4, JAN_5 = utc(2027, 1, 4), utc(2027, 1, 5)


@pytest.mark.parametrize(
    ("value", "op", "bound"),
    [
        ("2027-01-04", "within", (JAN_4, JAN_5)),
        ("eq2027-01-04", "within", (JAN_4, JAN_5)),
        ("ne2027-01-04", "outside", (JAN_4, JAN_5)),
        ("lt2027-01-04", "lt", JAN_4),
        ("le2027-01-04", "lt", JAN_5),
        ("gt2027-01-04", "ge", JAN_5),
        ("ge2027-01-04", "ge", JAN_4),
        ("sa2027-01-04", "ge", JAN_5),
        ("eb2027-01-04", "lt", JAN_4),
    ],
)
def test_a_date_prefix_becomes_the_right_bound(value, op, bound):
    assert only("Slot", f"start={value}") == Condition("start", op, bound)


def test_appointment_date_searches_the_booking_start():
    assert only("Appointment", "date=ge2027-01") == Condition("start", "ge", utc(2027, 1, 1))


def test_a_birthdate_is_compared_as_dates():
    condition = only("Patient", "birthdate=1980-05-17")
    assert condition == Condition(
        "birth_date", "within", (dt.date(1980, 5, 17), dt.date(1980, 5, 18))
    )


def test_a_birth_year_covers_the_whole_year_of_dates():
    condition = only("Patient", "birthdate=lt1981")
    assert condition == Condition("birth_date", "lt", dt.date(1981, 1, 1))


def test_a_schedule_date_is_an_overlap_with_the_planning_horizon():
    assert only("Schedule", "date=2027-01-04") == Condition("horizon", "eq", (JAN_4, JAN_5))
    assert only("Schedule", "date=ge2027-01-04") == Condition("horizon", "eq", (JAN_4, None))


def test_a_schedule_date_refuses_the_ne_prefix():
    assert refused("Schedule", "date=ne2027-01-04").expression == "date"


# -- OR within a parameter, AND across repetitions ----------------------------------


def test_commas_are_alternatives_of_one_parameter():
    assert where("Slot", "status=free,busy") == [
        AnyOf((Condition("availability", "eq", "open"), Condition("availability", "eq", "full")))
    ]


def test_a_repeated_parameter_is_anded():
    assert where("Slot", "start=ge2027-01-04&start=lt2027-01-05") == [
        AnyOf((Condition("start", "ge", JAN_4),)),
        AnyOf((Condition("start", "lt", JAN_5),)),
    ]


def test_an_escaped_comma_is_part_of_the_value():
    assert only("Organization", r"name=Harbor\, Inc") == Condition(
        "name", "startswith", "Harbor, Inc"
    )


def test_an_empty_value_is_refused():
    assert refused("Slot", "status=").expression == "status"


# -- references -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["Schedule/sched-1", "sched-1", "http://example.org/fhir/Schedule/sched-1"]
)
def test_a_reference_may_be_typed_bare_or_absolute(value):
    assert only("Slot", f"schedule={value}") == Condition("schedule", "eq", "sched-1")


def test_a_reference_to_the_wrong_type_is_refused():
    assert refused("Slot", "schedule=Practitioner/prac-1").expression == "schedule"


def test_an_absolute_reference_to_the_wrong_type_is_refused():
    assert refused("Appointment", "patient=http://x/fhir/Slot/s-1").expression == "patient"


def test_a_typed_actor_reference_searches_only_that_participant_type():
    assert only("Appointment", "actor=Practitioner/prac-1") == Condition("provider", "eq", "prac-1")


def test_a_bare_actor_id_searches_every_participant_type():
    (alternatives,) = where("Appointment", "actor=x-1")
    assert set(alternatives.conditions) == {
        Condition("patient", "eq", "x-1"),
        Condition("provider", "eq", "x-1"),
        Condition("department", "eq", "x-1"),
    }


def test_a_type_modifier_on_a_reference_narrows_it():
    assert only("Appointment", "actor:Location=dept-1") == Condition("department", "eq", "dept-1")


def test_a_type_modifier_of_the_wrong_type_is_refused():
    assert refused("Appointment", "patient:Slot=s-1").expression == "patient"


def test_a_reference_with_illegal_characters_is_refused():
    assert refused("Appointment", "slot=Slot/a b").expression == "slot"


# -- tokens ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "availability"), [("free", "open"), ("busy", "full"), ("busy-unavailable", "blocked")]
)
def test_slot_status_codes_map_to_session_availability(code, availability):
    assert only("Slot", f"status={code}") == Condition("availability", "eq", availability)


def test_a_status_may_carry_its_system():
    condition = only("Appointment", "status=http://hl7.org/fhir/appointmentstatus|booked")
    assert condition == Condition("status", "eq", "booked")


def test_the_not_modifier_negates_a_status():
    assert only("Appointment", "status:not=cancelled") == Condition("status", "ne", "cancelled")


def test_an_unknown_status_code_is_refused():
    assert refused("Slot", "status=open").expression == "status"
    assert refused("Appointment", "status=confirmed").expression == "status"


def test_an_unknown_gender_is_refused():
    assert refused("Patient", "gender=f").expression == "gender"


def test_an_identifier_may_carry_a_system():
    assert only("Patient", "identifier=http://x/mrn|MRN1") == Condition(
        "identifier", "eq", ("http://x/mrn", "MRN1")
    )
    assert only("Patient", "identifier=MRN1") == Condition("identifier", "eq", (None, "MRN1"))


def test_a_known_appointment_type_code_searches_the_type():
    assert only("Slot", "appointment-type=dbt-skills") == Condition(
        "appointment_type", "eq", "dbt-skills"
    )


def test_an_unknown_appointment_type_code_matches_nothing():
    assert only("Slot", "appointment-type=yoga") == Condition("id", "eq", None)


def test_active_must_be_true_or_false():
    assert only("Schedule", "active=true") == Condition("active", "eq", True)
    assert refused("Schedule", "active=yes").expression == "active"


# -- strings --------------------------------------------------------------------------


def test_a_family_search_starts_with_the_folded_name():
    assert only("Patient", "family=GARCÍA") == Condition("family", "startswith", "garcia")


def test_contains_on_family_is_folded_too():
    assert only("Patient", "family:contains=rcí") == Condition("family", "contains", "rci")


def test_exact_on_family_keeps_the_value_as_written():
    condition = only("Patient", "family:exact=García")
    assert (condition.op, condition.value) == ("eq", "García")


def test_exact_on_family_compares_with_the_name_as_stored_not_its_folded_form():
    # FHIR :exact is case- and accent-sensitive, so "García" must be compared with the
    # family name as written; the folded column holds "garcia" and never matches it.
    query = search("Patient", "family:exact=García").query
    sql = str(
        where_clause(query).compile(
            dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}
        )
    )
    assert "family_folded" not in sql
    assert "patient.family = 'García'" in sql


def test_practitioner_names_are_not_folded():
    assert only("Practitioner", "name=Rivera") == Condition("name", "startswith", "Rivera")


def test_an_unsupported_string_modifier_is_refused():
    assert refused("Patient", "family:below=gar").expression == "family:below"


def test_a_modifier_on_a_date_is_refused():
    assert refused("Slot", "start:missing=true").expression == "start:missing"


# -- phones ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "phone", ["(555) 010-2233", "555.010.2233", "+1 555 010 2233", "5550102233"]
)
def test_a_phone_in_any_formatting_searches_the_same_digits(phone):
    assert only("Patient", f"phone={phone}") == Condition("phone_digits", "eq", "5550102233")


# -- unknown parameters and leniency --------------------------------------------------


def test_an_unknown_parameter_is_refused_and_named():
    error = refused("Slot", "colour=blue")
    assert error.expression == "colour"
    assert "start" in error.message


def test_an_unknown_parameter_is_ignored_when_lenient():
    request = search("Slot", "colour=blue&status=free", lenient=True)
    assert request.query.where == [AnyOf((Condition("availability", "eq", "open"),))]
    assert request.canonical == [("status", "free")]


# -- paging ---------------------------------------------------------------------------


def test_without_count_the_default_page_size_applies():
    request = search("Slot", "")
    assert (request.query.limit, request.query.offset) == (DEFAULT_COUNT, 0)


def test_count_sets_the_page_size():
    assert search("Slot", "_count=5").query.limit == 5


def test_count_is_capped():
    assert search("Slot", f"_count={MAX_COUNT * 10}").query.limit == MAX_COUNT


def test_offset_pages_on_but_is_not_a_canonical_parameter():
    request = search("Slot", "_count=10&_offset=20")
    assert request.query.offset == 20
    assert request.canonical == [("_count", "10")]


@pytest.mark.parametrize("value", ["ten", "-1", "1.5", ""])
def test_a_bad_count_is_refused(value):
    assert refused("Slot", f"_count={value}").expression == "_count"


def test_a_bad_offset_is_refused():
    assert refused("Slot", "_offset=x").expression == "_offset"


def test_a_format_other_than_json_is_refused():
    assert refused("Slot", "_format=xml").expression == "_format"
    assert search("Slot", "_format=json").query.where == []


# -- sorting --------------------------------------------------------------------------


def test_the_default_sort_is_by_start():
    assert search("Slot", "").query.sort == [("start", False)]


def test_a_minus_sorts_descending():
    assert search("Appointment", "_sort=-date").query.sort == [("start", True)]


def test_several_sort_keys_are_kept_in_order():
    assert search("Patient", "_sort=birthdate,-family").query.sort == [
        ("birth_date", False),
        ("family", True),
    ]


def test_an_unsupported_sort_is_refused():
    assert refused("Slot", "_sort=capacity").expression == "_sort"


# -- includes -------------------------------------------------------------------------


def test_slot_can_include_its_schedule_and_revinclude_appointments():
    request = search("Slot", "_include=Slot:schedule&_revinclude=Appointment:slot")
    (include,) = request.includes
    (revinclude,) = request.revincludes
    assert include.refs(SimpleNamespace(schedule_id="sched-1")) == [("Schedule", "sched-1")]
    assert (revinclude.source, revinclude.field) == ("Appointment", "session")


def test_appointment_can_include_its_patient_and_slot():
    request = search("Appointment", "_include=Appointment:patient&_include=Appointment:slot")
    booking = SimpleNamespace(patient_id="pat-1", session_id="session-1")
    assert [i.refs(booking) for i in request.includes] == [
        [("Patient", "pat-1")],
        [("Slot", "session-1")],
    ]


def test_an_include_follows_the_reference_of_a_record():
    (include,) = search("Appointment", "_include=Appointment:slot").includes
    booked, draft = SimpleNamespace(session_id="session-1"), SimpleNamespace(session_id=None)
    assert (include.refs(booked), include.refs(draft)) == ([("Slot", "session-1")], [])


def test_an_unsupported_include_is_refused():
    assert refused("Slot", "_include=Slot:patient").expression == "_include"


def test_an_unsupported_revinclude_is_refused():
    assert refused("Patient", "_revinclude=Appointment:patient").expression == "_revinclude"


def test_unsupported_includes_are_ignored_when_lenient():
    request = search("Slot", "_include=Slot:patient&_revinclude=X:y", lenient=True)
    assert (request.includes, request.revincludes) == ([], [])


@pytest.mark.parametrize("name", ["_count", "_offset"])
@pytest.mark.parametrize("value", [str(2**31), "9" * 40, "\u00b2"])
def test_a_paging_number_the_database_cannot_take_is_refused(name, value):
    # Not a 500 from the driver: "²" is a digit to Python, and 2**31 overflows an offset.
    assert refused("Slot", f"{name}={value}").expression == name

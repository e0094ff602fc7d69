"""Slot <-> group session: the group-capacity extension, SMART slot-capacity, status."""

from __future__ import annotations

import datetime as dt
import enum

import orjson
import pytest

from fhir_facade.http import json_bytes
from fhir_facade.references import Checked
from mappings import slot as slot_mapping
from mappings.errors import InvalidResource, Unprocessable
from mappings.slot import shared_slot, slot_from_fhir, slot_to_fhir
from store.errors import RuleViolation
from store.models import GroupSession
from tests.unit.builders import (
    CLOSED_SESSION,
    GROUP_CAPACITY,
    MONDAY,
    SMART_CAPACITY,
    capacity_extension,
    capacity_parts,
    extension,
    session,
    slot_body,
)
from tests.validation import assert_valid

# -- output ---------------------------------------------------------------------------


def test_a_session_maps_to_a_valid_slot():
    slot = slot_to_fhir(session())
    assert_valid(slot)
    assert slot["id"] == "session-1"
    assert slot["schedule"] == {"reference": "Schedule/sched-1"}
    assert slot["start"] == "2027-01-04T15:00:00Z"
    assert slot["end"] == "2027-01-04T16:30:00Z"
    assert slot["overbooked"] is False


def test_the_slot_carries_capacity_and_booked_in_the_group_capacity_extension():
    slot = slot_to_fhir(session(capacity=10, booked=3))
    assert capacity_parts(slot) == {"capacity": 10, "booked": 3}


def test_the_smart_slot_capacity_counts_the_places_left():
    slot = slot_to_fhir(session(capacity=10, booked=3))
    assert extension(slot, SMART_CAPACITY) == {"url": SMART_CAPACITY, "valueInteger": 7}


def test_a_full_session_has_no_places_left_for_smart():
    slot = slot_to_fhir(session(capacity=4, booked=4))
    assert extension(slot, SMART_CAPACITY)["valueInteger"] == 0


@pytest.mark.parametrize("closed", [True, False])
def test_the_closed_session_flag_is_carried(closed):
    slot = slot_to_fhir(session(closed=closed))
    assert_valid(slot)
    assert extension(slot, CLOSED_SESSION) == {"url": CLOSED_SESSION, "valueBoolean": closed}


def test_a_session_with_places_left_maps_to_free():
    assert slot_to_fhir(session(capacity=10, booked=9))["status"] == "free"


def test_a_full_session_maps_to_busy():
    slot = slot_to_fhir(session(capacity=10, booked=10))
    assert_valid(slot)
    assert slot["status"] == "busy"
    assert slot["overbooked"] is False


def test_a_blocked_session_maps_to_busy_unavailable_even_with_places_left():
    slot = slot_to_fhir(session(blocked=True, booked=0))
    assert_valid(slot)
    assert slot["status"] == "busy-unavailable"


def test_a_blocked_full_session_is_still_busy_unavailable():
    assert slot_to_fhir(session(blocked=True, capacity=2, booked=2))["status"] == "busy-unavailable"


def test_the_slot_codes_its_appointment_and_service_types():
    slot = slot_to_fhir(session())
    assert slot["appointmentType"]["coding"][0]["code"] == "group-therapy"
    assert slot["serviceType"][0]["coding"][0]["code"] == "behavioral-health-group"


def test_a_session_without_types_or_comment_leaves_them_out():
    slot = slot_to_fhir(session(appointment_type=None, service_type=None, comment=None))
    assert_valid(slot)
    assert "appointmentType" not in slot
    assert "serviceType" not in slot
    assert "comment" not in slot


def test_slot_times_are_rendered_as_utc_instants():
    new_york = dt.timezone(dt.timedelta(hours=-5))
    local = dt.datetime(2027, 1, 4, 10, 0, tzinfo=new_york)
    slot = slot_to_fhir(session(start=local, end=local + dt.timedelta(hours=1)))
    assert (slot["start"], slot["end"]) == ("2027-01-04T15:00:00Z", "2027-01-04T16:00:00Z")


def loaded(**overrides: object) -> GroupSession:
    """A session as a query loads it: every column present, none left to the ORM."""
    return session(**({"comment": None, "document": None} | overrides))


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"capacity": 4, "booked": 4},
        {"blocked": True},
        {"closed": True, "comment": "Bring your workbook"},
        {"appointment_type": None, "service_type": None},
    ],
)
def test_a_shared_slot_is_the_slot_rendered_anew(overrides):
    assert shared_slot(loaded(**overrides)) == slot_to_fhir(loaded(**overrides))


def test_a_shared_slot_is_kept_between_reads_of_the_same_version():
    assert shared_slot(loaded()) is shared_slot(loaded())


def test_a_shared_slot_shows_a_changed_column_at_once():
    record = loaded(capacity=10, booked=3)
    before = shared_slot(record)
    record.booked = 4
    record.closed = True
    after = shared_slot(record)
    assert capacity_parts(after) == {"capacity": 10, "booked": 4}
    assert extension(after, CLOSED_SESSION)["valueBoolean"] is True
    assert capacity_parts(before) == {"capacity": 10, "booked": 3}


def test_shared_slots_are_kept_up_to_the_bound_the_oldest_going_first(monkeypatch):
    monkeypatch.setattr(slot_mapping, "SHARED_SLOTS", 3)
    monkeypatch.setattr(slot_mapping, "_SHARED", {})
    first = shared_slot(loaded(id="kept-1"))
    for n in (2, 3, 4):
        shared_slot(loaded(id=f"kept-{n}"))
    assert len(slot_mapping._SHARED) == 3
    assert shared_slot(loaded(id="kept-4")) is shared_slot(loaded(id="kept-4"))
    assert shared_slot(loaded(id="kept-1")) is not first  # it had gone: rendered again


def test_a_session_keeps_one_shared_rendering_its_latest_version(monkeypatch):
    monkeypatch.setattr(slot_mapping, "SHARED_SLOTS", 2)
    monkeypatch.setattr(slot_mapping, "_SHARED", {})
    other = shared_slot(loaded(id="other"))
    shared_slot(loaded(id="booked-into", version=1, booked=3))
    latest = shared_slot(loaded(id="booked-into", version=2, booked=4))
    assert len(slot_mapping._SHARED) == 2  # the new version took the old one's place
    assert shared_slot(loaded(id="booked-into", version=2, booked=4)) is latest
    assert capacity_parts(latest) == {"capacity": 10, "booked": 4}
    assert shared_slot(loaded(id="other")) is other  # nothing else went to make room


def test_a_shared_slot_is_written_as_the_same_json_as_its_plain_rendering():
    shared = shared_slot(loaded())
    page = {"resourceType": "Bundle", "entry": [{"resource": shared}, {"resource": shared}]}
    plain = {"resourceType": "Bundle", "entry": [{"resource": slot_to_fhir(loaded())}] * 2}
    assert json_bytes(page) == orjson.dumps(plain)


def test_a_shared_slots_search_entry_is_written_as_a_plain_entry():
    shared = shared_slot(loaded())
    plain = slot_to_fhir(loaded())
    url = f"http://fhir.example/fhir/Slot/{plain['id']}"
    page = {"entry": [shared.entry("http://fhir.example/fhir", "match")]}
    expected = {"entry": [{"fullUrl": url, "resource": plain, "search": {"mode": "match"}}]}
    assert json_bytes(page) == orjson.dumps(expected)
    assert page["entry"][0]["resource"] is shared  # readable as a dict, as any entry


def test_a_shared_slot_keeps_one_entry_the_last_base_asked_for():
    shared = shared_slot(loaded())
    first = shared.entry("http://a.example/fhir", "match")
    assert shared.entry("http://a.example/fhir", "match") is first
    other = shared.entry("http://b.example/fhir", "match")
    assert other["fullUrl"].startswith("http://b.example/fhir/Slot/")
    assert shared.entry("http://a.example/fhir", "include") is not first
    assert orjson.loads(json_bytes(shared.entry("http://a.example/fhir", "include")))["search"] == {
        "mode": "include"
    }


def test_subclasses_of_json_types_are_written_as_their_plain_values():
    class Status(enum.StrEnum):
        BOOKED = "booked"

    class Rank(enum.IntEnum):
        FIRST = 1

    body = {"status": Status.BOOKED, "rank": Rank.FIRST, "nested": Checked({"a": [1]})}
    assert orjson.loads(json_bytes(body)) == {"status": "booked", "rank": 1, "nested": {"a": [1]}}


def test_a_shared_slot_is_valid_and_refuses_changes():
    shared = shared_slot(loaded())
    assert_valid(shared)
    with pytest.raises(TypeError):
        shared["status"] = "busy"
    with pytest.raises(TypeError):
        del shared["comment"]
    assert shared == slot_to_fhir(loaded())


def test_a_slot_with_a_kept_document_is_rendered_anew_for_each_read():
    record = loaded(document='{"identifier": [{"system": "urn:x", "value": "1"}]}')
    first = shared_slot(record)
    assert first == slot_to_fhir(record)
    assert first is not shared_slot(record)


def test_a_column_the_query_did_not_load_is_read_through_the_orm():
    record = session(document=None)  # `comment` never set: not in the loaded values
    assert shared_slot(record) == slot_to_fhir(record)
    assert shared_slot(record) is not shared_slot(record)


# -- input ----------------------------------------------------------------------------


def test_a_slot_body_reads_as_a_session_spec():
    spec = slot_from_fhir(
        slot_body(
            comment="Bring your workbook",
            appointmentType={"coding": [{"code": "dbt-skills"}]},
            serviceType=[{"coding": [{"code": "psychoeducation-group"}]}],
        )
    )
    assert spec.schedule_id == "sched-1"
    assert spec.start == MONDAY
    assert spec.end == MONDAY + dt.timedelta(minutes=90)
    assert spec.capacity == 10
    assert spec.appointment_type == "dbt-skills"
    assert spec.service_type == "psychoeducation-group"
    assert spec.comment == "Bring your workbook"
    assert (spec.closed, spec.blocked) == (False, False)


def test_a_slot_we_rendered_reads_back_as_the_same_session():
    spec = slot_from_fhir(slot_to_fhir(session(closed=True)))
    assert (spec.schedule_id, spec.start, spec.capacity) == ("sched-1", MONDAY, 10)
    assert spec.closed is True
    assert spec.appointment_type == "group-therapy"


def test_a_slot_in_another_zone_is_read_as_the_same_instant():
    spec = slot_from_fhir(
        slot_body(start="2027-01-04T10:00:00-05:00", end="2027-01-04T11:30:00-05:00")
    )
    assert spec.start == MONDAY


def test_a_busy_unavailable_slot_blocks_the_session():
    assert slot_from_fhir(slot_body(status="busy-unavailable")).blocked is True


def test_the_closed_session_extension_is_read():
    body = slot_body(
        extension=[capacity_extension(8), {"url": CLOSED_SESSION, "valueBoolean": True}]
    )
    assert slot_from_fhir(body).closed is True


def _refusal(error: type[Exception], body: object) -> Exception:
    with pytest.raises(error) as caught:
        slot_from_fhir(body)
    return caught.value


def test_a_slot_without_the_capacity_extension_has_one_place_as_in_plain_fhir():
    assert slot_from_fhir(slot_body(extension=[])).capacity == 1


def test_busy_holds_a_new_slot_and_free_or_busy_unavailable_set_it():
    statuses = {s: slot_from_fhir(slot_body(status=s)).blocked for s in ("free", "busy")}
    assert statuses == {"free": False, "busy": None}
    assert slot_from_fhir(slot_body(status="busy-unavailable")).blocked is True


def test_a_capacity_extension_without_its_capacity_part_is_unprocessable():
    body = slot_body(
        extension=[{"url": GROUP_CAPACITY, "extension": [{"url": "booked", "valueUnsignedInt": 2}]}]
    )
    assert _refusal(Unprocessable, body).expression == "Slot.extension[0]"


def test_a_slot_ending_when_it_starts_is_refused_by_the_session_rule():
    body = slot_body(start="2027-01-04T15:00:00Z", end="2027-01-04T15:00:00Z")
    assert _refusal(RuleViolation, body).field == "session.end"


def test_a_slot_ending_before_it_starts_is_refused_by_the_session_rule():
    body = slot_body(start="2027-01-04T15:00:00Z", end="2027-01-04T14:00:00Z")
    assert _refusal(RuleViolation, body).field == "session.end"


def test_a_slot_whose_schedule_points_elsewhere_is_unprocessable():
    body = slot_body(schedule={"reference": "Practitioner/prac-1"})
    assert _refusal(Unprocessable, body).expression == "Slot.schedule"


def test_an_unknown_extension_on_a_slot_is_unprocessable():
    body = slot_body(extension=[capacity_extension(5), {"url": "http://x", "valueBoolean": True}])
    assert _refusal(Unprocessable, body).expression == "Slot.extension[1]"


def test_a_tentative_slot_is_held_like_a_busy_one():
    assert slot_from_fhir(slot_body(status="busy-tentative")).blocked is None


def test_a_slot_entered_in_error_is_unprocessable():
    assert _refusal(Unprocessable, slot_body(status="entered-in-error")).expression == "Slot.status"


def test_an_unknown_service_type_is_unprocessable():
    body = slot_body(serviceType=[{"coding": [{"code": "yoga"}]}])
    assert _refusal(Unprocessable, body).expression == "Slot.serviceType"


def test_a_body_of_another_resource_type_is_invalid():
    body = slot_body(resourceType="Appointment")
    assert _refusal(InvalidResource, body).expression == "resourceType"


def test_an_unknown_element_on_a_slot_is_invalid():
    assert _refusal(InvalidResource, slot_body(seats=10)).expression == "Slot.seats"
